//! Changing a config safely: typed edits with compare-and-swap, change notes written in the
//! same transaction, the history of changes from etcd's own, loads at a past revision,
//! rollback, diffs by field path, and waiting for the fleet to take a change.
//!
//! A note is stored at `namespace + T::PREFIX + ".notes/<time>-<nonce>"`, outside the keys `T`
//! owns: JSON with the author, the reason and the time, readable with `etcdctl`. It is written
//! by the same Txn as the change, so its create revision *is* the change's revision; the last
//! [`KEPT_NOTES`] notes are kept, so they outlive a compaction of the config's history.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::change_set::{Committed, Current};
use super::decode::local_prefix_of;
use super::decode::RawKeys;
use super::fleet::unix_ms;
use super::paths::{field_of_key, is_required, is_secret, key_of};
use super::store::decode_entries;
use super::watch::{changed_fields, stored};
use super::{EtcdConfig, Store};
use crate::client::TxnOp;
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

/// How many change notes are kept per config (the oldest are deleted by later changes).
pub const KEPT_NOTES: usize = 100;

/// How often [`Store::edit`] loads and tries again when someone else changed the config.
const EDIT_ATTEMPTS: usize = 5;

/// Who changes a config, and why: written with the change, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChangeNote {
    /// Who made the change.
    pub author: String,
    /// Why (may be empty).
    pub reason: String,
}

impl ChangeNote {
    /// A change by `author`.
    pub fn by(author: impl Into<String>) -> ChangeNote {
        ChangeNote {
            author: author.into(),
            reason: String::new(),
        }
    }

    /// Says why.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> ChangeNote {
        self.reason = reason.into();
        self
    }

    /// The same note, its reason led by what the tool did (`rollback to revision 3: why`).
    pub(crate) fn prefixed(&self, what: &str) -> ChangeNote {
        let reason = match self.reason.as_str() {
            "" => what.to_owned(),
            why => format!("{what}: {why}"),
        };
        ChangeNote::by(self.author.clone()).reason(reason)
    }
}

/// One change in a config's history, from [`Store::history`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The revision of the change.
    pub revision: i64,
    /// The field paths it changed. Known back to the last compaction; empty for older changes,
    /// which are known from their notes alone.
    pub changed: Vec<String>,
    /// Whether the value after it was valid (decoded and passed `validate`).
    pub valid: bool,
    /// Who made it and why, if it was made with a note.
    pub note: Option<ChangeNote>,
}

/// An edit worked out but not written, from [`Store::plan_edit`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlannedEdit<T> {
    /// The revision the plan was made at; the write would be refused if anything changed since.
    pub revision: i64,
    /// The value now, if it is valid.
    pub before: Option<T>,
    /// The value the edit would save, validated.
    pub after: T,
    /// The keys as they were read: the change is worked out against them.
    pub(crate) current: Current,
    /// Keys the edit removes on purpose (relative to the prefix).
    pub(crate) unset: HashSet<String>,
}

/// A note as stored.
#[derive(Serialize, Deserialize)]
struct StoredNote {
    author: String,
    reason: String,
    at_ms: u64,
}

impl Store {
    /// Where `T`'s change notes live, as etcd holds them: `namespace + T::PREFIX + ".notes/"`.
    pub fn notes_prefix_of<T: EtcdConfig>(&self) -> String {
        format!("{}{}", self.namespace_str(), local_notes_prefix::<T>())
    }

    /// The range of `T`'s change notes, as this store's [`client`](Self::client) addresses
    /// them (inside the store's namespace).
    pub fn notes_range_of<T: EtcdConfig>(&self) -> KeyRange {
        KeyRange::prefix(local_notes_prefix::<T>())
    }

    /// The Txn operations that write `note` and drop the notes beyond [`KEPT_NOTES`].
    pub(super) async fn note_ops<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<Vec<TxnOp>> {
        static NONCE: AtomicU64 = AtomicU64::new(0);
        let prefix = local_notes_prefix::<T>();
        let old = self
            .client()
            .kv()
            .get(KeyRange::prefix(prefix.clone()))
            .keys_only()
            .await?;
        let now = unix_ms(SystemTime::now());
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
        let key = format!("{prefix}{now:013}-{}-{nonce}", std::process::id());
        let value = serde_json::to_string(&StoredNote {
            author: note.author.clone(),
            reason: note.reason.clone(),
            at_ms: now,
        })
        .unwrap_or_default();
        let mut ops = vec![TxnOp::put(key, value)];
        let excess = (old.kvs.len() + 1).saturating_sub(KEPT_NOTES);
        ops.extend(
            old.kvs
                .iter()
                .take(excess)
                .map(|kv| TxnOp::delete(KeyRange::key(kv.key.clone()))),
        );
        Ok(ops)
    }

    /// Loads `T`, lets `change` edit it, validates the result and writes the fields whose
    /// stored text changed, with `note` in the same Txn, if no key of `T` changed since the
    /// load; on a conflict loads and tries again (five attempts). Returns the revision of the
    /// change; an edit that changes nothing writes nothing (no note either) and returns the
    /// revision of the config's last write.
    ///
    /// # Errors
    ///
    /// The load's errors (the closure needs a valid value: to repair a config that does not
    /// load, use [`set`](Self::set) or [`rollback`](Self::rollback)); what `change` returns (as
    /// [`Error::Rejected`]); what `save` refuses before sending; [`Error::Conflict`] if others
    /// kept changing the config through every attempt.
    pub async fn edit<T: EtcdConfig>(
        &self,
        mut change: impl FnMut(&mut T) -> std::result::Result<(), String>,
        note: &ChangeNote,
    ) -> Result<i64> {
        let prefix = self.prefix_of::<T>();
        let mut last_conflict = None;
        for _ in 0..EDIT_ATTEMPTS {
            let current = self.read_current::<T>().await?;
            let keys = current.raw_keys::<T>();
            let mut value = decode_entries::<T>(&prefix, self.keyring(), current.revision, &keys)?;
            change(&mut value).map_err(|reason| Error::Rejected {
                prefix: prefix.clone(),
                revision: None,
                reason,
            })?;
            match self
                .commit(&value, &current, &HashSet::new(), false, note)
                .await
            {
                Err(err @ Error::Conflict { .. }) => last_conflict = Some(err),
                other => return other.map(|c| c.revision),
            }
        }
        Err(last_conflict.unwrap_or_else(|| Error::invalid("no attempt made")))
    }

    /// Sets fields from text by field path (`tls.cert_path=/x`, `routes.blue.weight=3`), each
    /// value in the form etcd stores it (what `etcdctl get` shows), and writes the keys whose
    /// text changes with `note`: validated first, all in one Txn, only if nothing changed since
    /// the read. Works on a config that does not load now (a bad hand edit): only the value
    /// after the change must be valid. Setting what is already there writes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming a path `T` has no field for, or a value that does not
    /// parse (naming the field, never a secret's value); what `validate` says; a config still
    /// not valid after the change; [`Error::Conflict`] if the config changed meanwhile.
    /// Nothing is written then.
    pub async fn set<T: EtcdConfig>(
        &self,
        assignments: &[(&str, &str)],
        note: &ChangeNote,
    ) -> Result<i64> {
        let edits: Vec<_> = assignments
            .iter()
            .map(|(path, value)| (*path, Some(*value)))
            .collect();
        self.change_fields::<T>(&edits, note).await
    }

    /// Removes fields by path, as [`set`](Self::set) does: an optional field becomes `None`, a
    /// map entry goes, a field with a default loses its key and falls back to the default in
    /// code.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); a required field (no default) cannot be unset.
    pub async fn unset<T: EtcdConfig>(&self, paths: &[&str], note: &ChangeNote) -> Result<i64> {
        let edits: Vec<_> = paths.iter().map(|path| (*path, None)).collect();
        self.change_fields::<T>(&edits, note).await
    }

    /// Sets (`Some` text) and removes (`None`) fields by path in one change, as
    /// [`set`](Self::set) and [`unset`](Self::unset) do.
    pub async fn change_fields<T: EtcdConfig>(
        &self,
        edits: &[(&str, Option<&str>)],
        note: &ChangeNote,
    ) -> Result<i64> {
        let planned = self.plan_edit::<T>(edits).await?;
        Ok(self.commit_plan(&planned, note).await?.revision)
    }

    /// Writes a planned edit: what changed since the plan's read, with `note`.
    pub(crate) async fn commit_plan<T: EtcdConfig>(
        &self,
        planned: &PlannedEdit<T>,
        note: &ChangeNote,
    ) -> Result<Committed> {
        self.commit(
            &planned.after,
            &planned.current,
            &planned.unset,
            false,
            note,
        )
        .await
    }

    /// What [`set`](Self::set) (`Some` values) and [`unset`](Self::unset) (`None`) would do,
    /// without writing: the value now (if it is valid) and the value after, validated.
    pub async fn plan_edit<T: EtcdConfig>(
        &self,
        edits: &[(&str, Option<&str>)],
    ) -> Result<PlannedEdit<T>> {
        let prefix = self.prefix_of::<T>();
        let schema = T::schema();
        let mut unset = HashSet::new();
        let mut relative = Vec::new();
        for (path, value) in edits {
            let key = key_of(&schema, path)?;
            if value.is_none() {
                if is_required(&schema, path) {
                    return Err(Error::invalid(format!(
                        "`{path}` is required and has no default to fall back to: set it to a \
                         new value instead; nothing was written"
                    )));
                }
                unset.insert(key.clone());
            }
            relative.push(key);
        }
        let current = self.read_current::<T>().await?;
        let mut keys = current.raw_keys::<T>();
        let revision = current.revision;
        let before = decode_entries::<T>(&prefix, self.keyring(), revision, &keys).ok();
        for ((path, value), key) in edits.iter().zip(&relative) {
            match (value, self.keyring()) {
                // Decoded as a load would: a secret given in clear is sealed first.
                (Some(value), Some(keyring)) if is_secret(&schema, path) => {
                    let sealed = keyring.seal(&format!("{prefix}{key}"), value)?;
                    keys.put(key.as_bytes(), sealed.into_bytes());
                }
                (Some(value), _) => keys.put(key.as_bytes(), value.as_bytes().to_vec()),
                (None, _) => keys.delete(key.as_bytes()),
            }
        }
        let after = decode_entries::<T>(&prefix, self.keyring(), revision, &keys)
            .map_err(|err| invalid_input(err, &relative))?;
        Ok(PlannedEdit {
            revision,
            before,
            after,
            current,
            unset,
        })
    }

    /// Loads `T` as it was at `revision`: one Range at that revision.
    ///
    /// # Errors
    ///
    /// `Compacted` for a revision older than the last compaction; decode and validation errors
    /// as [`load`](Self::load) (by today's rules).
    pub async fn load_at<T: EtcdConfig>(&self, revision: i64) -> Result<T> {
        let prefix = self.prefix_of::<T>();
        let page = self
            .client()
            .kv()
            .get(self.range_of::<T>())
            .revision(revision)
            .await?;
        let kvs = page.kvs.into_iter().map(|kv| (kv.key, kv.value));
        let keys = super::decode::RawKeys::from_kvs::<T>(kvs);
        decode_entries::<T>(&prefix, self.keyring(), revision, &keys)
    }

    /// Makes `T` what it was at `revision` again, validated by today's rules, writing only the
    /// keys that differ, if nothing changed since the current keys were read; the note says it
    /// is a rollback. Works over a config that does not load now: that is what rollback is
    /// for. Returns the revision (a rollback to the value etcd holds writes nothing).
    ///
    /// # Errors
    ///
    /// As [`load_at`](Self::load_at) for the old value; [`Error::Conflict`] if the config
    /// changed meanwhile.
    pub async fn rollback<T: EtcdConfig>(&self, revision: i64, note: &ChangeNote) -> Result<i64> {
        Ok(self.rollback_to::<T>(revision, note).await?.revision)
    }

    pub(crate) async fn rollback_to<T: EtcdConfig>(
        &self,
        revision: i64,
        note: &ChangeNote,
    ) -> Result<Committed> {
        let planned = self.plan_rollback::<T>(revision).await?;
        let note = note.prefixed(&format!("rollback to revision {revision}"));
        self.commit_plan(&planned, &note).await
    }

    /// What [`rollback`](Self::rollback) to `revision` would write: the value then, against
    /// the keys now (which need not load). A defaulted field that had no key then loses its
    /// key again, so etcd holds what it held.
    pub(crate) async fn plan_rollback<T: EtcdConfig>(
        &self,
        revision: i64,
    ) -> Result<PlannedEdit<T>> {
        let prefix = self.prefix_of::<T>();
        let then = self
            .client()
            .kv()
            .get(self.range_of::<T>())
            .revision(revision)
            .await?;
        let then = Current {
            revision,
            kvs: then.kvs,
        };
        let after = decode_entries::<T>(&prefix, self.keyring(), revision, &then.raw_keys::<T>())?;
        let current = self.read_current::<T>().await?;
        let now = current.revision;
        let before =
            decode_entries::<T>(&prefix, self.keyring(), now, &current.raw_keys::<T>()).ok();
        let local = local_prefix_of::<T>();
        let held_then: HashSet<&[u8]> = then.kvs.iter().map(|kv| kv.key.as_slice()).collect();
        let unset = current
            .kvs
            .iter()
            .filter(|kv| !held_then.contains(kv.key.as_slice()))
            .filter_map(|kv| Some(kv.key_str().ok()?.strip_prefix(&local)?.to_owned()))
            .collect();
        Ok(PlannedEdit {
            revision: now,
            before,
            after,
            current,
            unset,
        })
    }

    /// Re-encrypts with the key ring's writing key every secret field of `T` that is not
    /// sealed with it yet (after a new key was added, or to encrypt values stored in clear
    /// while migrating), in one compare-and-swap transaction with `note`; returns its
    /// revision. Only secret keys are written; their values, decrypted, stay the same, so live
    /// configs see no update. With every secret sealed with the writing key already, nothing
    /// is written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a store without a key ring; the load's errors (a secret
    /// no key of the ring decrypts); [`Error::Conflict`] if the config changed meanwhile.
    pub async fn rotate_secrets<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<i64> {
        Ok(self.rotate::<T>(note).await?.revision)
    }

    pub(crate) async fn rotate<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<Committed> {
        let Some(keyring) = self.keyring() else {
            return Err(Error::invalid(format!(
                "rotating the secrets of {} needs a store with a key ring",
                self.prefix_of::<T>()
            )));
        };
        let current = self.read_current::<T>().await?;
        let keys = current.raw_keys::<T>();
        let value = decode_entries::<T>(
            &self.prefix_of::<T>(),
            Some(keyring),
            current.revision,
            &keys,
        )?;
        let why = format!("secrets re-encrypted with key `{}`", keyring.writing_id());
        self.commit(
            &value,
            &current,
            &HashSet::new(),
            true,
            &note.prefixed(&why),
        )
        .await
    }

    /// Every change of `T` that etcd's history still holds (back to the last compaction, with
    /// the field paths each changed), and older changes known from their notes, oldest first.
    pub async fn history<T: EtcdConfig>(&self) -> Result<Vec<Change>> {
        let prefix = self.prefix_of::<T>();
        let notes = self
            .client()
            .kv()
            .get(KeyRange::prefix(local_notes_prefix::<T>()))
            .await?;
        let mut by_revision: BTreeMap<i64, ChangeNote> = notes
            .kvs
            .iter()
            .filter_map(|kv| {
                let note: StoredNote = serde_json::from_slice(&kv.value).ok()?;
                let note = ChangeNote::by(note.author).reason(note.reason);
                Some((kv.create_revision, note))
            })
            .collect();
        let head = notes.header.revision;
        let mut changes = Vec::new();
        // The last revision's keys, and its value as stored when it was valid.
        let mut previous: Option<(RawKeys, Option<Stored>)> = None;
        self.walk_history::<T>(head, |revision, keys| {
            let decoded = decode_entries::<T>(&prefix, self.keyring(), revision, keys);
            let now = decoded.as_ref().ok().map(stored);
            let Some((before_keys, before)) = previous.replace((keys.clone(), now.clone())) else {
                return; // the compaction point: where the replay starts, not a change
            };
            let changed = match (&before, &now) {
                (Some(before), Some(after)) => changed_fields(before, after),
                // Either side does not load: the fields whose keys were written or deleted.
                _ => changed_keys::<T>(&before_keys, keys),
            };
            // A noted write that changed no value (secrets re-encrypted) is still a change
            // someone made: listed, with no fields. Keys no field reads are not a change.
            let noted = by_revision.contains_key(&revision);
            if changed.is_empty() && !noted {
                return;
            }
            changes.push(Change {
                revision,
                changed,
                valid: decoded.is_ok(),
                note: by_revision.remove(&revision),
            });
        })
        .await?;
        // Notes of changes older than the replay.
        let replayed_from = changes.first().map_or(head + 1, |c| c.revision);
        let mut older: Vec<Change> = by_revision
            .into_iter()
            .filter(|(revision, _)| *revision < replayed_from)
            .map(|(revision, note)| Change {
                revision,
                changed: Vec::new(),
                valid: true,
                note: Some(note),
            })
            .collect();
        older.extend(changes);
        Ok(older)
    }
}

/// Where `T`'s change notes live, as a store's client addresses them (inside its namespace).
fn local_notes_prefix<T: EtcdConfig>() -> String {
    format!("{}.notes/", T::PREFIX)
}

/// A value given to `set` that does not make a valid config: said as bad input (naming the
/// fields it gives), not as a stored config at some revision. Problems of keys the edit does
/// not touch mean the config stays broken after it: said so too.
fn invalid_input(err: Error, edited: &[String]) -> Error {
    let (prefix, problems) = match err {
        Error::Decode {
            prefix, problems, ..
        } => (prefix, problems),
        // What `validate` says of the value the change would make: not saved.
        Error::Rejected { prefix, reason, .. } => {
            return Error::Rejected {
                prefix,
                revision: None,
                reason,
            }
        }
        other => return other,
    };
    let (given, others): (Vec<_>, Vec<_>) = problems.into_iter().partition(|p| {
        let relative = p.key.strip_prefix(prefix.as_str()).unwrap_or(&p.key);
        edited.iter().any(|key| key == relative)
    });
    let list = |problems: &[crate::error::Problem]| {
        problems
            .iter()
            .map(|p| format!("\n  - {p}"))
            .collect::<String>()
    };
    let mut reason = String::new();
    if !given.is_empty() {
        reason.push_str(&format!("the value given is not valid:{}", list(&given)));
    }
    if !others.is_empty() {
        if !reason.is_empty() {
            reason.push('\n');
        }
        reason.push_str(&format!(
            "{prefix} would still not be valid after this change:{}",
            list(&others)
        ));
    }
    Error::invalid(format!("{reason}\nnothing was written"))
}

/// A value as stored: `key -> (field path, value)`.
type Stored = BTreeMap<String, (String, Option<String>)>;

/// The field paths whose keys differ between two states of the prefix (written, added or
/// deleted), keys no field owns left out: a change's fields when either side does not load.
fn changed_keys<T: EtcdConfig>(before: &RawKeys, after: &RawKeys) -> Vec<String> {
    let schema = T::schema();
    let local = local_prefix_of::<T>();
    let mut fields: Vec<String> = before
        .diff(after)
        .filter_map(|key| Some(field_of_key(&schema, &format!("{local}{key}"))?.0))
        .collect();
    fields.sort();
    fields.dedup();
    fields
}
