//! The engine under typed watches and live configs: a config loaded, then followed through its
//! watch events revision by revision (a txn's events together), each revision decoded against
//! everything etcd then holds and compared with the last good value; a compaction reloads.
//! [`Store::watch`](super::Store::watch) and `live/` both drive a [`Follower`].

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::decode::RawKeys;
use super::encode::Encoded;
use super::keyring::Keyring;
use super::keys;
use super::paths::unknown_keys;
use super::store::decode_entries;
use super::update::{UnknownKey, Update};
use super::{EtcdConfig, Store};
use crate::backoff::Backoff;
use crate::client::watch::{Event, EventKind, WatchResponse};
use crate::error::{Error, Result, ServerErrorKind};

/// What the watch knows: every key under the prefix as etcd holds it, and the last good value.
struct Tracked<T> {
    /// The keys under the prefix: what the decoder reads, kept up to date in place so a
    /// revision costs no copy of the whole config.
    keys: RawKeys,
    /// The revision `keys` is at.
    revision: i64,
    good: Arc<T>,
    /// `good` as stored, `key -> (field, value)`, to diff the next value against.
    good_stored: BTreeMap<String, (String, Option<String>)>,
    /// Keys under the prefix that no field reads, as of the last valid revision.
    unknown: Vec<UnknownKey>,
}

impl<T: EtcdConfig> Tracked<T> {
    fn new(keys: RawKeys, revision: i64, good: Arc<T>) -> Self {
        let good_stored = stored(&*good);
        let unknown = unknown_in::<T>(&keys, &good_stored, revision);
        Tracked {
            keys,
            revision,
            good,
            good_stored,
            unknown,
        }
    }

    /// Decodes the keys as they are now; `None` if nothing the struct stores changed.
    fn evaluate(&mut self, prefix: &str, keyring: Option<&Keyring>) -> Option<Result<Update<T>>> {
        let keys = std::mem::take(&mut self.keys);
        let result = self.evaluate_at(prefix, keyring, self.revision, &keys);
        self.keys = keys;
        result
    }

    /// Decodes `keys`, as etcd holds them at `revision`, against the last good value.
    fn evaluate_at(
        &mut self,
        prefix: &str,
        keyring: Option<&Keyring>,
        revision: i64,
        keys: &RawKeys,
    ) -> Option<Result<Update<T>>> {
        self.revision = revision;
        let value = match decode_entries::<T>(prefix, keyring, revision, keys) {
            Ok(value) => value,
            Err(err) => return Some(Err(err)),
        };
        let new_stored = stored(&value);
        self.unknown = unknown_in::<T>(keys, &new_stored, revision);
        let changed = changed_fields(&self.good_stored, &new_stored);
        if changed.is_empty() {
            return None;
        }
        self.good_stored = new_stored;
        let config = Arc::new(value);
        let previous = std::mem::replace(&mut self.good, config.clone());
        Some(Ok(Update {
            revision: self.revision,
            config,
            previous,
            changed,
        }))
    }
}

/// The keys of `keys` that no field stores (`stored` being the value they decode to), with a
/// warning for each: a typo in a hand edit is not silent. The schema and near misses are
/// looked up only when there are such keys.
fn unknown_in<T: EtcdConfig>(
    keys: &RawKeys,
    stored: &BTreeMap<String, (String, Option<String>)>,
    revision: i64,
) -> Vec<UnknownKey> {
    if keys.keys().all(|key| stored.contains_key(key)) {
        return Vec::new();
    }
    let unknown: Vec<UnknownKey> = unknown_keys(&T::schema(), keys.keys())
        .into_iter()
        .map(|(key, did_you_mean)| UnknownKey {
            key: format!("{}{key}", keys::fields::<T>()),
            did_you_mean,
        })
        .collect();
    for key in &unknown {
        tracing::warn!(prefix = T::PREFIX, revision, key = %key.key,
            did_you_mean = ?key.did_you_mean, "no field reads this key");
    }
    unknown
}

/// A value as it is stored: `key -> (field path, value)`.
pub(super) fn stored<T: EtcdConfig>(value: &T) -> BTreeMap<String, (String, Option<String>)> {
    Encoded::of(value)
        .entries
        .into_iter()
        .map(|e| (e.key, (e.field, e.value)))
        .collect()
}

/// The field paths whose stored form differs between two values.
pub(super) fn changed_fields(
    old: &BTreeMap<String, (String, Option<String>)>,
    new: &BTreeMap<String, (String, Option<String>)>,
) -> Vec<String> {
    let mut changed: Vec<String> = Vec::new();
    for (key, (field, value)) in new {
        if old.get(key).map(|(_, v)| v) != Some(value) {
            changed.push(field.clone());
        }
    }
    for (key, (field, _)) in old {
        if !new.contains_key(key) {
            changed.push(field.clone());
        }
    }
    changed.sort();
    changed.dedup();
    changed
}

/// A config loaded and a watch started right after the load's revision.
pub(crate) struct Started<T> {
    tracked: Tracked<T>,
    stream: crate::client::watch::WatchStream,
}

impl<T: EtcdConfig> Started<T> {
    /// Loads `T` (one Range) and starts watching at the load's revision + 1.
    pub(crate) async fn start(store: &Store) -> Result<Started<T>> {
        let prefix = store.prefix_of::<T>();
        let (revision, entries) = store.load_raw::<T>().await?;
        let good = Arc::new(decode_entries::<T>(
            &prefix,
            store.keyring(),
            revision,
            &entries,
        )?);
        Started::after(store, entries, revision, good).await
    }

    /// Starts watching right after the load of `entries` at `revision`, `good` being the
    /// last good value.
    async fn after(store: &Store, entries: RawKeys, revision: i64, good: Arc<T>) -> Result<Self> {
        let stream = watch_after::<T>(store, revision).await?;
        let tracked = Tracked::new(entries, revision, good);
        Ok(Started { tracked, stream })
    }

    /// Like [`start`](Self::start), but when the value etcd holds is invalid, starts
    /// following anyway with `fallback` as the last good value (later revisions are decoded
    /// against everything etcd then holds). Returns the invalid value's error too, if it was.
    pub(crate) async fn start_with_fallback(
        store: &Store,
        fallback: Arc<T>,
    ) -> Result<(Started<T>, Option<Error>)> {
        let prefix = store.prefix_of::<T>();
        let (revision, entries) = store.load_raw::<T>().await?;
        let (good, invalid) =
            match decode_entries::<T>(&prefix, store.keyring(), revision, &entries) {
                Ok(value) => (Arc::new(value), None),
                Err(err @ (Error::Decode { .. } | Error::Rejected { .. })) => (fallback, Some(err)),
                Err(err) => return Err(err),
            };
        Ok((
            Started::after(store, entries, revision, good).await?,
            invalid,
        ))
    }

    /// The value loaded and its revision.
    pub(crate) fn initial(&self) -> (Arc<T>, i64) {
        (self.tracked.good.clone(), self.tracked.revision)
    }

    /// Turns the started watch into the follower that yields its updates.
    pub(crate) fn into_follower(self, store: Store) -> Follower<T> {
        Follower {
            prefix: store.prefix_of::<T>(),
            tracked: self.tracked,
            watch: self.stream,
            store,
            ready: VecDeque::new(),
            ended: false,
        }
    }
}

/// Applies a config's watch events revision by revision; [`next`](Self::next) yields what
/// comes of each.
pub(crate) struct Follower<T> {
    prefix: String,
    tracked: Tracked<T>,
    watch: crate::client::watch::WatchStream,
    store: Store,
    /// Results of a response not handed out yet (a response may hold several revisions).
    ready: VecDeque<Followed<T>>,
    ended: bool,
}

/// What following a config's watch produced.
pub(crate) enum Followed<T> {
    /// A revision gave a new valid value.
    Updated(Update<T>),
    /// A revision does not decode or `validate` refuses it ([`Error::Decode`] or
    /// [`Error::Rejected`]); the last good value stands.
    Rejected(Error),
    /// etcd confirmed (a progress notification) that nothing under the prefix changed up to
    /// this store revision.
    Confirmed(i64),
    /// The revisions after the last one seen were compacted: the config was loaded again at
    /// this revision (an `Updated` follows if the value differs).
    Resynced(i64),
    /// A revision touched the prefix but the value stays the same (an identical value put
    /// again, a key no field reads, a bad value restored): the value is the config as etcd
    /// holds it at this revision.
    Current(i64),
    /// The watch cannot go on; nothing follows.
    Ended(Error),
}

impl<T> From<Result<Update<T>>> for Followed<T> {
    fn from(result: Result<Update<T>>) -> Self {
        match result {
            Ok(update) => Followed::Updated(update),
            Err(err) => Followed::Rejected(err),
        }
    }
}

impl<T: EtcdConfig> Follower<T> {
    /// The keys under the prefix that no field reads, as of the last valid revision.
    pub(crate) fn unknown_keys(&self) -> &[UnknownKey] {
        &self.tracked.unknown
    }

    /// What the next response brought; `None` once the watch cannot go on (after
    /// [`Followed::Ended`] saying why).
    pub(crate) async fn next(&mut self) -> Option<Followed<T>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            // The answer is taken apart before any other await: what a match holds across an
            // await stays in every follower's state (thousands of live configs may wait here).
            let compacted = match self.watch.next().await? {
                Ok(response) if response.events.is_empty() => {
                    let revision = response.header.revision.max(self.tracked.revision);
                    self.ready.push_back(Followed::Confirmed(revision));
                    false
                }
                Ok(response) => {
                    let keyring = self.store.keyring();
                    let results = apply(&self.prefix, keyring, &mut self.tracked, response);
                    self.ready.extend(results);
                    false
                }
                Err(err) if err.server_kind() == Some(ServerErrorKind::Compacted) => true,
                Err(err) => {
                    self.ended = true;
                    return Some(Followed::Ended(err));
                }
            };
            if compacted {
                // The revisions we missed are gone: start over from a fresh load. Boxed: rare,
                // and it would otherwise make every follower's state larger.
                let reloaded = Box::pin(resync(&self.store, &self.prefix, &mut self.tracked));
                match reloaded.await {
                    Ok((update, next)) => {
                        self.watch = next;
                        let revision = self.tracked.revision;
                        self.ready.push_back(Followed::Resynced(revision));
                        self.ready
                            .push_back(update.map_or(Followed::Current(revision), Followed::from));
                    }
                    Err(err) => {
                        self.ended = true;
                        return Some(Followed::Ended(err));
                    }
                }
            }
        }
    }
}

/// Groups a response's events by revision and evaluates each revision once.
fn apply<T: EtcdConfig>(
    prefix: &str,
    keyring: Option<&Keyring>,
    tracked: &mut Tracked<T>,
    response: WatchResponse,
) -> Vec<Followed<T>> {
    let mut results = Vec::new();
    let mut keys = std::mem::take(&mut tracked.keys);
    let _ = replay::<T>(&mut keys, response.events, |revision, keys| {
        results.push(match tracked.evaluate_at(prefix, keyring, revision, keys) {
            Some(result) => Followed::from(result),
            None => Followed::Current(revision),
        });
        ControlFlow::Continue(())
    });
    tracked.keys = keys;
    results
}

/// Applies watch events under `prefix` to `keys` one revision at a time (a txn's events
/// together), calling `after` once each revision is in; stops where `after` says so.
pub(super) fn replay<T: EtcdConfig>(
    keys: &mut RawKeys,
    events: Vec<Event>,
    mut after: impl FnMut(i64, &mut RawKeys) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut events = events.into_iter().peekable();
    while let Some(first) = events.next() {
        let revision = first.kv.mod_revision;
        let batch = std::iter::once(first).chain(std::iter::from_fn(|| {
            events.next_if(|e| e.kv.mod_revision == revision)
        }));
        for event in batch {
            let Some(relative) = keys::relative::<T>(&event.kv.key) else {
                continue;
            };
            match event.kind {
                EventKind::Put => keys.put(relative, event.kv.value),
                EventKind::Delete => keys.delete(relative),
            }
        }
        after(revision, keys)?;
    }
    ControlFlow::Continue(())
}

/// The watch of `T`'s keys from the revision after a load at `revision`, so nothing between
/// the load and the watch is missed.
async fn watch_after<T: EtcdConfig>(
    store: &Store,
    revision: i64,
) -> Result<crate::client::watch::WatchStream> {
    store
        .client()
        .watch(store.range_of::<T>())
        .start_revision(revision + 1)
        .buffer(8)
        .await
}

/// Loads again after a compaction and restarts the watch after that load.
async fn resync<T: EtcdConfig>(
    store: &Store,
    prefix: &str,
    tracked: &mut Tracked<T>,
) -> Result<(Option<Result<Update<T>>>, crate::client::watch::WatchStream)> {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let attempt = async {
            let (revision, entries) = store.load_raw::<T>().await?;
            let watch = watch_after::<T>(store, revision).await?;
            Ok::<_, Error>((revision, entries, watch))
        };
        match attempt.await {
            Ok((revision, entries, watch)) => {
                tracked.keys = entries;
                tracked.revision = revision;
                return Ok((tracked.evaluate(prefix, store.keyring()), watch));
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
