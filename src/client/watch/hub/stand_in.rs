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
//! kept as a hash; a watch whose keys there are compacted away before its first reading is
//! confirmed again once its next event comes. A round that fails (no answer, a refusal) is
//! simply not counted: confirmations age, as they do when etcd does not answer.

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
use crate::proto::etcdserverpb as pb;
use pb::request_op::Request;
use pb::response_op::Response;

/// etcd's default `--max-txn-ops`.
const OPS_PER_TXN: usize = 128;

/// What the task keeps to stand in.
#[derive(Default)]
pub(super) struct StandIn {
    /// By local id: the first revision the watch had not delivered, and the hash of its keys
    /// at the revision before.
    before: IdMap<u64, (i64, u64)>,
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
    /// The hash of its keys at `next - 1`, if known: else read too.
    before: Option<u64>,
}

/// One watch's range as read.
pub(super) struct Reading {
    id: u64,
    next: i64,
    header: pb::ResponseHeader,
    now: u64,
    before: Option<u64>,
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
                    .map(|(_, hash)| *hash),
            })
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
            let Some(before) = reading.before else {
                continue;
            };
            self.stand_in
                .before
                .insert(reading.id, (reading.next, before));
            if before == reading.now {
                let header = ResponseHeader::from(Some(reading.header));
                self.deliver(reading.id, header, Vec::new());
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

/// Reads every ask's range at the head, and at the revision before its next where that is
/// not known, a Txn per batch (one head revision per batch).
async fn read(transport: &Arc<Transport>, asks: Vec<Ask>) -> Vec<Reading> {
    let mut readings = Vec::with_capacity(asks.len());
    let mut batch: Vec<Ask> = Vec::new();
    let mut ops = 0;
    for ask in asks {
        let needs = 1 + usize::from(ask.before.is_none());
        if ops + needs > OPS_PER_TXN {
            read_batch(transport, std::mem::take(&mut batch), &mut readings).await;
            ops = 0;
        }
        ops += needs;
        batch.push(ask);
    }
    read_batch(transport, batch, &mut readings).await;
    readings
}

async fn read_batch(transport: &Arc<Transport>, batch: Vec<Ask>, readings: &mut Vec<Reading>) {
    if batch.is_empty() {
        return;
    }
    let range = |ask: &Ask, revision: i64| pb::RequestOp {
        request: Some(Request::RequestRange(pb::RangeRequest {
            key: ask.key.clone(),
            range_end: ask.range_end.clone(),
            revision,
            keys_only: true,
            ..Default::default()
        })),
    };
    let mut txn = pb::TxnRequest::default();
    for ask in &batch {
        txn.success.push(range(ask, 0));
        if ask.before.is_none() {
            txn.success.push(range(ask, ask.next - 1));
        }
    }
    let answer = match transport.call(&txn).await {
        Ok(answer) => answer,
        Err(err) => {
            // A revision before compacted fails the whole Txn: read the heads alone.
            tracing::debug!(error = %err, "standing in for progress: a read failed");
            if batch.iter().all(|ask| ask.before.is_some()) {
                return;
            }
            let heads = batch
                .into_iter()
                .filter(|ask| ask.before.is_some())
                .collect();
            return Box::pin(read_batch(transport, heads, readings)).await;
        }
    };
    let mut hashes = answer.responses.into_iter().map(|op| match op.response {
        Some(Response::ResponseRange(range)) => hash_of(&range.kvs),
        _ => 0,
    });
    for ask in batch {
        let now = hashes.next().unwrap_or(0);
        let before = match ask.before {
            Some(hash) => Some(hash),
            None => hashes.next(),
        };
        readings.push(Reading {
            id: ask.id,
            next: ask.next,
            header: answer.header.unwrap_or_default(),
            now,
            before,
        });
    }
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
