//! The driver: one loop that reads the rollout, the config's keys and the fleet, and takes the
//! next step by compare-and-swap, until the rollout commits or aborts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::cohort;
use super::state::State;
use super::{Rollout, RolloutOutcome, RolloutPhase};
use crate::client::{Compare, CompareOp, TxnOp};
use crate::config::change_set::Current;
use crate::config::notes::ChangeNote;
use crate::config::{keys, EtcdConfig, FleetRecord};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

/// How often the driver looks.
const TICK: Duration = Duration::from_millis(200);

/// How often the bake time so far is saved in etcd.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// How long a member may be missing from the fleet (a restart) before it is replaced.
const LOST_AFTER: Duration = Duration::from_secs(10);

/// What the driver keeps in memory between looks: clocks, never wall time.
#[derive(Default)]
struct Clocks {
    /// Since when the preflight of the current round has waited.
    preflight: Option<(u32, Instant)>,
    /// When this driver started counting the current step, and the bake time saved then.
    bake: Option<(usize, Instant, u64)>,
    saved_at: Option<Instant>,
    /// Since when each missing member has been missing.
    missing: HashMap<String, Instant>,
    /// Since when each instance without a verdict (one that joined) has been waited for.
    unverified: HashMap<String, Instant>,
}

/// What one look decided.
enum Next {
    Wait,
    Swap(Box<State>),
    Abort(String),
    Commit,
}

impl<T: EtcdConfig> Rollout<T> {
    /// Drives the rollout to its end: preflight, each step with its bake and gates, then the
    /// commit (or an abort). Returns how it ended, whoever ended it. After a commit,
    /// [`Store::wait_rollout`](crate::Store::wait_rollout) with the returned revision confirms that every instance serves
    /// it.
    ///
    /// # Errors
    ///
    /// etcd's errors while reading or writing the rollout; [`Error::RolloutTakenOver`] when
    /// another process resumed driving it. The rollout stays where it was: another driver
    /// can resume it ([`Store::resume_driving`](crate::Store::resume_driving)).
    pub async fn drive(mut self) -> Result<RolloutOutcome> {
        let mut clocks = Clocks::default();
        loop {
            let Some(held) = self.store.active_rollout::<T>().await? else {
                return self.ended().await;
            };
            if held.state.id != self.held.state.id {
                return self.ended().await;
            }
            if held.state.driver != self.held.state.driver {
                return Err(Error::RolloutTakenOver {
                    prefix: self.store.prefix_of::<T>(),
                    id: held.state.id,
                });
            }
            self.held = held;
            let current = self.store.read_current::<T>().await?;
            let fleet = self.store.fleet::<T>().await?;
            let next = match hand_edit::<T>(&self.held.state, &current) {
                Some(next) => next,
                None => decide(&self.held.state, &fleet, &mut clocks),
            };
            match next {
                Next::Wait => {}
                Next::Swap(state) => {
                    self.store.swap_rollout::<T>(&self.held, *state).await?;
                }
                Next::Abort(reason) => {
                    tracing::warn!(prefix = T::PREFIX, rollout = %self.held.state.id, %reason,
                        "rollout aborted");
                    let mut state = self.held.state.clone();
                    state.phase = RolloutPhase::Aborted;
                    state.outcome = Some(reason);
                    if self
                        .store
                        .swap_rollout::<T>(&self.held, state)
                        .await?
                        .is_some()
                    {
                        ended(T::PREFIX, "aborted");
                    }
                }
                Next::Commit => {
                    if let Some(revision) = self.commit().await? {
                        return Ok(RolloutOutcome::Committed { revision });
                    }
                }
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Writes the candidate, the note and the state's move to `last` in one txn, guarded by
    /// the base revision of every changed key; `None` if something moved (the next look
    /// decides again).
    async fn commit(&self) -> Result<Option<i64>> {
        let state = &self.held.state;
        let fields = keys::fields::<T>();
        let compares = state.base.iter().map(|(key, revision)| {
            Compare::mod_revision(format!("{fields}{key}"), CompareOp::Equal, *revision)
        });
        let mut ops: Vec<TxnOp> = state
            .changes
            .iter()
            .map(|(key, text)| match text {
                Some(text) => TxnOp::put(format!("{fields}{key}"), text.as_str()),
                None => TxnOp::delete(KeyRange::key(format!("{fields}{key}"))),
            })
            .collect();
        let note = ChangeNote::by(state.author.clone()).reason(state.reason.clone());
        let note = note.prefixed(&format!("rollout {}", state.id));
        ops.extend(self.store.note_ops::<T>(&note).await?);
        let mut next = state.clone();
        next.phase = RolloutPhase::Committed;
        next.outcome = Some("committed".to_owned());
        let done = self
            .store
            .swap_rollout_with::<T>(&self.held, next, compares.collect(), ops)
            .await?;
        Ok(done.map(|held| {
            tracing::info!(prefix = T::PREFIX, rollout = %state.id, revision = held.mod_revision,
                "rollout committed");
            ended(T::PREFIX, "committed");
            held.mod_revision
        }))
    }

    /// How a rollout that is no longer active ended (by this driver or anyone else).
    async fn ended(&self) -> Result<RolloutOutcome> {
        let last = self.store.last_rollout::<T>().await?;
        Ok(match last {
            Some(state) if state.id == self.held.state.id => match state.phase {
                RolloutPhase::Committed => RolloutOutcome::Committed {
                    revision: state.committed.unwrap_or_default(),
                },
                _ => RolloutOutcome::Aborted {
                    reason: state.outcome.unwrap_or_else(|| "aborted".to_owned()),
                },
            },
            _ => RolloutOutcome::Aborted {
                reason: "the rollout's record was removed".to_owned(),
            },
        })
    }
}

/// A hand edit since the start: of a changed key aborts, of another field pauses.
fn hand_edit<T: EtcdConfig>(state: &State, current: &Current) -> Option<Next> {
    let fields = keys::fields::<T>();
    let revision_of = |key: &str| {
        current
            .kvs()
            .find(|kv| keys::relative::<T>(kv.key) == Some(key.as_bytes()))
            .map_or(0, |kv| kv.mod_revision)
    };
    for (key, base) in &state.base {
        if revision_of(key) != *base {
            return Some(Next::Abort(format!(
                "`{fields}{key}`, which the rollout changes, was written by someone else"
            )));
        }
    }
    if state.phase == RolloutPhase::Paused {
        return None;
    }
    let other = current
        .kvs()
        .find(|kv| kv.mod_revision > state.base_revision)?;
    let mut next = state.clone();
    next.phase = RolloutPhase::Paused;
    next.outcome = Some(format!(
        "`{}` was written by someone else during the rollout: the preflight checked another \
         combination; resume to run it again",
        String::from_utf8_lossy(other.key)
    ));
    Some(Next::Swap(Box::new(next)))
}

/// The next move for the rollout, from the fleet's records.
fn decide(state: &State, fleet: &[FleetRecord], clocks: &mut Clocks) -> Next {
    let live: Vec<&FleetRecord> = fleet.iter().filter(|r| r.state != "stopped").collect();
    if let Some((record, reason)) =
        live.iter()
            .find_map(|r| match r.verdict_on(&state.id, state.round) {
                Some(Err(reason)) => Some((r, reason)),
                _ => None,
            })
    {
        return Next::Abort(format!(
            "instance {} (build {}) rejects the candidate: {reason}",
            record.instance,
            record.build.as_deref().unwrap_or("unknown")
        ));
    }
    match state.phase {
        RolloutPhase::Preflight => preflight(state, &live, clocks),
        RolloutPhase::Baking => bake(state, &live, clocks),
        _ => {
            clocks.preflight = None;
            clocks.bake = None;
            Next::Wait
        }
    }
}

/// Whether every instance decided: the preflight passes, waits, or fails for silence.
fn preflight(state: &State, live: &[&FleetRecord], clocks: &mut Clocks) -> Next {
    let since = match clocks.preflight {
        Some((round, since)) if round == state.round => since,
        _ => {
            let now = Instant::now();
            clocks.preflight = Some((state.round, now));
            now
        }
    };
    let silent: Vec<&str> = live
        .iter()
        .filter(|r| r.verdict_on(&state.id, state.round).is_none())
        .map(|r| r.instance.as_str())
        .collect();
    let timed_out = since.elapsed() >= Duration::from_millis(state.plan.preflight_timeout_ms);
    if !silent.is_empty() && !timed_out {
        return Next::Wait;
    }
    if !state.plan.allow_silent {
        if live.is_empty() {
            return Next::Abort(
                "no instance reports on this config, so none could check the candidate (allow \
                 silent instances to roll out anyway)"
                    .to_owned(),
            );
        }
        if !silent.is_empty() {
            return Next::Abort(format!(
                "no verdict on the candidate within the preflight timeout from: {}",
                silent.join(", ")
            ));
        }
    }
    if state.plan.steps.is_empty() {
        return Next::Commit; // preflight only
    }
    let mut next = state.clone();
    next.phase = RolloutPhase::Baking;
    next.members = members(state, live);
    clocks.bake = Some((state.step, Instant::now(), state.baked_ms));
    Next::Swap(Box::new(next))
}

/// The identities that passed this round, and this step's members among them.
fn members(state: &State, live: &[&FleetRecord]) -> Vec<String> {
    let eligible: Vec<&str> = live
        .iter()
        .filter(|r| r.verdict_on(&state.id, state.round) == Some(Ok(())))
        .map(|r| r.identity.as_str())
        .collect();
    let size = cohort::size(state.plan.steps[state.step], eligible.len());
    cohort::members(&state.id, &eligible, &state.members, size)
}

/// One look during a step's bake: gates, top-up, bake time, and the move to the next step.
fn bake(state: &State, live: &[&FleetRecord], clocks: &mut Clocks) -> Next {
    let record_of = |identity: &str| live.iter().find(|r| r.identity == identity);
    if let Some(next) = members_gate(state, live, clocks) {
        return next;
    }
    let (step, started, saved) = match clocks.bake {
        Some(clock) if clock.0 == state.step => clock,
        _ => {
            let clock = (state.step, Instant::now(), state.baked_ms);
            clocks.bake = Some(clock);
            clock
        }
    };
    let baked = saved + super::state::millis(started.elapsed());
    let serving = state
        .members
        .iter()
        .all(|m| record_of(m).is_some_and(|r| r.serving.as_deref() == Some(state.id.as_str())));
    let unverified = match unverified_gate(state, live, clocks) {
        Ok(unverified) => unverified,
        Err(abort) => return abort,
    };
    if (baked >= state.plan.bake_ms || state.promote) && serving && !unverified {
        if step + 1 == state.plan.steps.len() {
            return Next::Commit;
        }
        let mut next = state.clone();
        next.step += 1;
        next.baked_ms = 0;
        next.promote = false;
        next.members = members(&next, live);
        clocks.bake = Some((next.step, Instant::now(), 0));
        return Next::Swap(Box::new(next));
    }
    if clocks.saved_at.is_none_or(|at| at.elapsed() >= SAVE_EVERY) && baked != state.baked_ms {
        clocks.saved_at = Some(Instant::now());
        let mut next = state.clone();
        next.baked_ms = baked;
        // The saved time becomes the base of this driver's count.
        clocks.bake = Some((step, Instant::now(), baked));
        return Next::Swap(Box::new(next));
    }
    Next::Wait
}

/// The members' gates: one that says it is unhealthy aborts; one gone for longer than a
/// record's lease is replaced, and an instance that joined may fill the step (the step's bake
/// starts over for the new cohort).
fn members_gate(state: &State, live: &[&FleetRecord], clocks: &mut Clocks) -> Option<Next> {
    for member in &state.members {
        match live.iter().find(|r| r.identity == *member) {
            Some(record) => {
                clocks.missing.remove(member);
                if let Some(why) = &record.unhealthy {
                    return Some(Next::Abort(format!(
                        "member {} reports itself unhealthy: {why}",
                        record.instance
                    )));
                }
            }
            None => {
                clocks
                    .missing
                    .entry(member.clone())
                    .or_insert_with(Instant::now);
            }
        }
    }
    let lost = clocks
        .missing
        .iter()
        .any(|(member, since)| state.members.contains(member) && since.elapsed() >= LOST_AFTER);
    let wanted = members(state, live);
    if !lost && wanted.len() <= state.members.len() {
        return None;
    }
    let mut next = state.clone();
    next.members = wanted;
    next.baked_ms = 0;
    clocks.missing.clear();
    clocks.bake = Some((state.step, Instant::now(), 0));
    Some(Next::Swap(Box::new(next)))
}

/// Whether an instance has no verdict yet (one that joined during the rollout): the step
/// cannot end while one has none; past the preflight timeout, the rollout aborts (unless the
/// plan allows silent instances).
fn unverified_gate(
    state: &State,
    live: &[&FleetRecord],
    clocks: &mut Clocks,
) -> std::result::Result<bool, Next> {
    let unverified: Vec<&str> = live
        .iter()
        .filter(|r| r.verdict_on(&state.id, state.round).is_none())
        .map(|r| r.instance.as_str())
        .collect();
    clocks
        .unverified
        .retain(|instance, _| unverified.contains(&instance.as_str()));
    let timeout = Duration::from_millis(state.plan.preflight_timeout_ms);
    for instance in &unverified {
        let since = *clocks
            .unverified
            .entry((*instance).to_owned())
            .or_insert_with(Instant::now);
        if since.elapsed() >= timeout && !state.plan.allow_silent {
            return Err(Next::Abort(format!(
                "instance {instance} joined during the rollout and gave no verdict on the \
                 candidate within the preflight timeout"
            )));
        }
    }
    Ok(!unverified.is_empty() && !state.plan.allow_silent)
}

/// Counts a rollout this driver ended (`etcd_config_rollouts_total{prefix, outcome}`).
fn ended(prefix: &str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("etcd_config_rollouts_total", "prefix" => prefix.to_owned(), "outcome" => outcome)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (prefix, outcome);
}
