//! `rollout start|status|pause|resume|promote|abort`: progressive delivery from the command
//! line. `start` drives the rollout it starts, printing each step, until it commits or aborts.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

mod status;

use status::{progress, status};

use super::display::{io, print_json};
use super::{editor, files, write, Output, WriteArgs};
use crate::config::{EtcdConfig, FieldEdits, RolloutOutcome, RolloutPlan, Step, Store};
use crate::error::{Error, Result};

/// What `rollout` does.
#[derive(Debug, Clone, Subcommand)]
pub enum RolloutCommand {
    /// Start a rollout of a change and drive it: preflight, each step and its bake, then the
    /// commit (or an abort). Exit code 0 when committed, 8 when aborted.
    Start {
        /// The change.
        #[command(subcommand)]
        change: RolloutChange,
    },
    /// Print the active rollout (or the last one): phase, step, members, verdicts by build,
    /// bake time left, what comes next.
    Status {
        /// Wait up to this many seconds for the rollout to end: exit code 0 when committed,
        /// 8 when aborted, 6 when still running.
        #[arg(long)]
        wait: Option<u64>,
        /// Text or JSON.
        #[command(flatten)]
        output: Output,
    },
    /// Hold the rollout: bake time stops, members keep the candidate.
    Pause(NoteArgs),
    /// Resume a paused rollout with a new preflight.
    Resume(NoteArgs),
    /// End the current step's bake now.
    Promote(NoteArgs),
    /// Withdraw the candidate from every instance, in one transaction.
    Abort(NoteArgs),
}

/// The change a rollout makes, as `set`, `unset`, `edit` and `apply` take it.
#[derive(Debug, Clone, Subcommand)]
pub enum RolloutChange {
    /// `PATH=VALUE ...`, as `set` takes them.
    Set {
        /// `PATH=VALUE` pairs.
        #[arg(required = true)]
        assignments: Vec<String>,
        /// Steps, bake, preflight and the note.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Field paths to remove, as `unset` takes them.
    Unset {
        /// Field paths.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Steps, bake, preflight and the note.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// The config in `$EDITOR`, as `edit` opens it.
    Edit {
        /// Steps, bake, preflight and the note.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// A file of field paths to values, as `apply` takes it.
    Apply {
        /// The file.
        file: PathBuf,
        /// Steps, bake, preflight and the note.
        #[command(flatten)]
        plan: PlanArgs,
    },
}

/// How a rollout proceeds, and its note.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Steps: instance counts and percentages, e.g. `1,25%,100%`.
    #[arg(long, value_delimiter = ',', default_value = "1,25%,100%", value_parser = parse_steps)]
    pub steps: Vec<Step>,
    /// Bake time of each step, e.g. `5m`.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub bake: Duration,
    /// How long the preflight waits for every instance's verdict.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub preflight_timeout: Duration,
    /// Instances that give no verdict (and a fleet of none) do not fail the preflight.
    #[arg(long)]
    pub allow_silent: bool,
    /// The note and output.
    #[command(flatten)]
    pub note: NoteArgs,
}

/// Who acts, why, and how to print.
#[derive(Debug, Clone, Args)]
pub struct NoteArgs {
    /// Who (default: `$USER`).
    #[arg(long)]
    pub author: Option<String>,
    /// Why.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Text or JSON.
    #[command(flatten)]
    pub output: Output,
}

impl NoteArgs {
    fn write_args(&self) -> WriteArgs {
        WriteArgs {
            author: self.author.clone(),
            reason: self.reason.clone(),
            dry_run: false,
            wait: None,
            force: false,
            preflight: false,
            output: self.output,
        }
    }
}

impl RolloutCommand {
    pub(super) fn json(&self) -> bool {
        match self {
            RolloutCommand::Start { change } => change.plan().note.output.json,
            RolloutCommand::Status { output, .. } => output.json,
            RolloutCommand::Pause(note)
            | RolloutCommand::Resume(note)
            | RolloutCommand::Promote(note)
            | RolloutCommand::Abort(note) => note.output.json,
        }
    }
}

impl RolloutChange {
    fn plan(&self) -> &PlanArgs {
        match self {
            RolloutChange::Set { plan, .. }
            | RolloutChange::Unset { plan, .. }
            | RolloutChange::Edit { plan }
            | RolloutChange::Apply { plan, .. } => plan,
        }
    }
}

/// `1,25%,100%` into steps.
fn parse_steps(text: &str) -> std::result::Result<Step, String> {
    let bad = || format!("`{text}` is not a step: write a count (`1`) or a percentage (`25%`)");
    match text.strip_suffix('%') {
        Some(percent) => match percent.parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => Ok(Step::Percent(p)),
            _ => Err(bad()),
        },
        None => match text.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Step::Instances(n)),
            _ => Err(bad()),
        },
    }
}

pub(super) async fn run<T: EtcdConfig>(
    store: &Store,
    command: RolloutCommand,
    out: &mut impl Write,
) -> Result<()> {
    match command {
        RolloutCommand::Start { change } => start::<T>(store, change, out).await,
        RolloutCommand::Status { wait, output } => status::<T>(store, wait, output, out).await,
        RolloutCommand::Pause(args) => {
            store.pause_rollout::<T>(&args.write_args().note()).await?;
            done(out, &args, "paused")
        }
        RolloutCommand::Resume(args) => {
            store.resume_rollout::<T>(&args.write_args().note()).await?;
            done(out, &args, "resumed: a new preflight runs")
        }
        RolloutCommand::Promote(args) => {
            store
                .promote_rollout::<T>(&args.write_args().note())
                .await?;
            done(
                out,
                &args,
                "promoted: the step ends once its members serve the candidate",
            )
        }
        RolloutCommand::Abort(args) => {
            store.abort_rollout::<T>(&args.write_args().note()).await?;
            done(out, &args, "aborted: no instance serves the candidate")
        }
    }
}

fn done(out: &mut impl Write, args: &NoteArgs, what: &str) -> Result<()> {
    if args.output.json {
        return print_json(out, &json!({ "done": what }));
    }
    writeln!(out, "{what}").map_err(io)
}

async fn start<T: EtcdConfig>(
    store: &Store,
    change: RolloutChange,
    out: &mut impl Write,
) -> Result<()> {
    let (edits, args): (FieldEdits, PlanArgs) = match change {
        RolloutChange::Set { assignments, plan } => {
            let edits = write::assignments::<T>(&assignments)?
                .into_iter()
                .map(|(path, value)| (path, Some(value)))
                .collect();
            (edits, plan)
        }
        RolloutChange::Unset { paths, plan } => (
            paths.into_iter().map(|p| (p, None::<String>)).collect(),
            plan,
        ),
        RolloutChange::Edit { plan } => {
            let edited = editor::session::<T>(store, out).await?;
            let edits = files::edits_to::<T>(store, &edited.wanted).await;
            let json = plan.note.output.json;
            let outcome = edits.as_ref().map(drop).map_err(Clone::clone);
            edited.finish(outcome, out, json)?;
            (edits?, plan)
        }
        RolloutChange::Apply { file, plan } => {
            let wanted = files::read_file::<T>(&file)?;
            (files::edits_to::<T>(store, &wanted).await?, plan)
        }
    };
    let mut plan = RolloutPlan::new()
        .steps(args.steps.clone())
        .bake(args.bake)
        .preflight_timeout(args.preflight_timeout);
    if args.allow_silent {
        plan = plan.allow_silent_instances();
    }
    let note = args.note.write_args().note();
    let rollout = store
        .start_rollout_of_fields::<T>(&edits, &note, plan)
        .await?;
    let id = rollout.id().to_owned();
    let json = args.note.output.json;
    if !json {
        writeln!(
            out,
            "rollout {id} started: steps {}",
            steps_text(&args.steps)
        )
        .map_err(io)?;
    }
    let mut driving = Box::pin(rollout.drive());
    let mut last = String::new();
    let outcome = loop {
        tokio::select! {
            outcome = &mut driving => break outcome?,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                if json {
                    continue;
                }
                // The end is reported once, below.
                let status = store.rollout_status::<T>().await;
                if let Ok(Some(status)) = status.map(|s| s.filter(|s| !s.phase.is_terminal())) {
                    let line = progress(&status);
                    if line != last {
                        writeln!(out, "{line}").map_err(io)?;
                        last = line;
                    }
                }
            }
        }
    };
    report_outcome(out, &id, &outcome, json)?;
    if let RolloutOutcome::Committed { revision } = outcome {
        // The commit is written; the fleet confirms it serves it, as `--wait` does.
        let within = args.preflight_timeout.max(Duration::from_secs(10));
        let instances = store.wait_rollout::<T>(revision, within).await?;
        if !json {
            writeln!(out, "every reporting instance ({instances}) is current").map_err(io)?;
        }
    }
    Ok(())
}

/// How an ended rollout is printed; an abort is an error (exit code 8).
fn report_outcome(
    out: &mut impl Write,
    id: &str,
    outcome: &RolloutOutcome,
    json: bool,
) -> Result<()> {
    let (value, aborted) = match outcome {
        RolloutOutcome::Committed { revision } => (
            json!({ "rollout": id, "outcome": "committed", "revision": revision }),
            None,
        ),
        RolloutOutcome::Aborted { reason } => (
            json!({ "rollout": id, "outcome": "aborted", "reason": reason }),
            Some(reason.clone()),
        ),
    };
    if json {
        print_json(out, &value)?;
    } else if let RolloutOutcome::Committed { revision } = outcome {
        writeln!(out, "rollout {id} committed at revision {revision}").map_err(io)?;
    }
    match aborted {
        Some(reason) => Err(Error::RolloutAborted {
            id: id.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn steps_text(steps: &[Step]) -> String {
    let texts: Vec<String> = steps
        .iter()
        .map(|step| match step {
            Step::Instances(n) => n.to_string(),
            Step::Percent(p) => format!("{p}%"),
        })
        .collect();
    texts.join(", ")
}
