//! The admin command line (cargo feature `cli`): a clap subcommand set that a service embeds in
//! its own binary, so that the type and its `validate` are the service's own.
//!
//! ```no_run
//! # use etcd_config::{EtcdConfig, Store};
//! # #[derive(EtcdConfig, Debug, Clone, PartialEq)] #[etcd(prefix = "/services/gateway")]
//! # struct Gateway { port: u16 }
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Admin {
//!     #[command(subcommand)]
//!     command: etcd_config::cli::Command,
//! }
//!
//! # async fn demo(store: Store) -> etcd_config::Result<()> {
//! let admin = Admin::parse();
//! let json = admin.command.json();
//! if let Err(err) = etcd_config::cli::run::<Gateway>(&store, admin.command, &mut std::io::stdout()).await {
//!     etcd_config::cli::print_error(&err, json, &mut std::io::stderr());
//!     std::process::exit(etcd_config::cli::exit_code(&err));
//! }
//! # Ok(()) }
//! ```
//!
//! Every write takes `--author` and `--reason` (the change note, written in the same
//! transaction), `--dry-run` (print the field diff and the operations, change nothing) and
//! `--wait SECONDS` (for every reporting instance to apply the change). Secret fields are shown
//! as `(secret, set)` or `(secret, unset)`, in diffs as changed only, and are set from a prompt
//! without echo or from standard input (`PATH=-`), never from the command line. With a
//! [`Keyring`](crate::Keyring) on the store, they are saved encrypted, and `rotate`
//! re-encrypts them with its newest key.
//!
//! Every command prints text for a terminal, or with `--json` one JSON value (`watch`: one
//! per line); errors go to the caller (print them on stderr) with an [`exit_code`]. The JSON
//! shapes:
//!
//! | command | JSON |
//! |---|---|
//! | `show` | `{"prefix", "revision", "valid", "fields": {path: value}, "secrets", "defaults": [path], "unknown_keys": [{"key", "did_you_mean"}], "problems"}` |
//! | `get` | `{"path", "value", "default"}` (`"secret": true` and no value for a secret) |
//! | writes | `{"dry_run", "written", "diff": [..], "revision"?, "operations"?, "rollout"?}` |
//! | `diff` | `{"diff": [{"path", "secret", "before", "after", "change"}]}` (absent: `null`) |
//! | `history` | `[{"revision", "changed": [path], "valid", "author", "reason", "noted", "compacted"}]` |
//! | `status` | `{"changed_at", "instances": [..], "by_revision": {rev: [instance]}}` |
//! | `watch` | `{"revision", "changed": [path]}`, `{"revision", "rejected": reason}`, `{"revision", "current": true}`, `{"revision", "resynced": true}`, `{"reconnecting": reason}`, `{"reconnected": true}`, `{"missed": n}` |
//! | `schema` | JSON Schema |
//!
//! `show --json` lists secret fields apart: `"secrets": {path: "set" | "unset"}`; `defaults`
//! lists the fields served by the code default (no key in etcd); `problems` is `null` unless
//! the config does not load (then `valid` is false, `fields` holds what etcd holds, and the
//! command fails with exit code 7). A write that changes nothing has `"written": false`.

use std::io::Write;
use std::path::PathBuf;

mod display;
mod editor;
mod files;
mod report;
mod rollout;
mod show;
mod watch;
mod write;

pub use rollout::{NoteArgs, PlanArgs, RolloutChange, RolloutCommand};

use clap::{Args, Subcommand};

use crate::config::{ChangeNote, EtcdConfig, Store};
use crate::error::{Error, Result, ServerErrorKind};

/// What to do with the config.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Print every field with its value (secrets hidden) and the revision.
    Show {
        /// Text or JSON.
        #[command(flatten)]
        output: Output,
    },
    /// Print one field's value as etcd stores it.
    Get {
        /// The field path, e.g. `tls.cert_path` or `routes.blue`.
        path: String,
        /// Text or JSON.
        #[command(flatten)]
        output: Output,
    },
    /// Set fields from text: `PATH=VALUE ...`, validated, in one transaction. A secret's
    /// value comes from standard input: `PATH=-`.
    Set {
        /// `PATH=VALUE` pairs, each value as `etcdctl get` shows it.
        #[arg(required = true)]
        assignments: Vec<String>,
        /// The change note, dry run and rollout wait.
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Remove fields (optional fields become absent, map entries go).
    Unset {
        /// Field paths.
        #[arg(required = true)]
        paths: Vec<String>,
        /// The change note, dry run and rollout wait.
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Print each change etcd's history holds: revision, changed fields, author and reason.
    History {
        /// Text or JSON.
        #[command(flatten)]
        output: Output,
    },
    /// Save the config as it was at a revision again (validated by today's rules).
    Rollback {
        /// The revision to go back to.
        revision: i64,
        /// The change note, dry run and rollout wait.
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Print the field diff between the config now and a file (TOML or JSON of field paths
    /// to values, as `edit` writes), or between two revisions.
    Diff {
        /// The file to compare with.
        file: Option<PathBuf>,
        /// Compare the config as it was at this revision instead ...
        #[arg(long, conflicts_with = "file")]
        from: Option<i64>,
        /// ... with this one (default: now).
        #[arg(long, requires = "from")]
        to: Option<i64>,
        /// Text or JSON.
        #[command(flatten)]
        output: Output,
    },
    /// Make the config what a file says: TOML (or JSON, by the `.json` extension) of field
    /// paths to values. Fields the file leaves out are removed, except secret ones.
    Apply {
        /// The file.
        file: PathBuf,
        /// The change note, dry run and rollout wait.
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Open `$EDITOR` on the config as TOML (secret fields left out and left as they are),
    /// then validate, show the diff and save what was edited.
    Edit {
        /// The change note, dry run and rollout wait.
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Re-encrypt every secret field with the key ring's newest key, in one transaction
    /// (needs a store with a key ring).
    Rotate {
        /// The change note, dry run and rollout wait.
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Print every key with its type, default and doc (`--json`: as JSON Schema).
    Schema {
        /// Text or JSON.
        #[command(flatten)]
        output: Output,
    },
    /// Print the fleet: instances per revision, those behind or not confirmed current, and
    /// rejections with their reasons.
    Status {
        /// Text or JSON.
        #[command(flatten)]
        output: Output,
    },
    /// Print each change as it happens, each revision refused and the one valid again, and the
    /// connection to etcd lost and back (Ctrl-C to stop).
    Watch {
        /// Text or JSON.
        #[command(flatten)]
        output: Output,
    },
    /// Progressive delivery: `rollout start set|unset|edit|apply ...`, `status`, `pause`,
    /// `resume`, `promote`, `abort`.
    Rollout {
        /// What to do.
        #[command(subcommand)]
        command: RolloutCommand,
    },
}

impl Command {
    /// Whether the command writes over an active rollout (`--force`).
    fn force(&self) -> bool {
        match self {
            Command::Set { write, .. }
            | Command::Unset { write, .. }
            | Command::Rollback { write, .. }
            | Command::Apply { write, .. }
            | Command::Edit { write }
            | Command::Rotate { write } => write.force,
            _ => false,
        }
    }

    /// Whether the command was asked for JSON (`--json`): its errors should be JSON too
    /// ([`print_error`]).
    pub fn json(&self) -> bool {
        match self {
            Command::Show { output }
            | Command::Get { output, .. }
            | Command::History { output }
            | Command::Diff { output, .. }
            | Command::Schema { output }
            | Command::Status { output }
            | Command::Watch { output } => output.json,
            Command::Set { write, .. }
            | Command::Unset { write, .. }
            | Command::Rollback { write, .. }
            | Command::Apply { write, .. }
            | Command::Edit { write }
            | Command::Rotate { write } => write.output.json,
            Command::Rollout { command } => command.json(),
        }
    }
}

/// Prints a failed command's error for whoever runs it: `error: ...` as text, or with `json`
/// one JSON object on a line, `{"error": message, "exit_code": n}`, so that a script reading
/// `--json` output never has to parse prose. Secret values are never part of an error.
pub fn print_error(err: &Error, json: bool, to: &mut impl Write) {
    let _ = if json {
        let value = serde_json::json!({ "error": err.to_string(), "exit_code": exit_code(err) });
        writeln!(to, "{value}")
    } else {
        writeln!(to, "error: {err}")
    };
}

/// How a command prints.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Output {
    /// Print JSON instead of text (`watch`: one JSON object per line).
    #[arg(long)]
    pub json: bool,
}

/// What every write takes.
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Who makes the change (default: `$USER`).
    #[arg(long)]
    pub author: Option<String>,
    /// Why.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait up to this many seconds for every reporting instance to apply the change.
    #[arg(long)]
    pub wait: Option<u64>,
    /// Write even while a rollout is active, aborting it in the same transaction.
    #[arg(long)]
    pub force: bool,
    /// Ask every running build to check the change first (a rollout with no steps): any
    /// rejection aborts it and nothing is written (exit code 8). Not for `rotate`, which
    /// changes no value.
    #[arg(long, conflicts_with = "dry_run")]
    pub preflight: bool,
    /// Text or JSON.
    #[command(flatten)]
    pub output: Output,
}

impl WriteArgs {
    fn note(&self) -> ChangeNote {
        let author = self
            .author
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".to_owned());
        ChangeNote::by(author).reason(self.reason.clone())
    }
}

/// Runs `command` against `T` in `store`, printing to `out`.
///
/// # Errors
///
/// The store's errors (a refused value, a conflict, a timeout), and output errors as
/// [`Error::InvalidArgument`]. With `--json` and `--wait`, the result (with the rollout's
/// outcome) is printed before a rollout error is returned.
pub async fn run<T: EtcdConfig>(
    store: &Store,
    command: Command,
    out: &mut impl Write,
) -> Result<()> {
    let superseding;
    let store = if command.force() {
        superseding = store.clone().superseding_rollouts();
        &superseding
    } else {
        store
    };
    match command {
        Command::Show { output } => show::show::<T>(store, output, out).await,
        Command::Get { path, output } => show::get::<T>(store, &path, output, out).await,
        Command::Set { assignments, write } => {
            let edits = write::assignments::<T>(&assignments)?
                .into_iter()
                .map(|(path, value)| (path, Some(value)))
                .collect();
            write::edit::<T>(store, &edits, &write, out).await
        }
        Command::Unset { paths, write } => {
            let edits = paths.into_iter().map(|p| (p, None::<String>)).collect();
            write::edit::<T>(store, &edits, &write, out).await
        }
        Command::History { output } => report::history::<T>(store, output, out).await,
        Command::Rollback { revision, write } => {
            write::rollback::<T>(store, revision, &write, out).await
        }
        Command::Diff {
            file,
            from,
            to,
            output,
        } => report::diff::<T>(store, file, from, to, output, out).await,
        Command::Apply { file, write } => {
            let wanted = files::read_file::<T>(&file)?;
            write::apply::<T>(store, &wanted, &write, out).await
        }
        Command::Edit { write } => write::edit_in_editor::<T>(store, &write, out).await,
        Command::Rotate { write } => write::rotate::<T>(store, &write, out).await,
        Command::Schema { output } => {
            let schema = T::schema();
            if output.json {
                writeln!(out, "{:#}", schema.to_json_schema()).map_err(display::io)
            } else {
                write!(out, "{schema}").map_err(display::io)
            }
        }
        Command::Status { output } => report::status::<T>(store, output, out).await,
        Command::Watch { output } => watch::watch::<T>(store, output, out).await,
        Command::Rollout { command } => rollout::run::<T>(store, command, out).await,
    }
}

/// The exit code for a failed command:
///
/// | code | meaning |
/// |---|---|
/// | 0 | done (a write that changes nothing is done too: `no change`) |
/// | 1 | anything else (permission denied, a refusal by etcd, ...) |
/// | 2 | invalid input: a field path, a value, what `validate` says; nothing was written |
/// | 3 | a conflict: someone else changed the config meanwhile; nothing was written |
/// | 4 | `--wait`: an instance rejected the change (it was written) |
/// | 5 | etcd unreachable, or a request to it timed out |
/// | 6 | `--wait`: not every instance was current in time (the change was written), or the rollout had not ended |
/// | 7 | `show`/`get`: the config in etcd does not load (what etcd holds was printed) |
/// | 8 | `rollout start`, `rollout status --wait`: the rollout was aborted |
/// | 9 | a write refused because a rollout is active (nothing was written; `--force` supersedes it) |
pub fn exit_code(err: &Error) -> i32 {
    match err {
        Error::Decode { .. }
        | Error::Rejected {
            revision: Some(_), ..
        } => 7,
        Error::InvalidArgument { .. }
        | Error::Encode { .. }
        | Error::TxnTooLarge { .. }
        | Error::RequestTooLarge { .. }
        | Error::Rejected { .. } => 2,
        // Only a revision someone named (rollback, diff --from/--to) is read at a revision;
        // a change etcd finds too large (its --max-request-bytes, --max-txn-ops) wrote nothing.
        Error::Server {
            kind:
                ServerErrorKind::Compacted
                | ServerErrorKind::FutureRevision
                | ServerErrorKind::RequestTooLarge
                | ServerErrorKind::TooManyOps,
            ..
        } => 2,
        Error::Conflict { .. } => 3,
        Error::RolloutRejected { .. } => 4,
        Error::RolloutTimeout { .. } | Error::RolloutRunning { .. } => 6,
        Error::RolloutAborted { .. } => 8,
        Error::RolloutActive { .. } => 9,
        Error::Connect { .. } | Error::Timeout { .. } | Error::Transport { .. } => 5,
        _ => 1,
    }
}
