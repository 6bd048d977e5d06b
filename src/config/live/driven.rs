//! A live config without a task of its own: the client's watch task hands each answer of its
//! watch to an [`Applier`], which decodes it and publishes what comes of it, right there.
//! Thousands of live configs then cost their state and nothing more: no task, no queue, no
//! stream (a task each was over a kilobyte). A compaction's reload is the one thing that
//! waits on etcd; it runs in a task of its own, which drives the new watch under the same
//! handle when done.
//!
//! Live configs with a settle window (a timer), a cache file (a file write per update) or a
//! rollout report (a second watch) keep their task (`follow`).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::follow::publish;
use super::publisher::{Confirming, Publisher};
use super::Handles;
use crate::backoff::Backoff;
use crate::client::watch::{Driving, Sink, WatchResponse};
use crate::config::follower::{watch_after, After, Core, Followed, Loaded};
use crate::config::shared_watch::Riding;
use crate::config::{EtcdConfig, Store};
use crate::error::{Error, Result};
use crate::sync::lock;

/// Creates the watch of `loaded` with its follower as the consumer the watch task hands
/// every answer to. Returns once etcd confirmed the watch; the returned handle cancels it
/// when the last [`Live`](super::Live) handle drops it.
pub(super) async fn drive<T: EtcdConfig>(
    store: &Store,
    loaded: Loaded<T>,
    publisher: Publisher<T>,
) -> Result<Arc<Handles>> {
    let revision = loaded.initial().1;
    let (core, watch) = loaded.into_core(store.clone());
    // What the first load found: keys no field reads are reported from the start.
    publisher.unknown(core.unknown_keys());
    let handles = Arc::new(Handles::Driven(
        Driving::new(store.client()),
        Mutex::new(None),
    ));
    let applier = Applier {
        core,
        publisher,
        _confirming: Confirming::start(store),
        handles: Arc::downgrade(&handles),
    };
    let sink: Box<dyn Sink> = Box::new(Some(applier));
    if let Handles::Driven(driving, riding) = &*handles {
        if let Err(sink) = ride::<T>(store, revision, sink, riding).await {
            watch.drive(driving, sink).await?;
        }
    }
    Ok(handles)
}

/// Rides the store's shared watch ([`Store::share_watch`]) with `sink` from the revision after
/// `revision`, keeping the ride in `riding`. Gives `sink` back when the store has no shared
/// watch or the config may not ride it.
async fn ride<T: EtcdConfig>(
    store: &Store,
    revision: i64,
    sink: Box<dyn Sink>,
    riding: &Mutex<Option<Riding>>,
) -> std::result::Result<(), Box<dyn Sink>> {
    let Some(shared) = store.shared_watch() else {
        return Err(sink);
    };
    let prefix = store.prefix_of::<T>().into_bytes();
    let limit = store.catch_up_limit_revisions();
    let rides = shared.ride(prefix, revision, limit, sink).await?;
    // A ride before this one ended with its shared watch: it is left already.
    *lock(riding) = Some(rides);
    Ok(())
}

/// A live config's follower as the watch task drives it.
struct Applier<T> {
    core: Core<T>,
    publisher: Publisher<T>,
    /// Keeps the watch task asking etcd for progress, so `status` can say the value is current.
    _confirming: Confirming,
    /// What the handles hold: the watch to drive the next one under after a reload.
    handles: Weak<Handles>,
}

/// `None` once the applier moved to its reload task, or ended.
impl<T: EtcdConfig> Sink for Option<Applier<T>> {
    fn deliver(&mut self, answer: Result<WatchResponse>) -> bool {
        let Some(applier) = self else {
            return false;
        };
        let mut out = Vec::new();
        // The struct's own code (its `validate`, a custom codec) runs here, on the watch task
        // every watch of the client shares: a panic ends this live config, saying so, and
        // leaves the others alone.
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            applier
                .core
                .answer(&applier.publisher.shared.prefix, answer, &mut out)
        }));
        let after = answered.unwrap_or_else(|_| {
            out.clear();
            After::End(Error::Stopped {
                what: format!("live config {}", applier.publisher.shared.prefix),
                reason: "decoding or validating an update panicked".to_owned(),
            })
        });
        if !out.is_empty() {
            applier.publisher.unknown(applier.core.unknown_keys());
        }
        for item in out {
            publish(&applier.publisher, item, None);
        }
        match after {
            After::Next => true,
            After::Resync => {
                if let Some(applier) = self.take() {
                    tokio::spawn(applier.reload());
                }
                false
            }
            After::End(err) => {
                publish(&applier.publisher, Followed::Ended(err), None);
                *self = None;
                false
            }
        }
    }

    fn namespace(&self) -> &[u8] {
        self.as_ref()
            .map_or(&[], |applier| applier.core.namespace())
    }
}

impl<T: EtcdConfig> Applier<T> {
    /// After a compaction (or falling too far behind): loads again, then rides the store's
    /// shared watch from there (a new one: the one it rode ended) or watches alone, under the
    /// same handle.
    async fn reload(mut self) {
        let mut out = Vec::new();
        let reloaded = tokio::select! {
            reloaded = Box::pin(self.core.reload(&self.publisher.shared.prefix, &mut out)) => reloaded,
            () = gone(&self.handles) => return,
        };
        for item in out {
            publish(&self.publisher, item, None);
        }
        let revision = match reloaded {
            Ok(revision) => revision,
            Err(err) => {
                publish(&self.publisher, Followed::Ended(err), None);
                return;
            }
        };
        let Some(handles) = self.handles.upgrade() else {
            return; // every handle is gone
        };
        let Handles::Driven(driving, riding) = &*handles else {
            return;
        };
        self.publisher.unknown(self.core.unknown_keys());
        let store = self.core.store().clone();
        let Err(mut sink) = ride::<T>(&store, revision, Box::new(Some(self)), riding).await else {
            return;
        };
        // A watch of its own, asked for again while etcd cannot be reached or the token is
        // renewed. Refused, the follower hears why as from any watch (a compaction again: it
        // loads again; anything else ends it).
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            match watch_after::<T>(&store, revision).await {
                Ok(stream) => return stream.drive_for(driving, sink),
                Err(err) if passing(&err) && Arc::strong_count(&handles) > 1 => {
                    tracing::debug!(error = %err, "watching after a reload failed; retrying");
                    backoff.wait().await;
                }
                Err(err) => {
                    sink.deliver(Err(err));
                    return;
                }
            }
        }
    }
}

/// Whether a watch's create failed for something that passes: etcd out of reach, or a token
/// to renew (not a refusal, not a compaction).
fn passing(err: &Error) -> bool {
    match err {
        Error::Server { kind, .. } => kind.needs_new_token(),
        Error::Connect { .. } | Error::Transport { .. } | Error::Timeout { .. } => true,
        _ => false,
    }
}

/// Resolves once every handle is gone. Only a reload waits on it, and a reload is rare: a
/// look every second is enough.
async fn gone(handles: &Weak<Handles>) {
    while handles.strong_count() > 0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
