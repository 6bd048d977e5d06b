//! Every key a config owns, in one place, as `KeyRange` is for range encoding.
//!
//! Under a config's prefix `P` (`T::PREFIX`):
//!
//! | keys | what |
//! |---|---|
//! | `P/...` | its fields: the struct owns exactly these (loads, watches, saves, compares) |
//! | `P.notes/<time>-<pid>-<n>` | change notes, written in the same txn as the change |
//! | `P.fleet/<instance>` | fleet records, one per reporting instance, lease-bound |
//! | `P.rollout/...` | the rollout area of a progressive change |
//!
//! Two key spaces, and the names say which: the functions here give keys *as the client
//! addresses them* (inside the store's namespace: what requests carry); the `Store` methods
//! ending in `_of` (`prefix_of`, `notes_prefix_of`, `fleet_prefix_of`) give keys *as etcd holds
//! them* (namespace included: what `etcdctl` shows, what grants and secrets bind to), and the
//! ones ending in `range_of` give ranges as the client addresses them.

use std::borrow::Cow;

use super::{EtcdConfig, Store};
use crate::key_range::KeyRange;

/// `P/`: the prefix of `T`'s fields, as the client addresses it.
///
/// A struct derived without a prefix has no `EtcdConfig` impl, so it cannot get here: it can
/// only be nested.
pub(crate) fn fields<T: EtcdConfig>() -> String {
    fields_under(T::PREFIX)
}

/// `prefix/`: the field prefix of a config whose prefix is only known at run time (a
/// [`Schema`](super::Schema)'s).
pub(crate) fn fields_under(prefix: &str) -> String {
    joined(&[prefix, "/"])
}

/// `parts` one after another, in one allocation of the right size. Keys and field paths are
/// built for every field of every load, save and watch event: `format!` costs several times
/// as much for the same string.
pub(crate) fn joined(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// The areas beside a config's fields: `P.notes/`, `P.fleet/` and `P.rollout/`.
pub(crate) const NOTES: &str = "notes";
pub(crate) const FLEET: &str = "fleet";
pub(crate) const ROLLOUT: &str = "rollout";

/// `prefix.area/`: one of the areas beside the fields of a config whose prefix is `prefix`.
pub(crate) fn area_under(prefix: &str, area: &str) -> String {
    joined(&[prefix, ".", area, "/"])
}

/// `P.notes/`: where `T`'s change notes live, as the client addresses them.
pub(crate) fn notes<T: EtcdConfig>() -> String {
    area_under(T::PREFIX, NOTES)
}

/// `P.fleet/`: where `T`'s fleet records live, as the client addresses them.
pub(crate) fn fleet<T: EtcdConfig>() -> String {
    area_under(T::PREFIX, FLEET)
}

/// `P.fleet/<instance>`: one instance's fleet record, as the client addresses it.
pub(crate) fn fleet_record<T: EtcdConfig>(instance: &str) -> String {
    format!("{}{instance}", fleet::<T>())
}

/// `P.rollout/`: `T`'s rollout area (see the rollout module), as the client addresses it.
pub(crate) fn rollout<T: EtcdConfig>() -> String {
    area_under(T::PREFIX, ROLLOUT)
}

/// `key` (as the client gives it) relative to `T`'s field prefix, if it is under it.
pub(crate) fn relative<T: EtcdConfig>(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(T::PREFIX.as_bytes())?.strip_prefix(b"/")
}

impl Store {
    /// The full key prefix `T` owns in this store, as etcd (and `etcdctl`) holds it:
    /// namespace + `T::PREFIX` + `/`.
    pub fn prefix_of<T: EtcdConfig>(&self) -> String {
        joined(&[&self.namespace_str(), T::PREFIX, "/"])
    }

    /// The range of keys `T` owns in this store, as its [`client`](Self::client) addresses
    /// them: everything under `T::PREFIX` + `/`, in the store's namespace. Without a namespace,
    /// everything under [`prefix_of`](Self::prefix_of).
    pub fn range_of<T: EtcdConfig>(&self) -> KeyRange {
        let room = self.client().namespace_prefix().len();
        KeyRange::prefix_with_room(&[T::PREFIX.as_bytes(), b"/"], room)
    }

    /// Where `T`'s change notes live, as etcd holds them: `namespace + T::PREFIX + ".notes/"`.
    pub fn notes_prefix_of<T: EtcdConfig>(&self) -> String {
        self.held(&notes::<T>())
    }

    /// The range of `T`'s change notes, as this store's [`client`](Self::client) addresses
    /// them (inside the store's namespace).
    pub fn notes_range_of<T: EtcdConfig>(&self) -> KeyRange {
        KeyRange::prefix(notes::<T>())
    }

    /// Where the fleet records of `T` live, as etcd holds them:
    /// `namespace + T::PREFIX + ".fleet/"`.
    pub fn fleet_prefix_of<T: EtcdConfig>(&self) -> String {
        self.held(&fleet::<T>())
    }

    /// Where `T`'s rollout area is, as etcd holds it: `namespace + T::PREFIX + ".rollout/"`.
    pub(crate) fn rollout_prefix_of<T: EtcdConfig>(&self) -> String {
        self.held(&rollout::<T>())
    }

    /// The range of `T`'s fleet records, as this store's client addresses them.
    pub(crate) fn fleet_range_of<T: EtcdConfig>(&self) -> KeyRange {
        KeyRange::prefix(fleet::<T>())
    }

    /// `key`, as the client addresses it, as etcd holds it: with the store's namespace.
    pub(crate) fn held(&self, key: &str) -> String {
        joined(&[&self.namespace_str(), key])
    }

    /// This store's namespace (empty for none); a namespace that is not UTF-8 is shown with
    /// replacement characters.
    pub(crate) fn namespace_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.client().namespace_prefix())
    }
}
