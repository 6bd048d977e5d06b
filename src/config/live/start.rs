//! A live config's first value: etcd's, or, when etcd cannot be reached or holds an invalid
//! value, the cache file's or the newest valid one in etcd's history (as the options say).

use std::sync::Arc;
use std::time::Instant;

use super::options::{LiveOptions, WhenInvalid};
use super::status::Rejection;
use super::Snapshot;
use crate::config::cache_file::read_cache;
use crate::config::follower::Started;
use crate::config::{EtcdConfig, Store};
use crate::error::{Error, Result};

/// How a live config starts.
pub(super) struct Start<T> {
    pub(super) initial: Snapshot<T>,
    /// The watch, started right after the load; `None` when etcd could not be reached.
    pub(super) started: Option<Started<T>>,
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

pub(super) async fn first_value<T: EtcdConfig>(
    store: &Store,
    options: &LiveOptions,
) -> Result<Start<T>> {
    let prefix = store.prefix_of::<T>();
    let err = match Started::<T>::start(store).await {
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
        return match read_cache::<T>(&prefix, path) {
            Ok((value, revision)) => {
                tracing::warn!(%prefix, cache = %path.display(), error = %err,
                    "etcd unreachable; starting from the cached config");
                let mut start = Start::stale(Arc::new(value), revision);
                start.unreachable_because = Some(err.to_string());
                Ok(start)
            }
            Err(cache_err) => {
                tracing::warn!(cache = %path.display(), error = %cache_err, "cannot use the config cache");
                Err(err)
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
            .and_then(|path| read_cache::<T>(&prefix, path).ok()),
        WhenInvalid::LastValid => store.last_valid_before::<T>(invalid_at).await?,
    };
    let Some((value, revision)) = fallback else {
        return Err(err);
    };
    let value = Arc::new(value);
    let (started, invalid) = Started::start_with_fallback(store, value.clone()).await?;
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

/// True for errors that mean "no etcd answered", as opposed to "etcd said no".
fn unreachable(err: &Error) -> bool {
    matches!(
        err,
        Error::Connect { .. } | Error::Transport { .. } | Error::Timeout { .. }
    )
}
