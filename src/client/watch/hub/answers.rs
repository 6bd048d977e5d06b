//! What the watch task does with etcd's answers on the Watch stream: confirmed or refused
//! creates, events (routed to their watch, whole revisions only), progress notifications, and
//! watches that etcd ended (compaction, no leader, an expired token, a refusal).

use std::sync::atomic::Ordering;

use super::super::event::{Event, WatchResponse};
use super::watcher::Handed;
use super::{Hub, State};
use crate::client::ResponseHeader;
use crate::error::{Error, ServerErrorKind};
use crate::proto::etcdserverpb as pb;

impl Hub {
    /// One message from the stream: an answer, its end, or its error.
    pub(super) async fn received(
        &mut self,
        message: std::result::Result<Option<pb::WatchResponse>, tonic::Status>,
    ) {
        match message {
            Ok(Some(response)) => {
                self.probe.heard();
                self.response(response).await;
            }
            Ok(None) => self.broken("the server closed the watch stream"),
            Err(status) => self.broken(status.message()),
        }
    }

    pub(super) async fn response(&mut self, response: pb::WatchResponse) {
        let header: ResponseHeader = response.header.into();
        if response.created {
            let Some(id) = self.creates.answered(response.watch_id, response.canceled) else {
                // With several creates in flight, a refusal carrying an id of the server's own
                // cannot be told apart: send them all again, one at a time, on a new stream
                // (with a new token if the refusal was about the token).
                tracing::debug!(
                    watch_id = response.watch_id,
                    reason = %response.cancel_reason,
                    "a watch create answer matched no create; reopening"
                );
                self.creates.unmatched();
                let kind = ServerErrorKind::from_message(&response.cancel_reason);
                if kind.needs_new_token() || kind == ServerErrorKind::PermissionDenied {
                    return self.renew_token().await;
                }
                self.stream.close(); // same endpoint: nothing is wrong with it
                return self.restart();
            };
            self.created(id, header, response).await;
            return self.pump();
        }
        if response.canceled {
            if let Some(id) = self.by_watch_id.remove(&response.watch_id) {
                if ServerErrorKind::from_message(&response.cancel_reason).needs_new_token() {
                    // An established watch cancelled for its token: renew and resume.
                    return self.renew_token().await;
                }
                self.ended(id, &response).await;
            }
            return;
        }
        if response.watch_id == -1 && response.events.is_empty() {
            // A progress answer for the whole stream: from now on, one that does not come is
            // a dead stream.
            self.probe.arm();
            let ids: Vec<u64> = self.by_watch_id.values().copied().collect();
            for id in ids {
                self.deliver(id, header, Vec::new());
            }
            return;
        }
        if response.events.is_empty() && !response.fragment {
            // A progress answer for one watch (etcd before 3.4.24 and 3.5.8 answers a progress
            // request watch by watch): the stream answers them too.
            self.probe.arm();
        }
        let Some(&id) = self.by_watch_id.get(&response.watch_id) else {
            return; // a watch we cancelled or paused; its late events are not wanted
        };
        if !self.watchers.contains_key(&id) {
            return;
        }
        let events = response.events.into_iter().map(Event::from);
        if response.fragment {
            // More of the same revision follows.
            self.fragments.entry(id).or_default().extend(events);
            return;
        }
        let events = match self.fragments.remove(&id) {
            Some(mut earlier) => {
                earlier.extend(events);
                earlier
            }
            None => events.collect(),
        };
        self.deliver(id, header, events);
    }

    async fn created(&mut self, id: u64, header: ResponseHeader, response: pb::WatchResponse) {
        let Some(watcher) = self.watchers.get_mut(&id) else {
            // Dropped while its create was in flight.
            if !response.canceled {
                self.cancel_on_server(response.watch_id);
            }
            return;
        };
        if response.canceled {
            let kind = ServerErrorKind::from_message(&response.cancel_reason);
            let auth = kind.needs_new_token() || kind == ServerErrorKind::PermissionDenied;
            let transport = self.stream.transport();
            let with_credentials = transport.is_some_and(|t| t.credentials.is_some());
            if auth && with_credentials {
                // Maybe only the stream's token expired (etcd 3.5 calls that "permission
                // denied" too). The first time, renew it and create the watch again on a fresh
                // stream. If that is refused as well (a short TTL on a busy server can expire
                // the new token too), ask etcd with a plain read whether the user may read the
                // range: only a refusal of that is final.
                let first = !watcher.auth_retried;
                watcher.auth_retried = true;
                let (key, range_end) = (
                    watcher.spec.key().to_vec(),
                    watcher.spec.range_end().into_owned(),
                );
                if first || kind.needs_new_token() || self.may_read(key, range_end).await {
                    return self.renew_token().await;
                }
            }
            return self.ended(id, &response).await;
        }
        watcher.auth_retried = false;
        watcher.state = State::Active(response.watch_id);
        if watcher.next_revision == 0 {
            // "From now": pin "now" so a resume elsewhere starts exactly here.
            watcher.next_revision = header.revision + 1;
        }
        if let Some(created) = watcher.created.take() {
            let _ = created.send(Ok(()));
        }
        self.by_watch_id.insert(response.watch_id, id);
    }

    /// etcd ended watch `id`: compaction, or a refusal that is final.
    async fn ended(&mut self, id: u64, response: &pb::WatchResponse) {
        let reason = &response.cancel_reason;
        let kind = ServerErrorKind::from_message(reason);
        if kind == ServerErrorKind::NoLeader {
            return self.broken(reason);
        }
        // A watch we paused never gets here: it left `by_watch_id` before its cancel was sent.
        self.fragments.remove(&id);
        let Some(watcher) = self.watchers.remove(&id) else {
            return;
        };
        let error = if response.compact_revision > 0 {
            if let Some(shared) = watcher.events.shared() {
                shared
                    .compact_revision
                    .store(response.compact_revision, Ordering::Release);
            }
            Error::Server {
                kind: ServerErrorKind::Compacted,
                message: format!(
                    "etcdserver: mvcc: required revision has been compacted (watch from {}, compacted at {})",
                    watcher.next_revision, response.compact_revision
                ),
                request: watcher.spec.describe(),
            }
        } else {
            Error::Server {
                kind,
                message: if reason.is_empty() {
                    "etcdserver: watch canceled".to_owned()
                } else {
                    reason.clone()
                },
                request: watcher.spec.describe(),
            }
        };
        watcher.end(error);
    }

    /// Whether the client's user may read `[key, range_end)`, asked with a count-only Range
    /// (which renews the token itself if etcd asks): what etcd checks for a watch create.
    async fn may_read(&self, key: Vec<u8>, range_end: Vec<u8>) -> bool {
        let Some(transport) = self.stream.transport() else {
            return false;
        };
        let request = pb::RangeRequest {
            key,
            range_end,
            limit: 1,
            count_only: true,
            serializable: true,
            ..Default::default()
        };
        let read = transport.call(&request).await;
        !matches!(read, Err(err) if err.server_kind() == Some(ServerErrorKind::PermissionDenied))
    }

    /// The token the stream was opened with is no longer valid: renew it and reopen on the
    /// same endpoint.
    async fn renew_token(&mut self) {
        self.stream.renew_token().await;
        self.restart();
    }

    pub(super) fn deliver(&mut self, id: u64, header: ResponseHeader, events: Vec<Event>) {
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return;
        };
        let first = events.first().map(|e| e.kv.mod_revision);
        // Only events move a watch on. A progress notification does not: before etcd 3.4.24
        // and 3.5.8 one can overtake events it covers (etcd-io/etcd#15220), and a watch
        // resumed from its revision after a failover would skip them.
        let next = events.last().map_or(0, |last| last.kv.mod_revision + 1);
        match watcher.events.hand(Ok(WatchResponse { header, events })) {
            Handed::Taken => watcher.next_revision = watcher.next_revision.max(next),
            // A progress notification for a full buffer carries nothing to lose.
            Handed::Full(_) if first.is_none() => {}
            Handed::Full(_) => {
                // Pause: cancel on the server and come back for this revision once drained.
                if let Some(first) = first {
                    watcher.next_revision = first;
                }
                let state = std::mem::replace(&mut watcher.state, State::Paused);
                if let Some(shared) = watcher.events.shared() {
                    shared.paused.store(true, Ordering::Release);
                }
                if let State::Active(watch_id) = state {
                    self.cancel_on_server(watch_id);
                }
            }
            Handed::Gone => {
                let state = watcher.state;
                self.watchers.remove(&id);
                if let State::Active(watch_id) = state {
                    self.cancel_on_server(watch_id);
                }
            }
        }
    }
}
