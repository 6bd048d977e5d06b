//! A config loaded and its watch started right after the load; and the reload after a
//! compaction.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::{Core, Follower, Tracked};
use crate::backoff::Backoff;
use crate::config::store::decode_entries;
use crate::config::update::Update;
use crate::config::{EtcdConfig, Store};
use crate::error::{Error, Result, ServerErrorKind};

/// A config loaded, its watch not started yet: the watch starts at the load's revision + 1,
/// either as a stream ([`Loaded::watch`]) or handed to a sink from its create on (a live
/// config the watch task drives).
pub(crate) struct Loaded<T> {
    tracked: Tracked<T>,
}

/// A config loaded and a watch started right after the load's revision.
pub(crate) struct Started<T> {
    tracked: Tracked<T>,
    stream: crate::client::watch::WatchStream,
}

impl<T: EtcdConfig> Loaded<T> {
    /// Loads `T` (one Range).
    pub(crate) async fn load(store: &Store) -> Result<Loaded<T>> {
        Self::load_under(store, &store.prefix_of::<T>()).await
    }

    /// [`load`](Self::load), given `T`'s prefix in `store` ([`Store::prefix_of`]) for its
    /// errors.
    pub(crate) async fn load_under(store: &Store, prefix: &str) -> Result<Loaded<T>> {
        let (revision, entries) = store.load_raw::<T>().await?;
        let good = Arc::new(decode_entries::<T>(
            prefix,
            store.keyring(),
            revision,
            &entries,
        )?);
        Ok(Loaded {
            tracked: Tracked::new(entries, revision, good),
        })
    }

    /// Like [`load`](Self::load), but when the value etcd holds is invalid, keeps `fallback`
    /// as the last good value (later revisions are decoded against everything etcd then
    /// holds). Returns the invalid value's error too, if it was.
    pub(crate) async fn load_with_fallback(
        store: &Store,
        fallback: Arc<T>,
    ) -> Result<(Loaded<T>, Option<Error>)> {
        let prefix = store.prefix_of::<T>();
        let (revision, entries) = store.load_raw::<T>().await?;
        let (good, invalid) =
            match decode_entries::<T>(&prefix, store.keyring(), revision, &entries) {
                Ok(value) => (Arc::new(value), None),
                Err(err @ (Error::Decode { .. } | Error::Rejected { .. })) => (fallback, Some(err)),
                Err(err) => return Err(err),
            };
        let mut tracked = Tracked::new(entries, revision, good);
        if invalid.is_some() {
            // The value kept is not what the keys decode to: the next one is encoded whole.
            tracked.touch(None);
        }
        Ok((Loaded { tracked }, invalid))
    }

    /// The value loaded and its revision.
    pub(crate) fn initial(&self) -> (Arc<T>, i64) {
        (self.tracked.good.clone(), self.tracked.revision)
    }

    /// Starts the watch as a stream.
    pub(crate) async fn watch(self, store: &Store) -> Result<Started<T>> {
        let stream = watch_after::<T>(store, self.tracked.revision).await?;
        Ok(Started {
            tracked: self.tracked,
            stream,
        })
    }

    /// The followed config without its watch, and the watch to create for it: for a consumer
    /// the watch task drives from the create on.
    pub(crate) fn into_core(self, store: Store) -> (Core<T>, crate::client::watch::WatchBuilder) {
        let watch = watch_from::<T>(&store, self.tracked.revision);
        let core = Core {
            tracked: self.tracked,
            store,
        };
        (core, watch)
    }
}

impl<T: EtcdConfig> Started<T> {
    /// Loads `T` (one Range) and starts watching at the load's revision + 1.
    pub(crate) async fn start(store: &Store) -> Result<Started<T>> {
        Loaded::load(store).await?.watch(store).await
    }

    /// The value loaded and its revision.
    pub(crate) fn initial(&self) -> (Arc<T>, i64) {
        (self.tracked.good.clone(), self.tracked.revision)
    }

    /// Turns the started watch into the follower that yields its updates.
    pub(crate) fn into_follower(self, store: Store) -> Follower<T> {
        let prefix = store.prefix_of::<T>().into();
        let core = Core {
            tracked: self.tracked,
            store,
        };
        Follower {
            prefix,
            core,
            watch: self.stream,
            ready: VecDeque::new(),
            ended: false,
            overlays: None,
        }
    }
}

/// The watch of `T`'s keys from the revision after a load at `revision`, so nothing between
/// the load and the watch is missed.
pub(crate) async fn watch_after<T: EtcdConfig>(
    store: &Store,
    revision: i64,
) -> Result<crate::client::watch::WatchStream> {
    watch_from::<T>(store, revision).buffer(8).await
}

/// The watch of `T`'s keys from the revision after a load at `revision`, to register.
fn watch_from<T: EtcdConfig>(store: &Store, revision: i64) -> crate::client::watch::WatchBuilder {
    store
        .client()
        .watch_prefix([T::PREFIX.as_bytes(), b"/"])
        .start_revision(revision + 1)
        .catch_up_limit(store.catch_up_limit_revisions())
        .confirmed()
}

/// Loads again after a compaction and restarts the watch after that load.
pub(super) async fn resync<T: EtcdConfig>(
    store: &Store,
    prefix: &str,
    tracked: &mut Tracked<T>,
) -> Result<(Option<Result<Update<T>>>, crate::client::watch::WatchStream)> {
    load_again(store, prefix, tracked, |revision| {
        watch_after::<T>(store, revision)
    })
    .await
}

/// Loads again after a compaction, without a watch (a live config that rides a shared watch
/// from the load's revision on).
pub(super) async fn reload<T: EtcdConfig>(
    store: &Store,
    prefix: &str,
    tracked: &mut Tracked<T>,
) -> Result<Option<Result<Update<T>>>> {
    let (update, ()) = load_again(store, prefix, tracked, |_| async { Ok(()) }).await?;
    Ok(update)
}

/// Loads `T` again, then does `then` with the load's revision, both again until they succeed
/// or fail for good; the keys loaded become `tracked`'s, and their value the update returned.
async fn load_again<T: EtcdConfig, W, Then>(
    store: &Store,
    prefix: &str,
    tracked: &mut Tracked<T>,
    mut then: impl FnMut(i64) -> Then,
) -> Result<(Option<Result<Update<T>>>, W)>
where
    Then: std::future::Future<Output = Result<W>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let attempt = async {
            let (revision, entries) = store.load_raw::<T>().await?;
            let after = then(revision).await?;
            Ok::<_, Error>((revision, entries, after))
        };
        match attempt.await {
            Ok((revision, mut entries, after)) => {
                entries.pack();
                tracked.keys = entries;
                tracked.revision = revision;
                let mut update = tracked.evaluate(prefix, store.keyring());
                if let Some(Ok(update)) = &mut update {
                    update.resynced = true;
                }
                return Ok((update, after));
            }
            // A refusal ends the watch; a compaction (again) or a token that expired once more
            // (a short TTL on a busy server) is retried.
            Err(err @ Error::Server { kind, .. })
                if kind != ServerErrorKind::Compacted && !kind.needs_new_token() =>
            {
                return Err(err)
            }
            Err(err) => {
                tracing::debug!(error = %err, "reloading after compaction failed; retrying");
                backoff.wait().await;
            }
        }
    }
}
