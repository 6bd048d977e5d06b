//! A rollout's candidate, as a member overlays it on the keys etcd holds.

use std::collections::BTreeMap;

use crate::config::decode::RawKeys;

/// A rollout's candidate as a member overlays it: keys relative to the prefix and the text
/// each takes (`None`: deleted).
#[derive(Debug, PartialEq)]
pub(crate) struct Overlay {
    pub(crate) rollout: String,
    pub(crate) changes: BTreeMap<String, Option<String>>,
    /// The revision of the rollout's commit, once it committed: the candidate's keys are in
    /// that revision, so the overlay stays until the follower has applied it, and the value
    /// never steps back to the old one in between.
    pub(crate) committed_at: Option<i64>,
}

impl Overlay {
    /// `keys` with the candidate in place.
    pub(crate) fn over(&self, keys: &RawKeys) -> RawKeys {
        let mut overlaid = keys.clone();
        for (key, text) in &self.changes {
            match text {
                Some(text) => overlaid.put(key.as_bytes(), text.clone().into_bytes()),
                None => overlaid.delete(key.as_bytes()),
            }
        }
        overlaid
    }
}
