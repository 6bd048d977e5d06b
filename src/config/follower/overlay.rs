//! A rollout's candidate, as a member overlays it on the keys etcd holds.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// What a follower knows of the rollouts it takes part in.
#[derive(Default)]
pub(super) struct Rollout {
    /// A rollout's candidate, overlaid on `keys` while this instance is one of its members.
    overlay: Option<Arc<Overlay>>,
    /// The rollout whose candidate `good` includes.
    serving: Option<String>,
}

/// The rollout state of a follower, kept apart: most never have any.
impl<T> super::Tracked<T> {
    pub(super) fn overlay(&self) -> Option<&Arc<Overlay>> {
        self.rollout.as_ref()?.overlay.as_ref()
    }

    /// Whether `revision` brings in the committed candidate this follower overlays.
    pub(super) fn commits_at(&self, revision: i64) -> bool {
        self.overlay()
            .and_then(|o| o.committed_at)
            .is_some_and(|at| revision >= at)
    }

    /// The rollout whose candidate `good` includes.
    pub(super) fn serving(&self) -> Option<&String> {
        self.rollout.as_ref()?.serving.as_ref()
    }

    pub(super) fn set_overlay(&mut self, overlay: Option<Arc<Overlay>>) {
        // The keys the value decodes from change with the overlay, whatever the watch says.
        self.touch(None);
        self.rollout_mut(overlay.is_some(), |r| r.overlay = overlay);
    }

    pub(super) fn set_serving(&mut self, serving: Option<String>) {
        self.rollout_mut(serving.is_some(), |r| r.serving = serving);
    }

    /// Changes the rollout state; `some` says whether the change sets something (else no box
    /// is made for it), and a state left empty is dropped.
    fn rollout_mut(&mut self, some: bool, change: impl FnOnce(&mut Rollout)) {
        if !some && self.rollout.is_none() {
            return;
        }
        let rollout = self.rollout.get_or_insert_with(Box::default);
        change(rollout);
        if rollout.overlay.is_none() && rollout.serving.is_none() {
            self.rollout = None;
        }
    }
}
