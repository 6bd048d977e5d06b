//! Where a live config's news goes: [`Publisher`] puts a new value in place and tells the
//! handles, the event stream, the fleet record, the cache file and the metrics. The task of
//! `follow` and the sink of `driven` both publish through it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::status::{LiveEvent, Rejection};
use super::{metrics, Shared, Snapshot};
use crate::config::cache_file::write_cache_logged;
use crate::config::fleet::{unix_ms, Record};
use crate::config::{EtcdConfig, Serving, Store, UnknownKey};

/// Where a live config's news goes: the shared value and status, the change signal, the event
/// stream, the cache file and the metrics.
///
/// Dropped, it ends the live config: handles' `changed` fails from then on.
pub(super) struct Publisher<T> {
    pub(super) shared: Arc<Shared<T>>,
    pub(super) cache: Option<Box<Path>>,
    /// False for [`Live::fixed`](super::Live::fixed), which never changes and never ends.
    ends_on_drop: bool,
}

impl<T: EtcdConfig> Publisher<T> {
    pub(super) fn new(shared: Arc<Shared<T>>, cache: Option<PathBuf>) -> Self {
        Publisher {
            shared,
            cache: cache.map(PathBuf::into_boxed_path),
            ends_on_drop: true,
        }
    }

    /// Goes without ending the live config: it keeps its value, and `changed` waits forever.
    pub(super) fn forget(mut self) {
        self.ends_on_drop = false;
    }

    /// Puts a new value in place and tells everyone.
    pub(super) fn apply(&self, value: Arc<T>, revision: i64, changed: Vec<String>) {
        if let Some(path) = &self.cache {
            write_cache_logged(self.prefix(), path, &*value, revision);
        }
        tracing::debug!(prefix = %self.prefix(), revision, ?changed, "config updated");
        let now = Instant::now();
        self.shared.current.store(Snapshot {
            value,
            revision,
            stale: false,
            applied_at: now,
        });
        {
            let mut tracking = crate::sync::lock(&self.shared.tracking);
            tracking.set_pending(None);
            tracking.current_through = revision;
            if let Some(rare) = &mut tracking.rare {
                rare.unreachable = None;
            }
        }
        self.shared.changed.notify_waiters();
        self.report(|record| {
            let now = unix_ms(SystemTime::now());
            record.revision = revision;
            record.current_through = Some(revision);
            record.applied_at_ms = now;
            if record.state != "following" {
                record.state = "following".to_owned();
                record.since_ms = now;
            }
        });
        metrics::applied(self.prefix(), revision);
        self.event(LiveEvent::Applied { revision, changed });
    }

    /// Notes a revision that was not applied.
    pub(super) fn reject(&self, revision: i64, reason: String) {
        tracing::warn!(prefix = %self.prefix(), revision, error = %reason,
            "config update rejected; keeping the last good value");
        {
            let mut tracking = crate::sync::lock(&self.shared.tracking);
            tracking.set_pending(None);
            tracking.rare_mut().last_rejected = Some(Rejection {
                revision,
                reason: reason.clone(),
                at: Instant::now(),
            });
        }
        metrics::rejected(self.prefix());
        self.report(|record| record.last_rejected = Some((revision, reason.clone())));
        self.event(LiveEvent::Rejected { revision, reason });
    }

    /// etcd confirmed that nothing newer than the value exists, up to `revision`.
    pub(super) fn confirm(&self, revision: i64) {
        let mut tracking = crate::sync::lock(&self.shared.tracking);
        if tracking.pending().is_none() {
            tracking.confirmed = Some((Instant::now(), revision));
            if !tracking.rejected_since_current() {
                tracking.current_through = tracking.current_through.max(revision);
            }
        }
    }

    /// A revision under the prefix left the value as it is: the value is the config as etcd
    /// holds it at `revision` (after a rejected revision, the bad value was restored).
    pub(super) fn current(&self, revision: i64) {
        {
            let mut tracking = crate::sync::lock(&self.shared.tracking);
            if tracking.pending().is_some() {
                return; // a change waits for the settle window: not current until applied
            }
            tracking.current_through = revision;
            tracking.confirmed = Some((Instant::now(), revision));
        }
        self.report(|record| record.current_through = Some(revision));
        self.event(LiveEvent::Current { revision });
    }

    /// The candidate this instance served is etcd's own value from `revision` on (its
    /// rollout committed there): the value stays and takes that revision, and handles are not
    /// woken (nothing they read changed).
    pub(super) fn committed(&self, revision: i64) {
        tracing::debug!(prefix = %self.prefix(), revision, "the candidate served is committed");
        self.shared.current.rebase(revision);
        if let Some(path) = &self.cache {
            let value = self.shared.current.load().value.clone();
            write_cache_logged(self.prefix(), path, &*value, revision);
        }
        self.report(|record| record.revision = revision);
        self.current(revision);
    }

    /// The value now includes a rollout's candidate, or none: status and record say so.
    pub(super) fn serving(&self, rollout: Option<String>) {
        tracing::info!(prefix = %self.prefix(), ?rollout, "serving a rollout's candidate or not");
        crate::sync::lock(&self.shared.tracking).rare_mut().serving = rollout.clone();
        metrics::serving_candidate(self.prefix(), rollout.is_some());
        self.report(|record| record.serving = rollout.clone());
        let serving = match rollout {
            Some(rollout) => Serving::Candidate { rollout },
            None => Serving::Committed,
        };
        self.event(LiveEvent::Serving { serving });
    }

    /// Keeps the keys no field reads for [`LiveStatus`](super::LiveStatus).
    pub(super) fn unknown(&self, keys: &[UnknownKey]) {
        let mut tracking = crate::sync::lock(&self.shared.tracking);
        let same = tracking.rare().map_or(&[][..], |r| &r.unknown_keys[..]) == keys;
        if !same {
            tracking.rare_mut().unknown_keys = keys.to_vec();
        }
    }
}

/// What needs nothing of the config's type: a dropped test double stops through it too.
impl<T> Publisher<T> {
    /// Changes this instance's fleet record, if it reports.
    fn report(&self, change: impl FnOnce(&mut Record)) {
        let tracking = crate::sync::lock(&self.shared.tracking);
        if let Some(report) = tracking.rare().and_then(|r| r.report.as_ref()) {
            report.send_modify(change);
        }
    }

    fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The follower ends; handles' `changed` fails with `reason` from now on.
    pub(super) fn stop(&self, reason: String) {
        tracing::warn!(prefix = %self.prefix(), error = %reason, "config watch ended");
        crate::sync::lock(&self.shared.tracking).rare_mut().stopped = Some(reason.clone());
        self.report(|record| {
            record.state = "stopped".to_owned();
            record.since_ms = unix_ms(SystemTime::now());
        });
        self.event(LiveEvent::Stopped { reason });
        self.shared.changed.notify_waiters();
    }

    pub(super) fn event(&self, event: LiveEvent) {
        // No subscriber is fine; a slow one loses its oldest events, never delays us.
        if let Some(events) = self.shared.events.get() {
            let _ = events.send(event);
        }
    }
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        if self.ends_on_drop {
            self.shared.ended.store(true, Ordering::Release);
            self.shared.changed.notify_waiters();
        }
    }
}

/// Keeps the client's watch task asking etcd for progress while this follower runs.
pub(super) struct Confirming(Arc<AtomicUsize>);

impl Confirming {
    pub(super) fn start(store: &Store) -> Confirming {
        let count = store.client().watch_hub().confirming.clone();
        count.fetch_add(1, Ordering::Relaxed);
        Confirming(count)
    }
}

impl Drop for Confirming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
