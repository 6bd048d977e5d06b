//! A rollout as etcd holds it: one JSON record under `P.rollout/state` while the rollout is
//! active, moved to `P.rollout/last` when it ends. Every change of it is a compare-and-swap
//! on the state key's mod revision, so two processes never both act on one version.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RolloutPhase, RolloutPlan, Step};
use crate::client::{Compare, CompareOp, TxnOp};
use crate::config::{keys, EtcdConfig, Store};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

/// The stored record of one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    /// `r-<unix ms>-<pid>`: names the rollout in notes, records and errors.
    pub(crate) id: String,
    pub(crate) phase: RolloutPhase,
    /// The preflight round: a resume after a pause asks every instance again.
    pub(crate) round: u32,
    /// The step being baked (index into `plan.steps`).
    pub(crate) step: usize,
    /// The identities serving the candidate.
    pub(crate) members: Vec<String>,
    /// Bake time of this step so far, counted by the driver's monotonic clock.
    pub(crate) baked_ms: u64,
    pub(crate) plan: StoredPlan,
    /// The candidate: keys relative to the prefix, the text each takes (`None`: deleted).
    pub(crate) changes: BTreeMap<String, Option<String>>,
    /// The field paths the candidate changes, for people.
    pub(crate) paths: Vec<String>,
    /// Each changed key's mod revision when the rollout started (0: absent): the commit
    /// applies only if none moved.
    pub(crate) base: BTreeMap<String, i64>,
    /// The store revision the base was read at; a later write to another field pauses.
    pub(crate) base_revision: i64,
    pub(crate) author: String,
    pub(crate) reason: String,
    /// The driver acting on the rollout: a token of the process that started or resumed it.
    pub(crate) driver: String,
    /// Set by a promote: the step ends its bake now.
    #[serde(default)]
    pub(crate) promote: bool,
    /// Why the rollout paused or ended.
    #[serde(default)]
    pub(crate) outcome: Option<String>,
    /// The revision of the commit.
    #[serde(default)]
    pub(crate) committed: Option<i64>,
}

/// A plan as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredPlan {
    pub(crate) steps: Vec<Step>,
    pub(crate) bake_ms: u64,
    pub(crate) preflight_timeout_ms: u64,
    pub(crate) allow_silent: bool,
}

impl From<&RolloutPlan> for StoredPlan {
    fn from(plan: &RolloutPlan) -> Self {
        StoredPlan {
            steps: plan.steps.clone(),
            bake_ms: millis(plan.bake),
            preflight_timeout_ms: millis(plan.preflight_timeout),
            allow_silent: plan.allow_silent,
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A state read from etcd, with the mod revision every CAS compares against.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) state: State,
    pub(crate) mod_revision: i64,
}

/// `P.rollout/state` and `P.rollout/last`, as the client addresses them.
pub(crate) fn state_key<T: EtcdConfig>() -> String {
    format!("{}state", keys::rollout::<T>())
}

pub(crate) fn last_key<T: EtcdConfig>() -> String {
    format!("{}last", keys::rollout::<T>())
}

fn parse(key: &str, value: &[u8]) -> Result<State> {
    serde_json::from_slice(value).map_err(|err| {
        Error::invalid(format!(
            "the rollout record `{key}` is not this crate's JSON ({err}); delete it with \
             etcdctl to clear it"
        ))
    })
}

impl Store {
    /// The active rollout of `T`, if any (one Range).
    pub(crate) async fn active_rollout<T: EtcdConfig>(&self) -> Result<Option<Held>> {
        let key = state_key::<T>();
        let page = self.client().kv().get(key.as_str()).await?;
        page.kvs
            .first()
            .map(|kv| {
                Ok(Held {
                    state: parse(&key, &kv.value)?,
                    mod_revision: kv.mod_revision,
                })
            })
            .transpose()
    }

    /// The last rollout of `T` that ended, if any.
    pub(crate) async fn last_rollout<T: EtcdConfig>(&self) -> Result<Option<State>> {
        let key = last_key::<T>();
        let page = self.client().kv().get(key.as_str()).await?;
        page.kvs
            .first()
            .map(|kv| {
                let mut state = parse(&key, &kv.value)?;
                // A commit moves the state here in its own txn: that txn's revision.
                if state.phase == RolloutPhase::Committed {
                    state.committed = Some(kv.mod_revision);
                }
                Ok(state)
            })
            .transpose()
    }

    /// Replaces the active state if it is still at `held`'s revision; `Ok(None)` if it moved.
    pub(crate) async fn swap_rollout<T: EtcdConfig>(
        &self,
        held: &Held,
        next: State,
    ) -> Result<Option<Held>> {
        self.swap_rollout_with::<T>(held, next, Vec::new(), Vec::new())
            .await
    }

    /// As [`swap_rollout`](Self::swap_rollout), with more compares and operations in the same
    /// txn. A terminal phase moves the state to `P.rollout/last`.
    pub(crate) async fn swap_rollout_with<T: EtcdConfig>(
        &self,
        held: &Held,
        next: State,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Option<Held>> {
        let key = state_key::<T>();
        let value = serde_json::to_string(&next).unwrap_or_default();
        let terminal = next.phase.is_terminal();
        let mut all_ops = ops;
        if terminal {
            all_ops.push(TxnOp::delete(KeyRange::key(key.clone())));
            all_ops.push(TxnOp::put(last_key::<T>(), value));
        } else {
            all_ops.push(TxnOp::put(key.as_str(), value));
        }
        let response = self
            .client()
            .kv()
            .txn()
            .when(
                std::iter::once(Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    held.mod_revision,
                ))
                .chain(compares),
            )
            .and_then(all_ops)
            .await?;
        if !response.succeeded {
            return Ok(None);
        }
        let mod_revision = response.header.revision;
        let mut state = next;
        if terminal && state.phase == RolloutPhase::Committed {
            state.committed = Some(mod_revision);
        }
        Ok(Some(Held {
            state,
            mod_revision,
        }))
    }

    /// Creates the state of a new rollout, if none is active; `Ok(None)` if one is.
    pub(crate) async fn create_rollout<T: EtcdConfig>(&self, state: State) -> Result<Option<Held>> {
        let key = state_key::<T>();
        let value = serde_json::to_string(&state).unwrap_or_default();
        let response = self
            .client()
            .kv()
            .txn()
            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), value)])
            .await?;
        if !response.succeeded {
            return Ok(None);
        }
        Ok(Some(Held {
            state,
            mod_revision: response.header.revision,
        }))
    }
}

/// What ties a typed write to the rollout area ([`Store::rollout_guard`]).
pub(crate) struct RolloutGuard {
    pub(crate) compares: Vec<Compare>,
    pub(crate) ops: Vec<TxnOp>,
    /// The rollout the write aborts, if it supersedes one.
    pub(crate) superseded: Option<String>,
}

impl Store {
    /// The compares and operations that tie a typed write of `T` to its rollout area: the
    /// write is refused while a rollout is active (its compare fails), or, by a store that
    /// supersedes rollouts, aborts the active one in the same txn.
    pub(crate) async fn rollout_guard<T: EtcdConfig>(&self, by: &str) -> Result<RolloutGuard> {
        let key = state_key::<T>();
        let none_active = Compare::version(key.as_str(), CompareOp::Equal, 0);
        let unguarded = RolloutGuard {
            compares: vec![none_active],
            ops: Vec::new(),
            superseded: None,
        };
        if !self.supersedes_rollouts() {
            return Ok(unguarded);
        }
        let Some(held) = self.active_rollout::<T>().await? else {
            return Ok(unguarded);
        };
        let superseded = Some(held.state.id.clone());
        let mut ended = held.state;
        ended.phase = RolloutPhase::Aborted;
        ended.outcome = Some(format!("superseded by a write by {by}"));
        let value = serde_json::to_string(&ended).unwrap_or_default();
        Ok(RolloutGuard {
            compares: vec![Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                held.mod_revision,
            )],
            ops: vec![
                TxnOp::delete(KeyRange::key(key)),
                TxnOp::put(last_key::<T>(), value),
            ],
            superseded,
        })
    }

    /// After a typed write's txn failed: [`Error::RolloutActive`] if a rollout is why, else
    /// `otherwise`.
    pub(crate) async fn refused_write<T: EtcdConfig>(&self, otherwise: Error) -> Error {
        self.rollout_refusal::<T>().await.unwrap_or(otherwise)
    }

    /// [`Error::RolloutActive`] if a rollout of `T` is active.
    pub(crate) async fn rollout_refusal<T: EtcdConfig>(&self) -> Option<Error> {
        let held = self.active_rollout::<T>().await.ok()??;
        Some(Error::RolloutActive {
            prefix: self.prefix_of::<T>(),
            id: held.state.id,
        })
    }
}
