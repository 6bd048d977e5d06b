//! Progressive delivery of a change: preflight by every live build, canary steps over stable
//! cohorts, bake with gates, automatic abort, and a commit in one transaction. The protocol
//! (keys, transactions, who may do what) is documented on `Store::start_rollout`.
//!
//! - `state.rs`: the stored record and its compare-and-swap;
//! - `cohort.rs`: who is a member at each step;
//! - `control.rs`: start, status, pause, resume, promote, abort, take over;
//! - `drive.rs`: the driver's loop;
//! - the service side is `live/rollout.rs` (verdicts, the overlay) and the follower's overlay.

mod cohort;
mod control;
mod drive;
mod state;

use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use state::{last_key, state_key, State};

use super::Store;

/// How a rollout proceeds: its steps, bake time and preflight timeout.
///
/// ```
/// use std::time::Duration;
/// use etcd_config::{RolloutPlan, Step};
/// let plan = RolloutPlan::new()
///     .steps([Step::Instances(1), Step::Percent(25), Step::Percent(100)])
///     .bake(Duration::from_secs(300))
///     .preflight_timeout(Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct RolloutPlan {
    pub(crate) steps: Vec<Step>,
    pub(crate) bake: Duration,
    pub(crate) preflight_timeout: Duration,
    pub(crate) allow_silent: bool,
}

impl Default for RolloutPlan {
    /// One instance, then 25 %, then everyone; 5 minutes of bake per step; 30 s of preflight.
    fn default() -> Self {
        RolloutPlan {
            steps: vec![Step::Instances(1), Step::Percent(25), Step::Percent(100)],
            bake: Duration::from_secs(300),
            preflight_timeout: Duration::from_secs(30),
            allow_silent: false,
        }
    }
}

impl RolloutPlan {
    /// The default plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// The steps, in order (an empty list keeps the default).
    pub fn steps(mut self, steps: impl IntoIterator<Item = Step>) -> Self {
        let steps: Vec<Step> = steps.into_iter().collect();
        if !steps.is_empty() {
            self.steps = steps;
        }
        self
    }

    /// How long each step holds before the next.
    pub fn bake(mut self, bake: Duration) -> Self {
        self.bake = bake;
        self
    }

    /// How long the preflight waits for every reporting instance's verdict.
    pub fn preflight_timeout(mut self, timeout: Duration) -> Self {
        self.preflight_timeout = timeout;
        self
    }

    /// A plan with no steps: the preflight alone, then the commit (what `set --preflight`
    /// does: every running build checks the change before it is written for everyone).
    pub fn preflight_only() -> Self {
        RolloutPlan {
            steps: Vec::new(),
            bake: Duration::ZERO,
            ..RolloutPlan::default()
        }
    }

    /// Instances that give no verdict within the preflight timeout (and a fleet of none) do
    /// not fail the preflight; they never become members.
    pub fn allow_silent_instances(mut self) -> Self {
        self.allow_silent = true;
        self
    }
}

/// One step of a rollout: how many instances serve the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// This many instances (at least one, at most all).
    Instances(u32),
    /// This percentage of the instances, rounded up (at least one).
    Percent(u8),
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RolloutPhase {
    /// Waiting for every instance's verdict on the candidate.
    Preflight,
    /// A step's members serve the candidate; its bake time runs.
    Baking,
    /// Held by an operator or by a hand edit; members keep the candidate, bake time stops.
    Paused,
    /// The candidate is the config.
    Committed,
    /// The candidate was withdrawn.
    Aborted,
}

impl RolloutPhase {
    /// Committed or aborted.
    pub fn is_terminal(self) -> bool {
        matches!(self, RolloutPhase::Committed | RolloutPhase::Aborted)
    }
}

/// How a driven rollout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RolloutOutcome {
    /// The candidate was written, at this revision.
    Committed {
        /// The revision of the commit.
        revision: i64,
    },
    /// The candidate was withdrawn.
    Aborted {
        /// Why (naming the instance when one caused it).
        reason: String,
    },
}

/// What a live config reports about itself, as a rollout gate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Fine.
    Healthy,
    /// Not fine, and why (shown to the operator; a rollout whose member says this aborts).
    Unhealthy(String),
}

/// Which value a live config serves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Serving {
    /// The config as etcd holds it.
    #[default]
    Committed,
    /// The config with a rollout's candidate overlaid: this instance is a member.
    Candidate {
        /// The rollout's id.
        rollout: String,
    },
}

/// A rollout as [`Store::rollout_status`] reads it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RolloutStatus {
    /// The rollout's id.
    pub id: String,
    /// Where it is.
    pub phase: RolloutPhase,
    /// The step being baked (0-based).
    pub step: usize,
    /// How many steps the plan has.
    pub steps: usize,
    /// The identities serving the candidate.
    pub members: Vec<String>,
    /// Each reporting instance's verdict in the current preflight round.
    pub instances: Vec<InstanceVerdict>,
    /// Bake time left in this step.
    pub bake_left: Duration,
    /// The field paths the candidate changes.
    pub changes: Vec<String>,
    /// Who started it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// Why it paused or ended.
    pub outcome: Option<String>,
    /// The commit's revision.
    pub committed: Option<i64>,
}

/// One instance in a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceVerdict {
    /// The name it reports as.
    pub instance: String,
    /// Its stable identity, which cohorts rank.
    pub identity: String,
    /// Its build, if it said.
    pub build: Option<String>,
    /// `None` until it decided; `Some(Ok)` accepts the candidate, `Some(Err(reason))` rejects it.
    pub verdict: Option<Result<(), String>>,
    /// Whether it serves the candidate.
    pub serving_candidate: bool,
    /// Why it says it is unhealthy, if it does.
    pub unhealthy: Option<String>,
}

/// A rollout this process drives. [`drive`](Self::drive) it to the end.
#[must_use = "a rollout only advances while it is driven"]
pub struct Rollout<T> {
    store: Store,
    held: state::Held,
    _config: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Rollout<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollout")
            .field("id", &self.held.state.id)
            .field("phase", &self.held.state.phase)
            .finish_non_exhaustive()
    }
}

impl<T> Rollout<T> {
    /// The rollout's id (in notes, records and errors).
    pub fn id(&self) -> &str {
        &self.held.state.id
    }
}
