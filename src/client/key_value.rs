//! What a range read returns and how it sorts: [`KeyValue`], [`SortTarget`], [`SortOrder`].

use crate::proto::mvccpb;

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty with `keys_only`).
    pub value: Vec<u8>,
    /// Revision at which the key was last created.
    pub create_revision: i64,
    /// Revision at which the key was last modified.
    pub mod_revision: i64,
    /// Number of writes since the key was created.
    pub version: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

impl KeyValue {
    /// The key as UTF-8.
    pub fn key_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.key)
    }

    /// The value as UTF-8.
    pub fn value_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.value)
    }
}

impl From<mvccpb::KeyValue> for KeyValue {
    fn from(kv: mvccpb::KeyValue) -> Self {
        KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// What a range read sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortTarget {
    /// The key (etcd's default order).
    Key,
    /// The key's version.
    Version,
    /// The key's create revision.
    CreateRevision,
    /// The key's mod revision.
    ModRevision,
    /// The value.
    Value,
}

/// Which way a range read sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Smallest first.
    Ascend,
    /// Largest first.
    Descend,
}
