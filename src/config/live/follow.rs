//! The background task of a live config: it reaches etcd (after a start from the cache file),
//! then follows the watch, applying each valid revision (after the settle window, if one is
//! set), noting rejections, confirmations and reconnections, until every handle is gone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::options::Settle;
use super::status::{LiveEvent, Rejection};
use super::{metrics, Shared, Snapshot};
use crate::backoff::Backoff;
use crate::config::cache_file::write_cache_logged;
use crate::config::fleet::{unix_ms, Record};
use crate::config::follower::{changed_fields, stored, Followed, Follower, Overlay, Started};
use crate::config::{EtcdConfig, Serving, Store, UnknownKey, Update};

/// Where a live config's news goes: the shared value and status, the change signal, the event
/// stream, the cache file and the metrics.
pub(super) struct Publisher<T> {
    pub(super) shared: Arc<Shared<T>>,
    notify: watch::Sender<i64>,
    cache: Option<PathBuf>,
}

impl<T: EtcdConfig> Publisher<T> {
    pub(super) fn new(
        shared: Arc<Shared<T>>,
        notify: watch::Sender<i64>,
        cache: Option<PathBuf>,
    ) -> Self {
        Publisher {
            shared,
            notify,
            cache,
        }
    }

    /// The change signal alone, for a handle that never changes.
    pub(super) fn into_notify(self) -> watch::Sender<i64> {
        self.notify
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
            tracking.pending = None;
            tracking.current_through = revision;
            if let Some(rare) = &mut tracking.rare {
                rare.unreachable = None;
            }
        }
        self.notify.send_replace(revision);
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
            tracking.pending = None;
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
        if tracking.pending.is_none() {
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
            if tracking.pending.is_some() {
                return; // a change waits for the settle window: not current until applied
            }
            tracking.current_through = revision;
            tracking.confirmed = Some((Instant::now(), revision));
        }
        self.report(|record| record.current_through = Some(revision));
        self.event(LiveEvent::Current { revision });
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
    fn unknown(&self, keys: &[UnknownKey]) {
        let mut tracking = crate::sync::lock(&self.shared.tracking);
        let same = tracking.rare().map_or(&[][..], |r| &r.unknown_keys[..]) == keys;
        if !same {
            tracking.rare_mut().unknown_keys = keys.to_vec();
        }
    }

    /// True once every handle is gone.
    pub(super) async fn closed(&self) {
        self.notify.closed().await;
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
    }

    pub(super) fn event(&self, event: LiveEvent) {
        // No subscriber is fine; a slow one loses its oldest events, never delays us.
        if let Some(events) = self.shared.events.get() {
            let _ = events.send(event);
        }
    }
}

/// Keeps the client's watch task asking etcd for progress while this follower runs.
struct Confirming(Arc<AtomicUsize>);

impl Confirming {
    fn start(store: &Store) -> Confirming {
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

/// The settle window of a live config that has one, and the change waiting for it. Boxed by
/// the follower: most live configs have none.
struct Settling<T> {
    settle: Settle,
    waiting: Option<Waiting<T>>,
}

/// A change waiting for the settle window.
struct Waiting<T> {
    update: Update<T>,
    first_seen: Instant,
    last_seen: Instant,
}

impl<T> Settling<T> {
    /// When the waiting change is applied: once the prefix was quiet long enough, or it
    /// waited the longest.
    fn due(&self) -> Option<Instant> {
        let waiting = self.waiting.as_ref()?;
        Some((waiting.last_seen + self.settle.quiet).min(waiting.first_seen + self.settle.at_most))
    }
}

/// Starts the background task of a live config: following `started`, or, after a start from
/// the cache file (`None`), reaching etcd first.
pub(super) fn spawn<T: EtcdConfig>(
    store: &Store,
    started: Option<Started<T>>,
    publisher: Publisher<T>,
    settle: Option<Settle>,
    overlays: Option<watch::Receiver<Option<Arc<Overlay>>>>,
) {
    let settling = settle.map(|settle| {
        Box::new(Settling {
            settle,
            waiting: None,
        })
    });
    match started {
        // The follower is made here, not in the task: what an async fn takes stays in its
        // state for as long as it runs, and thousands of these may run.
        Some(started) => {
            let mut follower = started.into_follower(store.clone());
            if let Some(overlays) = overlays {
                follower = follower.with_overlays(overlays);
            }
            tokio::spawn(follow(
                follower,
                Confirming::start(store),
                publisher,
                settling,
            ));
        }
        None => {
            tokio::spawn(reach_then_follow(
                store.clone(),
                publisher,
                settling,
                overlays,
            ));
        }
    }
}

/// After a start from the cache file: retries the first load until etcd answers, puts its
/// value in place, then follows.
async fn reach_then_follow<T: EtcdConfig>(
    store: Store,
    publisher: Publisher<T>,
    settling: Option<Box<Settling<T>>>,
    overlays: Option<watch::Receiver<Option<Arc<Overlay>>>>,
) {
    let Some(started) = reconnect::<T>(&store, &publisher).await else {
        return;
    };
    let (value, revision) = started.initial();
    let cached = publisher.shared.current.load().value.clone();
    let changed = changed_fields(&stored(&*cached), &stored(&*value));
    publisher.apply(value, revision, changed);
    publisher.confirm(revision);
    let confirming = Confirming::start(&store);
    let mut follower = started.into_follower(store);
    if let Some(overlays) = overlays {
        follower = follower.with_overlays(overlays);
    }
    Box::pin(follow(follower, confirming, publisher, settling)).await;
}

/// The background task. One per live config: it waits on the watch, the settle timer and the
/// handles, nothing else (outages and metrics reach the live config without it).
async fn follow<T: EtcdConfig>(
    mut follower: Follower<T>,
    _confirming: Confirming,
    publisher: Publisher<T>,
    mut settling: Option<Box<Settling<T>>>,
) {
    // What the first load found: keys no field reads are reported from the start.
    publisher.unknown(follower.unknown_keys());
    loop {
        let sleep = settling.as_ref().and_then(|s| s.due()).map(|due| {
            Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                due,
            )))
        });
        let settled = async move {
            match sleep {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = follower.next() => match item.inspect(|_| publisher.unknown(follower.unknown_keys())) {
                Some(Followed::Updated(update)) => match &mut settling {
                    None => publisher.apply(update.config, update.revision, update.changed),
                    Some(settling) => {
                        crate::sync::lock(&publisher.shared.tracking).pending = Some(update.revision);
                        settling.waiting = Some(merge(settling.waiting.take(), update));
                    }
                },
                Some(Followed::Rejected(err)) => {
                    // An edit that ends invalid is not applied halfway.
                    if let Some(settling) = &mut settling {
                        settling.waiting = None;
                    }
                    publisher.reject(err.rejected_revision().unwrap_or(0), err.to_string());
                }
                Some(Followed::Confirmed(revision)) => publisher.confirm(revision),
                Some(Followed::Current(revision)) => publisher.current(revision),
                Some(Followed::Serving(rollout)) => publisher.serving(rollout),
                Some(Followed::Resynced(revision)) => {
                    publisher.event(LiveEvent::Resynced { revision });
                }
                Some(Followed::Ended(err)) => {
                    publisher.stop(err.to_string());
                    return;
                }
                None => return,
            },
            () = settled => {
                if let Some(done) = settling.as_mut().and_then(|s| s.waiting.take()) {
                    let update = done.update;
                    publisher.apply(update.config, update.revision, update.changed);
                }
            }
            () = publisher.closed() => return, // every handle is gone
        }
    }
}

/// A waiting change followed by another: the newer value, against the value before the first.
fn merge<T>(waiting: Option<Waiting<T>>, update: Update<T>) -> Waiting<T> {
    let now = Instant::now();
    match waiting {
        None => Waiting {
            update,
            first_seen: now,
            last_seen: now,
        },
        Some(mut earlier) => {
            let mut changed = std::mem::take(&mut earlier.update.changed);
            changed.extend(update.changed);
            changed.sort();
            changed.dedup();
            Waiting {
                update: Update {
                    revision: update.revision,
                    config: update.config,
                    previous: earlier.update.previous,
                    changed,
                },
                first_seen: earlier.first_seen,
                last_seen: now,
            }
        }
    }
}

/// Retries the first load and watch with backoff; `None` if every handle is dropped first.
async fn reconnect<T: EtcdConfig>(store: &Store, publisher: &Publisher<T>) -> Option<Started<T>> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::select! {
            () = backoff.wait() => {}
            () = publisher.closed() => return None,
        }
        match Started::<T>::start(store).await {
            Ok(started) => return Some(started),
            Err(err) => {
                tracing::debug!(error = %err, "etcd still unreachable");
                let mut tracking = crate::sync::lock(&publisher.shared.tracking);
                let rare = tracking.rare_mut();
                if rare.unreachable.is_none() {
                    rare.unreachable = Some((Instant::now(), err.to_string()));
                }
            }
        }
    }
}
