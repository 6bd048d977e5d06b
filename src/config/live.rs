//! [`Live`]: a config that keeps itself up to date, for services that hot-reload.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::cache_file::{read_cache, write_cache_logged};
use super::watch::Started;
use super::{EtcdConfig, Store, Update, Versioned};
use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// Options for [`Store::live_with`].
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    cache_file: Option<PathBuf>,
}

impl LiveOptions {
    /// No cache file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep a copy of the config in `path`, and start from it when etcd cannot be reached at
    /// start-up.
    ///
    /// The file is rewritten after every applied update, atomically (a temporary file renamed
    /// over it) and readable by its owner only (mode 0600): it holds secret fields too. It is
    /// only read when the first load fails because no endpoint answers; the `Live` then reports
    /// [`is_stale`](Live::is_stale) until etcd answers and the fresh value replaces it.
    #[must_use]
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }
}

/// One value of the config and where it came from.
struct Snapshot<T> {
    value: Arc<T>,
    revision: i64,
    stale: bool,
}

struct Shared<T> {
    current: ArcSwap<Snapshot<T>>,
    /// Why the background task stopped, if it did.
    stopped: Mutex<Option<String>>,
    prefix: String,
}

/// A config kept up to date by a background watch. Cheap to clone; `get` never blocks.
///
/// A rejected update (one that does not decode, or that `validate` refuses) is logged with
/// `tracing` at warn level and changes nothing: `get` keeps returning the last good value. The
/// background task ends when the last handle is dropped.
pub struct Live<T> {
    shared: Arc<Shared<T>>,
    changes: watch::Receiver<i64>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            shared: self.shared.clone(),
            changes: self.changes.clone(),
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
    /// The current value. Lock-free: one atomic load and a reference count.
    pub fn get(&self) -> Arc<T> {
        self.shared.current.load().value.clone()
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

    /// Resolves when a new valid value is in place (since this handle last saw one).
    ///
    /// # Errors
    ///
    /// If the background watch ended (e.g. the user lost permission to read the prefix).
    pub async fn changed(&mut self) -> Result<()> {
        self.changes.changed().await.map_err(|_| Error::Stopped {
            what: format!("live config {}", self.shared.prefix),
            reason: crate::sync::lock(&self.shared.stopped)
                .clone()
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
        let (initial, started) = match Started::<T>::start(self).await {
            Ok(started) => {
                let (value, revision) = started.initial();
                let snapshot = Snapshot {
                    value,
                    revision,
                    stale: false,
                };
                (snapshot, Some(started))
            }
            Err(err) if unreachable(&err) => {
                let Some(path) = options.cache_file.as_deref() else {
                    return Err(err);
                };
                match read_cache::<T>(&prefix, path) {
                    Ok((value, revision)) => {
                        tracing::warn!(%prefix, cache = %path.display(), error = %err,
                            "etcd unreachable; starting from the cached config");
                        let snapshot = Snapshot {
                            value: Arc::new(value),
                            revision,
                            stale: true,
                        };
                        (snapshot, None)
                    }
                    Err(cache_err) => {
                        tracing::warn!(cache = %path.display(), error = %cache_err, "cannot use the config cache");
                        return Err(err);
                    }
                }
            }
            Err(err) => return Err(err),
        };
        if let (Some(path), false) = (&options.cache_file, initial.stale) {
            write_cache_logged(&prefix, path, &*initial.value, initial.revision);
        }
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(initial),
            stopped: Mutex::new(None),
            prefix,
        });
        let (notify, changes) = watch::channel(shared.current.load().revision);
        let sink = LiveSink {
            shared: shared.clone(),
            notify,
            cache: options.cache_file,
        };
        tokio::spawn(keep_current(self.clone(), started, sink));
        Ok(Live { shared, changes })
    }
}

/// True for errors that mean "no etcd answered", as opposed to "etcd said no".
fn unreachable(err: &Error) -> bool {
    matches!(
        err,
        Error::Connect { .. } | Error::Transport { .. } | Error::Timeout { .. }
    )
}

/// Where a live config's follower delivers: the shared value, the change signal, the cache.
struct LiveSink<T> {
    shared: Arc<Shared<T>>,
    notify: watch::Sender<i64>,
    cache: Option<PathBuf>,
}

impl<T: EtcdConfig> LiveSink<T> {
    fn publish(&self, value: Arc<T>, revision: i64) {
        if let Some(path) = &self.cache {
            write_cache_logged(&self.shared.prefix, path, &*value, revision);
        }
        self.shared.current.store(Arc::new(Snapshot {
            value,
            revision,
            stale: false,
        }));
        self.notify.send_replace(revision);
    }
}

impl<T: EtcdConfig> LiveSink<T> {
    /// Applies one update (or logs one rejected revision, or the end of the watch).
    fn deliver(&self, item: Result<Update<T>>) {
        match item {
            Ok(update) => {
                tracing::debug!(prefix = %self.shared.prefix, revision = update.revision,
                    changed = ?update.changed, "config updated");
                self.publish(update.config, update.revision);
            }
            Err(err @ (Error::Decode { .. } | Error::Rejected { .. })) => {
                tracing::warn!(prefix = %self.shared.prefix, error = %err,
                    "config update rejected; keeping the last good value");
            }
            Err(err) => {
                tracing::warn!(prefix = %self.shared.prefix, error = %err, "config watch ended");
                *crate::sync::lock(&self.shared.stopped) = Some(err.to_string());
            }
        }
    }
}

/// The background task: (after a stale start, first reaches etcd, then) follows the watch
/// until every handle is gone. One task per live config.
async fn keep_current<T: EtcdConfig>(store: Store, started: Option<Started<T>>, sink: LiveSink<T>) {
    let started = match started {
        Some(started) => started,
        // Boxed: only a stale start needs it.
        None => match Box::pin(reconnect::<T>(&store, &sink.notify)).await {
            Some(started) => {
                let (value, revision) = started.initial();
                sink.publish(value, revision);
                started
            }
            None => return,
        },
    };
    let mut follower = started.into_follower(store);
    loop {
        let item = tokio::select! {
            item = follower.next() => item,
            () = sink.notify.closed() => return, // every handle is gone
        };
        match item {
            Some(item) => sink.deliver(item),
            None => return,
        }
    }
}

/// Retries the first load and watch with backoff; `None` if every handle is dropped first.
async fn reconnect<T: EtcdConfig>(
    store: &Store,
    notify: &watch::Sender<i64>,
) -> Option<Started<T>> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::select! {
            () = backoff.wait() => {}
            () = notify.closed() => return None,
        }
        match Started::<T>::start(store).await {
            Ok(started) => return Some(started),
            Err(err) => tracing::debug!(error = %err, "etcd still unreachable"),
        }
    }
}
