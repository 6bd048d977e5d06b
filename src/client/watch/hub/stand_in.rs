//! Progress where no one answers progress requests. etcd's gRPC proxy (3.4 and 3.5) lets them
//! go unanswered, so behind it a quiet live config would never hear that it is still current.
//! When two requests in a row got no answer, the task stands in for etcd for the watches whose
//! owners want confirmation: every [`PROGRESS_EVERY`](super::PROGRESS_EVERY) it reads their
//! keys (keys only: each key with its mod revision) at the head, in read-only Txns of up to
//! [`OPS_PER_TXN`] Ranges, and compares them with the keys at the revision before the first it
//! has not delivered. The same keys with the same mod revisions mean nothing happened to the
//! range in between: a put gives a key a new mod revision, a delete removes it, and a key put
//! again after a delete has a new one too. Such a watch is then told what a progress
//! notification would tell it, with the head's revision; any other watch is told nothing.
//!
//! The keys before are read once per delivered revision (at it, while etcd still keeps it) and
//! kept as a hash; a watch whose keys there were compacted away before they were read is not
//! confirmed again until its next event. A round that fails (no answer, a refusal) is simply
//! not counted: confirmations age, as they do when etcd does not answer.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::super::ids::IdMap;
use super::watcher::State;
use super::Hub;
use crate::client::transport::Transport;
use crate::client::ResponseHeader;
use crate::error::{Result, ServerErrorKind};
use crate::proto::etcdserverpb as pb;
use pb::request_op::Request;
use pb::response_op::Response;

/// etcd's default `--max-txn-ops`.
const OPS_PER_TXN: usize = 128;

/// What the task keeps to stand in.
#[derive(Default)]
pub(super) struct StandIn {
    /// By local id: the first revision the watch had not delivered, and its keys at the
    /// revision before.
    before: IdMap<u64, (i64, Before)>,
    /// The round under way: its readings come here.
    pub(super) round: Option<oneshot::Receiver<Vec<Reading>>>,
}

/// One watch's range to read.
struct Ask {
    id: u64,
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The first revision the watch had not delivered when the round began.
    next: i64,
    /// Its keys at `next - 1`, if known: else read too.
    before: Option<Before>,
}

/// A watch's keys at the revision before its next one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Before {
    /// Their hash ([`hash_of`]).
    Hash(u64),
    /// Compacted away before they were read.
    Compacted,
}

/// One watch's range as read: its keys before, and at the head (`header`'s revision) if
/// those are known.
pub(super) struct Reading {
    id: u64,
    next: i64,
    before: Before,
    now: Option<(pb::ResponseHeader, u64)>,
}

impl Hub {
    /// Asks etcd for progress while live configs want to be confirmed current; stands in
    /// where it does not answer.
    pub(super) fn progress_due(&mut self) {
        if self.confirming.load(Ordering::Relaxed) == 0 || !self.stream.is_open() {
            return;
        }
        self.send(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        ));
        self.probe.asked();
        if self.probe.unanswered() {
            self.stand_in();
        }
    }

    /// Starts a round, unless one is under way: the watches that want confirmation, active,
    /// with a known position.
    pub(super) fn stand_in(&mut self) {
        if self.stand_in.round.is_some() {
            return;
        }
        let Some(transport) = self.stream.transport() else {
            return;
        };
        let before = &self.stand_in.before;
        let asks: Vec<Ask> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.spec.confirmed() && matches!(w.state, State::Active(_)))
            .filter(|(_, w)| w.next_revision > 1)
            .map(|(&id, w)| Ask {
                id,
                key: w.spec.key().to_vec(),
                range_end: w.spec.range_end().into_owned(),
                next: w.next_revision,
                before: before
                    .get(&id)
                    .filter(|(next, _)| *next == w.next_revision)
                    .map(|(_, before)| *before),
            })
            .filter(|ask| ask.before != Some(Before::Compacted))
            .collect();
        if asks.is_empty() {
            return;
        }
        let (done, round) = oneshot::channel();
        self.stand_in.round = Some(round);
        tokio::spawn(async move {
            let _ = done.send(read(&transport, asks).await);
        });
    }

    /// The round ended: tells each watch whose keys are as they were that it is current
    /// through the head, and keeps what was learned of the others.
    pub(super) fn stood_in(&mut self, readings: Vec<Reading>) {
        self.stand_in.round = None;
        let watchers = &self.watchers;
        self.stand_in
            .before
            .retain(|id, _| watchers.contains_key(id));
        for reading in readings {
            let Some(watcher) = self.watchers.get(&reading.id) else {
                continue;
            };
            // Events came meanwhile: this reading says nothing about where the watch is now.
            if watcher.next_revision != reading.next || !matches!(watcher.state, State::Active(_)) {
                continue;
            }
            self.stand_in
                .before
                .insert(reading.id, (reading.next, reading.before));
            match reading.now {
                Some((header, now)) if reading.before == Before::Hash(now) => {
                    let header = ResponseHeader::from(Some(header));
                    self.deliver(reading.id, header, Vec::new());
                }
                _ => {}
            }
        }
    }
}

/// Waits for the round under way; never resolves while there is none.
pub(super) async fn round_ended(
    round: &mut Option<oneshot::Receiver<Vec<Reading>>>,
) -> Vec<Reading> {
    match round {
        Some(receiver) => receiver.await.unwrap_or_default(),
        None => std::future::pending().await,
    }
}

/// Reads, for every ask, its keys before where not known, then its keys at the head: in
/// batches of up to [`OPS_PER_TXN`] asks, a read-only Txn each (one head revision per batch).
async fn read(transport: &Arc<Transport>, mut asks: Vec<Ask>) -> Vec<Reading> {
    let mut readings = Vec::with_capacity(asks.len());
    while !asks.is_empty() {
        let rest = asks.split_off(asks.len().min(OPS_PER_TXN));
        if !read_batch(transport, asks, &mut readings).await {
            break; // etcd does not answer: the next round tries again
        }
        asks = rest;
    }
    readings
}

/// Reads one batch; false when a read failed for another reason than a compaction.
async fn read_batch(
    transport: &Arc<Transport>,
    mut batch: Vec<Ask>,
    out: &mut Vec<Reading>,
) -> bool {
    let unknown: Vec<usize> = (0..batch.len())
        .filter(|&i| batch[i].before.is_none())
        .collect();
    if !unknown.is_empty() {
        let ranges = unknown.iter().map(|&i| range(&batch[i], batch[i].next - 1));
        match read_ranges(transport, ranges.collect()).await {
            Ok((_, hashes)) => {
                for (&i, hash) in unknown.iter().zip(hashes) {
                    batch[i].before = Some(Before::Hash(hash));
                }
            }
            // One of them (at least) is compacted: each on its own.
            Err(err) if err.server_kind() == Some(ServerErrorKind::Compacted) => {
                for &i in &unknown {
                    let one = vec![range(&batch[i], batch[i].next - 1)];
                    batch[i].before = match read_ranges(transport, one).await {
                        Ok((_, hashes)) => hashes.first().copied().map(Before::Hash),
                        Err(err) if err.server_kind() == Some(ServerErrorKind::Compacted) => {
                            Some(Before::Compacted)
                        }
                        Err(_) => return false,
                    };
                }
            }
            Err(_) => return false,
        }
    }
    let (compacted, batch): (Vec<Ask>, Vec<Ask>) = batch
        .into_iter()
        .partition(|ask| ask.before == Some(Before::Compacted));
    out.extend(compacted.into_iter().map(|ask| Reading {
        id: ask.id,
        next: ask.next,
        before: Before::Compacted,
        now: None,
    }));
    if batch.is_empty() {
        return true;
    }
    let Ok((header, hashes)) =
        read_ranges(transport, batch.iter().map(|a| range(a, 0)).collect()).await
    else {
        return false;
    };
    for (ask, now) in batch.into_iter().zip(hashes) {
        let Some(before) = ask.before else { continue };
        out.push(Reading {
            id: ask.id,
            next: ask.next,
            before,
            now: Some((header, now)),
        });
    }
    true
}

/// The keys-only Range of an ask's keys at `revision` (0: the head).
fn range(ask: &Ask, revision: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Request::RequestRange(pb::RangeRequest {
            key: ask.key.clone(),
            range_end: ask.range_end.clone(),
            revision,
            keys_only: true,
            ..Default::default()
        })),
    }
}

/// Sends `ranges` as one read-only Txn: its header and each range's hash, in order.
async fn read_ranges(
    transport: &Arc<Transport>,
    ranges: Vec<pb::RequestOp>,
) -> Result<(pb::ResponseHeader, Vec<u64>)> {
    let txn = pb::TxnRequest {
        success: ranges,
        ..Default::default()
    };
    let answer = transport.call(&txn).await.inspect_err(|err| {
        tracing::debug!(error = %err, "standing in for progress: a read failed");
    })?;
    let hashes = answer.responses.iter().map(|op| match &op.response {
        Some(Response::ResponseRange(range)) => hash_of(&range.kvs),
        _ => 0,
    });
    Ok((answer.header.unwrap_or_default(), hashes.collect()))
}

/// The keys and their mod revisions, hashed in the order etcd sent them (by key).
fn hash_of(kvs: &[crate::proto::mvccpb::KeyValue]) -> u64 {
    let mut hasher = DefaultHasher::new();
    kvs.len().hash(&mut hasher);
    for kv in kvs {
        kv.key.hash(&mut hasher);
        kv.mod_revision.hash(&mut hasher);
    }
    hasher.finish()
}
