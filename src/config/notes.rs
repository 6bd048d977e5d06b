//! Change notes: who changed a config and why, written by the same txn as the change.
//!
//! A note is stored at `namespace + T::PREFIX + ".notes/<time>-<pid>-<n>"`, outside the keys
//! `T` owns: JSON with the author, the reason and the time, readable with `etcdctl`. Its create
//! revision *is* the change's revision; the last [`KEPT_NOTES`] notes are kept, so they outlive
//! a compaction of the config's history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::fleet::unix_ms;
use super::keys;
use super::{EtcdConfig, Store};
use crate::client::TxnOp;
use crate::error::Result;
use crate::key_range::KeyRange;

/// How many change notes are kept per config (the oldest are deleted by later changes).
pub const KEPT_NOTES: usize = 100;

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

/// A note as stored.
#[derive(Serialize, Deserialize)]
struct StoredNote {
    author: String,
    reason: String,
    at_ms: u64,
}

impl Store {
    /// The Txn operations that write `note` and drop the notes beyond [`KEPT_NOTES`]: one
    /// keys-only Range for the notes kept now.
    pub(super) async fn note_ops<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<Vec<TxnOp>> {
        let kept = self
            .client()
            .kv()
            .get(self.notes_range_of::<T>())
            .keys_only()
            .await?;
        let kept: Vec<Vec<u8>> = kept.kvs.into_iter().map(|kv| kv.key).collect();
        Ok(self.note_ops_given::<T>(note, &kept))
    }

    /// The same, given the keys of the notes kept now (oldest first), as a change's read
    /// found them.
    pub(super) fn note_ops_given<T: EtcdConfig>(
        &self,
        note: &ChangeNote,
        kept: &[Vec<u8>],
    ) -> Vec<TxnOp> {
        static NONCE: AtomicU64 = AtomicU64::new(0);
        let prefix = keys::notes::<T>();
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
        let excess = (kept.len() + 1).saturating_sub(KEPT_NOTES);
        ops.extend(
            kept.iter()
                .take(excess)
                .map(|key| TxnOp::delete(KeyRange::key(key.clone()))),
        );
        ops
    }

    /// Every note of `T` still kept, by the revision of its change, and the revision of the
    /// read.
    pub(super) async fn notes_by_revision<T: EtcdConfig>(
        &self,
    ) -> Result<(BTreeMap<i64, ChangeNote>, i64)> {
        let notes = self.client().kv().get(self.notes_range_of::<T>()).await?;
        let by_revision = notes
            .kvs
            .iter()
            .filter_map(|kv| {
                let note: StoredNote = serde_json::from_slice(&kv.value).ok()?;
                let note = ChangeNote::by(note.author).reason(note.reason);
                Some((kv.create_revision, note))
            })
            .collect();
        Ok((by_revision, notes.header.revision))
    }
}
