//! [`Store`]: load, save, compare-and-swap and delete config structs.

use std::sync::Arc;

use super::change_set::defaults_of;
use super::decode::{RawKeys, Source};
use super::encode::Encoded;
use super::keyring::Keyring;
use super::keys;
use super::EtcdConfig;
use crate::client::Client;
use crate::client::KeyValue;
use crate::client::{Compare, CompareOp, Txn, TxnOp};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

/// etcd's default `--max-txn-ops`.
const DEFAULT_MAX_TXN_OPS: usize = 128;

/// How many times `save` re-reads and retries when another writer slips in between its read of
/// the existing keys and its transaction.
const SAVE_ATTEMPTS: usize = 5;

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
    max_txn_ops: usize,
    keyring: Option<Arc<Keyring>>,
}

impl Store {
    /// A store over `client`, in its namespace if it has one ([`Client::namespace`]), with
    /// etcd's default txn limit (128).
    pub fn new(client: Client) -> Self {
        Store {
            client,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            keyring: None,
        }
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
    pub fn with_max_txn_ops(&self, limit: usize) -> Store {
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
        let response = self.client.kv().get(self.range_of::<T>()).await?;
        let kvs = response.kvs.into_iter().map(|kv| (kv.key, kv.value));
        Ok((response.header.revision, RawKeys::from_kvs::<T>(kvs)))
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
        self.write(value, None, &[]).await
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
        self.write(value, Some(revision), &[]).await
    }

    /// Deletes every key `T` owns: one DeleteRange over its prefix. Returns the revision.
    pub async fn delete<T: EtcdConfig>(&self) -> Result<i64> {
        let response = self.client.kv().delete(self.range_of::<T>()).await?;
        Ok(response.header.revision)
    }

    /// Saves `value` (only if unchanged since `expected`, when given), with `extra` operations
    /// in the same Txn (a change note); returns the revision.
    pub(super) async fn write<T: EtcdConfig>(
        &self,
        value: &T,
        expected: Option<i64>,
        extra: &[TxnOp],
    ) -> Result<i64> {
        let prefix = self.prefix_of::<T>();
        let encoded = self.encode_checked(value)?;
        // Keys as the client addresses them; the full key (namespace included) is what a
        // secret's ciphertext is bound to.
        let local = keys::fields::<T>();
        let defaults = defaults_of::<T>();
        let mut puts = Vec::new();
        // Fields at their default: put only where a key exists (defaults stay in code).
        let mut if_present = Vec::new();
        for entry in &encoded.entries {
            let Some(value) = &entry.value else { continue };
            let at_default = defaults.get(&entry.key) == Some(value);
            let value = match (&self.keyring, entry.secret) {
                (Some(keyring), true) => keyring.seal(&format!("{prefix}{}", entry.key), value)?,
                _ => value.clone(),
            };
            let list = if at_default {
                &mut if_present
            } else {
                &mut puts
            };
            list.push((format!("{local}{}", entry.key), value));
        }
        self.check_size(&prefix, puts.len() + if_present.len())?;
        self.check_bytes(&prefix, &puts)?;
        let range = self.range_of::<T>();

        if expected.is_none() && encoded.maps.is_empty() {
            // Nothing to discover: the keys of `None` fields are deleted whether or not they
            // exist, so the save is a single Txn with no read before it.
            let absent: Vec<String> = encoded
                .entries
                .iter()
                .filter(|e| e.value.is_none())
                .map(|e| format!("{local}{}", e.key))
                .collect();
            self.check_size(
                &prefix,
                puts.len() + if_present.len() + absent.len() + extra.len(),
            )?;
            // One nested txn per defaulted field: it puts only where the key exists, so the
            // save stays one round trip.
            let kept = if_present.iter().map(|(key, value)| {
                TxnOp::txn(
                    Txn::new()
                        .when([Compare::version(key.as_str(), CompareOp::Greater, 0)])
                        .and_then([TxnOp::put(key.as_str(), value.as_str())]),
                )
            });
            let ops = puts
                .iter()
                .map(|(key, value)| TxnOp::put(key.as_str(), value.as_str()))
                .chain(kept)
                .chain(absent.iter().map(|key| TxnOp::delete(key.as_str())))
                .chain(extra.iter().cloned());
            let response = self.client.kv().txn().and_then(ops).await?;
            return Ok(response.header.revision);
        }

        let attempts = if expected.is_some() { 1 } else { SAVE_ATTEMPTS };
        let mut current = 0;
        for _ in 0..attempts {
            // Which keys exist (now, or at the expected revision)?
            let mut read = self.client.kv().get(range.clone()).keys_only();
            if let Some(revision) = expected {
                read = read.revision(revision);
            }
            let existing = read.await?;
            let deletes = removed_keys(&local, &encoded.entries, &encoded.maps, &existing.kvs);
            let present: std::collections::HashSet<&[u8]> =
                existing.kvs.iter().map(|kv| kv.key.as_slice()).collect();
            let kept = if_present
                .iter()
                .filter(|(key, _)| present.contains(key.as_bytes()));
            let puts: Vec<&(String, String)> = puts.iter().chain(kept).collect();
            self.check_size(&prefix, puts.len() + deletes.len() + extra.len())?;

            let since = expected.unwrap_or(existing.header.revision);
            let mut compares = vec![Compare::mod_revision(
                range.clone(),
                CompareOp::Less,
                since + 1,
            )];
            if expected.is_some() {
                // A key deleted since `since` leaves no mod revision to compare: check that
                // every key that existed then still exists with the same create revision.
                compares.extend(existing.kvs.iter().map(|kv| {
                    Compare::create_revision(
                        KeyRange::key(kv.key.clone()),
                        CompareOp::Equal,
                        kv.create_revision,
                    )
                }));
                self.check_size(&prefix, compares.len())?;
            }
            let ops = puts
                .iter()
                .map(|(key, value)| TxnOp::put(key.as_str(), value.as_str()))
                .chain(
                    deletes
                        .into_iter()
                        .map(|key| TxnOp::delete(KeyRange::key(key))),
                )
                .chain(extra.iter().cloned());
            let response = self.client.kv().txn().when(compares).and_then(ops).await?;
            if response.succeeded {
                return Ok(response.header.revision);
            }
            current = response.header.revision;
        }
        Err(Error::Conflict {
            prefix,
            expected: expected.unwrap_or(0),
            current,
        })
    }

    /// Validates `value` and encodes it, refusing a value that cannot be stored (with the
    /// field and key) or that a nested struct's `validate` refuses; nothing is sent.
    pub(super) fn encode_checked<T: EtcdConfig>(&self, value: &T) -> Result<Encoded> {
        let prefix = self.prefix_of::<T>();
        value.validate().map_err(|reason| Error::Rejected {
            prefix: prefix.clone(),
            revision: None,
            reason,
        })?;
        let mut encoded = Encoded::of(value);
        if let Some((field, key, reason)) = std::mem::take(&mut encoded.errors).into_iter().next() {
            return Err(Error::Encode {
                key: format!("{prefix}{key}"),
                field,
                reason,
            });
        }
        if let Some((field, reason)) = std::mem::take(&mut encoded.rejected).into_iter().next() {
            return Err(Error::Rejected {
                prefix,
                revision: None,
                reason: format!("field `{field}`: {reason}"),
            });
        }
        Ok(encoded)
    }

    /// Refuses a save whose values alone exceed the client's max send size, naming the largest
    /// value's key (the client would refuse the Txn too, but could only name its first key).
    pub(super) fn check_bytes(&self, prefix: &str, puts: &[(String, String)]) -> Result<()> {
        let limit = self.client.transport().options.max_send_message_size;
        let namespace = self.namespace_str();
        let size: usize = puts
            .iter()
            .map(|(k, v)| namespace.len() + k.len() + v.len())
            .sum();
        match puts.iter().max_by_key(|(_, v)| v.len()) {
            Some((key, value)) if size > limit => Err(Error::RequestTooLarge {
                request: format!(
                    "saving {prefix} (its largest value, {namespace}{key}, is {} bytes)",
                    value.len()
                ),
                size,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// The txn limit this store assumes ([`with_max_txn_ops`](Self::with_max_txn_ops)).
    pub(super) fn max_txn_ops(&self) -> usize {
        self.max_txn_ops
    }

    pub(super) fn check_size(&self, prefix: &str, ops: usize) -> Result<()> {
        if ops > self.max_txn_ops {
            return Err(Error::TxnTooLarge {
                prefix: prefix.to_owned(),
                ops,
                limit: self.max_txn_ops,
            });
        }
        Ok(())
    }
}

/// The existing keys a save must delete: those of `None` fields, and those under an `each` map
/// that are not one of its entries now.
fn removed_keys(
    prefix: &str,
    entries: &[super::encode::Entry],
    maps: &[String],
    existing: &[KeyValue],
) -> Vec<Vec<u8>> {
    let put: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| e.value.is_some())
        .map(|e| e.key.as_str())
        .collect();
    let absent: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| e.value.is_none())
        .map(|e| e.key.as_str())
        .collect();
    existing
        .iter()
        .filter(|kv| {
            let Some(relative) = kv.key.strip_prefix(prefix.as_bytes()) else {
                return false;
            };
            let Ok(relative) = std::str::from_utf8(relative) else {
                // Not UTF-8, so never an entry: under a map, it is a stale entry to remove.
                return maps.iter().any(|m| relative.starts_with(m.as_bytes()));
            };
            absent.contains(relative)
                || (!put.contains(relative)
                    && maps.iter().any(|m| relative.starts_with(m.as_str())))
        })
        .map(|kv| kv.key.clone())
        .collect()
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
