//! A config's past values, from etcd's own history: what a live config falls back to when the
//! value in etcd is invalid at start-up ([`LiveOptions::when_invalid`](super::LiveOptions::when_invalid)).

use std::ops::ControlFlow;

use futures_util::StreamExt;

use std::time::Duration;

use super::decode::RawKeys;
use super::store::decode_entries;
use super::watch::replay;
use super::{EtcdConfig, Store};
use crate::error::{Result, ServerErrorKind};

/// How long a history replay waits for more events once the keys of a deleted config are
/// gone.
const QUIET: Duration = Duration::from_millis(500);

impl Store {
    /// The newest revision up to `before` at which `T`'s keys made a valid value, back to the
    /// last compaction, with that value; `None` if there is none in the history etcd keeps.
    pub(crate) async fn last_valid_before<T: EtcdConfig>(
        &self,
        before: i64,
    ) -> Result<Option<(T, i64)>> {
        let prefix = self.prefix_of::<T>();
        let mut newest = None;
        self.walk_history::<T>(before, |revision, keys| {
            if let Ok(value) = decode_entries::<T>(&prefix, self.keyring(), revision, keys) {
                newest = Some((value, revision));
            }
        })
        .await?;
        Ok(newest)
    }

    /// Walks `T`'s history as etcd keeps it: calls `each` with the oldest revision it can
    /// still read (the last compaction) and the keys then, and after that with every revision
    /// up to `until` that touched the prefix and the keys after it, in order.
    ///
    /// One bisection of count-only reads for the oldest readable revision, a Range there and at
    /// `until`, and one watch replaying the prefix's history in between.
    pub(crate) async fn walk_history<T: EtcdConfig>(
        &self,
        until: i64,
        mut each: impl FnMut(i64, &RawKeys),
    ) -> Result<()> {
        let start = self.oldest_readable::<T>(until).await?;
        let read_at = |revision: i64| {
            self.client()
                .kv()
                .get(self.range_of::<T>())
                .revision(revision)
        };
        // The state to replay up to, and its newest put: after that put only deletes can
        // follow, so the replay has reached `until` once it holds exactly these keys.
        let last = read_at(until).await?;
        let newest_put = last.kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0);
        // With no key left (the config was deleted), no revision tells where the history
        // ends: the replay ends once the keys are gone and the watch has been quiet for a
        // moment (it replays history as fast as etcd reads it).
        let emptied = last.kvs.is_empty();
        let target = RawKeys::from_kvs::<T>(last.kvs.into_iter().map(|kv| (kv.key, kv.value)));
        let reached = |at: i64, keys: &RawKeys| !emptied && at >= newest_put && *keys == target;

        let base = read_at(start).await?;
        let mut keys = RawKeys::from_kvs::<T>(base.kvs.into_iter().map(|kv| (kv.key, kv.value)));
        each(start, &keys);
        if reached(start, &keys) || (emptied && start >= until) {
            return Ok(());
        }
        let mut watch = self
            .client()
            .watch(self.range_of::<T>())
            .start_revision(start + 1)
            .await?;
        loop {
            let response = if emptied && keys == target {
                match tokio::time::timeout(QUIET, watch.next()).await {
                    Ok(response) => response,
                    Err(_) => break,
                }
            } else {
                watch.next().await
            };
            let Some(response) = response else { break };
            let flow = replay::<T>(&mut keys, response?.events, |revision, keys| {
                if revision > until {
                    return ControlFlow::Break(()); // cannot happen: `until` is reached first
                }
                each(revision, keys);
                if reached(revision, keys) {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl Store {
    /// The oldest revision in `1..=newest` at which `T`'s range can still be read.
    async fn oldest_readable<T: EtcdConfig>(&self, newest: i64) -> Result<i64> {
        let (mut low, mut high) = (1, newest.max(1));
        while low < high {
            let middle = low + (high - low) / 2;
            let read = self
                .client()
                .kv()
                .get(self.range_of::<T>())
                .revision(middle)
                .count_only()
                .await;
            match read {
                Ok(_) => high = middle,
                Err(err) if err.server_kind() == Some(ServerErrorKind::Compacted) => {
                    low = middle + 1;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(low)
    }
}
