//! Starting a rollout, reading it, and what anyone may do to it: pause, resume, promote, abort,
//! and take over driving it.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use super::state::{Held, State};
use super::{InstanceVerdict, Rollout, RolloutPhase, RolloutPlan, RolloutStatus};
use crate::config::change_set::{Current, Scope};
use crate::config::fleet::unix_ms;
use crate::config::notes::ChangeNote;
use crate::config::paths::field_of_key;
use crate::config::store::decode_entries;
use crate::config::{keys, EtcdConfig, Store};
use crate::config::{FieldEdits, PlannedEdit};
use crate::error::{Error, Result};

/// A token naming this process as a rollout's driver.
fn driver_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        unix_ms(SystemTime::now()),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Store {
    /// Starts a rollout of a change to `T`: `change` edits the value etcd holds, as
    /// [`edit`](Self::edit) does; the candidate (the keys whose stored text changes) goes to
    /// the rollout area, never to the real keys, and the preflight begins. Drive the returned
    /// [`Rollout`] to the end ([`Rollout::drive`]).
    ///
    /// # The protocol
    ///
    /// Everything lives in etcd under `namespace + T::PREFIX + ".rollout/"`, as JSON that
    /// `etcdctl` shows: `state` holds the active rollout (id, phase, step, members, bake time
    /// so far, the plan, the candidate's changed keys as stored, each changed key's mod
    /// revision at the start, the driver); `last` the last one that ended.
    ///
    /// 1. *Preflight*: every live config started with
    ///    [`report_as`](crate::LiveOptions::report_as) watches `state`, decodes what etcd
    ///    holds with the candidate overlaid, runs its own `validate` and writes its verdict
    ///    into its lease-bound fleet record with its build. One rejection aborts; an instance
    ///    silent past the preflight timeout, or a fleet of none, fails the preflight unless
    ///    the plan allows silent instances.
    /// 2. *Steps*: members are the instances that passed, ranked by SHA-256 of the rollout id
    ///    and their identity; a step's members include the last step's. A member serves the
    ///    candidate over the committed value ([`LiveStatus::serving`](crate::LiveStatus)).
    /// 3. *Bake*: counted by the driver's monotonic clock, saved in `state`. A member that
    ///    rejects, reports itself unhealthy or stays gone aborts or is replaced; a step ends
    ///    when every member serves the candidate and no instance is unverified.
    /// 4. *Abort* moves `state` to `last` in one txn; *commit* writes the changed keys, the
    ///    note (naming the rollout) and the move in one txn guarded by each changed key's mod
    ///    revision at the start.
    /// 5. Every change of `state` is a compare-and-swap on its mod revision. A typed write
    ///    while `state` exists is refused ([`Error::RolloutActive`]) unless the store
    ///    [supersedes rollouts](Self::superseding_rollouts); a hand edit of a changed key
    ///    aborts, of another key pauses (resume runs a new preflight).
    ///
    /// # Errors
    ///
    /// What `change` or `validate` refuses ([`Error::Rejected`]); a change that changes
    /// nothing ([`Error::InvalidArgument`]); [`Error::RolloutActive`] if a rollout of `T` is
    /// active. Nothing is written then.
    pub async fn start_rollout<T: EtcdConfig>(
        &self,
        change: impl FnOnce(&mut T) -> std::result::Result<(), String>,
        note: &ChangeNote,
        plan: RolloutPlan,
    ) -> Result<Rollout<T>> {
        let prefix = self.prefix_of::<T>();
        let current = self.read_current::<T>().await?;
        let keys = current.raw_keys::<T>();
        let mut value = decode_entries::<T>(&prefix, self.keyring(), current.revision, &keys)?;
        change(&mut value).map_err(|reason| Error::Rejected {
            prefix: prefix.clone(),
            revision: None,
            reason,
        })?;
        self.start_with(&value, &current, &Scope::default(), note, plan)
            .await
    }

    /// [`start_rollout`](Self::start_rollout) of a change by field path, as
    /// [`change_fields`](Self::change_fields) makes it (the command line's `rollout start
    /// set|unset|edit|apply`).
    ///
    /// # Errors
    ///
    /// As [`plan_edit`](Self::plan_edit) and [`start_rollout`](Self::start_rollout).
    pub async fn start_rollout_of_fields<T: EtcdConfig>(
        &self,
        edits: &FieldEdits,
        note: &ChangeNote,
        plan: RolloutPlan,
    ) -> Result<Rollout<T>> {
        let planned = self.plan_edit::<T>(edits).await?;
        self.start_rollout_of_plan(&planned, note, plan).await
    }

    /// Starts a rollout of a planned edit.
    pub(crate) async fn start_rollout_of_plan<T: EtcdConfig>(
        &self,
        planned: &PlannedEdit<T>,
        note: &ChangeNote,
        plan: RolloutPlan,
    ) -> Result<Rollout<T>> {
        self.start_with(&planned.after, &planned.current, &planned.scope, note, plan)
            .await
    }

    /// Starts a rollout that makes etcd hold `value` instead of `current`.
    async fn start_with<T: EtcdConfig>(
        &self,
        value: &T,
        current: &Current,
        scope: &Scope,
        note: &ChangeNote,
        plan: RolloutPlan,
    ) -> Result<Rollout<T>> {
        let prefix = self.prefix_of::<T>();
        let set = self.change_of(value, current, scope, false)?;
        if set.is_empty() {
            return Err(Error::invalid(format!(
                "the change leaves {prefix} as it is: no rollout started"
            )));
        }
        // The commit writes the changes, a note and the state move in one txn.
        self.check_size(&prefix, set.len() + 4)?;
        let fields = keys::fields::<T>();
        let relative = |key: &str| key.strip_prefix(&fields).unwrap_or(key).to_owned();
        let mut changes = BTreeMap::new();
        for (key, text) in &set.puts {
            changes.insert(relative(key), Some(text.clone()));
        }
        for key in &set.deletes {
            changes.insert(relative(&String::from_utf8_lossy(key)), None);
        }
        let schema = T::schema();
        let mut paths: Vec<String> = changes
            .keys()
            .filter_map(|key| field_of_key(&schema, &format!("{fields}{key}")).map(|(p, _)| p))
            .collect();
        paths.dedup();
        let base = changes
            .keys()
            .map(|key| {
                let full = format!("{fields}{key}");
                let revision = current
                    .kvs()
                    .find(|kv| kv.key == full.as_bytes())
                    .map_or(0, |kv| kv.mod_revision);
                (key.clone(), revision)
            })
            .collect();
        let state = State {
            // Unique per config: two rollouts of one config cannot start in the same
            // millisecond (the state is created by compare-and-swap).
            id: format!("r-{:x}", unix_ms(SystemTime::now())),
            phase: RolloutPhase::Preflight,
            round: 1,
            step: 0,
            members: Vec::new(),
            baked_ms: 0,
            plan: (&plan).into(),
            changes,
            paths,
            base,
            base_revision: current.revision,
            author: note.author.clone(),
            reason: note.reason.clone(),
            driver: driver_token(),
            promote: false,
            outcome: None,
            committed: None,
        };
        match self.create_rollout::<T>(state).await? {
            Some(held) => {
                tracing::info!(%prefix, rollout = %held.state.id, "rollout started");
                Ok(Rollout::new(self.clone(), held))
            }
            None => Err(self.rollout_active::<T>().await),
        }
    }

    /// The error for a write refused because a rollout is active.
    pub(crate) async fn rollout_active<T: EtcdConfig>(&self) -> Error {
        let id = match self.active_rollout::<T>().await {
            Ok(Some(held)) => held.state.id,
            _ => "(ended meanwhile)".to_owned(),
        };
        Error::RolloutActive {
            prefix: self.prefix_of::<T>(),
            id,
        }
    }

    /// The active rollout of `T`, or else the last one that ended; `None` if there never was
    /// one (two Ranges and a read of the fleet).
    pub async fn rollout_status<T: EtcdConfig>(&self) -> Result<Option<RolloutStatus>> {
        let state = match self.active_rollout::<T>().await? {
            Some(held) => held.state,
            None => match self.last_rollout::<T>().await? {
                Some(state) => state,
                None => return Ok(None),
            },
        };
        let fleet = self.fleet::<T>().await?;
        let instances = fleet
            .iter()
            .map(|record| InstanceVerdict {
                instance: record.instance.clone(),
                identity: record.identity.clone(),
                build: record.build.clone(),
                verdict: record.verdict_on(&state.id, state.round),
                serving_candidate: record.serving.as_deref() == Some(state.id.as_str()),
                unhealthy: record.unhealthy.clone(),
            })
            .collect();
        let bake = Duration::from_millis(state.plan.bake_ms);
        Ok(Some(RolloutStatus {
            bake_left: bake.saturating_sub(Duration::from_millis(state.baked_ms)),
            steps: state.plan.steps.len(),
            id: state.id,
            phase: state.phase,
            step: state.step,
            members: state.members,
            instances,
            changes: state.paths,
            author: state.author,
            reason: state.reason,
            outcome: state.outcome,
            committed: state.committed,
        }))
    }

    /// Holds the active rollout of `T`: bake time stops, members keep the candidate.
    ///
    /// # Errors
    ///
    /// [`Error::NoRollout`] if none is active.
    pub async fn pause_rollout<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<()> {
        let why = format!("paused by {}", who(note));
        self.change_rollout::<T>(|state| {
            if state.phase != RolloutPhase::Paused {
                state.phase = RolloutPhase::Paused;
                state.outcome = Some(why.clone());
            }
        })
        .await
    }

    /// Resumes a paused rollout of `T` with a new preflight round (the fleet or the config may
    /// have changed meanwhile); the step and its bake time so far are kept.
    pub async fn resume_rollout<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<()> {
        let _ = note;
        let revision = self.read_current::<T>().await?.revision;
        self.change_rollout::<T>(|state| {
            if state.phase == RolloutPhase::Paused {
                state.phase = RolloutPhase::Preflight;
                state.round += 1;
                state.base_revision = revision;
                state.outcome = None;
            }
        })
        .await
    }

    /// Ends the bake of the current step now: the driver moves to the next step (or commits
    /// after the last) once the step's gates pass.
    pub async fn promote_rollout<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<()> {
        let _ = note;
        self.change_rollout::<T>(|state| state.promote = true).await
    }

    /// Withdraws the candidate of the active rollout of `T`, in one transaction: after it no
    /// instance serves the candidate.
    pub async fn abort_rollout<T: EtcdConfig>(&self, note: &ChangeNote) -> Result<()> {
        let why = format!("aborted by {}", who(note));
        self.change_rollout::<T>(|state| {
            state.phase = RolloutPhase::Aborted;
            state.outcome = Some(why.clone());
        })
        .await
    }

    /// Takes over driving the active rollout of `T` (its driver died, or moved on): from now
    /// on this process acts and the old driver stops at its next step.
    pub async fn resume_driving<T: EtcdConfig>(&self) -> Result<Rollout<T>> {
        let token = driver_token();
        loop {
            let held = self.require_rollout::<T>().await?;
            let mut next = held.state.clone();
            next.driver = token.clone();
            if let Some(held) = self.swap_rollout::<T>(&held, next).await? {
                return Ok(Rollout::new(self.clone(), held));
            }
        }
    }

    /// The active rollout, or [`Error::NoRollout`].
    async fn require_rollout<T: EtcdConfig>(&self) -> Result<Held> {
        self.active_rollout::<T>()
            .await?
            .ok_or_else(|| Error::NoRollout {
                prefix: self.prefix_of::<T>(),
            })
    }

    /// Applies `change` to the active state by compare-and-swap, retried while others move it.
    async fn change_rollout<T: EtcdConfig>(&self, change: impl Fn(&mut State)) -> Result<()> {
        loop {
            let held = self.require_rollout::<T>().await?;
            let mut next = held.state.clone();
            change(&mut next);
            if next == held.state {
                return Ok(());
            }
            if self.swap_rollout::<T>(&held, next).await?.is_some() {
                return Ok(());
            }
        }
    }
}

/// `alice (why)` for outcomes.
fn who(note: &ChangeNote) -> String {
    match note.reason.as_str() {
        "" => note.author.clone(),
        why => format!("{}: {why}", note.author),
    }
}

impl<T> Rollout<T> {
    pub(super) fn new(store: Store, held: Held) -> Self {
        Rollout {
            store,
            held,
            _config: PhantomData,
        }
    }
}
