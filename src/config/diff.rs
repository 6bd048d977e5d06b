//! Field diffs: between two values ([`diff`]), and of the operations a change performs, for the
//! command line's preview and its report of what was written.

use std::collections::{BTreeMap, BTreeSet};

use super::change_set::{ChangeSet, Current};
use super::follower::{changed_fields, stored, Stored};
use super::keys;
use super::paths::{is_secret, path_of_key};
use super::{EtcdConfig, Schema};

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
    /// Whether the field's key is added, changed or removed (for a secret, the only thing
    /// shown besides its path).
    pub kind: DiffKind,
}

/// What happens to a field's key, in a [`FieldDiff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiffKind {
    /// It had no key (or no value) and gets one.
    Added,
    /// Its stored text changes.
    Changed,
    /// Its key goes.
    Removed,
}

impl DiffKind {
    fn of(before: bool, after: bool) -> DiffKind {
        match (before, after) {
            (false, _) => DiffKind::Added,
            (true, true) => DiffKind::Changed,
            (true, false) => DiffKind::Removed,
        }
    }
}

/// The fields whose stored form differs between `before` and `after`, by field path; secret
/// fields are shown as changed only, never with their values.
pub fn diff<T: EtcdConfig>(before: &T, after: &T) -> Vec<FieldDiff> {
    let old = stored(before);
    let new = stored(after);
    let schema = T::schema();
    let value_at = |stored: &Stored, field: &str| stored.value_of(field).map(str::to_owned);
    changed_fields(&old, &new)
        .into_iter()
        .map(|field| {
            let is_secret = is_secret(&schema, &field);
            let (was, will) = (value_at(&old, &field), value_at(&new, &field));
            FieldDiff {
                kind: DiffKind::of(was.is_some(), will.is_some()),
                before: was.filter(|_| !is_secret),
                after: will.filter(|_| !is_secret),
                secret: is_secret,
                field,
            }
        })
        .collect()
}

/// The field diff of exactly the operations `set` performs on `current`: one line per key put
/// or deleted, nothing for keys it leaves alone. Secret values are never included.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn diff_of_change<T: EtcdConfig>(current: &Current, set: &ChangeSet) -> Vec<FieldDiff> {
    let (schema, local) = (T::schema(), keys::fields::<T>());
    let names = (&schema, local.as_str());
    let stored_now: BTreeMap<&[u8], &[u8]> = current.kvs().map(|kv| (kv.key, kv.value)).collect();
    let before = |key: &[u8]| stored_now.get(key).map(|v| text(v));
    let mut lines: Vec<FieldDiff> = set
        .puts
        .iter()
        .map(|(key, value)| {
            let key = key.as_bytes();
            key_line(names, key, before(key), Some(value.clone()))
        })
        .chain(
            set.deletes
                .iter()
                .map(|key| key_line(names, key, before(key), None)),
        )
        .collect();
    lines.sort_by(|a, b| a.field.cmp(&b.field));
    lines
}

/// The field diff of the keys as etcd held them at two revisions, whether or not either
/// loads: one line per key whose text differs. Secret values are never included.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn diff_of_stored<T: EtcdConfig>(before: &Current, after: &Current) -> Vec<FieldDiff> {
    let (schema, local) = (T::schema(), keys::fields::<T>());
    let old: BTreeMap<&[u8], &[u8]> = before.kvs().map(|kv| (kv.key, kv.value)).collect();
    let new: BTreeMap<&[u8], &[u8]> = after.kvs().map(|kv| (kv.key, kv.value)).collect();
    let keys: BTreeSet<&[u8]> = old.keys().chain(new.keys()).copied().collect();
    let mut lines: Vec<FieldDiff> = keys
        .into_iter()
        .filter(|key| old.get(key) != new.get(key))
        .map(|key| {
            key_line(
                (&schema, &local),
                key,
                old.get(key).map(|v| text(v)),
                new.get(key).map(|v| text(v)),
            )
        })
        .collect();
    lines.sort_by(|a, b| a.field.cmp(&b.field));
    lines
}

/// One key's line: its field path (or its path under the prefix, for a key no field reads)
/// and its texts before and after (`None`: absent; never a secret's).
fn key_line(
    (schema, local): (&Schema, &str),
    key: &[u8],
    before: Option<String>,
    after: Option<String>,
) -> FieldDiff {
    let (field, secret) = path_of_key(schema, local, &String::from_utf8_lossy(key));
    FieldDiff {
        kind: DiffKind::of(before.is_some(), after.is_some()),
        before: before.filter(|_| !secret),
        after: after.filter(|_| !secret),
        secret,
        field,
    }
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}
