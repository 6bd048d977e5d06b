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

use std::time::Instant;

#[cfg(feature = "metrics")]
mod names {
    pub(super) const APPLIED: &str = "etcd_config_live_applied_total";
    pub(super) const REJECTED: &str = "etcd_config_live_rejected_total";
    pub(super) const REVISION: &str = "etcd_config_live_revision";
    pub(super) const CONFIRMED_AGE: &str = "etcd_config_live_confirmed_age_seconds";
    pub(super) const RECONNECTS: &str = "etcd_config_live_reconnects_total";
}

pub(super) fn applied(prefix: &str, revision: i64) {
    #[cfg(feature = "metrics")]
    {
        let labels = [("prefix", prefix.to_owned())];
        metrics::counter!(names::APPLIED, &labels).increment(1);
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

pub(super) fn confirmed(prefix: &str, at: Option<Instant>) {
    #[cfg(feature = "metrics")]
    if let Some(at) = at {
        metrics::gauge!(names::CONFIRMED_AGE, "prefix" => prefix.to_owned())
            .set(at.elapsed().as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (prefix, at);
}
