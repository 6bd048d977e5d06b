//! [`Store`]: load, save, compare-and-swap and delete config structs.

use std::sync::Arc;

use super::decode::{RawKeys, Source};
use super::keyring::Keyring;
use super::keys;
use super::shared_watch::SharedWatch;
use super::EtcdConfig;
use crate::client::Client;
use crate::error::{Error, Result};

/// etcd's default `--max-txn-ops`.
const DEFAULT_MAX_TXN_OPS: usize = 128;

/// Revisions behind the head a follower may resume at ([`Store::catch_up_limit`]).
const DEFAULT_CATCH_UP_LIMIT: i64 = 10_000;

/// A value and the etcd revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// The store revision of the read: every key of the value is as of this revision.
    pub revision: i64,
}

/// Loads and saves config structs through a [`Client`]. Cheap to clone.
///
/// ```no_run
/// # use etcd_config::{Client, ConnectOptions, EtcdConfig, Store};
/// #[derive(EtcdConfig, Debug)]
/// #[etcd(prefix = "/services/gateway", rename_all = "kebab-case")]
/// struct Gateway {
///     #[etcd(default = 8080)]
///     listen_port: u16,
///     upstream: String,
/// }
///
/// # async fn demo() -> etcd_config::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::default()).await?;
/// let store = Store::new(client);
/// let mut gw: Gateway = store.load().await?;
/// gw.listen_port = 9090;
/// store.save(&gw).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    /// Carries the store's namespace ([`Client::namespace`]): every request names keys
    /// relative to it, and answers come back without it.
    client: Client,
    pub(super) max_txn_ops: usize,
    keyring: Option<Arc<Keyring>>,
    /// Typed writes abort an active rollout instead of being refused.
    supersede_rollouts: bool,
    /// See [`Store::catch_up_limit`].
    catch_up_limit: i64,
    /// See [`Store::share_watch`].
    shared_watch: Option<Arc<SharedWatch>>,
}

impl Store {
    /// A store over `client`, in its namespace if it has one ([`Client::namespace`]), with
    /// etcd's default txn limit (128).
    pub fn new(client: Client) -> Self {
        Store {
            client,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            keyring: None,
            supersede_rollouts: false,
            catch_up_limit: DEFAULT_CATCH_UP_LIMIT,
            shared_watch: None,
        }
    }

    /// How many revisions behind the head a typed watch or live config may resume after a
    /// broken stream (default 10,000). Further behind, it loads the config again at the head
    /// and watches from there (one update if the value differs, and a
    /// [`LiveEvent::Resynced`](crate::LiveEvent::Resynced)) instead of making etcd replay
    /// every revision since: etcd scans its whole history for that, for all keys, holding its
    /// store lock. `i64::MAX` sets no limit: every revision is replayed, however far behind.
    #[must_use]
    pub fn catch_up_limit(mut self, revisions: i64) -> Self {
        self.catch_up_limit = revisions.max(1);
        self
    }

    pub(crate) fn catch_up_limit_revisions(&self) -> i64 {
        self.catch_up_limit
    }

    /// This store, and every store made from it ([`namespace`](Self::namespace)), with its
    /// live configs under `parent` followed through one watch of `parent` instead of a watch
    /// each: for a service that holds many configs under one prefix (a config per tenant,
    /// each in its namespace under `/tenants/`), starting each then costs its load and no
    /// watch of its own, for the client and for etcd.
    ///
    /// What it costs: every write under `parent` comes to this client, also to keys no live
    /// config reads, and the user needs read permission on all of `parent`: a grant of
    /// [`Access::Read`](crate::Access::Read) for each config is not enough (grant the
    /// parent's range with [`Auth::role_grant_permission`](crate::client::Auth::role_grant_permission)
    /// and [`KeyRange::prefix`](crate::KeyRange::prefix)). A live config watches its own prefix, as it would without
    /// this, when etcd refuses the watch of `parent`, when its prefix is not under `parent`,
    /// when it has a settle window, a cache file or a report (they run in a task of their
    /// own), and when the shared watch already delivered a revision after its load (it starts
    /// while others change). After a compaction took revisions it had not seen, or a resume
    /// more than [`catch_up_limit`](Self::catch_up_limit) revisions behind, each live config
    /// that shared the watch loads again and rides a new one from there.
    ///
    /// `parent` is a key prefix in this store's namespace, as its configs' prefixes are, and
    /// ends in `/` (one is added if it does not: `/tenants` shares `/tenants/`, not
    /// `/tenants-archive/`). The watch is created with the first live config that shares it
    /// and cancelled with the last. Each call makes a new shared watch: the stores made from
    /// one store share one.
    #[must_use]
    pub fn share_watch(&self, parent: &str) -> Store {
        Store {
            shared_watch: Some(Arc::new(SharedWatch::new(&self.client, parent))),
            ..self.clone()
        }
    }

    /// The watch this store's live configs share, if any ([`share_watch`](Self::share_watch)).
    pub(crate) fn shared_watch(&self) -> Option<&Arc<SharedWatch>> {
        self.shared_watch.as_ref()
    }

    /// This store with typed writes that supersede rollouts: a write to a config with an
    /// active rollout aborts the rollout in the same transaction (its note says so) instead of
    /// being refused with [`Error::RolloutActive`](crate::Error::RolloutActive). For the
    /// incident fix that cannot wait.
    #[must_use]
    pub fn superseding_rollouts(mut self) -> Self {
        self.supersede_rollouts = true;
        self
    }

    pub(crate) fn supersedes_rollouts(&self) -> bool {
        self.supersede_rollouts
    }

    /// A store that encrypts secret fields with `keyring` when it saves, and decrypts them
    /// when it loads, watches and follows (see [`Keyring`]). Without one, secret fields are
    /// stored as they are, and an encrypted value is a decode problem.
    #[must_use]
    pub fn with_keyring(&self, keyring: Keyring) -> Store {
        Store {
            keyring: Some(Arc::new(keyring)),
            ..self.clone()
        }
    }

    /// The key ring, if this store has one.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_deref()
    }

    /// A store whose every key is under `namespace` (appended to this store's own): with
    /// `namespace("/staging")`, `/services/gateway/x` is stored at
    /// `/staging/services/gateway/x`. A trailing `/` is dropped.
    ///
    /// This is the store over `self.client().namespace(namespace)`: the client puts the keys
    /// of every request under the namespace and takes it off the keys of every answer, so
    /// `Store::new(client.namespace("/staging"))` is the same store. Messages, auth
    /// permissions ([`Store::grant`]) and the associated data of encrypted secrets use the
    /// full key, as etcd holds it.
    #[must_use]
    pub fn namespace(&self, namespace: &str) -> Store {
        Store {
            client: self.client.namespace(namespace.trim_end_matches('/')),
            ..self.clone()
        }
    }

    /// The server's `--max-txn-ops`, if not etcd's default 128: `save` refuses a struct
    /// needing more operations before sending anything.
    #[must_use]
    pub fn max_txn_ops(&self, limit: usize) -> Store {
        Store {
            max_txn_ops: limit,
            ..self.clone()
        }
    }

    /// The client this store uses, in the store's namespace: it addresses `T`'s keys as
    /// [`range_of`](Self::range_of) names them.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Loads `T`: one Range over its prefix. See [`load_versioned`](Self::load_versioned).
    pub async fn load<T: EtcdConfig>(&self) -> Result<T> {
        Ok(self.load_versioned::<T>().await?.value)
    }

    /// Loads `T` and the revision it was read at: one Range over its prefix, so every field is
    /// from the same revision.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] listing every missing required key and every value that does not
    /// parse; [`Error::Rejected`] if `T`'s `validate` refuses the value; client errors.
    pub async fn load_versioned<T: EtcdConfig>(&self) -> Result<Versioned<T>> {
        let (revision, entries) = self.load_raw::<T>().await?;
        let value =
            decode_entries::<T>(&self.prefix_of::<T>(), self.keyring(), revision, &entries)?;
        Ok(Versioned { value, revision })
    }

    /// One Range over `T`'s prefix: the revision and the keys under it.
    pub(crate) async fn load_raw<T: EtcdConfig>(&self) -> Result<(i64, RawKeys)> {
        let response = self.client.kv().get_together(self.range_of::<T>()).await?;
        let revision = response.header.map_or(0, |header| header.revision);
        Ok((revision, RawKeys::from_answer::<T>(response.pairs)))
    }

    /// Saves `value` in one Txn: a put for every stored field and a delete for every `None`
    /// field and removed `each` entry; returns the revision of the write.
    ///
    /// For a struct without `each` maps this is the only round trip. With `each` maps, the
    /// entries to delete are found with a keys-only Range first, and the Txn only applies if no
    /// key under the prefix changed since that read (otherwise the read and Txn are retried).
    /// Either way the result is exactly `value`, never half of it. Keys under the prefix that no
    /// field owns are left alone.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] if `validate` refuses the value and [`Error::TxnTooLarge`] if the
    /// Txn would exceed the txn limit, both before anything is written; [`Error::Conflict`] if
    /// other writers kept changing the prefix through every attempt.
    pub async fn save<T: EtcdConfig>(&self, value: &T) -> Result<i64> {
        self.write(value, None).await
    }

    /// Saves `value` only if no key under `T`'s prefix was created, modified or deleted after
    /// `revision` (typically [`Versioned::revision`] from a load). One Txn; on a conflict
    /// nothing is written.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] with the current revision if anything changed; as
    /// [`save`](Self::save) otherwise. A `revision` older than the last compaction cannot be
    /// checked and gives the server's `Compacted` error.
    pub async fn save_if_unchanged<T: EtcdConfig>(&self, value: &T, revision: i64) -> Result<i64> {
        self.write(value, Some(revision)).await
    }

    /// Deletes every key `T` owns: one DeleteRange over its prefix. Returns the revision.
    pub async fn delete<T: EtcdConfig>(&self) -> Result<i64> {
        let response = self.client.kv().delete(self.range_of::<T>()).await?;
        Ok(response.header.revision)
    }
}

/// Decodes `T` from the keys and values of one Range over its prefix, outside any namespace
/// (keys not under `T::PREFIX/` are ignored).
pub(crate) fn decode_kvs<T: EtcdConfig>(
    revision: i64,
    kvs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Result<T> {
    decode_entries(
        &keys::fields::<T>(),
        None,
        revision,
        &RawKeys::from_kvs::<T>(kvs),
    )
}

/// Decodes and validates `T` from the keys under its prefix, decrypting secret fields with
/// `keyring`.
pub(crate) fn decode_entries<T: EtcdConfig>(
    prefix: &str,
    keyring: Option<&Keyring>,
    revision: i64,
    keys: &RawKeys,
) -> Result<T> {
    let value = Source::new(prefix, keys, keyring)
        .decode::<T>()
        .map_err(|problems| Error::Decode {
            prefix: prefix.to_owned(),
            revision,
            problems,
        })?;
    value.validate().map_err(|reason| Error::Rejected {
        prefix: prefix.to_owned(),
        revision: Some(revision),
        reason,
    })?;
    Ok(value)
}
