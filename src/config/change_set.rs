//! What a change sends to etcd: only the keys whose stored text changes, and the deletes, worked
//! out against the keys etcd holds now, under one compare that guards the whole prefix.
//!
//! Two rules shape it besides "send only what changes":
//! - *Defaults stay in code.* A defaulted field whose key is absent and whose value equals its
//!   default gets no key, so a later change of the default in code reaches the deployed
//!   config. A key that exists is kept and written as usual; a key the change unsets on
//!   purpose goes, and the field falls back to its default.
//! - *Secrets compare by their text.* A secret whose stored ciphertext opens to the value being
//!   written is left as it is (a new nonce is not a change); rotating asks for every secret to
//!   be sealed again with the writing key.

use std::collections::{BTreeMap, HashSet};

use super::decode::RawKeys;
use super::encode::{Encoded, Entry};
use super::keyring::{split, Keyring, Opened};
use super::keys;
use super::notes::ChangeNote;
use super::{EtcdConfig, Schema, Store};
use crate::client::kv::pairs::{Pair, Pairs};
use crate::client::{Compare, CompareOp, Get, TxnOp};
use crate::error::Error;
use crate::key_range::KeyRange;

/// The keys under a config's prefix as one Range read them, with their revisions.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The store revision of the read.
    pub(crate) revision: i64,
    /// The keys as the store's client addresses them, sorted, with their values and
    /// revisions, as etcd's answer brought them (see [`kvs`](Self::kvs)).
    pub(crate) pairs: Pairs,
    /// The keys of the change notes kept at that revision, oldest first, when the read was
    /// one for a change ([`Store::read_for_change`]): its txn drops the oldest beyond
    /// [`KEPT_NOTES`](super::notes::KEPT_NOTES) without reading them again. `None` for a plain
    /// read, which needs no permission on the notes.
    pub(crate) notes: Option<Vec<Vec<u8>>>,
}

impl Current {
    /// The keys, each with its value and revisions, in key order.
    pub(crate) fn kvs(&self) -> impl Iterator<Item = Pair<'_>> {
        self.pairs.entries()
    }

    /// The keys relative to `T`'s prefix, as the decoder reads them: a copy of the answer's
    /// buffers (three allocations), which a change then edits.
    pub(crate) fn raw_keys<T: EtcdConfig>(&self) -> RawKeys {
        RawKeys::from_answer::<T>(self.pairs.clone())
    }

    /// [`raw_keys`](Self::raw_keys), taking the values along instead of copying them (a
    /// large config is then not held twice), except those of `keep` (keys relative to the
    /// prefix: the ones a change by field path compares and shows). The other keys then read
    /// as empty here.
    pub(crate) fn take_raw_keys<T: EtcdConfig>(&mut self, keep: &[String]) -> RawKeys {
        let local = keys::fields::<T>();
        let kept = |key: &[u8]| {
            let relative = key.strip_prefix(local.as_bytes());
            relative.is_some_and(|r| keep.iter().any(|k| k.as_bytes() == r))
        };
        RawKeys::from_answer::<T>(self.pairs.split_off_values(kept))
    }

    /// The revision of the newest write to a key that exists: what a change that writes
    /// nothing reports, since the config as it stands is the one etcd held then. A config with
    /// no key at all answers the read's revision.
    pub(crate) fn last_write(&self) -> i64 {
        self.kvs()
            .map(|kv| kv.mod_revision)
            .max()
            .unwrap_or(self.revision)
    }
}

/// The operations of one change.
#[derive(Debug, Default)]
pub(crate) struct ChangeSet {
    /// `(key as the client addresses it, value as stored)`; secrets sealed.
    pub(crate) puts: Vec<(String, String)>,
    /// Keys as the client addresses them.
    pub(crate) deletes: Vec<Vec<u8>>,
}

impl ChangeSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// The txn operations, puts first.
    pub(crate) fn ops(&self) -> impl Iterator<Item = TxnOp> + '_ {
        self.puts
            .iter()
            .map(|(key, value)| TxnOp::put(key.as_str(), value.as_str()))
            .chain(
                self.deletes
                    .iter()
                    .map(|key| TxnOp::delete(KeyRange::key(key.clone()))),
            )
    }
}

/// Which keys a change works on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    /// Keys (relative to the prefix) the change removes on purpose: a defaulted field among
    /// them falls back to its default and loses its key.
    pub(crate) unset: HashSet<String>,
    /// For a change by field path: the only keys (relative) it may write or delete. Another
    /// key is left as etcd holds it, even in another spelling of the same value, and is not
    /// encoded at all (a change of one entry of a large map encodes one entry). `None`: every
    /// key of the value (a save, an edit of the whole struct, a rollback).
    pub(crate) only: Option<Vec<String>>,
}

impl Scope {
    /// Whether the change may touch `key` (relative to the prefix).
    fn covers(&self, key: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|k| k == key))
    }
}

/// How a change treats the keys it meets.
pub(crate) struct Rules<'a> {
    /// The full prefix (namespace included): what a secret's ciphertext is bound to.
    pub(crate) full_prefix: &'a str,
    pub(crate) keyring: Option<&'a Keyring>,
    pub(crate) scope: &'a Scope,
    /// Seal every secret again with the writing key, even when its text is unchanged.
    pub(crate) reseal: bool,
}

/// The defaults of `T`'s fields as stored (secret ones included: they are compared with the
/// value in clear, never shown), by key relative to the prefix.
pub(crate) fn defaults_of<T: EtcdConfig>() -> BTreeMap<String, String> {
    let strip = keys::fields::<T>();
    Schema::described::<T>(true)
        .fields
        .into_iter()
        .filter_map(|field| {
            let key = field.key.strip_prefix(&strip)?.to_owned();
            Some((key, field.default?))
        })
        .collect()
}

/// The change that makes the keys `current` holds store `encoded`.
///
/// # Errors
///
/// Sealing a secret fails (the key ring refuses).
pub(crate) fn change_set<T: EtcdConfig>(
    encoded: &Encoded,
    current: &Current,
    rules: &Rules<'_>,
) -> crate::error::Result<ChangeSet> {
    let local = keys::fields::<T>();
    let existing: BTreeMap<&str, &[u8]> = current
        .kvs()
        .filter_map(|kv| {
            Some((
                std::str::from_utf8(kv.key).ok()?.strip_prefix(&local)?,
                kv.value,
            ))
        })
        .filter(|(key, _)| rules.scope.covers(key))
        .collect();
    let defaults = defaults_of::<T>();
    let mut set = ChangeSet::default();
    for entry in &encoded.entries {
        let key = entry.key.as_str();
        let now = existing
            .get(key)
            .filter(|_| !rules.scope.unset.contains(key));
        // A `None` field's key, if it exists, is among `removed_keys` below.
        let Some(value) = &entry.value else { continue };
        match now {
            Some(stored) if unchanged(rules, entry.secret, key, stored, value) => {}
            None if defaults.get(key) == Some(value) => {
                // At its default and without a key (or unset now): the code default serves.
                if existing.contains_key(key) {
                    set.deletes.push(format!("{local}{key}").into_bytes());
                }
            }
            _ => {
                let stored = match (rules.keyring, entry.secret) {
                    (Some(keyring), true) => {
                        keyring.seal(&format!("{}{key}", rules.full_prefix), value)?
                    }
                    _ => value.clone(),
                };
                set.puts.push((format!("{local}{key}"), stored));
            }
        }
    }
    set.deletes.extend(removed_keys(
        &local,
        &encoded.entries,
        &encoded.maps,
        current.kvs().map(|kv| kv.key),
        rules.scope,
    ));
    Ok(set)
}

/// Whether `stored` (a key's value) is already `value`: the same text, or for a secret, a
/// ciphertext that opens to it (and is sealed with the writing key, when resealing).
fn unchanged(rules: &Rules<'_>, secret: bool, key: &str, stored: &[u8], value: &str) -> bool {
    let stored = String::from_utf8_lossy(stored);
    let Some(keyring) = rules.keyring.filter(|_| secret) else {
        return stored == value;
    };
    let writer = split(&stored).is_some_and(|(id, _)| id == keyring.writing_id());
    if rules.reseal && !writer {
        return false;
    }
    match keyring.open(&format!("{}{key}", rules.full_prefix), &stored) {
        Ok(Opened::Decrypted(plain)) => plain.as_str() == value,
        // In clear (migrating): sealing it is a change.
        Ok(Opened::Plain) | Err(_) => false,
    }
}

/// The existing keys a save must delete: those of `None` fields, and those under an `each` map
/// that are not one of its entries now; of those, only the ones `scope` covers (a key that is
/// not UTF-8 only when the scope is the whole value).
pub(super) fn removed_keys<'a>(
    prefix: &str,
    entries: &[Entry],
    maps: &[String],
    existing: impl IntoIterator<Item = &'a [u8]>,
    scope: &Scope,
) -> Vec<Vec<u8>> {
    let put: HashSet<&str> = entries
        .iter()
        .filter(|e| e.value.is_some())
        .map(|e| e.key.as_str())
        .collect();
    let absent: HashSet<&str> = entries
        .iter()
        .filter(|e| e.value.is_none())
        .map(|e| e.key.as_str())
        .collect();
    existing
        .into_iter()
        .filter(|key| {
            let Some(relative) = key.strip_prefix(prefix.as_bytes()) else {
                return false;
            };
            let Ok(relative) = std::str::from_utf8(relative) else {
                // Not UTF-8, so never an entry: under a map, it is a stale entry to remove.
                return scope.only.is_none()
                    && maps.iter().any(|m| relative.starts_with(m.as_bytes()));
            };
            // Checked first: a change of one entry of a large map looks at that entry alone.
            scope.covers(relative)
                && (absent.contains(relative)
                    || (!put.contains(relative)
                        && maps.iter().any(|m| relative.starts_with(m.as_str()))))
        })
        .map(<[u8]>::to_vec)
        .collect()
}

/// The compares that guard a change made against `current`: no key under `range` written
/// after the read, and (when they fit in `limit`) every key that existed then still there
/// with the same create revision, since a deleted key leaves no revision to compare.
pub(crate) fn guards(range: &KeyRange, current: &Current, limit: usize) -> Vec<Compare> {
    let mut compares = vec![Compare::mod_revision(
        range.clone(),
        CompareOp::Less,
        current.revision + 1,
    )];
    if current.pairs.len() < limit {
        compares.extend(current.kvs().map(|kv| {
            Compare::create_revision(
                KeyRange::key(kv.key.to_vec()),
                CompareOp::Equal,
                kv.create_revision,
            )
        }));
    }
    compares
}

/// A change that was made, or found to change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The revision of the change; for one that wrote nothing, the revision of the last write
    /// to the config's keys ([`Current::last_write`]), where etcd already held the value.
    pub(crate) revision: i64,
    /// False when nothing needed writing: no txn was sent, no note written.
    pub(crate) written: bool,
}

impl Store {
    /// One Range over `T`'s keys, with their revisions: all a read-only user may do.
    pub(crate) async fn read_current<T: EtcdConfig>(&self) -> crate::error::Result<Current> {
        let read = Get::new(self.range_of::<T>());
        let answer = self.client().kv().read_pairs(read).await?;
        Ok(Current {
            revision: answer.header.map_or(0, |header| header.revision),
            pairs: answer.pairs,
            notes: None,
        })
    }

    /// `T`'s keys with their revisions, and the keys of its notes, for a change that writes
    /// right after: two Ranges in one read-only Txn (one round trip, one revision).
    pub(crate) async fn read_for_change<T: EtcdConfig>(&self) -> crate::error::Result<Current> {
        let reads = vec![
            Get::new(self.range_of::<T>()),
            Get::new(self.notes_range_of::<T>()).keys_only(),
        ];
        let (revision, answers) = self.client().kv().read_pairs_at_once(reads).await?;
        let mut answers = answers.into_iter();
        let pairs = answers
            .next()
            .map(|answer| answer.pairs)
            .unwrap_or_default();
        let notes = answers
            .next()
            .map(|answer| answer.pairs)
            .unwrap_or_default();
        Ok(Current {
            revision,
            pairs,
            notes: Some(notes.iter().map(|(key, _)| key.to_vec()).collect()),
        })
    }

    /// The operations that make etcd hold `value` instead of `current` (see [`Rules`]),
    /// after validating and encoding it.
    pub(crate) fn change_of<T: EtcdConfig>(
        &self,
        value: &T,
        current: &Current,
        scope: &Scope,
        reseal: bool,
    ) -> crate::error::Result<ChangeSet> {
        let prefix = self.prefix_of::<T>();
        let encoded = self.encode_checked(value, scope.only.as_deref())?;
        let rules = Rules {
            full_prefix: &prefix,
            keyring: self.keyring(),
            scope,
            reseal,
        };
        change_set::<T>(&encoded, current, &rules)
    }

    /// Writes what makes etcd hold `value` instead of `current`, with `note`, in one txn that
    /// applies only if no key of `T` changed since `current` was read. A change that changes
    /// nothing writes nothing, note included.
    ///
    /// # Errors
    ///
    /// What [`Store::save`] refuses before sending; [`Error::Conflict`] if the keys changed.
    pub(crate) async fn commit<T: EtcdConfig>(
        &self,
        value: &T,
        current: &Current,
        scope: &Scope,
        reseal: bool,
        note: &ChangeNote,
    ) -> crate::error::Result<Committed> {
        let prefix = self.prefix_of::<T>();
        let set = self.change_of(value, current, scope, reseal)?;
        if set.is_empty() {
            return Ok(Committed {
                revision: current.last_write(),
                written: false,
            });
        }
        self.check_bytes(&prefix, &set.puts)?;
        let rollout = self.rollout_guard::<T>(&note.author).await?;
        let note = match &rollout.superseded {
            Some(id) => note.prefixed(&format!("supersedes rollout {id}")),
            None => note.clone(),
        };
        let notes = match &current.notes {
            Some(kept) => self.note_ops_given::<T>(&note, kept),
            None => self.note_ops::<T>(&note).await?,
        };
        self.check_size(&prefix, set.len() + notes.len() + rollout.ops.len())?;
        let mut compares = guards(&self.range_of::<T>(), current, self.txn_limit());
        compares.extend(rollout.compares);
        let response = self
            .client()
            .kv()
            .txn()
            .when(compares)
            .and_then(set.ops().chain(notes).chain(rollout.ops))
            .await?;
        if !response.succeeded {
            let conflict = Error::Conflict {
                prefix,
                expected: current.revision,
                current: response.header.revision,
            };
            return Err(self.refused_write::<T>(conflict).await);
        }
        Ok(Committed {
            revision: response.header.revision,
            written: true,
        })
    }
}
