//! A live config's first value: etcd's, or, when etcd cannot be reached or holds an invalid
//! value, the cache file's or the newest valid one in etcd's history (as the options say).

use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use super::options::{LiveOptions, Settle, WhenInvalid};
use super::publisher::Publisher;
use super::status::Rejection;
use super::{driven, follow};
use super::{metrics, rollout, Handles, Live, Shared, Snapshot};
use crate::client::OutageListener;
use crate::config::cache_file::{read_cache, write_cache_logged};
use crate::config::fleet::{start_reporter, unix_ms, Confirmed, Record};
use crate::config::follower::{Loaded, Overlay};
use crate::config::{keys, EtcdConfig, Store};
use crate::error::{Error, Result};

/// How a live config starts.
pub(super) struct Start<T> {
    pub(super) initial: Snapshot<T>,
    /// The load; its watch starts right after it. `None` when etcd could not be reached.
    pub(super) started: Option<Loaded<T>>,
    /// Why etcd could not be reached, for a start from the cache file.
    pub(super) unreachable_because: Option<String>,
    /// The invalid value etcd holds, for a start from an older valid one.
    pub(super) rejected: Option<Rejection>,
}

impl<T> Start<T> {
    fn stale(value: Arc<T>, revision: i64) -> Start<T> {
        Start {
            initial: Snapshot {
                value,
                revision,
                stale: true,
                applied_at: Instant::now(),
            },
            started: None,
            unreachable_because: None,
            rejected: None,
        }
    }
}

/// The first value of a live config of `T`, whose prefix in `store` is `prefix`.
pub(super) async fn first_value<T: EtcdConfig>(
    store: &Store,
    prefix: &str,
    options: &LiveOptions,
) -> Result<Start<T>> {
    let err = match Loaded::<T>::load_under(store, prefix).await {
        Ok(started) => {
            let (value, revision) = started.initial();
            return Ok(Start {
                initial: Snapshot {
                    value,
                    revision,
                    stale: false,
                    applied_at: Instant::now(),
                },
                started: Some(started),
                unreachable_because: None,
                rejected: None,
            });
        }
        Err(err) => err,
    };
    if unreachable(&err) {
        let Some(path) = options.cache_file.as_deref() else {
            return Err(err);
        };
        return match read_cache::<T>(prefix, path) {
            Ok((value, revision)) => {
                tracing::warn!(%prefix, cache = %path.display(), error = %err,
                    "etcd unreachable; starting from the cached config");
                let mut start = Start::stale(Arc::new(value), revision);
                start.unreachable_because = Some(err.to_string());
                Ok(start)
            }
            Err(cache_err) => {
                tracing::warn!(cache = %path.display(), error = %cache_err, "cannot use the config cache");
                Err(with_cache_problem(err, &cache_err))
            }
        };
    }
    let invalid_at = match &err {
        Error::Decode { revision, .. } => *revision,
        Error::Rejected {
            revision: Some(revision),
            ..
        } => *revision,
        _ => return Err(err),
    };
    let fallback = match options.when_invalid {
        WhenInvalid::Fail => None,
        WhenInvalid::CacheFile => options
            .cache_file
            .as_deref()
            .and_then(|path| read_cache::<T>(prefix, path).ok()),
        WhenInvalid::LastValid => store.last_valid_before::<T>(invalid_at).await?,
    };
    let Some((value, revision)) = fallback else {
        return Err(err);
    };
    let value = Arc::new(value);
    let (started, invalid) = Loaded::load_with_fallback(store, value.clone()).await?;
    let Some(invalid) = invalid else {
        // etcd moved on to a valid value meanwhile: start from it as usual.
        let (value, revision) = started.initial();
        let mut start = Start::stale(value, revision);
        start.initial.stale = false;
        start.started = Some(started);
        return Ok(start);
    };
    tracing::warn!(%prefix, error = %invalid, fallback = revision,
        "the config in etcd is invalid; starting from an earlier valid one");
    let mut start = Start::stale(value, revision);
    start.rejected = Some(Rejection {
        revision: invalid.rejected_revision().unwrap_or(invalid_at),
        reason: invalid.to_string(),
        at: Instant::now(),
    });
    start.started = Some(started);
    Ok(start)
}

/// `err`, why etcd could not be reached, saying also why the cache file could not stand in
/// (it is the error a service's start fails with: both are the operator's to fix).
fn with_cache_problem(err: Error, cache_err: &Error) -> Error {
    let also = format!("; and {cache_err}");
    match err {
        Error::Connect { endpoints, reason } => Error::Connect {
            endpoints,
            reason: reason + &also,
        },
        Error::Timeout {
            operation,
            after,
            endpoint,
        } => Error::Timeout {
            operation: operation + &also,
            after,
            endpoint,
        },
        other => other,
    }
}

/// True for errors that mean "no etcd answered", as opposed to "etcd said no".
fn unreachable(err: &Error) -> bool {
    matches!(
        err,
        Error::Connect { .. } | Error::Transport { .. } | Error::Timeout { .. }
    )
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
    /// cannot be read, and then the error says why not either.
    pub async fn live_with<T: EtcdConfig>(&self, options: LiveOptions) -> Result<Live<T>> {
        let prefix = self.prefix_of::<T>();
        let Start {
            initial,
            started,
            unreachable_because,
            rejected,
        } = first_value::<T>(self, &prefix, &options).await?;
        if let (Some(path), false) = (&options.cache_file, initial.stale) {
            write_cache_logged(&prefix, path, &*initial.value, initial.revision);
        }
        metrics::started(&prefix, initial.revision);
        let health = self.client().watch_hub().health.clone();
        let shared = Arc::new(Shared::new(initial, prefix.into(), Some(health.clone())));
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
                identity: options.identity.clone(),
                build: options.build.clone(),
                unhealthy: None,
                serving: None,
                verdict: None,
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
        let overlays = options.report_as.as_ref().map(|name| {
            let identity = options.identity.clone().unwrap_or_else(|| name.clone());
            rollout::start::<T>(self.clone(), Arc::downgrade(&shared), identity)
        });
        let publisher = Publisher::new(shared.clone(), options.cache_file);
        let handles = follow_or_drive(self, started, publisher, options.settle, overlays).await?;
        Ok(Live {
            seen: shared.current.generation(),
            shared,
            handles: Some(handles),
        })
    }
}

/// Starts following: on the client's watch task for a plain live config, in a task of its
/// own for one with a settle window, a rollout report or a cache file (a timer, a second
/// watch and a file write per update have no place on the watch task).
async fn follow_or_drive<T: EtcdConfig>(
    store: &Store,
    started: Option<Loaded<T>>,
    publisher: Publisher<T>,
    settle: Option<Settle>,
    overlays: Option<tokio::sync::watch::Receiver<Option<Arc<Overlay>>>>,
) -> Result<Arc<Handles>> {
    let plain = settle.is_none() && overlays.is_none() && publisher.cache.is_none();
    Ok(match started {
        Some(loaded) if plain => driven::drive(store, loaded, publisher).await?,
        Some(loaded) => {
            // etcd gone between the load and the watch: the task reaches it again, as after
            // a start from the cache file.
            let started = match loaded.watch(store).await {
                Ok(started) => Some(started),
                Err(err) if unreachable(&err) && publisher.cache.is_some() => None,
                Err(err) => return Err(err),
            };
            follow::spawn(store, started, publisher, settle, overlays)
        }
        None => follow::spawn(store, None, publisher, settle, overlays),
    })
}
