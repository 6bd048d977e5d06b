//! `rollout status`, and the progress lines `rollout start` prints.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::display::{io, print_json};
use crate::cli::Output;
use crate::config::{EtcdConfig, RolloutPhase, RolloutStatus, Store};
use crate::error::{Error, Result};

/// One line of a rollout's progress.
pub(super) fn progress(status: &RolloutStatus) -> String {
    let serving = status
        .instances
        .iter()
        .filter(|i| i.serving_candidate)
        .count();
    match status.phase {
        RolloutPhase::Preflight => {
            let decided = status
                .instances
                .iter()
                .filter(|i| i.verdict.is_some())
                .count();
            format!(
                "preflight: {decided} of {} instances decided",
                status.instances.len()
            )
        }
        RolloutPhase::Baking => format!(
            "step {} of {}: members {} ({serving} serve the candidate), bake left {}",
            status.step + 1,
            status.steps,
            status.members.join(", "),
            humantime::format_duration(round(status.bake_left))
        ),
        RolloutPhase::Paused => format!(
            "paused: {}",
            status.outcome.as_deref().unwrap_or("by an operator")
        ),
        RolloutPhase::Committed => format!(
            "committed at revision {}",
            status.committed.unwrap_or_default()
        ),
        _ => format!(
            "aborted: {}",
            status.outcome.as_deref().unwrap_or("no reason given")
        ),
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

pub(super) async fn status<T: EtcdConfig>(
    store: &Store,
    wait: Option<u64>,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let deadline = wait.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let status = loop {
        let status = store.rollout_status::<T>().await?;
        let ended = status.as_ref().is_none_or(|s| s.phase.is_terminal());
        match deadline {
            Some(deadline) if !ended && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => break status,
        }
    };
    let Some(status) = status else {
        return match output.json {
            true => print_json(out, &json!({ "rollout": Value::Null })),
            false => writeln!(out, "no rollout").map_err(io),
        };
    };
    if output.json {
        print_json(out, &status_json(&status))?;
    } else {
        print_status(out, &status)?;
    }
    match (wait, status.phase) {
        (Some(_), RolloutPhase::Aborted) => Err(Error::RolloutAborted {
            id: status.id.clone(),
            reason: status.outcome.clone().unwrap_or_default(),
        }),
        (Some(secs), phase) if !phase.is_terminal() => Err(Error::RolloutRunning {
            id: status.id.clone(),
            after: Duration::from_secs(secs),
        }),
        _ => Ok(()),
    }
}

fn status_json(status: &RolloutStatus) -> Value {
    let instances: Vec<Value> = status
        .instances
        .iter()
        .map(|i| {
            json!({
                "instance": i.instance,
                "identity": i.identity,
                "build": i.build,
                "verdict": match &i.verdict {
                    None => Value::Null,
                    Some(Ok(())) => json!("ok"),
                    Some(Err(reason)) => json!({ "rejected": reason }),
                },
                "member": status.members.contains(&i.identity),
                "serving_candidate": i.serving_candidate,
                "unhealthy": i.unhealthy,
            })
        })
        .collect();
    json!({
        "rollout": status.id,
        "phase": status.phase,
        "step": status.step + 1,
        "steps": status.steps,
        "members": status.members,
        "bake_left_ms": u64::try_from(status.bake_left.as_millis()).unwrap_or(u64::MAX),
        "changes": status.changes,
        "author": status.author,
        "reason": status.reason,
        "outcome": status.outcome,
        "committed_revision": status.committed,
        "instances": instances,
    })
}

fn print_status(out: &mut impl Write, status: &RolloutStatus) -> Result<()> {
    let mut text = format!(
        "rollout {} by {}{}\nchanges: {}\n{}\n",
        status.id,
        status.author,
        match status.reason.as_str() {
            "" => String::new(),
            why => format!(" ({why})"),
        },
        status.changes.join(", "),
        progress(status),
    );
    text.push_str("INSTANCE\tBUILD\tVERDICT\tSERVING\tHEALTH\n");
    for i in &status.instances {
        let verdict = match &i.verdict {
            None => "pending".to_owned(),
            Some(Ok(())) => "ok".to_owned(),
            Some(Err(reason)) => format!("rejects: {reason}"),
        };
        let serving = if i.serving_candidate {
            "candidate"
        } else {
            "committed"
        };
        text.push_str(&format!(
            "{}\t{}\t{verdict}\t{serving}\t{}\n",
            i.instance,
            i.build.as_deref().unwrap_or("-"),
            i.unhealthy.as_deref().unwrap_or("ok"),
        ));
    }
    text.push_str(&builds_text(status));
    if !status.phase.is_terminal() {
        text.push_str(&gates_text(status));
    }
    text.push_str(&next_text(status));
    write!(out, "{text}").map_err(io)
}

/// The preflight by build: `builds: v1 ok (3), v2 rejects (1), v3 pending (1)`.
fn builds_text(status: &RolloutStatus) -> String {
    let mut by_build: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for i in &status.instances {
        let verdict = match &i.verdict {
            None => "pending",
            Some(Ok(())) => "ok",
            Some(Err(_)) => "rejects",
        };
        *by_build
            .entry((i.build.as_deref().unwrap_or("unknown"), verdict))
            .or_default() += 1;
    }
    let parts: Vec<String> = by_build
        .iter()
        .map(|((build, verdict), n)| format!("{build} {verdict} ({n})"))
        .collect();
    format!(
        "builds: {}\n",
        if parts.is_empty() {
            "none reporting".to_owned()
        } else {
            parts.join(", ")
        }
    )
}

/// The step's gates as they stand: members serving the candidate, unhealthy, unverified.
fn gates_text(status: &RolloutStatus) -> String {
    let member = |identity: &str| status.members.iter().any(|m| m == identity);
    let members = status.instances.iter().filter(|i| member(&i.identity));
    let serving = members.clone().filter(|i| i.serving_candidate).count();
    let unhealthy = members.filter(|i| i.unhealthy.is_some()).count();
    let unverified = status
        .instances
        .iter()
        .filter(|i| i.verdict.is_none())
        .count();
    format!(
        "gates: {serving} of {} members serve the candidate, {unhealthy} unhealthy, {unverified} \
         instance(s) without a verdict\n",
        status.members.len()
    )
}

/// What comes next, for people.
fn next_text(status: &RolloutStatus) -> String {
    match status.phase {
        RolloutPhase::Preflight => "next: the first step, once every instance decided\n".into(),
        RolloutPhase::Baking if status.step + 1 < status.steps => {
            format!("next: step {} after the bake\n", status.step + 2)
        }
        RolloutPhase::Baking => "next: the commit after the bake\n".into(),
        RolloutPhase::Paused => {
            "next: `rollout resume` (a new preflight) or `rollout abort`\n".into()
        }
        _ => String::new(),
    }
}
