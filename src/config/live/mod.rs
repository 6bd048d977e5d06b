//! [`Live`]: a config that keeps itself up to date, for services that hot-reload.
//!
//! `mod.rs` holds the handle; [`current`] the value and the per-thread cache `read` lends
//! from; [`publisher`] where news goes; [`driven`] the follower the client's watch task
//! drives, and [`follow`] the task of one that needs its own; [`status`] what a live config
//! reports, [`options`] how it starts, [`select`] handles on a
//! part of the config, [`double`] the test doubles, and [`metrics`] the optional metrics.

mod current;
mod double;
mod driven;
mod follow;
mod metrics;
mod options;
mod publisher;
mod rollout;
mod select;
mod start;
mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::{broadcast, oneshot, watch, Notify};

pub use current::LiveRef;
pub use double::LiveSender;
pub use options::{LiveOptions, WhenInvalid};
pub use select::Selected;
pub use status::{FollowerState, LiveEvent, LiveEvents, LiveStatus, Rejection};

use super::fleet::Record;
use super::{EtcdConfig, Health, Serving, UnknownKey, Versioned};
use crate::client::{OutageListener, StreamHealth};
use crate::error::{Error, Result};

/// One value of the config and where it came from.
pub(super) struct Snapshot<T> {
    value: Arc<T>,
    revision: i64,
    stale: bool,
    applied_at: Instant,
}

/// What the handles of one live config share with its follower.
pub(super) struct Shared<T> {
    current: current::Current<T>,
    tracking: Mutex<Tracking>,
    /// Made by the first [`Live::events`]: most live configs never have a subscriber, and
    /// the channel's buffer would cost each of them kilobytes.
    events: OnceLock<broadcast::Sender<LiveEvent>>,
    prefix: Arc<str>,
    /// The client's Watch stream, to tell following from reconnecting (none for a double).
    stream: Option<StreamHealth>,
    /// Woken when a new value is in place or the follower ends: `changed` compares the
    /// value's generation with the one its handle saw (a few bytes, where a watch channel
    /// would cost every live config hundreds).
    changed: Notify,
    /// The follower is gone without saying why (its publisher was dropped).
    ended: AtomicBool,
}

/// What the follower notes besides the value.
#[derive(Default)]
struct Tracking {
    /// When etcd last confirmed the value current, and at which store revision.
    confirmed: Option<(Instant, i64)>,
    /// The newest revision at which the value served is the config as etcd holds it (it has
    /// seen every revision up to it, applied or found equal).
    current_through: i64,
    /// What most live configs never have, boxed: thousands of them may run in one process.
    rare: Option<Box<Rare>>,
}

#[derive(Default)]
struct Rare {
    /// A revision waiting for the settle window.
    pending: Option<i64>,
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
    /// The rollout whose candidate the value includes.
    serving: Option<String>,
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

    /// A revision waiting for the settle window.
    fn pending(&self) -> Option<i64> {
        self.rare()?.pending
    }

    fn set_pending(&mut self, revision: Option<i64>) {
        if revision.is_some() || self.rare.is_some() {
            self.rare_mut().pending = revision;
        }
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
    /// Why the follower ended, once it has.
    fn ended(&self) -> Option<String> {
        let stopped = crate::sync::lock(&self.tracking).stopped().cloned();
        stopped.or_else(|| {
            self.ended
                .load(Ordering::Acquire)
                .then(|| "its watch ended".to_owned())
        })
    }
}

impl<T: Send + Sync + 'static> Shared<T> {
    fn new(initial: Snapshot<T>, prefix: Arc<str>, stream: Option<StreamHealth>) -> Self {
        let tracking = Tracking {
            confirmed: (!initial.stale).then_some((initial.applied_at, initial.revision)),
            current_through: if initial.stale { 0 } else { initial.revision },
            ..Tracking::default()
        };
        Shared {
            current: current::Current::new(initial),
            tracking: Mutex::new(tracking),
            events: OnceLock::new(),
            prefix,
            stream,
            changed: Notify::new(),
            ended: AtomicBool::new(false),
        }
    }
}

/// A config kept up to date by a background watch. Cheap to clone; `get` never blocks.
///
/// A rejected update (one that does not decode, or that `validate` refuses) changes nothing:
/// `get` keeps returning the last good value, [`status`](Self::status) names the revision and
/// the reason, an [`LiveEvent::Rejected`] goes out, and a warning is logged with `tracing`.
///
/// What follows etcd costs no task of its own: the client's watch task applies each answer of
/// the config's watch (a live config with a settle window, a cache file or
/// [`report_as`](LiveOptions::report_as) runs a task). Dropping the last handle cancels the
/// watch.
///
/// For a service's own unit tests, [`Live::fixed`] and [`Live::channel`] make one without etcd.
pub struct Live<T> {
    shared: Arc<Shared<T>>,
    /// The generation of the value this handle last saw change to (see `changed`).
    seen: u64,
    /// The last handle to go ends the follower (none for a test double).
    handles: Option<Arc<Handles>>,
}

/// What the handles of a live config hold of its follower.
pub(super) enum Handles {
    /// The client's watch task drives it: dropping this cancels the watch, or leaves the
    /// shared watch it rides ([`Store::share_watch`](crate::Store::share_watch)).
    Driven(
        crate::client::watch::Driving,
        Mutex<Option<super::shared_watch::Riding>>,
    ),
    /// It runs as a task, which ends when this sender is gone.
    Task(#[allow(dead_code)] oneshot::Sender<()>),
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            shared: self.shared.clone(),
            seen: self.seen,
            handles: self.handles.clone(),
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
    /// The current value, to keep: lock-free, a read as [`read`](Self::read) does plus one
    /// more reference count (a write to a counter every reader of this config shares). On a
    /// hot path, prefer `read`.
    pub fn get(&self) -> Arc<T> {
        self.shared.current.read().to_arc()
    }

    /// The current value, to read now: a guard that writes nothing shared, takes no lock and
    /// allocates nothing, so threads reading one config on every request do not contend.
    /// Each thread keeps the value it last read of each config (up to eight configs) with the
    /// config's generation; a read compares the two and lends the value (about 30
    /// instructions, 3 ns). The first read after an update takes the new value.
    ///
    /// Hold the guard briefly, for a request: while it lives the value it shows stays alive
    /// even if a newer one is applied, and the guard is `!Send`, so it cannot be held across
    /// an `.await` in a spawned task. A thread's cache keeps the last value it read of a
    /// config until it reads that config again or exits.
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
        LiveRef::new(self.shared.current.read())
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
            pending: tracking.pending(),
            current_through: tracking.current_through,
            unknown_keys: rare.map(|r| r.unknown_keys.clone()).unwrap_or_default(),
            serving: match rare.and_then(|r| r.serving.clone()) {
                Some(rollout) => Serving::Candidate { rollout },
                None => Serving::Committed,
            },
        }
    }

    /// Reports this instance's health in its fleet record, as a gate of rollouts: a member
    /// of a rollout that reports itself unhealthy aborts it (say it from your own signals,
    /// such as an error rate). Without [`LiveOptions::report_as`] there is no record and this
    /// does nothing.
    pub fn report_health(&self, health: Health) {
        let unhealthy = match health {
            Health::Healthy => None,
            Health::Unhealthy(why) => Some(why),
        };
        let tracking = crate::sync::lock(&self.shared.tracking);
        if let Some(report) = tracking.rare().and_then(|r| r.report.as_ref()) {
            report.send_if_modified(|record| {
                let changed = record.unhealthy != unhealthy;
                record.unhealthy = unhealthy;
                changed
            });
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
        loop {
            // Listening before looking: a change between the two still wakes us.
            let mut notified = std::pin::pin!(self.shared.changed.notified());
            notified.as_mut().enable();
            let generation = self.shared.current.generation();
            if generation != self.seen {
                self.seen = generation;
                return Ok(());
            }
            if let Some(reason) = self.shared.ended() {
                return Err(Error::Stopped {
                    what: format!("live config {}", self.shared.prefix),
                    reason,
                });
            }
            notified.await;
        }
    }
}
