//! What [`Store::save`] and [`Store::save_if_unchanged`] send: a value validated and encoded
//! (secrets sealed, sizes checked) first, then one txn. Without `each` maps and without an
//! expected revision the txn is sent blind, in one round trip; otherwise the keys that exist
//! are read first (entries to delete, defaulted keys to keep) and the txn is guarded by them.
//! Defaults stay in code either way: a field at its default gets a key only where it has one.

use std::collections::HashSet;

use super::change_set::{defaults_of, removed_keys, Scope};
use super::encode::Encoded;
use super::keys;
use super::{EtcdConfig, Store};
use crate::client::{Compare, CompareOp, Txn, TxnOp};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

/// How many times `save` re-reads and retries when another writer slips in between its read of
/// the existing keys and its transaction.
const SAVE_ATTEMPTS: usize = 5;

/// A value ready to send: its keys as the client addresses them.
struct Prepared {
    /// The full prefix, for errors.
    prefix: String,
    encoded: Encoded,
    /// Keys to put, values sealed where secret.
    puts: Vec<(String, String)>,
    /// Keys of fields at their default: put only where the key exists.
    if_present: Vec<(String, String)>,
}

impl Store {
    /// Saves `value`, only if unchanged since `expected` when given; returns the revision.
    pub(super) async fn write<T: EtcdConfig>(
        &self,
        value: &T,
        expected: Option<i64>,
    ) -> Result<i64> {
        let prepared = self.prepare(value)?;
        if expected.is_none() && prepared.encoded.maps.is_empty() {
            return self.write_blind::<T>(&prepared).await;
        }
        self.write_guarded::<T>(&prepared, expected).await
    }

    /// Validates, encodes and seals `value`, and checks its size; nothing is sent.
    fn prepare<T: EtcdConfig>(&self, value: &T) -> Result<Prepared> {
        let prefix = self.prefix_of::<T>();
        let encoded = self.encode_checked(value, None)?;
        // Keys as the client addresses them; the full key (namespace included) is what a
        // secret's ciphertext is bound to.
        let local = keys::fields::<T>();
        let defaults = defaults_of::<T>();
        let (mut puts, mut if_present) = (Vec::new(), Vec::new());
        for entry in &encoded.entries {
            let Some(value) = &entry.value else { continue };
            let at_default = defaults.get(&entry.key) == Some(value);
            let value = match (self.keyring(), entry.secret) {
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
        Ok(Prepared {
            prefix,
            encoded,
            puts,
            if_present,
        })
    }

    /// Nothing to discover: the keys of `None` fields are deleted whether or not they exist,
    /// and each defaulted field's put is a nested txn that applies only where its key exists,
    /// so the save is a single txn with no read before it.
    async fn write_blind<T: EtcdConfig>(&self, prepared: &Prepared) -> Result<i64> {
        let local = keys::fields::<T>();
        let absent: Vec<String> = prepared
            .encoded
            .entries
            .iter()
            .filter(|e| e.value.is_none())
            .map(|e| format!("{local}{}", e.key))
            .collect();
        let (puts, if_present) = (&prepared.puts, &prepared.if_present);
        self.check_size(
            &prepared.prefix,
            puts.len() + if_present.len() + absent.len(),
        )?;
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
            .chain(absent.iter().map(|key| TxnOp::delete(key.as_str())));
        let rollout = self.rollout_guard::<T>("a save").await?;
        let response = self
            .client()
            .kv()
            .txn()
            .when(rollout.compares)
            .and_then(ops.chain(rollout.ops))
            .await?;
        if !response.succeeded {
            let prefix = prepared.prefix.clone();
            let current = response.header.revision;
            let conflict = Error::Conflict {
                prefix,
                expected: current,
                current,
            };
            return Err(self.refused_write::<T>(conflict).await);
        }
        Ok(response.header.revision)
    }

    /// Reads which keys exist (now, or at `expected`), then sends the txn guarded by that read:
    /// no key written since, and with `expected` every key that existed then still there. A
    /// plain save that loses a race reads and tries again.
    async fn write_guarded<T: EtcdConfig>(
        &self,
        prepared: &Prepared,
        expected: Option<i64>,
    ) -> Result<i64> {
        let local = keys::fields::<T>();
        let range = self.range_of::<T>();
        let attempts = if expected.is_some() { 1 } else { SAVE_ATTEMPTS };
        let mut current = 0;
        for _ in 0..attempts {
            let mut read = self.client().kv().get(range.clone()).keys_only();
            if let Some(revision) = expected {
                read = read.revision(revision);
            }
            let existing = read.await?;
            let encoded = &prepared.encoded;
            let whole = Scope::default();
            let deletes = removed_keys(
                &local,
                &encoded.entries,
                &encoded.maps,
                existing.kvs.iter().map(|kv| kv.key.as_slice()),
                &whole,
            );
            let present: HashSet<&[u8]> = existing.kvs.iter().map(|kv| kv.key.as_slice()).collect();
            let kept = prepared
                .if_present
                .iter()
                .filter(|(key, _)| present.contains(key.as_bytes()));
            let puts: Vec<&(String, String)> = prepared.puts.iter().chain(kept).collect();
            self.check_size(&prepared.prefix, puts.len() + deletes.len())?;

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
                    let key = KeyRange::key(kv.key.clone());
                    Compare::create_revision(key, CompareOp::Equal, kv.create_revision)
                }));
                self.check_size(&prepared.prefix, compares.len())?;
            }
            let ops = puts
                .iter()
                .map(|(key, value)| TxnOp::put(key.as_str(), value.as_str()))
                .chain(
                    deletes
                        .into_iter()
                        .map(|key| TxnOp::delete(KeyRange::key(key))),
                );
            let rollout = self.rollout_guard::<T>("a save").await?;
            compares.extend(rollout.compares);
            let response = self
                .client()
                .kv()
                .txn()
                .when(compares)
                .and_then(ops.chain(rollout.ops))
                .await?;
            if response.succeeded {
                return Ok(response.header.revision);
            }
            current = response.header.revision;
            if let Some(refusal) = self.rollout_refusal::<T>().await {
                return Err(refusal);
            }
        }
        Err(Error::Conflict {
            prefix: prepared.prefix.clone(),
            expected: expected.unwrap_or(0),
            current,
        })
    }

    /// Validates `value` and encodes it, refusing a value that cannot be stored (with the
    /// field and key) or that a nested struct's `validate` refuses; nothing is sent.
    pub(super) fn encode_checked<T: EtcdConfig>(
        &self,
        value: &T,
        only: Option<&[String]>,
    ) -> Result<Encoded> {
        let prefix = self.prefix_of::<T>();
        value.validate().map_err(|reason| Error::Rejected {
            prefix: prefix.clone(),
            revision: None,
            reason,
        })?;
        let mut encoded = match only {
            Some(keys) => Encoded::of_keys(value, keys),
            None => Encoded::of(value),
        };
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
        let limit = self.client().transport().options.max_send_message_size;
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

    /// The txn limit this store assumes ([`max_txn_ops`](Self::max_txn_ops)).
    pub(super) fn txn_limit(&self) -> usize {
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
