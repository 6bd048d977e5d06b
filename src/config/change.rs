//! Changing a config safely: typed edits with compare-and-swap (`edit`), changes by field path
//! (`set`, `unset`, `plan_edit`), loads at a past revision and rollback, and re-encrypting
//! secrets. What each writes is worked out by [`change_set`](super::change_set), with a note
//! ([`notes`](super::notes)) in the same transaction.

use std::collections::HashSet;

use super::change_set::{Committed, Current, Scope};
use super::edits::FieldEdits;
use super::history::named_revision;
use super::keys;
use super::notes::ChangeNote;
use super::paths::{is_required, is_secret, key_of};
use super::store::decode_entries;
use super::{EtcdConfig, Store};
use crate::client::Get;
use crate::error::{Error, Result};

/// How often [`Store::edit`] loads and tries again when someone else changed the config.
const EDIT_ATTEMPTS: usize = 5;

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
    /// The keys as they were read: the change is worked out against them. For an edit by
    /// field path, only the named keys keep their values ([`Current::take_raw_keys`]).
    pub(crate) current: Current,
    /// The keys the edit touches, and those it removes on purpose.
    pub(crate) scope: Scope,
}

impl Store {
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
            let current = self.read_for_change::<T>().await?;
            let keys = current.raw_keys::<T>();
            let mut value = decode_entries::<T>(&prefix, self.keyring(), current.revision, &keys)?;
            change(&mut value).map_err(|reason| Error::Rejected {
                prefix: prefix.clone(),
                revision: None,
                reason,
            })?;
            match self
                .commit(&value, &current, &Scope::default(), false, note)
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
    /// Only the keys named are encoded, compared and written: another key stays as etcd holds
    /// it, even if a hand edit spelled its value differently from how the crate would. Round
    /// trips: one read-only Txn (the keys and the notes' keys), one Txn.
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
        let edits = assignments
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
        let edits = paths.iter().map(|path| (*path, None::<&str>)).collect();
        self.change_fields::<T>(&edits, note).await
    }

    /// Sets (`Some` text) and removes (`None`) fields by path in one change, as
    /// [`set`](Self::set) and [`unset`](Self::unset) do.
    pub async fn change_fields<T: EtcdConfig>(
        &self,
        edits: &FieldEdits,
        note: &ChangeNote,
    ) -> Result<i64> {
        let planned = self.plan::<T>(edits, false).await?;
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
            &planned.scope,
            false,
            note,
        )
        .await
    }

    /// What [`set`](Self::set) (`Some` values) and [`unset`](Self::unset) (`None`) would do,
    /// without writing: the value now (if it is valid) and the value after, validated.
    pub async fn plan_edit<T: EtcdConfig>(&self, edits: &FieldEdits) -> Result<PlannedEdit<T>> {
        self.plan(edits, true).await
    }

    /// [`plan_edit`](Self::plan_edit), decoding the value before the edit only if asked
    /// (`before`): a change that writes right away has no use for it.
    async fn plan<T: EtcdConfig>(
        &self,
        edits: &FieldEdits,
        before: bool,
    ) -> Result<PlannedEdit<T>> {
        let prefix = self.prefix_of::<T>();
        let schema = T::schema();
        let mut unset = HashSet::new();
        let mut relative = Vec::new();
        for (path, value) in edits.iter() {
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
        // A plan that writes right away reads the notes' keys too (one round trip less); a
        // preview needs no permission on them.
        let mut current = if before {
            self.read_current::<T>().await?
        } else {
            self.read_for_change::<T>().await?
        };
        // The change compares and shows only the keys it names: the others' values move.
        let mut keys = current.take_raw_keys::<T>(&relative);
        let revision = current.revision;
        let before = before
            .then(|| decode_entries::<T>(&prefix, self.keyring(), revision, &keys).ok())
            .flatten();
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
            scope: Scope {
                unset,
                only: Some(relative),
            },
        })
    }

    /// Loads `T` as it was at `revision`: one Range at that revision.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a revision below 1 (which etcd would read as its
    /// newest); [`Error::Server`] of kind `Compacted` for a revision older than the last
    /// compaction and `FutureRevision` for one etcd has not reached, each naming the revisions
    /// etcd can read; decode and validation errors as [`load`](Self::load) (by today's rules).
    pub async fn load_at<T: EtcdConfig>(&self, revision: i64) -> Result<T> {
        let then = self.read_at::<T>(revision).await?;
        let keys = then.raw_keys::<T>();
        decode_entries::<T>(&self.prefix_of::<T>(), self.keyring(), revision, &keys)
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

    /// `T`'s keys as etcd held them at `revision`, a revision someone named: refused below 1,
    /// and naming the revisions etcd keeps when compacted away or not reached.
    pub(crate) async fn read_at<T: EtcdConfig>(&self, revision: i64) -> Result<Current> {
        named_revision(&self.prefix_of::<T>(), revision)?;
        let read = Get::new(self.range_of::<T>()).revision(revision);
        match self.client().kv().read_pairs(read).await {
            Ok(answer) => Ok(Current {
                revision,
                pairs: answer.pairs,
                notes: None,
            }),
            Err(err) => Err(self.at_revision_error::<T>(revision, err).await),
        }
    }

    /// What [`rollback`](Self::rollback) to `revision` would write: the value then, against
    /// the keys now (which need not load). A defaulted field that had no key then loses its
    /// key again, so etcd holds what it held.
    pub(crate) async fn plan_rollback<T: EtcdConfig>(
        &self,
        revision: i64,
    ) -> Result<PlannedEdit<T>> {
        let prefix = self.prefix_of::<T>();
        let then = self.read_at::<T>(revision).await?;
        let after = decode_entries::<T>(&prefix, self.keyring(), revision, &then.raw_keys::<T>())?;
        let current = self.read_current::<T>().await?;
        let now = current.revision;
        let before =
            decode_entries::<T>(&prefix, self.keyring(), now, &current.raw_keys::<T>()).ok();
        let local = keys::fields::<T>();
        let held_then: HashSet<&[u8]> = then.kvs().map(|kv| kv.key).collect();
        let unset = current
            .kvs()
            .filter(|kv| !held_then.contains(kv.key))
            .filter_map(|kv| {
                Some(
                    std::str::from_utf8(kv.key)
                        .ok()?
                        .strip_prefix(&local)?
                        .to_owned(),
                )
            })
            .collect();
        Ok(PlannedEdit {
            revision: now,
            before,
            after,
            current,
            scope: Scope { unset, only: None },
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
        let current = self.read_for_change::<T>().await?;
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
            &Scope::default(),
            true,
            &note.prefixed(&why),
        )
        .await
    }
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
