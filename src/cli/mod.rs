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
//! etcd_config::cli::run::<Gateway>(&store, admin.command, &mut std::io::stdout()).await?;
//! # Ok(()) }
//! ```
//!
//! Every write takes `--author` and `--reason` (the change note, written in the same
//! transaction) and `--dry-run` (print the field diff and change nothing). Secret fields are
//! shown as `(secret)`, in diffs as changed only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

mod files;

use clap::{Args, Subcommand};
use files::{apply, edits_to, read_file, toml_key, toml_string};
use futures_util::StreamExt;

use crate::config::{diff, field_of_key, is_secret, ChangeNote, EtcdConfig, FieldDiff, Store};
use crate::error::{Error, Result};

/// What to do with the config.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Print every field with its value (secrets hidden) and the revision.
    Show,
    /// Print one field's value as etcd stores it.
    Get {
        /// The field path, e.g. `tls.cert_path` or `routes.blue`.
        path: String,
    },
    /// Set fields from text: `PATH=VALUE ...`, validated, in one transaction.
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
    History,
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
    /// Print every key with its type, default and doc (`--json`: as JSON Schema).
    Schema {
        /// JSON Schema instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the fleet: each reporting instance's revision, state and last rejection.
    Status,
    /// Print each update as it happens (Ctrl-C to stop).
    Watch,
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
/// [`Error::InvalidArgument`].
pub async fn run<T: EtcdConfig>(
    store: &Store,
    command: Command,
    out: &mut impl Write,
) -> Result<()> {
    let io = |err: std::io::Error| Error::invalid(format!("cannot write the output: {err}"));
    match command {
        Command::Show => {
            let loaded = store.load_versioned::<T>().await?;
            writeln!(
                out,
                "# {} at revision {}",
                store.prefix_of::<T>(),
                loaded.revision
            )
            .map_err(io)?;
            for (key, value) in shown(&loaded.value)? {
                writeln!(out, "{key} = {value}").map_err(io)?;
            }
        }
        Command::Get { path } => {
            let loaded = store.load::<T>().await?;
            let value = shown(&loaded)?
                .into_iter()
                .find(|(field, _)| *field == path)
                .map(|(_, value)| value)
                .ok_or_else(|| Error::invalid(format!("no value at `{path}`")))?;
            writeln!(out, "{value}").map_err(io)?;
        }
        Command::Set { assignments, write } => {
            let schema = T::schema();
            let mut owned = Vec::new();
            for assignment in &assignments {
                let (path, value) = assignment
                    .split_once('=')
                    .ok_or_else(|| Error::invalid(format!("`{assignment}` is not PATH=VALUE")))?;
                let value = match (is_secret(&schema, path), value) {
                    // argv is visible to other users: a secret comes from stdin.
                    (true, "-") => read_secret(path)?,
                    (true, _) => {
                        return Err(Error::invalid(format!(
                            "`{path}` is secret: give `{path}=-` and its value on standard input"
                        )))
                    }
                    (false, value) => value.to_owned(),
                };
                owned.push((path.to_owned(), value));
            }
            let edits: Vec<(&str, Option<&str>)> = owned
                .iter()
                .map(|(p, v)| (p.as_str(), Some(v.as_str())))
                .collect();
            edit::<T>(store, &edits, &write, out).await?;
        }
        Command::Unset { paths, write } => {
            let edits: Vec<(&str, Option<&str>)> =
                paths.iter().map(|p| (p.as_str(), None)).collect();
            edit::<T>(store, &edits, &write, out).await?;
        }
        Command::History => {
            for change in store.history::<T>().await? {
                let (author, reason) = change
                    .note
                    .map_or(("-".to_owned(), String::new()), |n| (n.author, n.reason));
                let valid = if change.valid { "" } else { " (invalid)" };
                writeln!(
                    out,
                    "{}\t{}\t{}{valid}\t{reason}",
                    change.revision,
                    author,
                    change.changed.join(",")
                )
                .map_err(io)?;
            }
        }
        Command::Rollback { revision, write } => {
            let old = store.load_at::<T>(revision).await?;
            let now = store.load::<T>().await?;
            print_diff(out, &diff(&now, &old)).map_err(io)?;
            if !write.dry_run {
                let at = store.rollback::<T>(revision, &write.note()).await?;
                written::<T>(store, at, &write, out).await?;
            }
        }
        Command::Diff { file, from, to } => match (file, from) {
            (Some(file), _) => {
                let wanted = read_file(&file)?;
                let edits = edits_to::<T>(store, &wanted).await?;
                let borrowed: Vec<(&str, Option<&str>)> = edits
                    .iter()
                    .map(|(p, v)| (p.as_str(), v.as_deref()))
                    .collect();
                let planned = store.plan_edit::<T>(&borrowed).await?;
                let now = planned.before.as_ref().ok_or_else(|| {
                    Error::invalid("the config in etcd is not valid now: nothing to compare")
                })?;
                print_diff(out, &diff(now, &planned.after)).map_err(io)?;
            }
            (None, Some(from)) => {
                let before = store.load_at::<T>(from).await?;
                let after = match to {
                    Some(to) => store.load_at::<T>(to).await?,
                    None => store.load::<T>().await?,
                };
                print_diff(out, &diff(&before, &after)).map_err(io)?;
            }
            (None, None) => return Err(Error::invalid("diff needs a FILE or --from REVISION")),
        },
        Command::Apply { file, write } => {
            let wanted = read_file(&file)?;
            apply::<T>(store, &wanted, &write, out).await?;
        }
        Command::Edit { write } => {
            let loaded = store.load::<T>().await?;
            let schema = T::schema();
            let mut text = format!(
                "# {} (secret fields are not shown and stay as they are)\n",
                T::PREFIX
            );
            for (field, value) in shown(&loaded)? {
                if !is_secret(&schema, &field) {
                    text.push_str(&format!("{} = {}\n", toml_key(&field), toml_string(&value)));
                }
            }
            let path =
                std::env::temp_dir().join(format!("etcd-config-edit-{}.toml", std::process::id()));
            std::fs::write(&path, text)
                .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
            let editor = std::env::var("EDITOR").unwrap_or_else(|_| "vi".to_owned());
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{editor} \"$1\""))
                .arg("sh")
                .arg(&path)
                .status()
                .map_err(|e| Error::invalid(format!("cannot run {editor}: {e}")))?;
            let wanted = read_file(&path);
            let _ = std::fs::remove_file(&path);
            if !status.success() {
                return Err(Error::invalid(format!(
                    "{editor} failed ({status}); nothing saved"
                )));
            }
            apply::<T>(store, &wanted?, &write, out).await?;
        }
        Command::Schema { json } => {
            let schema = T::schema();
            if json {
                writeln!(out, "{:#}", schema.to_json_schema()).map_err(io)?;
            } else {
                write!(out, "{schema}").map_err(io)?;
            }
        }
        Command::Status => {
            for record in store.fleet::<T>().await? {
                let rejected = record
                    .last_rejected
                    .map_or("-".to_owned(), |(revision, reason)| {
                        format!("{revision}: {reason}")
                    });
                writeln!(
                    out,
                    "{}\trevision {}\t{}\trejected {rejected}",
                    record.instance, record.revision, record.state
                )
                .map_err(io)?;
            }
        }
        Command::Watch => {
            let mut updates = store.watch::<T>().await?;
            let initial = updates.initial();
            writeln!(out, "revision {}", initial.revision).map_err(io)?;
            while let Some(update) = updates.next().await {
                match update {
                    Ok(update) => {
                        writeln!(
                            out,
                            "revision {}: {}",
                            update.revision,
                            update.changed.join(", ")
                        )
                    }
                    Err(err) => writeln!(out, "rejected: {err}"),
                }
                .map_err(io)?;
            }
        }
    }
    Ok(())
}

async fn edit<T: EtcdConfig>(
    store: &Store,
    edits: &[(&str, Option<&str>)],
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let io = |err: std::io::Error| Error::invalid(format!("cannot write the output: {err}"));
    let planned = store.plan_edit::<T>(edits).await?;
    if let Some(before) = &planned.before {
        print_diff(out, &diff(before, &planned.after)).map_err(io)?;
    }
    if write.dry_run {
        // What the Txn would send: a put for each key whose value changes, a delete for each
        // key that goes (secret values not shown), and the note.
        let schema = T::schema();
        let before: BTreeMap<String, String> = planned
            .before
            .as_ref()
            .map(crate::config::to_key_values)
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let after: BTreeMap<String, String> = crate::config::to_key_values(&planned.after)?
            .into_iter()
            .collect();
        let hidden = |key: &str| field_of_key(&schema, key).is_some_and(|(_, secret)| secret);
        for (key, value) in &after {
            if before.get(key) != Some(value) {
                let shown = if hidden(key) {
                    "(secret)".to_owned()
                } else {
                    format!("{value:?}")
                };
                writeln!(out, "would put {key} = {shown}").map_err(io)?;
            }
        }
        for key in before.keys().filter(|k| !after.contains_key(*k)) {
            writeln!(out, "would delete {key}").map_err(io)?;
        }
        writeln!(
            out,
            "would put a note under {} (if nothing changed since revision {})",
            store.notes_prefix_of::<T>(),
            planned.revision
        )
        .map_err(io)?;
        writeln!(out, "(dry run: nothing written)").map_err(io)?;
        return Ok(());
    }
    let revision = store.change_fields::<T>(edits, &write.note()).await?;
    written::<T>(store, revision, write, out).await
}

async fn written<T: EtcdConfig>(
    store: &Store,
    revision: i64,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let io = |err: std::io::Error| Error::invalid(format!("cannot write the output: {err}"));
    writeln!(out, "saved at revision {revision}").map_err(io)?;
    if let Some(seconds) = write.wait {
        store
            .wait_rollout::<T>(revision, Duration::from_secs(seconds))
            .await?;
        writeln!(out, "every reporting instance applied it").map_err(io)?;
    }
    Ok(())
}

/// A secret's value: one line of standard input (without its line end).
fn read_secret(path: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::invalid(format!("cannot read `{path}` from standard input: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The exit code for a failed command: 2 invalid input (a path, a value, `validate`), 3 a
/// conflict (someone else changed the config), 4 an instance rejected the change (`--wait`),
/// 5 etcd unreachable or timed out, 1 anything else.
pub fn exit_code(err: &Error) -> i32 {
    match err {
        Error::InvalidArgument { .. }
        | Error::Decode { .. }
        | Error::Encode { .. }
        | Error::TxnTooLarge { .. }
        | Error::RequestTooLarge { .. }
        | Error::Rejected { .. } => 2,
        Error::Conflict { .. } => 3,
        Error::RolloutRejected { .. } => 4,
        Error::Connect { .. } | Error::Timeout { .. } | Error::Transport { .. } => 5,
        _ => 1,
    }
}

/// `field path -> value` as stored, secrets as `(secret)`.
fn shown<T: EtcdConfig>(value: &T) -> Result<Vec<(String, String)>> {
    let schema = T::schema();
    let strip = format!("{}/", T::PREFIX);
    Ok(crate::config::to_key_values(value)?
        .into_iter()
        .map(|(key, value)| {
            let (field, secret) = field_of_key(&schema, &key).unwrap_or_else(|| {
                let relative = key.strip_prefix(&strip).unwrap_or(&key);
                (relative.replace('/', "."), false)
            });
            let value = if secret { "(secret)".to_owned() } else { value };
            (field, value)
        })
        .collect())
}

fn print_diff(out: &mut impl Write, changes: &[FieldDiff]) -> std::io::Result<()> {
    if changes.is_empty() {
        return writeln!(out, "no change");
    }
    for change in changes {
        if change.secret {
            writeln!(out, "~ {} (secret, changed)", change.field)?;
        } else {
            let show = |v: &Option<String>| {
                v.as_ref()
                    .map_or("(absent)".to_owned(), |v| format!("{v:?}"))
            };
            writeln!(
                out,
                "~ {}: {} -> {}",
                change.field,
                show(&change.before),
                show(&change.after)
            )?;
        }
    }
    Ok(())
}
