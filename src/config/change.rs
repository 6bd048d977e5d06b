//! Changing a config safely: typed edits with compare-and-swap, change notes written in the
//! same transaction, the history of changes from etcd's own, loads at a past revision,
//! rollback, diffs by field path, and waiting for the fleet to take a change.
//!
//! A note is stored at `namespace + T::PREFIX + ".notes/<time>-<nonce>"`, outside the keys `T`
//! owns: JSON with the author, the reason and the time, readable with `etcdctl`. It is written
//! by the same Txn as the change, so its create revision *is* the change's revision; the last
//! [`KEPT_NOTES`] notes are kept, so they outlive a compaction of the config's history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::fleet::unix_ms;
use super::paths::{is_secret, key_of};
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

/// One field that differs between two values, from [`diff`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldDiff {
    /// The field path, e.g. `tls.cert_path`.
    pub field: String,
    /// The value before as stored (`None`: absent), or `None` for a secret field.
    pub before: Option<String>,
    /// The value after as stored (`None`: absent), or `None` for a secret field.
    pub after: Option<String>,
    /// True for a secret field: only *that* it changed is shown.
    pub secret: bool,
}

/// The fields whose stored form differs between `before` and `after`, by field path; secret
/// fields are shown as changed only, never with their values.
pub fn diff<T: EtcdConfig>(before: &T, after: &T) -> Vec<FieldDiff> {
    let old = stored(before);
    let new = stored(after);
    let schema = T::schema();
    let value_at = |map: &BTreeMap<String, (String, Option<String>)>, field: &str| {
        map.values()
            .find(|(f, _)| f == field)
            .and_then(|(_, v)| v.clone())
    };
    changed_fields(&old, &new)
        .into_iter()
        .map(|field| {
            let is_secret = is_secret(&schema, &field);
            FieldDiff {
                before: (!is_secret).then(|| value_at(&old, &field)).flatten(),
                after: (!is_secret).then(|| value_at(&new, &field)).flatten(),
                secret: is_secret,
                field,
            }
        })
        .collect()
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
    async fn note_ops<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<Vec<TxnOp>> {
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

    /// Loads `T`, lets `change` edit it, validates the result and saves it if no key of `T`
    /// changed since the load, with `note` in the same Txn; on a conflict loads and tries
    /// again (five attempts). Returns the revision of the change.
    ///
    /// # Errors
    ///
    /// What `change` returns (as [`Error::Rejected`]); what `save` refuses before sending;
    /// [`Error::Conflict`] if others kept changing the config through every attempt.
    pub async fn edit<T: EtcdConfig>(
        &self,
        mut change: impl FnMut(&mut T) -> std::result::Result<(), String>,
        note: &ChangeNote,
    ) -> Result<i64> {
        let mut last_conflict = None;
        for _ in 0..EDIT_ATTEMPTS {
            let loaded = self.load_versioned::<T>().await?;
            let mut value = loaded.value;
            change(&mut value).map_err(|reason| Error::Rejected {
                prefix: self.prefix_of::<T>(),
                revision: None,
                reason,
            })?;
            let extra = self.note_ops::<T>(note).await?;
            match self.write(&value, Some(loaded.revision), &extra).await {
                Err(err @ Error::Conflict { .. }) => last_conflict = Some(err),
                other => return other,
            }
        }
        Err(last_conflict.unwrap_or_else(|| Error::invalid("no attempt made")))
    }

    /// Sets fields from text by field path (`tls.cert_path=/x`, `routes.blue.weight=3`), each
    /// value in the form etcd stores it (what `etcdctl get` shows), and saves the result with
    /// `note`: validated first, all in one Txn, only if nothing changed since the load.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming a path `T` has no field for; the decode problems of
    /// a value that does not parse (naming the key, never a secret's value); what `validate`
    /// says; [`Error::Conflict`] if the config changed meanwhile. Nothing is written then.
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

    /// Removes fields by path (an optional field becomes `None`, a map entry goes, a field
    /// with a default falls back to it), as [`set`](Self::set) does.
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
        let extra = self.note_ops::<T>(note).await?;
        self.write(&planned.after, Some(planned.revision), &extra)
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
        let relative = edits
            .iter()
            .map(|(path, _)| key_of(&schema, path))
            .collect::<Result<Vec<String>>>()?;
        let (revision, mut keys) = self.load_raw::<T>().await?;
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
        let after = decode_entries::<T>(&prefix, self.keyring(), revision, &keys)?;
        Ok(PlannedEdit {
            revision,
            before,
            after,
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

    /// Saves `T` as it was at `revision` again, validated by today's rules, if nothing changed
    /// since the current value was read; the note says it is a rollback. Returns the revision.
    ///
    /// # Errors
    ///
    /// As [`load_at`](Self::load_at) and [`save_if_unchanged`](Self::save_if_unchanged).
    pub async fn rollback<T: EtcdConfig>(&self, revision: i64, note: &ChangeNote) -> Result<i64> {
        let old = self.load_at::<T>(revision).await?;
        let current = self.load_versioned::<T>().await?;
        let reason = match note.reason.as_str() {
            "" => format!("rollback to revision {revision}"),
            why => format!("rollback to revision {revision}: {why}"),
        };
        let note = ChangeNote::by(note.author.clone()).reason(reason);
        let extra = self.note_ops::<T>(&note).await?;
        self.write(&old, Some(current.revision), &extra).await
    }

    /// Re-encrypts every secret field of `T` with the key ring's writing key (after a new
    /// key was added, or to encrypt values stored in clear while migrating), in one
    /// compare-and-swap transaction with `note`; returns its revision. Every key of `T` is
    /// written again; the values, decrypted, stay the same, so live configs see no update.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a store without a key ring; the load's errors (a secret
    /// no key of the ring decrypts); [`Error::Conflict`] if the config changed meanwhile.
    pub async fn rotate_secrets<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<i64> {
        let Some(keyring) = self.keyring() else {
            return Err(Error::invalid(format!(
                "rotating the secrets of {} needs a store with a key ring",
                self.prefix_of::<T>()
            )));
        };
        let current = self.load_versioned::<T>().await?;
        let reason = match note.reason.as_str() {
            "" => format!("secrets re-encrypted with key `{}`", keyring.writing_id()),
            why => format!(
                "secrets re-encrypted with key `{}`: {why}",
                keyring.writing_id()
            ),
        };
        let note = ChangeNote::by(note.author.clone()).reason(reason);
        let extra = self.note_ops::<T>(&note).await?;
        self.write(&current.value, Some(current.revision), &extra)
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
        let mut previous: Option<BTreeMap<String, (String, Option<String>)>> = None;
        let mut first = true;
        self.walk_history::<T>(head, |revision, keys| {
            let decoded = decode_entries::<T>(&prefix, self.keyring(), revision, keys);
            let now = decoded.as_ref().ok().map(stored);
            if first {
                // The compaction point: where the replay starts, not a change.
                first = false;
                previous = now;
                return;
            }
            let changed = match (&previous, &now) {
                (Some(before), Some(after)) => changed_fields(before, after),
                // The first valid value: every field it holds is new.
                (None, Some(after)) => changed_fields(&BTreeMap::new(), after),
                (_, None) => Vec::new(),
            };
            // A noted write that changed no value (secrets re-encrypted, a rollback to the
            // same value) is still a change someone made: listed, with no fields.
            let noted = by_revision.contains_key(&revision);
            if now.is_some() && changed.is_empty() && previous.is_some() && !noted {
                return; // touched keys no field reads
            }
            changes.push(Change {
                revision,
                changed,
                valid: decoded.is_ok(),
                note: by_revision.remove(&revision),
            });
            if now.is_some() {
                previous = now;
            }
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

    /// Waits until every instance reporting on `T` ([`Store::fleet`]) serves `revision` or a
    /// later one, and returns how many there are. Polls the records (one Range every 200 ms).
    /// With no instance reporting, there is nothing to wait for: `Ok(0)` at once (a caller
    /// that expects a fleet should say so).
    ///
    /// # Errors
    ///
    /// [`Error::RolloutRejected`] naming the first instance that rejected `revision` (or a later one)
    /// and its reason; [`Error::Timeout`] naming the instances still behind after `within`.
    pub async fn wait_rollout<T: EtcdConfig>(
        &self,
        revision: i64,
        within: Duration,
    ) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let fleet = self.fleet::<T>().await?;
            if let Some((instance, (rejected, reason))) = fleet.iter().find_map(|r| {
                let rejected = r.last_rejected.as_ref()?;
                (rejected.0 >= revision).then_some((&r.instance, rejected))
            }) {
                return Err(Error::RolloutRejected {
                    prefix: self.prefix_of::<T>(),
                    instance: instance.clone(),
                    revision: *rejected,
                    reason: reason.clone(),
                });
            }
            let behind: Vec<&str> = fleet
                .iter()
                .filter(|r| r.revision < revision)
                .map(|r| r.instance.as_str())
                .collect();
            if behind.is_empty() {
                return Ok(fleet.len());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    operation: format!(
                        "rollout of revision {revision} (instances behind: {})",
                        behind.join(", ")
                    ),
                    after: within,
                    endpoint: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Where `T`'s change notes live, as a store's client addresses them (inside its namespace).
fn local_notes_prefix<T: EtcdConfig>() -> String {
    format!("{}.notes/", T::PREFIX)
}
