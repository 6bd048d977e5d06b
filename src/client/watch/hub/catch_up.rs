//! Watches that would resume too far behind: etcd answers a watch created at an old revision
//! by scanning every revision since, for all keys, while it holds its store lock
//! (etcd-io/etcd#22264). A watch with a catch-up limit ends with [`Error::FellBehind`]
//! instead, and its owner loads the keys at the head and watches from there.

use std::time::Duration;

use super::{Hub, State};
use crate::error::{Error, Result, ServerErrorKind};
use crate::proto::etcdserverpb as pb;

/// How long the head may take to learn before watches resume as usual.
const HEAD_WITHIN: Duration = Duration::from_secs(2);

impl Hub {
    /// Before watches are created again on a new stream: those with a catch-up limit that
    /// would resume more than it behind the head of the member the client uses now end.
    ///
    /// # Errors
    ///
    /// A timeout when the head cannot be learned (the member is not serving yet, or is still
    /// catching up): the stream is not opened, and the hub tries again after its backoff
    /// rather than resume blind.
    pub(super) async fn end_far_behind(&mut self) -> Result<()> {
        let behind: Vec<(u64, i64, i64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.state != State::Paused && w.next_revision > 0)
            .filter(|(_, w)| w.catch_up_limit < i64::MAX)
            .map(|(id, w)| (*id, w.next_revision, w.catch_up_limit))
            .collect();
        let Some(&(first, _, _)) = behind.first() else {
            return Ok(());
        };
        let head = match self.head_revision(first).await {
            Head::Known(head) => head,
            // etcd refused the read itself (a permission taken away, say): the creates will be
            // refused the same way, and their watches end saying why.
            Head::Refused => return Ok(()),
            Head::Unknown => {
                return Err(Error::Timeout {
                    operation: "Range (the head revision, before watches resume)".to_owned(),
                    after: HEAD_WITHIN,
                    endpoint: None,
                })
            }
        };
        for (id, next, limit) in behind {
            let missed = head + 1 - next;
            if missed <= limit {
                continue;
            }
            let Some(watcher) = self.watchers.remove(&id) else {
                continue;
            };
            tracing::debug!(watch = %watcher.spec.describe(), next, head,
                "watch too far behind to resume; its owner reloads at the head");
            let error = Error::FellBehind {
                request: watcher.spec.describe(),
                next,
                head,
            };
            watcher.end(error);
        }
        Ok(())
    }

    /// The cluster's revision now: a linearizable count-only Range of watch `id`'s keys
    /// (which its user may read), so a member that is still catching up after a partition
    /// answers only once it has, with the head.
    async fn head_revision(&self, id: u64) -> Head {
        let (Some(transport), Some(watcher)) = (self.stream.transport(), self.watchers.get(&id))
        else {
            return Head::Unknown;
        };
        let range = pb::RangeRequest {
            key: watcher.spec.key().to_vec(),
            range_end: watcher.spec.range_end().into_owned(),
            limit: 1,
            count_only: true,
            ..Default::default()
        };
        // Bounded: a member without a leader would hold the read, and the watches with it.
        match tokio::time::timeout(HEAD_WITHIN, transport.call(&range)).await {
            Ok(Ok(answer)) => answer
                .header
                .map_or(Head::Unknown, |header| Head::Known(header.revision)),
            Ok(Err(Error::Server { kind, .. })) if refusal(kind) => Head::Refused,
            _ => Head::Unknown,
        }
    }
}

/// What asking for the head gave.
enum Head {
    Known(i64),
    /// etcd refused the read itself, for a reason that does not pass with time.
    Refused,
    /// No answer in time, a passing condition, or a connection that failed.
    Unknown,
}

/// Whether etcd's answer refuses the read for good (not: no leader yet, overloaded, ...).
fn refusal(kind: ServerErrorKind) -> bool {
    !matches!(
        kind,
        ServerErrorKind::NoLeader
            | ServerErrorKind::NotLeader
            | ServerErrorKind::LeaderChanged
            | ServerErrorKind::ServerTimeout
            | ServerErrorKind::Unhealthy
            | ServerErrorKind::TooManyRequests
            | ServerErrorKind::Stopped
            | ServerErrorKind::Canceled
            | ServerErrorKind::DeadlineExceeded
            | ServerErrorKind::InvalidAuthToken
            | ServerErrorKind::AuthOldRevision
    )
}
