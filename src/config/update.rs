//! What following a config gives: whole new values ([`Update`]) and the keys no field reads
//! ([`UnknownKey`]). A leaf: the engine and the handles both use these.

use std::sync::Arc;

/// A key under a config's prefix that no field reads (a typo in a hand edit, a field that was
/// renamed or removed), from [`LiveStatus::unknown_keys`](crate::LiveStatus::unknown_keys).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnknownKey {
    /// The key, as the store's client addresses it (`/services/gateway/greting`).
    pub key: String,
    /// The field path of the field whose key it nearly is (`greeting`), if one is close.
    pub did_you_mean: Option<String>,
}

/// A new value of a config, from one etcd revision.
#[derive(Debug)]
#[non_exhaustive]
pub struct Update<T> {
    /// The revision that produced this value.
    pub revision: i64,
    /// The new value.
    pub config: Arc<T>,
    /// The value before it (the last good one).
    pub previous: Arc<T>,
    /// The field paths whose stored value differs, e.g. `["listen_port", "tls.cert_path"]`.
    pub changed: Vec<String>,
    /// The watch loaded the config again at the head to get this value (after a compaction,
    /// or when it resumed more than the store's
    /// [`catch_up_limit`](crate::Store::catch_up_limit) behind): the revisions between
    /// `previous` and `revision` were not replayed one by one, and `changed` compares the two.
    pub resynced: bool,
}

impl<T> Clone for Update<T> {
    fn clone(&self) -> Self {
        Update {
            revision: self.revision,
            config: self.config.clone(),
            previous: self.previous.clone(),
            changed: self.changed.clone(),
            resynced: self.resynced,
        }
    }
}
