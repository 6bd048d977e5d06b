//! [`Core`]: a followed config and the work of one watch answer, apart from the watch, so
//! that a stream ([`Follower`](super::Follower)) and a sink the watch task calls
//! (`live/driven.rs`) share it.

use super::started::{reload, resync};
use super::{apply, Followed, Tracked};
use crate::client::watch::WatchResponse;
use crate::config::{EtcdConfig, Store, UnknownKey};
use crate::error::{Error, Result, ServerErrorKind};

/// A followed config and the work of one watch answer, without the watch: a [`Follower`]
/// polls its stream for answers, a live config's sink is handed them by the watch task.
///
/// Its prefix is its owner's to keep (a live config's handles hold it already): a live
/// config's follower is one of thousands.
pub(crate) struct Core<T> {
    pub(super) tracked: Tracked<T>,
    pub(super) store: Store,
}

/// What a watch answer leaves its consumer to do.
pub(crate) enum After {
    /// Wait for the next answer.
    Next,
    /// The revisions after the last one seen are gone: load again ([`Core::resync`]).
    Resync,
    /// The watch cannot go on.
    End(Error),
}

impl<T: EtcdConfig> Core<T> {
    /// Applies one watch answer (events revision by revision, or a progress notification)
    /// to the config under `prefix`; what comes of it goes to `out`.
    pub(crate) fn answer(
        &mut self,
        prefix: &str,
        answer: Result<WatchResponse>,
        out: &mut impl Extend<Followed<T>>,
    ) -> After {
        match answer {
            Ok(response) if response.events.is_empty() => {
                let revision = response.header.revision.max(self.tracked.revision);
                out.extend([Followed::Confirmed(revision)]);
                After::Next
            }
            Ok(response) => {
                let keyring = self.store.keyring();
                out.extend(apply(prefix, keyring, &mut self.tracked, response));
                After::Next
            }
            // Compacted, or too far behind to resume (the catch-up limit): load again at the
            // head and watch from there.
            Err(err) if err.server_kind() == Some(ServerErrorKind::Compacted) => After::Resync,
            Err(Error::FellBehind { .. }) => After::Resync,
            Err(err) => After::End(err),
        }
    }

    /// Loads again after [`After::Resync`] and watches from there: `Resynced`, then the new
    /// value or `Current`, go to `out`.
    pub(crate) async fn resync(
        &mut self,
        prefix: &str,
        out: &mut impl Extend<Followed<T>>,
    ) -> Result<crate::client::watch::WatchStream> {
        let (update, next) = resync(&self.store, prefix, &mut self.tracked).await?;
        let revision = self.tracked.revision;
        out.extend([
            Followed::Resynced(revision),
            update.map_or(Followed::Current(revision), Followed::from),
        ]);
        Ok(next)
    }

    /// Like [`resync`](Self::resync), without the watch: the caller rides a shared watch
    /// from the returned revision on, or starts one.
    pub(crate) async fn reload(
        &mut self,
        prefix: &str,
        out: &mut impl Extend<Followed<T>>,
    ) -> Result<i64> {
        let update = reload(&self.store, prefix, &mut self.tracked).await?;
        let revision = self.tracked.revision;
        out.extend([
            Followed::Resynced(revision),
            update.map_or(Followed::Current(revision), Followed::from),
        ]);
        Ok(revision)
    }

    /// The store the config is followed in.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The namespace of the store's client, which the watch's events come under.
    pub(crate) fn namespace(&self) -> &[u8] {
        self.store.client().namespace_prefix()
    }

    /// The keys under the prefix that no field reads, as of the last valid revision.
    pub(crate) fn unknown_keys(&self) -> &[UnknownKey] {
        &self.tracked.unknown
    }
}
