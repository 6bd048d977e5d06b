//! Turning a struct into the keys and values it owns.
//!
//! The derive writes each field through an [`Encoder`]; the result lists every key the struct
//! would put (with its value) or delete (a `None` field), and the `each` maps whose entries are
//! owned wholesale, so that `save` can also delete entries that were removed.

use super::keys::joined;
use super::{EtcdConfig, Nest};

/// One key of a struct: its value, or `None` when the key must be absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Relative to the struct's `prefix/`.
    pub(crate) key: String,
    /// The Rust field path, e.g. `tls.cert_path` or `routes.api`.
    pub(crate) field: String,
    pub(crate) value: Option<String>,
    pub(crate) secret: bool,
}

/// Everything a struct encodes to.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    pub(crate) entries: Vec<Entry>,
    /// Key prefixes (relative, ending in `/`) of `each` maps: every key under them that is not an
    /// entry is a removed entry.
    pub(crate) maps: Vec<String>,
    /// Values that could not be encoded, and entry names that would not load back:
    /// (field, key, reason).
    pub(crate) errors: Vec<(String, String, String)>,
    /// Nested structs whose own `validate` refused them: (field path, reason).
    pub(crate) rejected: Vec<(String, String)>,
}

impl Encoded {
    pub(crate) fn of<T: EtcdConfig>(value: &T) -> Encoded {
        Encoded::with(value, None)
    }

    /// Only the entries of `keys` (relative to the prefix; one that ends in `/` stands for
    /// every key under it): the others are not encoded at all, and `maps` still lists every
    /// map. Nested structs are still validated.
    pub(crate) fn of_keys<T: EtcdConfig>(value: &T, keys: &[String]) -> Encoded {
        Encoded::with(value, Some(keys))
    }

    fn with<T: EtcdConfig>(value: &T, only: Option<&[String]>) -> Encoded {
        let mut encoded = Encoded::default();
        value.__encode(&mut Encoder {
            key_prefix: String::new(),
            field_prefix: String::new(),
            only,
            out: &mut encoded,
        });
        encoded
    }
}

/// Whether `prefix` + `key` starts with `under` (a key ending in `/`), compared in place.
fn covers(under: &str, prefix: &str, key: &str) -> bool {
    match under.strip_prefix(prefix) {
        Some(rest) => key.starts_with(rest),
        None => prefix.starts_with(under),
    }
}

/// Collects a struct's keys; driven by derived code.
#[doc(hidden)]
pub struct Encoder<'a> {
    key_prefix: String,
    field_prefix: String,
    /// The only keys to encode (relative to the struct's prefix), if not all.
    only: Option<&'a [String]>,
    out: &'a mut Encoded,
}

impl Encoder<'_> {
    /// Whether `key` (under this encoder's prefix) is to be encoded; compared in place, since
    /// this runs for every entry of a large map.
    fn wants(&self, key: &str) -> bool {
        let Some(only) = self.only else { return true };
        let prefix = &self.key_prefix;
        only.iter().any(|k| {
            (k.len() == prefix.len() + key.len()
                && k.starts_with(prefix.as_str())
                && k.ends_with(key))
                || (k.ends_with('/') && covers(k, prefix, key))
        })
    }

    /// Whether any wanted key lies under `name/` (under this encoder's prefix).
    fn wants_under(&self, name: &str) -> bool {
        let Some(only) = self.only else { return true };
        let prefix = &self.key_prefix;
        only.iter().any(|k| {
            k.strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with('/'))
                || (k.ends_with('/') && covers(k, prefix, &joined(&[name, "/"])))
        })
    }

    /// Encodes one key's value (`encode` runs only for a wanted key) and records it.
    fn push(
        &mut self,
        key: &str,
        field: &str,
        secret: bool,
        encode: impl FnOnce() -> Result<Option<String>, String>,
    ) {
        if !self.wants(key) {
            return;
        }
        let value = encode();
        let key = joined(&[&self.key_prefix, key]);
        let field = joined(&[&self.field_prefix, field]);
        match value {
            Ok(value) => self.out.entries.push(Entry {
                key,
                field,
                value,
                secret,
            }),
            // A secret's encoder error may quote the value: keep only that it failed.
            Err(_) if secret => self
                .out
                .errors
                .push((field, key, "cannot be encoded".to_owned())),
            Err(reason) => self.out.errors.push((field, key, reason)),
        }
    }

    fn nest(&mut self, key: &str, field: &str) -> Encoder<'_> {
        Encoder {
            key_prefix: joined(&[&self.key_prefix, key, "/"]),
            field_prefix: joined(&[&self.field_prefix, field, "."]),
            only: self.only,
            out: self.out,
        }
    }

    /// A field stored under one key.
    pub fn value<T: ?Sized>(
        &mut self,
        key: &str,
        field: &str,
        secret: bool,
        value: &T,
        encode: impl Fn(&T) -> Result<String, String>,
    ) {
        self.push(key, field, secret, || encode(value).map(Some));
    }

    /// An `Option` field: `None` deletes the key.
    pub fn optional<T>(
        &mut self,
        key: &str,
        field: &str,
        secret: bool,
        value: &Option<T>,
        encode: impl Fn(&T) -> Result<String, String>,
    ) {
        self.push(key, field, secret, || {
            value.as_ref().map(encode).transpose()
        });
    }

    /// A `#[etcd(nested)]` struct, under `key/`, checked by its own `validate`.
    pub fn nested<T>(&mut self, key: &str, field: &str, value: &T, nest: &Nest<T>) {
        self.nest(key, field).validated(value, nest);
    }

    /// Encodes a nested struct here and records whether its `validate` accepts it.
    fn validated<T>(&mut self, value: &T, nest: &Nest<T>) {
        (nest.encode)(value, self);
        if let Err(reason) = (nest.validate)(value) {
            let field = self.field_prefix.trim_end_matches('.').to_owned();
            self.out.rejected.push((field, reason));
        }
    }

    /// Refuses an entry name whose key would not load back as the same entry; true if fine.
    fn check_name(&mut self, name: &str, nested: bool) -> bool {
        let reason = if name.is_empty() {
            "an entry name cannot be empty"
        } else if nested && name.contains('/') {
            "the entry name contains `/`, so its keys would load back as another entry"
        } else {
            return true;
        };
        let key = format!("{}{name}", self.key_prefix);
        let field = format!("{}{name:?}", self.field_prefix);
        self.out.errors.push((field, key, reason.to_owned()));
        false
    }

    /// A `#[etcd(each)]` map of values: one key per entry, under `key/`.
    pub fn each<'m, V: 'm>(
        &mut self,
        key: &str,
        field: &str,
        secret: bool,
        entries: impl IntoIterator<Item = (&'m String, &'m V)>,
        encode: impl Fn(&V) -> Result<String, String>,
    ) {
        self.out.maps.push(joined(&[&self.key_prefix, key, "/"]));
        let mut map = self.nest(key, field);
        for (name, value) in entries {
            if map.wants(name) && map.check_name(name, false) {
                map.push(name, name, secret, || encode(value).map(Some));
            }
        }
    }

    /// A `#[etcd(each, nested)]` map of structs: each entry's keys under `key/<name>/`.
    pub fn each_nested<'m, V: 'm>(
        &mut self,
        key: &str,
        field: &str,
        entries: impl IntoIterator<Item = (&'m String, &'m V)>,
        nest: &Nest<V>,
    ) {
        self.out.maps.push(joined(&[&self.key_prefix, key, "/"]));
        let mut map = self.nest(key, field);
        for (name, value) in entries {
            // An entry none of whose keys is wanted is skipped whole (its `validate` ran when
            // the value was decoded).
            if map.wants_under(name) && map.check_name(name, true) {
                map.nest(name, name).validated(value, nest);
            }
        }
    }
}
