//! The background task of a live config: it reaches etcd (after a start from the cache file),
//! then follows the watch, applying each valid revision (after the settle window, if one is
//! set), noting rejections, confirmations and reconnections, until every handle is gone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::options::Settle;
use super::start::rejected_revision;
use super::status::{LiveEvent, Rejection};
use super::{metrics, Shared, Snapshot};
use crate::backoff::Backoff;
use crate::config::cache_file::write_cache_logged;
use crate::config::fleet::{unix_ms, Record};
use crate::config::watch::{changed_fields, stored, Followed, Started};
use crate::config::{EtcdConfig, Store, Update};

/// Where a live config's news goes: the shared value and status, the change signal, the event
/// stream, the cache file and the metrics.
pub(super) struct Publisher<T> {
    pub(super) shared: Arc<Shared<T>>,
    notify: watch::Sender<i64>,
    cache: Option<PathBuf>,
    /// This instance's fleet record, when it reports ([`LiveOptions::report_as`]).
    ///
    /// [`LiveOptions::report_as`]: super::LiveOptions::report_as
    report: Option<watch::Sender<Record>>,
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
            report: None,
        }
    }

    /// Reports to the fleet through `report` from now on.
    pub(super) fn reporting(mut self, report: Option<watch::Sender<Record>>) -> Self {
        self.report = report;
        self
    }

    /// Changes this instance's fleet record, if it reports.
    fn report(&self, change: impl FnOnce(&mut Record)) {
        if let Some(report) = &self.report {
            report.send_modify(change);
        }
    }

    /// The change signal alone, for a handle that never changes.
    pub(super) fn into_notify(self) -> watch::Sender<i64> {
        self.notify
    }

    fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// Puts a new value in place and tells everyone.
    pub(super) fn apply(&self, value: Arc<T>, revision: i64, changed: Vec<String>) {
        if let Some(path) = &self.cache {
            write_cache_logged(self.prefix(), path, &*value, revision);
        }
        tracing::debug!(prefix = %self.prefix(), revision, ?changed, "config updated");
        let now = Instant::now();
        self.shared.current.store(Arc::new(Snapshot {
            value,
            revision,
            stale: false,
            applied_at: now,
        }));
        {
            let mut tracking = crate::sync::lock(&self.shared.tracking);
            tracking.pending = None;
            tracking.unreachable = None;
        }
        self.notify.send_replace(revision);
        self.report(|record| {
            let now = unix_ms(SystemTime::now());
            record.revision = revision;
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
            tracking.last_rejected = Some(Rejection {
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
        }
    }

    /// The follower ends; handles' `changed` fails with `reason` from now on.
    pub(super) fn stop(&self, reason: String) {
        tracing::warn!(prefix = %self.prefix(), error = %reason, "config watch ended");
        crate::sync::lock(&self.shared.tracking).stopped = Some(reason.clone());
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

    /// True once every handle is gone.
    pub(super) async fn closed(&self) {
        self.notify.closed().await;
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

/// A change waiting for the settle window.
struct Waiting<T> {
    update: Update<T>,
    first_seen: Instant,
    last_seen: Instant,
}

impl<T> Waiting<T> {
    /// When it is applied: once the prefix was quiet long enough, or it waited the longest.
    fn due(&self, settle: Settle) -> Instant {
        (self.last_seen + settle.quiet).min(self.first_seen + settle.at_most)
    }
}

/// How often the follower refreshes its metrics (with the `metrics` feature).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The background task. One per live config.
pub(super) async fn follow<T: EtcdConfig>(
    store: Store,
    started: Option<Started<T>>,
    publisher: Publisher<T>,
    settle: Option<Settle>,
) {
    let started = match started {
        Some(started) => started,
        // Boxed: only a stale start needs it.
        None => match Box::pin(reconnect::<T>(&store, &publisher)).await {
            Some(started) => {
                let (value, revision) = started.initial();
                let cached = publisher.shared.current.load().value.clone();
                let changed = changed_fields(&stored(&*cached), &stored(&*value));
                publisher.apply(value, revision, changed);
                publisher.confirm(revision);
                started
            }
            None => return,
        },
    };
    let _confirming = Confirming::start(&store);
    let mut follower = started.into_follower(store);
    // Boxed, like the timers below: thousands of live configs may wait here, and most never
    // have a change waiting or metrics to refresh.
    let mut waiting: Option<Box<Waiting<T>>> = None;
    // Metrics want the confirmation's age refreshed now and then; nothing else polls.
    let mut check = cfg!(feature = "metrics").then(|| tokio::time::interval(CHECK_EVERY));
    let mut health = publisher.shared.stream.as_ref().map(|s| s.subscribe());
    loop {
        let health_changed = async {
            match &mut health {
                Some(health) => Box::pin(health.changed()).await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let due = match (&waiting, settle) {
            (Some(waiting), Some(settle)) => Some(waiting.due(settle)),
            _ => None,
        };
        let settled = async {
            match due {
                Some(due) => {
                    let due = tokio::time::Instant::from_std(due);
                    Box::pin(tokio::time::sleep_until(due)).await;
                }
                None => std::future::pending().await,
            }
        };
        let refresh = async {
            match &mut check {
                Some(check) => {
                    check.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = follower.next() => match item {
                Some(Followed::Updated(update)) => match settle {
                    None => publisher.apply(update.config, update.revision, update.changed),
                    Some(_) => {
                        crate::sync::lock(&publisher.shared.tracking).pending = Some(update.revision);
                        waiting = Some(Box::new(merge(waiting.take().map(|w| *w), update)));
                    }
                },
                Some(Followed::Rejected(err)) => {
                    // An edit that ends invalid is not applied halfway.
                    waiting = None;
                    publisher.reject(rejected_revision(&err).unwrap_or(0), err.to_string());
                }
                Some(Followed::Confirmed(revision)) => publisher.confirm(revision),
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
                if let Some(done) = waiting.take() {
                    let update = done.update;
                    publisher.apply(update.config, update.revision, update.changed);
                }
            }
            open = health_changed => {
                let outage = health.as_mut().and_then(|h| h.borrow_and_update().clone());
                match (open, outage) {
                    (true, Some(outage)) => {
                        metrics::reconnect(publisher.prefix());
                        publisher.event(LiveEvent::Reconnecting { reason: outage.reason });
                    }
                    (true, None) => {}
                    (false, _) => health = None, // the client's watch task is gone
                }
            }
            () = refresh => {
                let confirmed = crate::sync::lock(&publisher.shared.tracking).confirmed;
                metrics::confirmed(publisher.prefix(), confirmed.map(|(at, _)| at));
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
                if tracking.unreachable.is_none() {
                    tracking.unreachable = Some((Instant::now(), err.to_string()));
                }
            }
        }
    }
}
