//! Typed updates: [`Store::watch`] turns the events under a struct's prefix into whole, valid
//! values, one [`Update`] per etcd revision. The engine that does it, shared with live
//! configs, is [`follower`](super::follower).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use sync_wrapper::SyncWrapper;

use super::follower::{Followed, Started};
use super::update::Update;
use super::{EtcdConfig, Store, Versioned};
use crate::error::Result;

/// A stream of [`Update`]s of one config (from [`Store::watch`]). Dropping it stops the watch.
///
/// Items are `Err` for a revision whose keys do not decode or that `validate` rejects
/// ([`Error::Decode`](crate::Error::Decode) / [`Error::Rejected`](crate::Error::Rejected), naming the revision and keys); the stream goes on,
/// and later revisions are decoded against everything etcd then holds. The stream ends with an
/// error only when it cannot go on (e.g. the user may not read the prefix).
pub struct ConfigWatch<T> {
    initial: Arc<T>,
    revision: i64,
    /// Decoding runs in the task that polls the stream: no task and no channel in between.
    updates: SyncWrapper<Updates<T>>,
}

type Updates<T> = Pin<Box<dyn Stream<Item = Result<Update<T>>> + Send>>;

impl<T> ConfigWatch<T> {
    /// The value loaded when the watch started, and its revision; updates follow from there.
    pub fn initial(&self) -> Versioned<Arc<T>> {
        Versioned {
            value: self.initial.clone(),
            revision: self.revision,
        }
    }
}

impl<T> Stream for ConfigWatch<T> {
    type Item = Result<Update<T>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.updates.get_mut().as_mut().poll_next(cx)
    }
}

impl<T> std::fmt::Debug for ConfigWatch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatch")
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Watches `T`: loads it (one Range), then streams an [`Update`] for each later revision
    /// that changes what `T` stores. See [`ConfigWatch`].
    ///
    /// - The watch starts at the load's revision + 1, so nothing in between is missed.
    /// - A txn that writes ten fields is one update. A revision that changes nothing `T` reads
    ///   (an identical value, an unknown key) gives none.
    /// - A broken connection resumes on another endpoint without missing or repeating a
    ///   revision. After a compaction, or when it would resume more than the store's
    ///   [`catch_up_limit`](Store::catch_up_limit) behind the head (10,000 revisions by
    ///   default; `i64::MAX` for none), the watch loads `T` again at the head instead and
    ///   yields one update if it differs, marked [`resynced`](Update::resynced): the
    ///   revisions in between are not replayed, and the update's `previous` is the last value
    ///   the watch gave. If the value at the head is the one the watch last gave, nothing is
    ///   yielded: what the caller holds is what etcd holds.
    ///
    /// # Errors
    ///
    /// The initial load's errors, and etcd's refusal of the watch (e.g. `PermissionDenied`).
    pub async fn watch<T: EtcdConfig>(&self) -> Result<ConfigWatch<T>> {
        let started = Started::<T>::start(self).await?;
        let (initial, revision) = started.initial();
        let follower = started.into_follower(self.clone());
        let updates = futures_util::stream::unfold(follower, |mut follower| async move {
            loop {
                let item = match follower.next().await? {
                    Followed::Updated(update) => Ok(update),
                    Followed::Rejected(err) | Followed::Ended(err) => Err(err),
                    Followed::Confirmed(_)
                    | Followed::Resynced(_)
                    | Followed::Current(_)
                    | Followed::Serving(_)
                    | Followed::Committed(_) => continue,
                };
                return Some((item, follower));
            }
        });
        Ok(ConfigWatch {
            initial,
            revision,
            updates: SyncWrapper::new(Box::pin(updates)),
        })
    }
}

#[cfg(test)]
mod tests {
    /// Services keep these handles in shared state: they must stay `Send + Sync`.
    #[test]
    fn handles_are_send_and_sync() {
        fn check<X: Send + Sync>() {}
        check::<super::ConfigWatch<String>>();
        check::<super::super::Live<String>>();
        check::<crate::client::watch::WatchStream>();
    }
}
