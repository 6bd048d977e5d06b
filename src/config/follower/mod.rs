//! The engine under typed watches and live configs: a config loaded, then followed through its
//! watch events revision by revision (a txn's events together), each revision decoded against
//! everything etcd then holds and compared with the last good value; a compaction reloads.
//! [`Store::watch`](super::Store::watch) and `live/` both drive a [`Follower`].

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::watch;

mod bench;
mod core;
mod overlay;
mod pending;
mod started;
mod stored;

pub(crate) use self::core::{After, Core};
pub use bench::FollowBench;
pub(crate) use overlay::Overlay;
pub(crate) use started::{watch_after, Loaded, Started};

pub(crate) use stored::Stored;

use pending::Pending;

use super::decode::RawKeys;
use super::keyring::Keyring;
use super::keys;
use super::paths::unknown_keys;
use super::store::decode_entries;
use super::update::{UnknownKey, Update};
use super::EtcdConfig;
use crate::client::watch::{Event, EventKind, WatchResponse};
use crate::error::{Error, Result};

/// What the watch knows: every key under the prefix as etcd holds it, and the last good value.
struct Tracked<T> {
    /// The keys under the prefix: what the decoder reads, kept up to date in place so a
    /// revision costs no copy of the whole config.
    keys: RawKeys,
    /// The revision `keys` is at.
    revision: i64,
    good: Arc<T>,
    /// `good` as stored, `key -> (field, value)`, to diff the next value against. Made when
    /// first needed: a config etcd holds no key of (all defaults) has nothing to check for
    /// unknown keys, and thousands of live configs may never see a change.
    good_stored: Option<Stored>,
    /// What changed since `good_stored` was made (`None`: nothing).
    pending: Option<Box<Pending>>,
    /// Keys under the prefix that no field reads, as of the last valid revision.
    unknown: Box<[UnknownKey]>,
    /// Boxed: only a live config that reports to rollouts ever has one.
    rollout: Option<Box<overlay::Rollout>>,
}

impl<T: EtcdConfig> Tracked<T> {
    fn new(mut keys: RawKeys, revision: i64, good: Arc<T>) -> Self {
        // Kept for as long as the config is followed: a few keys go in one allocation.
        keys.pack();
        let (good_stored, unknown) = if keys.is_empty() {
            (None, Vec::new())
        } else {
            let good_stored = stored(&*good);
            let unknown = unknown_in::<T>(&keys, &good_stored, revision);
            (Some(good_stored), unknown)
        };
        Tracked {
            keys,
            revision,
            good,
            good_stored,
            pending: None,
            unknown: unknown.into(),
            rollout: None,
        }
    }

    /// Decodes the keys as they are now; `None` if nothing the struct stores changed.
    fn evaluate(&mut self, prefix: &str, keyring: Option<&Keyring>) -> Option<Result<Update<T>>> {
        let keys = std::mem::take(&mut self.keys);
        let result = self.evaluate_at(prefix, keyring, self.revision, &keys, None);
        self.keys = keys;
        result
    }

    /// Decodes `keys`, as etcd holds them at `revision`, against the last good value;
    /// `touched` are the keys changed since the revision before (`None`: not known).
    fn evaluate_at(
        &mut self,
        prefix: &str,
        keyring: Option<&Keyring>,
        revision: i64,
        keys: &RawKeys,
        touched: Option<&[String]>,
    ) -> Option<Result<Update<T>>> {
        self.touch(touched);
        self.revision = revision;
        // A committed rollout's keys are in: the candidate is the value, without an overlay.
        if self.commits_at(revision) {
            self.set_overlay(None);
        }
        let overlaid = self.overlay().map(|overlay| overlay.over(keys));
        let keys = overlaid.as_ref().unwrap_or(keys);
        let value = match decode_entries::<T>(prefix, keyring, revision, keys) {
            Ok(value) => value,
            Err(err) => return Some(Err(err)),
        };
        let serving = self.overlay().map(|o| o.rollout.clone());
        self.set_serving(serving);
        let new_stored = self.stored_next(&value);
        self.unknown = unknown_in::<T>(keys, &new_stored, revision).into();
        let good_stored = self.good_stored.as_ref()?;
        let changed = changed_fields(good_stored, &new_stored);
        if changed.is_empty() {
            return None;
        }
        self.good_stored = Some(new_stored);
        let config = Arc::new(value);
        let previous = std::mem::replace(&mut self.good, config.clone());
        Some(Ok(Update {
            revision: self.revision,
            config,
            previous,
            changed,
            resynced: false,
        }))
    }
}

/// The keys of `keys` that no field stores (`stored` being the value they decode to), with a
/// warning for each: a typo in a hand edit is not silent. The schema and near misses are
/// looked up only when there are such keys.
fn unknown_in<T: EtcdConfig>(keys: &RawKeys, stored: &Stored, revision: i64) -> Vec<UnknownKey> {
    if stored.holds_all(keys.keys()) {
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

/// A value as it is stored (see [`Stored`]).
pub(crate) fn stored<T: EtcdConfig>(value: &T) -> Stored {
    Stored::of(value)
}

/// The field paths whose stored form differs between two values.
pub(crate) fn changed_fields(old: &Stored, new: &Stored) -> Vec<String> {
    old.changed_fields(new)
}

/// Applies a config's watch events revision by revision; [`next`](Self::next) yields what
/// comes of each.
pub(crate) struct Follower<T> {
    prefix: Arc<str>,
    core: Core<T>,
    watch: crate::client::watch::WatchStream,
    /// Results of a response not handed out yet (a response may hold several revisions).
    ready: VecDeque<Followed<T>>,
    ended: bool,
    /// The candidates this instance serves as a rollout member (live configs that report).
    overlays: Option<Box<watch::Receiver<Option<Arc<Overlay>>>>>,
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
    /// The value now includes this rollout's candidate (`Some`), or no candidate (`None`).
    Serving(Option<String>),
    /// The rollout candidate this instance served committed at this revision and the value
    /// stays: it is etcd's own from this revision on.
    Committed(i64),
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
    /// Follows the candidates a rollout participant sends (see `live/rollout.rs`).
    pub(crate) fn with_overlays(mut self, overlays: watch::Receiver<Option<Arc<Overlay>>>) -> Self {
        self.overlays = Some(Box::new(overlays));
        self
    }

    /// A candidate came or went: the value is evaluated again with it.
    fn overlay_changed(&mut self) {
        let Some(overlays) = &mut self.overlays else {
            return;
        };
        let overlay = overlays.borrow_and_update().clone();
        let core = &mut self.core;
        if overlay.as_ref() == core.tracked.overlay() {
            return;
        }
        // Committed at a revision not applied yet: keep serving the candidate until the
        // commit's own revision arrives on the field watch (see `evaluate_at`).
        if let Some(at) = overlay.as_ref().and_then(|o| o.committed_at) {
            if core.tracked.revision < at && core.tracked.overlay().is_some() {
                core.tracked.set_overlay(overlay);
                return;
            }
        }
        let before = core.tracked.serving().cloned();
        let committed = overlay.as_ref().and_then(|o| o.committed_at);
        core.tracked.set_overlay(overlay);
        let keyring = core.store.keyring();
        match core.tracked.evaluate(&self.prefix, keyring) {
            Some(Ok(update)) => self.ready.push_back(Followed::Updated(update)),
            Some(Err(err)) => {
                // This member cannot serve the candidate: it keeps what it served.
                core.tracked.set_overlay(None);
                self.ready.push_back(Followed::Rejected(err));
            }
            // The commit's revision came before the word that it was the commit's.
            None => {
                if let Some(at) = committed.filter(|_| before.is_some()) {
                    self.ready.push_back(Followed::Committed(at));
                }
            }
        }
        if core.tracked.overlay().is_none() {
            core.tracked.set_serving(None);
        }
        if core.tracked.serving() != before.as_ref() {
            self.ready
                .push_back(Followed::Serving(core.tracked.serving().cloned()));
        }
    }

    /// The keys under the prefix that no field reads, as of the last valid revision.
    pub(crate) fn unknown_keys(&self) -> &[UnknownKey] {
        self.core.unknown_keys()
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
            let answer = match &mut self.overlays {
                None => self.watch.next().await?,
                Some(overlays) => tokio::select! {
                    answer = self.watch.next() => answer?,
                    changed = overlays.changed() => {
                        match changed {
                            Ok(()) => self.overlay_changed(),
                            Err(_) => self.overlays = None,
                        }
                        continue;
                    }
                },
            };
            // The answer is taken apart before any other await: what a match holds across an
            // await stays in every follower's state (thousands of live configs may wait here).
            match self.core.answer(&self.prefix, answer, &mut self.ready) {
                After::Next => {}
                After::Resync => {
                    // The revisions we missed are gone: start over from a fresh load. Boxed:
                    // rare, and it would otherwise make every follower's state larger.
                    match Box::pin(self.core.resync(&self.prefix, &mut self.ready)).await {
                        Ok(next) => self.watch = next,
                        Err(err) => {
                            self.ended = true;
                            return Some(Followed::Ended(err));
                        }
                    }
                }
                After::End(err) => {
                    self.ended = true;
                    return Some(Followed::Ended(err));
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
    let _ = replay::<T>(&mut keys, response.events, |revision, keys, touched| {
        let serving = tracked.serving().cloned();
        let committing = tracked.commits_at(revision);
        results.push(
            match tracked.evaluate_at(prefix, keyring, revision, keys, Some(touched)) {
                Some(result) => Followed::from(result),
                None if committing => Followed::Committed(revision),
                None => Followed::Current(revision),
            },
        );
        if tracked.serving() != serving.as_ref() {
            results.push(Followed::Serving(tracked.serving().cloned()));
        }
        ControlFlow::Continue(())
    });
    tracked.keys = keys;
    results
}

/// Applies watch events under `prefix` to `keys` one revision at a time (a txn's events
/// together), calling `after` once each revision is in, with the (UTF-8) keys it touched,
/// relative to the prefix; stops where `after` says so.
pub(super) fn replay<T: EtcdConfig>(
    keys: &mut RawKeys,
    events: Vec<Event>,
    mut after: impl FnMut(i64, &mut RawKeys, &[String]) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut events = events.into_iter().peekable();
    let mut touched = Vec::new();
    while let Some(first) = events.next() {
        let revision = first.kv.mod_revision;
        let batch = std::iter::once(first).chain(std::iter::from_fn(|| {
            events.next_if(|e| e.kv.mod_revision == revision)
        }));
        touched.clear();
        for event in batch {
            let mut key = event.kv.key;
            let Some(relative) = keys::relative::<T>(&key) else {
                continue;
            };
            let skip = key.len() - relative.len();
            match event.kind {
                EventKind::Put => keys.put(relative, event.kv.value),
                EventKind::Delete => keys.delete(relative),
            }
            // The event's own key, its prefix cut off, names what it touched.
            key.drain(..skip);
            if let Ok(key) = String::from_utf8(key) {
                touched.push(key);
            }
        }
        after(revision, keys, &touched)?;
    }
    ControlFlow::Continue(())
}
