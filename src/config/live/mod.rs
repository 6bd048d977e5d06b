//! [`Live`]: a config that keeps itself up to date, for services that hot-reload.
//!
//! `mod.rs` holds the handle; [`follow`] the background task that applies etcd's changes,
//! [`status`] what a live config reports, [`options`] how it starts, [`select`] handles on a
//! part of the config, [`double`] the test doubles, and [`metrics`] the optional metrics.

mod double;
mod follow;
mod metrics;
mod options;
mod select;
mod start;
mod status;

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};

pub use double::LiveSender;
pub use options::{LiveOptions, WhenInvalid};
pub use select::Selected;
pub use status::{FollowerState, LiveEvent, LiveEvents, LiveStatus, Rejection};

use super::cache_file::write_cache_logged;
use super::fleet::{start_reporter, unix_ms, Confirmed, Record};
use super::keys;
use super::{EtcdConfig, Store, UnknownKey, Versioned};
use crate::client::{OutageListener, StreamHealth};
use crate::error::{Error, Result};
use follow::Publisher;
use start::Start;

/// One value of the config and where it came from.
pub(super) struct Snapshot<T> {
    value: Arc<T>,
    revision: i64,
    stale: bool,
    applied_at: Instant,
}

/// What the handles of one live config share with its follower.
pub(super) struct Shared<T> {
    current: ArcSwap<Snapshot<T>>,
    tracking: Mutex<Tracking>,
    /// Made by the first [`Live::events`]: most live configs never have a subscriber, and
    /// the channel's buffer would cost each of them kilobytes.
    events: OnceLock<broadcast::Sender<LiveEvent>>,
    prefix: String,
    /// The client's Watch stream, to tell following from reconnecting (none for a double).
    stream: Option<StreamHealth>,
}

/// What the follower notes besides the value.
#[derive(Default)]
struct Tracking {
    /// When etcd last confirmed the value current, and at which store revision.
    confirmed: Option<(Instant, i64)>,
    /// A revision waiting for the settle window.
    pending: Option<i64>,
    /// The newest revision at which the value served is the config as etcd holds it (it has
    /// seen every revision up to it, applied or found equal).
    current_through: i64,
    /// What most live configs never have, boxed: thousands of them may run in one process.
    rare: Option<Box<Rare>>,
}

#[derive(Default)]
struct Rare {
    /// Why the follower ended, once it has.
    stopped: Option<String>,
    /// Since when and why the follower cannot reach etcd (before its first load).
    unreachable: Option<(Instant, String)>,
    last_rejected: Option<Rejection>,
    /// Keys under the prefix that no field reads.
    unknown_keys: Vec<UnknownKey>,
    /// This instance's fleet record, when it reports ([`LiveOptions::report_as`]): held with
    /// the handles, so that a stopped follower goes on reporting itself stopped until the
    /// live config is dropped.
    report: Option<watch::Sender<Record>>,
}

impl Tracking {
    fn rare(&self) -> Option<&Rare> {
        self.rare.as_deref()
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn stopped(&self) -> Option<&String> {
        self.rare()?.stopped.as_ref()
    }

    /// True while the last revision not applied is newer than the last one the value was
    /// current for: the config in etcd is one this instance rejects.
    fn rejected_since_current(&self) -> bool {
        let rejected = self.rare().and_then(|r| r.last_rejected.as_ref());
        rejected.is_some_and(|r| r.revision > self.current_through)
    }
}

/// Told by the client when the Watch stream breaks: a reconnection, for events and metrics.
impl<T: Send + Sync> OutageListener for Shared<T> {
    fn outage(&self, reason: &str) {
        if crate::sync::lock(&self.tracking).stopped().is_some() {
            return;
        }
        metrics::reconnect(&self.prefix);
        if let Some(events) = self.events.get() {
            let _ = events.send(LiveEvent::Reconnecting {
                reason: reason.to_owned(),
            });
        }
    }

    fn recovered(&self) {
        if crate::sync::lock(&self.tracking).stopped().is_some() {
            return;
        }
        if let Some(events) = self.events.get() {
            let _ = events.send(LiveEvent::Reconnected);
        }
    }
}

impl<T: Send + Sync> metrics::Confirmation for Shared<T> {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn confirmed_at(&self) -> Option<Instant> {
        crate::sync::lock(&self.tracking)
            .confirmed
            .map(|(at, _)| at)
    }
}

impl<T> Shared<T> {
    fn new(initial: Snapshot<T>, prefix: String, stream: Option<StreamHealth>) -> Self {
        let tracking = Tracking {
            confirmed: (!initial.stale).then_some((initial.applied_at, initial.revision)),
            current_through: if initial.stale { 0 } else { initial.revision },
            ..Tracking::default()
        };
        Shared {
            current: ArcSwap::from_pointee(initial),
            tracking: Mutex::new(tracking),
            events: OnceLock::new(),
            prefix,
            stream,
        }
    }
}

/// A read of a [`Live`] config's current value, from [`Live::read`]: derefs to the value.
pub struct LiveRef<'a, T> {
    guard: arc_swap::Guard<Arc<Snapshot<T>>>,
    live: std::marker::PhantomData<&'a Live<T>>,
}

impl<T> std::ops::Deref for LiveRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for LiveRef<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// A config kept up to date by a background watch. Cheap to clone; `get` never blocks.
///
/// A rejected update (one that does not decode, or that `validate` refuses) changes nothing:
/// `get` keeps returning the last good value, [`status`](Self::status) names the revision and
/// the reason, an [`LiveEvent::Rejected`] goes out, and a warning is logged with `tracing`. The
/// background task ends when the last handle is dropped.
///
/// For a service's own unit tests, [`Live::fixed`] and [`Live::channel`] make one without etcd.
pub struct Live<T> {
    shared: Arc<Shared<T>>,
    changes: watch::Receiver<i64>,
    /// For [`Live::fixed`]: the change signal's sender, kept open by the handles.
    fixed: Option<Arc<watch::Sender<i64>>>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            shared: self.shared.clone(),
            changes: self.changes.clone(),
            fixed: self.fixed.clone(),
        }
    }
}

impl<T: EtcdConfig> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("prefix", &self.shared.prefix)
            .field("revision", &self.revision())
            .field("stale", &self.is_stale())
            .finish_non_exhaustive()
    }
}

impl<T: EtcdConfig> Live<T> {
    /// The current value, to keep: lock-free, one atomic load and a reference count (a write
    /// to a counter every reader of this config shares). On a hot path, prefer
    /// [`read`](Self::read).
    pub fn get(&self) -> Arc<T> {
        self.shared.current.load().value.clone()
    }

    /// The current value, to read now: a guard that writes nothing shared and allocates
    /// nothing, so threads reading one config on every request do not contend. Hold it
    /// briefly (for a request, not across an `await` that may last): while it lives, the value
    /// it points to stays alive even if a newer one is applied.
    ///
    /// ```
    /// # use etcd_config::{EtcdConfig, Live};
    /// # #[derive(EtcdConfig, Debug, Clone, PartialEq)]
    /// # #[etcd(prefix = "/app")]
    /// # struct App { port: u16 }
    /// let live = Live::fixed(App { port: 8080 });
    /// let port = live.read().port;
    /// # assert_eq!(port, 8080);
    /// ```
    pub fn read(&self) -> LiveRef<'_, T> {
        LiveRef {
            guard: self.shared.current.load(),
            live: std::marker::PhantomData,
        }
    }

    /// The revision of the value `get` returns now (for a stale value, the revision it was
    /// cached at).
    pub fn revision(&self) -> i64 {
        self.shared.current.load().revision
    }

    /// The current value with its revision, read together.
    pub fn snapshot(&self) -> Versioned<Arc<T>> {
        let snapshot = self.shared.current.load();
        Versioned {
            value: snapshot.value.clone(),
            revision: snapshot.revision,
        }
    }

    /// True while the value comes from the cache file because etcd has not answered yet.
    pub fn is_stale(&self) -> bool {
        self.shared.current.load().stale
    }

    /// How this live config stands: its revision and since when, whether etcd confirmed it
    /// current and when, whether the follower is following, reconnecting or stopped, the last
    /// rejected revision, and whether a change waits for the settle window. Never blocks on
    /// etcd.
    pub fn status(&self) -> LiveStatus {
        let snapshot = self.shared.current.load();
        let tracking = crate::sync::lock(&self.shared.tracking);
        let outage = self.shared.stream.as_ref().and_then(StreamHealth::outage);
        let rare = tracking.rare();
        let unreachable = rare.and_then(|r| r.unreachable.as_ref());
        let state = match (tracking.stopped(), unreachable, outage) {
            (Some(reason), _, _) => FollowerState::Stopped {
                reason: reason.clone(),
            },
            (None, Some((since, reason)), _) => FollowerState::Reconnecting {
                since: *since,
                reason: reason.clone(),
            },
            (None, None, Some(outage)) => FollowerState::Reconnecting {
                since: outage.since,
                reason: outage.reason,
            },
            (None, None, None) => FollowerState::Following,
        };
        // A test double has no etcd to fall behind: it is current for as long as it runs.
        let confirmed = match (&self.shared.stream, tracking.stopped()) {
            (None, None) => Some((Instant::now(), snapshot.revision)),
            _ => tracking.confirmed,
        };
        LiveStatus {
            revision: snapshot.revision,
            applied_at: snapshot.applied_at,
            confirmed_current_at: confirmed.map(|(at, _)| at),
            confirmed_revision: confirmed.map_or(0, |(_, revision)| revision),
            state,
            last_rejected: rare.and_then(|r| r.last_rejected.clone()),
            stale: snapshot.stale,
            pending: tracking.pending,
            current_through: tracking.current_through,
            unknown_keys: rare.map(|r| r.unknown_keys.clone()).unwrap_or_default(),
        }
    }

    /// The events of this live config from now on: applied and rejected revisions,
    /// reconnections, resyncs after a compaction, and the end. A consumer that falls more
    /// than 256 events behind misses the oldest ones and gets [`LiveEvent::Lagged`] saying
    /// how many; the follower never waits for it.
    pub fn events(&self) -> LiveEvents {
        let events = self
            .shared
            .events
            .get_or_init(|| broadcast::channel(status::EVENT_BUFFER).0);
        LiveEvents::new(events.subscribe())
    }

    /// Resolves when a new valid value is in place (since this handle last saw one).
    ///
    /// # Errors
    ///
    /// If the background watch ended (e.g. the user lost permission to read the prefix).
    pub async fn changed(&mut self) -> Result<()> {
        self.changes.changed().await.map_err(|_| Error::Stopped {
            what: format!("live config {}", self.shared.prefix),
            reason: crate::sync::lock(&self.shared.tracking)
                .stopped()
                .cloned()
                .unwrap_or_else(|| "its watch ended".to_owned()),
        })
    }
}

impl Store {
    /// A [`Live`] handle on `T`: loads it, then keeps it current from a watch.
    pub async fn live<T: EtcdConfig>(&self) -> Result<Live<T>> {
        self.live_with(LiveOptions::default()).await
    }

    /// [`live`](Self::live) with options, such as a cache file to start from when etcd is down.
    ///
    /// # Errors
    ///
    /// The first load's error; with a cache file, only if etcd is unreachable *and* the cache
    /// cannot be read.
    pub async fn live_with<T: EtcdConfig>(&self, options: LiveOptions) -> Result<Live<T>> {
        let prefix = self.prefix_of::<T>();
        let Start {
            initial,
            started,
            unreachable_because,
            rejected,
        } = start::first_value::<T>(self, &options).await?;
        if let (Some(path), false) = (&options.cache_file, initial.stale) {
            write_cache_logged(&prefix, path, &*initial.value, initial.revision);
        }
        metrics::started(&prefix, initial.revision);
        let health = self.client().watch_hub().health.clone();
        let shared = Arc::new(Shared::new(initial, prefix, Some(health.clone())));
        health.listen(Arc::downgrade(&shared) as Weak<dyn OutageListener>);
        metrics::track(Arc::downgrade(&shared) as Weak<dyn metrics::Confirmation>);
        {
            let mut tracking = crate::sync::lock(&shared.tracking);
            if let Some(reason) = unreachable_because {
                tracking.rare_mut().unreachable = Some((Instant::now(), reason));
            }
            if let Some(rejected) = rejected {
                // Started on a fallback: not current for the revision it rejected.
                tracking.current_through = tracking.current_through.min(rejected.revision - 1);
                tracking.rare_mut().last_rejected = Some(rejected);
            }
        }
        let (notify, changes) = watch::channel(shared.current.load().revision);
        let report = options.report_as.as_ref().map(|instance| {
            let snapshot = shared.current.load();
            let now = unix_ms(SystemTime::now());
            let tracking = crate::sync::lock(&shared.tracking);
            let record = Record {
                revision: snapshot.revision,
                current_through: Some(tracking.current_through),
                applied_at_ms: now,
                state: if snapshot.stale { "stale" } else { "following" }.to_owned(),
                since_ms: now,
                last_rejected: tracking
                    .rare()
                    .and_then(|r| r.last_rejected.as_ref())
                    .map(|r| (r.revision, r.reason.clone())),
                unconfirmed_since_ms: None,
            };
            drop(tracking);
            let key = keys::fleet_record::<T>(instance);
            let live = Arc::downgrade(&shared);
            let confirmed: Confirmed = Box::new(move || {
                use metrics::Confirmation;
                live.upgrade()?.confirmed_at()
            });
            start_reporter(self.clone(), key, record, confirmed)
        });
        if report.is_some() {
            crate::sync::lock(&shared.tracking).rare_mut().report = report;
        }
        let publisher = Publisher::new(shared.clone(), notify, options.cache_file);
        follow::spawn(self, started, publisher, options.settle);
        Ok(Live {
            shared,
            changes,
            fixed: None,
        })
    }
}
