//! A config's past, from etcd's own history: every change with the fields it changed and its
//! note ([`Store::history`]), and the last valid value, which a live config falls back to when
//! the value in etcd is invalid at start-up
//! ([`LiveOptions::when_invalid`](super::LiveOptions::when_invalid)).

use std::ops::ControlFlow;

use futures_util::StreamExt;

use std::time::Duration;

use super::decode::RawKeys;
use super::follower::{changed_fields, replay, stored, Stored};
use super::keys;
use super::notes::ChangeNote;
use super::paths::field_of_key;
use super::store::decode_entries;
use super::{EtcdConfig, Store};
use crate::error::{Error, Result, ServerErrorKind};

/// How long a history replay waits for more events once the keys of a deleted config are
/// gone.
const QUIET: Duration = Duration::from_millis(500);

/// One change in a config's history, from [`Store::history`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The revision of the change.
    pub revision: i64,
    /// The field paths it changed. Known back to the last compaction; empty for older changes,
    /// which are known from their notes alone.
    pub changed: Vec<String>,
    /// Whether the value after it was valid (decoded and passed `validate`); `true` for a
    /// compacted change, whose value etcd no longer holds.
    pub valid: bool,
    /// Made at or before etcd's last compaction: known from its note alone, as the state
    /// before it is gone, so the fields it changed are not known. Of these, only a change at
    /// the compaction's revision itself can still be read (and rolled back to).
    pub compacted: bool,
    /// Who made it and why, if it was made with a note.
    pub note: Option<ChangeNote>,
}

impl Store {
    /// Every change of `T` that etcd's history still holds (back to the last compaction, with
    /// the field paths each changed), and older changes known from their notes, oldest first.
    pub async fn history<T: EtcdConfig>(&self) -> Result<Vec<Change>> {
        let prefix = self.prefix_of::<T>();
        let (mut by_revision, head) = self.notes_by_revision::<T>().await?;
        let mut changes = Vec::new();
        // The last revision's keys, and its value as stored when it was valid.
        let mut previous: Option<(RawKeys, Option<Stored>)> = None;
        self.walk_history::<T>(head, |revision, keys| {
            let decoded = decode_entries::<T>(&prefix, self.keyring(), revision, keys);
            let now = decoded.as_ref().ok().map(stored);
            let Some((before_keys, before)) = previous.replace((keys.clone(), now.clone())) else {
                return; // the compaction point: where the replay starts, not a change
            };
            let changed = match (&before, &now) {
                (Some(before), Some(after)) => changed_fields(before, after),
                // Either side does not load: the fields whose keys were written or deleted.
                _ => changed_keys::<T>(&before_keys, keys),
            };
            // A noted write that changed no value (secrets re-encrypted) is still a change
            // someone made: listed, with no fields. Keys no field reads are not a change.
            let noted = by_revision.contains_key(&revision);
            if changed.is_empty() && !noted {
                return;
            }
            changes.push(Change {
                revision,
                changed,
                valid: decoded.is_ok(),
                compacted: false,
                note: by_revision.remove(&revision),
            });
        })
        .await?;
        // Notes of changes older than the replay.
        let replayed_from = changes.first().map_or(head + 1, |c| c.revision);
        let mut older: Vec<Change> = by_revision
            .into_iter()
            .filter(|(revision, _)| *revision < replayed_from)
            .map(|(revision, note)| Change {
                revision,
                changed: Vec::new(),
                valid: true,
                compacted: true,
                note: Some(note),
            })
            .collect();
        older.extend(changes);
        Ok(older)
    }

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
            let flow = replay::<T>(&mut keys, response?.events, |revision, keys, _| {
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
    /// `err`, from reading `T` at `revision` (a revision someone named: [`Store::load_at`],
    /// a rollback, a diff), saying which revisions etcd can read when it is one etcd compacted
    /// away or has not reached. The error's kind stays etcd's.
    pub(crate) async fn at_revision_error<T: EtcdConfig>(
        &self,
        revision: i64,
        err: Error,
    ) -> Error {
        let Error::Server {
            kind: kind @ (ServerErrorKind::Compacted | ServerErrorKind::FutureRevision),
            message,
            request,
        } = err
        else {
            return err;
        };
        let Ok(now) = self
            .client()
            .kv()
            .get(self.range_of::<T>())
            .count_only()
            .await
        else {
            return Error::Server {
                kind,
                message,
                request,
            };
        };
        let newest = now.header.revision;
        let kept = match kind {
            ServerErrorKind::Compacted => self.oldest_readable::<T>(newest).await.ok(),
            _ => None,
        };
        let kept = match kept {
            Some(oldest) => format!("etcd keeps revisions {oldest} to {newest}"),
            None => format!("etcd's newest revision is {newest}"),
        };
        Error::Server {
            kind,
            message,
            request: format!("{request} at revision {revision} ({kept})"),
        }
    }

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

/// Refuses a revision below 1, which etcd would read as its newest.
pub(crate) fn named_revision(prefix: &str, revision: i64) -> Result<()> {
    if revision >= 1 {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{prefix} has no revision {revision}: etcd's revisions start at 1"
    )))
}

/// The field paths whose keys differ between two states of the prefix (written, added or
/// deleted), keys no field owns left out: a change's fields when either side does not load.
fn changed_keys<T: EtcdConfig>(before: &RawKeys, after: &RawKeys) -> Vec<String> {
    let schema = T::schema();
    let local = keys::fields::<T>();
    let mut fields: Vec<String> = before
        .diff(after)
        .filter_map(|key| Some(field_of_key(&schema, &format!("{local}{key}"))?.0))
        .collect();
    fields.sort();
    fields.dedup();
    fields
}
