//! What a live config reports about itself: [`LiveStatus`] on demand, [`LiveEvent`]s as they
//! happen.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

/// How a [`Live`](super::Live) stands, from [`Live::status`](super::Live::status).
///
/// Enough for a health check: fail readiness when the value is not confirmed current for a
/// minute with
/// `status.confirmed_current_at.map_or(true, |at| at.elapsed() > Duration::from_secs(60))`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LiveStatus {
    /// The revision of the value [`get`](super::Live::get) returns.
    pub revision: i64,
    /// When that value was put in place (loaded, applied, or read from the cache file).
    pub applied_at: Instant,
    /// When etcd last confirmed that nothing under the prefix is newer than the value: the
    /// first load, then each progress notification the watch receives (the client asks for
    /// one every five seconds while a live config runs). `None` while the value comes from the
    /// cache file.
    ///
    /// etcd's gRPC proxy does not answer progress requests: behind it, the client reads the
    /// config's keys (keys only) every five seconds instead, and confirms the value when they
    /// are the keys it has followed, with the mod revisions it has seen. Before etcd 3.4.24
    /// and 3.5.8 a progress notification can arrive a moment before events it covers
    /// (etcd-io/etcd#15220): the events still come, a few milliseconds later.
    pub confirmed_current_at: Option<Instant>,
    /// The store revision etcd confirmed at `confirmed_current_at`.
    pub confirmed_revision: i64,
    /// Whether the background follower is following etcd.
    pub state: FollowerState,
    /// The last revision that was not applied, and why (never a secret's value).
    pub last_rejected: Option<Rejection>,
    /// True while the value is not etcd's: read from the cache file because etcd could not be
    /// reached at start-up.
    pub stale: bool,
    /// A revision that changed the config and waits for the settle window to pass
    /// ([`LiveOptions::settle`](super::LiveOptions::settle)).
    pub pending: Option<i64>,
    /// The newest revision at which the value [`get`](super::Live::get) returns is the config
    /// as etcd holds it: every revision up to it was applied or left the value as it is. A
    /// rejected revision stops it; restoring the value moves it on.
    pub current_through: i64,
    /// Keys under the prefix that no field reads (a typo in a hand edit: `greting`), with
    /// the field each nearly names. A warning is logged for each revision that has them.
    pub unknown_keys: Vec<crate::config::UnknownKey>,
    /// Whether the value includes a rollout's candidate (this instance is a member).
    pub serving: crate::config::Serving,
}

impl LiveStatus {
    /// How long a value may go without etcd confirming it current before
    /// [`is_behind`](Self::is_behind) says so (a live config asks for a confirmation every
    /// 5 s).
    pub const CONFIRM_WITHIN: Duration = Duration::from_secs(30);

    /// True unless this instance serves the newest config, as far as it can tell: it is
    /// behind when a newer revision was rejected (even though the last good value is still
    /// confirmed), while a change waits for the settle window, while the value comes from the
    /// cache file, while the follower reconnects or has stopped, and when etcd has not
    /// confirmed the value current within [`CONFIRM_WITHIN`](Self::CONFIRM_WITHIN). What a
    /// readiness check asks.
    pub fn is_behind(&self) -> bool {
        let rejected = self
            .last_rejected
            .as_ref()
            .is_some_and(|r| r.revision > self.current_through);
        rejected
            || self.stale
            || self.pending.is_some()
            || self.state != FollowerState::Following
            || !self.confirmed_within(Self::CONFIRM_WITHIN)
    }

    /// True if etcd confirmed the value current within `age`.
    pub fn confirmed_within(&self, age: Duration) -> bool {
        self.confirmed_current_at
            .is_some_and(|at| at.elapsed() <= age)
    }
}

/// What the background follower of a live config is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FollowerState {
    /// Watching etcd: every change is applied as it comes.
    Following,
    /// The watch's connection failed; it is being resumed on another endpoint (updates are
    /// not lost: the watch resumes from the next revision).
    Reconnecting {
        /// Since when.
        since: Instant,
        /// What failed.
        reason: String,
    },
    /// The follower ended: no update will be applied again. The value stays as it was.
    Stopped {
        /// Why (e.g. the user may no longer read the prefix).
        reason: String,
    },
}

/// A revision that was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The revision.
    pub revision: i64,
    /// Why: the keys that do not decode, or what `validate` said. Secret values are never
    /// included.
    pub reason: String,
    /// When it was seen.
    pub at: Instant,
}

/// Something that happened to a live config, from [`Live::events`](super::Live::events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveEvent {
    /// A new value is in place.
    Applied {
        /// Its revision.
        revision: i64,
        /// The field paths that changed, e.g. `["listen_port", "tls.cert_path"]`.
        changed: Vec<String>,
    },
    /// A revision was not applied; the last good value stays.
    Rejected {
        /// The revision.
        revision: i64,
        /// Why (no secret values).
        reason: String,
    },
    /// The watch's connection failed and is being resumed elsewhere.
    Reconnecting {
        /// What failed.
        reason: String,
    },
    /// A revision touched the config but left the value as it is (an identical value, a key
    /// no field reads, a rejected value restored): the value is current for it.
    Current {
        /// The revision.
        revision: i64,
    },
    /// The watch is back after [`Reconnecting`](LiveEvent::Reconnecting): the live config
    /// follows etcd again, from the revision after the last one it saw.
    Reconnected,
    /// Revisions the follower had not seen yet were compacted away, or it reconnected more
    /// than the catch-up limit behind the head ([`Store::catch_up_limit`](crate::Store::catch_up_limit)):
    /// it loaded the config again at this revision (an `Applied` follows if the value
    /// differs) instead of replaying what it missed.
    Resynced {
        /// The revision of the new load.
        revision: i64,
    },
    /// This instance gave its verdict on a rollout's candidate (its preflight).
    Verdict {
        /// The rollout's id.
        rollout: String,
        /// Why it rejects the candidate; `None`: it accepts it.
        rejected: Option<String>,
    },
    /// The value now includes a rollout's candidate (this instance became a member), or no
    /// longer does (the rollout committed or aborted, or the member left the cohort).
    Serving {
        /// What it serves now.
        serving: crate::config::Serving,
    },
    /// The follower ended; nothing follows.
    Stopped {
        /// Why.
        reason: String,
    },
    /// This consumer fell behind and missed this many events (the oldest ones). The follower
    /// never waits for a consumer: [`Live::status`](super::Live::status) always has the
    /// current state.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

/// How many events a consumer may fall behind before it starts missing the oldest.
pub(super) const EVENT_BUFFER: usize = 256;

/// The stream of a live config's events. Dropping it unsubscribes.
pub struct LiveEvents {
    inner: BroadcastStream<LiveEvent>,
}

impl LiveEvents {
    pub(super) fn new(receiver: broadcast::Receiver<LiveEvent>) -> Self {
        LiveEvents {
            inner: BroadcastStream::new(receiver),
        }
    }
}

impl std::fmt::Debug for LiveEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEvents").finish_non_exhaustive()
    }
}

impl Stream for LiveEvents {
    type Item = LiveEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LiveEvent>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|item| {
            item.map(|received| match received {
                Ok(event) => event,
                Err(BroadcastStreamRecvError::Lagged(missed)) => LiveEvent::Lagged { missed },
            })
        })
    }
}
