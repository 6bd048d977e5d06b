//! Metrics of live configs, through the `metrics` facade (cargo feature `metrics`; without it
//! these functions do nothing). Every series carries the label `prefix`, the config's full key
//! prefix (e.g. `/services/gateway/`):
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `etcd_config_live_applied_total` | counter | values put in place (updates and reloads) |
//! | `etcd_config_live_rejected_total` | counter | revisions not applied (do not decode, or `validate` refused) |
//! | `etcd_config_live_revision` | gauge | the revision of the value in place |
//! | `etcd_config_live_confirmed_age_seconds` | gauge | seconds since etcd last confirmed the value current (updated every second) |
//! | `etcd_config_live_reconnects_total` | counter | times the watch's connection failed and was resumed elsewhere |
//!
//! One task per runtime refreshes the confirmation ages of every live config each second (no
//! timer per live config); it runs while live configs do.

use std::sync::Weak;
use std::time::Instant;

/// A live config as the age refresher sees it.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(super) trait Confirmation: Send + Sync {
    fn prefix(&self) -> &str;
    /// When etcd last confirmed the value current; `None` if it never did.
    fn confirmed_at(&self) -> Option<Instant>;
}

/// Publishes `live`'s confirmation age every second, for as long as it lives.
pub(super) fn track(live: Weak<dyn Confirmation>) {
    #[cfg(feature = "metrics")]
    ages::track(live);
    #[cfg(not(feature = "metrics"))]
    let _ = live;
}

#[cfg(feature = "metrics")]
mod ages {
    use std::sync::{Mutex, Weak};
    use std::time::Duration;

    use super::Confirmation;

    const EVERY: Duration = Duration::from_secs(1);

    struct Tracked {
        lives: Vec<Weak<dyn Confirmation>>,
        refreshing: bool,
    }

    static TRACKED: Mutex<Tracked> = Mutex::new(Tracked {
        lives: Vec::new(),
        refreshing: false,
    });

    pub(super) fn track(live: Weak<dyn Confirmation>) {
        let mut tracked = crate::sync::lock(&TRACKED);
        if tracked.lives.len() == tracked.lives.capacity() {
            tracked.lives.retain(|l| l.strong_count() > 0);
        }
        tracked.lives.push(live);
        if !tracked.refreshing {
            tracked.refreshing = true;
            tokio::spawn(refresh());
        }
    }

    /// Marks the refresher gone when its task ends, also when its runtime shuts down.
    struct Refreshing;

    impl Drop for Refreshing {
        fn drop(&mut self) {
            crate::sync::lock(&TRACKED).refreshing = false;
        }
    }

    async fn refresh() {
        let _refreshing = Refreshing;
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let lives = {
                let mut tracked = crate::sync::lock(&TRACKED);
                tracked.lives.retain(|l| l.strong_count() > 0);
                if tracked.lives.is_empty() {
                    tracked.refreshing = false;
                    std::mem::forget(_refreshing);
                    return;
                }
                tracked.lives.clone()
            };
            for live in lives.iter().filter_map(Weak::upgrade) {
                if let Some(at) = live.confirmed_at() {
                    metrics::gauge!(super::names::CONFIRMED_AGE, "prefix" => live.prefix().to_owned())
                        .set(at.elapsed().as_secs_f64());
                }
            }
        }
    }
}

#[cfg(feature = "metrics")]
mod names {
    pub(super) const APPLIED: &str = "etcd_config_live_applied_total";
    pub(super) const REJECTED: &str = "etcd_config_live_rejected_total";
    pub(super) const REVISION: &str = "etcd_config_live_revision";
    pub(super) const CONFIRMED_AGE: &str = "etcd_config_live_confirmed_age_seconds";
    pub(super) const RECONNECTS: &str = "etcd_config_live_reconnects_total";
    pub(super) const SERVING_CANDIDATE: &str = "etcd_config_live_serving_candidate";
    pub(super) const VERDICTS: &str = "etcd_config_live_rollout_verdicts_total";
}

pub(super) fn applied(prefix: &str, revision: i64) {
    #[cfg(feature = "metrics")]
    {
        let labels = [("prefix", prefix.to_owned())];
        metrics::counter!(names::APPLIED, &labels).increment(1);
    }
    started(prefix, revision);
}

/// The revision gauge, set as soon as a live config has a value (at its start, not only at
/// its first change).
pub(super) fn started(prefix: &str, revision: i64) {
    #[cfg(feature = "metrics")]
    {
        let labels = [("prefix", prefix.to_owned())];
        #[allow(clippy::cast_precision_loss)] // revisions stay far below 2^53
        metrics::gauge!(names::REVISION, &labels).set(revision as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (prefix, revision);
}

pub(super) fn rejected(prefix: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::REJECTED, "prefix" => prefix.to_owned()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = prefix;
}

pub(super) fn reconnect(prefix: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::RECONNECTS, "prefix" => prefix.to_owned()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = prefix;
}

/// 1 while the live config serves a rollout's candidate, else 0.
pub(super) fn serving_candidate(prefix: &str, candidate: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(names::SERVING_CANDIDATE, "prefix" => prefix.to_owned())
        .set(f64::from(u8::from(candidate)));
    #[cfg(not(feature = "metrics"))]
    let _ = (prefix, candidate);
}

/// A preflight verdict given, by outcome (`accepted`, `rejected`).
pub(super) fn verdict(prefix: &str, accepted: bool) {
    #[cfg(feature = "metrics")]
    {
        let verdict = if accepted { "accepted" } else { "rejected" };
        metrics::counter!(names::VERDICTS, "prefix" => prefix.to_owned(), "verdict" => verdict)
            .increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (prefix, accepted);
}
