//! The commands that write (set, unset, apply, edit, rollback): the diff first, then the
//! write with its note, or with `--dry-run` the operations it would send; then the rollout.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::{json, Value};

use super::display::{diff_json, io, print_diff, print_json};
use super::files::edits_to;
use super::WriteArgs;
use crate::config::{
    diff_of_change, field_of_key, is_secret, ChangeNote, ChangeSet, Committed, EtcdConfig,
    FieldDiff, FieldEdits, PlannedEdit, RolloutOutcome, RolloutPlan, Store,
};
use crate::error::{Error, Result, ServerErrorKind};

/// `PATH=VALUE` pairs as (path, value); a secret field's value is read from standard input
/// (`PATH=-`), never taken from the command line, which other users can see.
pub(super) fn assignments<T: EtcdConfig>(assignments: &[String]) -> Result<Vec<(String, String)>> {
    let schema = T::schema();
    let prompt = std::io::stdin().is_terminal();
    let mut from_input: Option<&str> = None;
    let mut owned = Vec::new();
    for assignment in assignments {
        let (path, value) = assignment
            .split_once('=')
            .ok_or_else(|| Error::invalid(format!("`{assignment}` is not PATH=VALUE")))?;
        let value = match (is_secret(&schema, path), value) {
            (true, "-") if prompt => prompt_secret(path)?,
            (true, "-") => {
                if let Some(first) = from_input.replace(path) {
                    return Err(Error::invalid(format!(
                        "`{first}` and `{path}` both read standard input: set one secret per \
                         command when its value is piped in"
                    )));
                }
                read_secret(path, std::io::stdin().lock())?
            }
            (true, _) => {
                return Err(Error::invalid(format!(
                    "`{path}` is secret: give `{path}=-` and its value on standard input"
                )))
            }
            (false, value) => value.to_owned(),
        };
        owned.push((path.to_owned(), value));
    }
    Ok(owned)
}

/// A secret's value typed at a prompt, without echo.
fn prompt_secret(path: &str) -> Result<String> {
    rpassword::prompt_password(format!("value for `{path}` (not shown): "))
        .map_err(|e| Error::invalid(format!("cannot read `{path}`: {e}")))
}

/// A secret's value piped in: all of `input` (a key file's every line), without the line
/// ends at its end. Empty input is refused: `echo "$UNSET_VARIABLE" | ...` would otherwise
/// blank the secret.
fn read_secret(path: &str, mut input: impl std::io::Read) -> Result<String> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid(format!("cannot read `{path}` from standard input: {e}")))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(Error::invalid(format!(
            "`{path}`: standard input held no value; nothing was written (`unset {path}` \
             removes a secret)"
        )));
    }
    Ok(value.to_owned())
}

/// Sets (`Some`) and removes (`None`) fields by path, as one change.
pub(super) async fn edit<T: EtcdConfig>(
    store: &Store,
    edits: &FieldEdits,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let planned = store.plan_edit::<T>(edits).await?;
    change(store, &planned, &write.note(), write, out).await
}

/// Makes the config what it was at `revision` again (over a config that does not load now,
/// too: that is what rollback is for).
pub(super) async fn rollback<T: EtcdConfig>(
    store: &Store,
    revision: i64,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let planned = store.plan_rollback::<T>(revision).await?;
    let note = write
        .note()
        .prefixed(&format!("rollback to revision {revision}"));
    change(store, &planned, &note, write, out).await
}

/// Prints the diff of exactly what a planned change writes, then writes it (or with
/// `--dry-run` lists the operations), then waits for the fleet with `--wait`.
async fn change<T: EtcdConfig>(
    store: &Store,
    planned: &PlannedEdit<T>,
    note: &ChangeNote,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let set = store.change_of(&planned.after, &planned.current, &planned.scope, false)?;
    let changes = diff_of_change::<T>(&planned.current, &set);
    if !write.output.json {
        if planned.before.is_none() {
            let why = "the config in etcd is not valid now; this change makes it valid";
            writeln!(out, "({why})").map_err(io)?;
        }
        print_diff::<T>(out, &changes)?;
    }
    if write.dry_run {
        return dry_run::<T>(store, planned.revision, &set, &changes, note, write, out);
    }
    let committed = if write.preflight && !set.is_empty() {
        preflight::<T>(store, planned, note).await
    } else {
        store.commit_plan(planned, note).await
    };
    let committed = committed.map_err(|err| too_large(err, &changes))?;
    written::<T>(store, &changes, committed, write, out).await
}

/// etcd's refusal of a change too large for it, naming the largest value written (a secret
/// by its field alone).
fn too_large(err: Error, changes: &[FieldDiff]) -> Error {
    if err.server_kind() != Some(ServerErrorKind::RequestTooLarge) {
        return err;
    }
    let largest = changes
        .iter()
        .filter_map(|c| Some((c.after.as_ref()?.len(), &c.field)))
        .max();
    let Some((bytes, field)) = largest else {
        return err;
    };
    Error::invalid(format!(
        "{err}: the largest value written is `{field}`, {bytes} bytes (etcd takes requests up \
         to its --max-request-bytes, 1.5 MiB by default); nothing was written"
    ))
}

/// The change as a rollout with no steps: every reporting build checks it, then it is
/// committed; a rejection aborts it (nothing written).
async fn preflight<T: EtcdConfig>(
    store: &Store,
    planned: &PlannedEdit<T>,
    note: &ChangeNote,
) -> Result<Committed> {
    let rollout = store
        .start_rollout_of_plan(planned, note, RolloutPlan::preflight_only())
        .await?;
    let id = rollout.id().to_owned();
    match rollout.drive().await? {
        RolloutOutcome::Committed { revision } => Ok(Committed {
            revision,
            written: true,
        }),
        RolloutOutcome::Aborted { reason } => Err(Error::RolloutAborted { id, reason }),
    }
}

/// Re-encrypts every secret field with the key ring's newest key.
pub(super) async fn rotate<T: EtcdConfig>(
    store: &Store,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let keyring = store.keyring().ok_or_else(|| {
        Error::invalid("rotate needs a key ring: this command line's store has none")
    })?;
    if write.dry_run {
        let what = format!(
            "would re-encrypt every secret field of {} not sealed with key `{}` yet",
            store.prefix_of::<T>(),
            keyring.writing_id()
        );
        if write.output.json {
            let json = json!({ "dry_run": true, "diff": [], "rotate_to": keyring.writing_id() });
            return print_json(out, &json);
        }
        return writeln!(out, "{what}\n(dry run: nothing written)").map_err(io);
    }
    let committed = store.rotate::<T>(&write.note()).await?;
    if !write.output.json {
        let id = keyring.writing_id();
        if committed.written {
            writeln!(out, "secrets re-encrypted with key `{id}`")
        } else {
            writeln!(
                out,
                "no change: every secret is sealed with key `{id}` already"
            )
        }
        .map_err(io)?;
    }
    written::<T>(store, &[], committed, write, out).await
}

/// Prints what the write would do: a put for each key whose value changes, a delete for each
/// key that goes (secret values not shown), and the note, if anything changes at all.
fn dry_run<T: EtcdConfig>(
    store: &Store,
    revision: i64,
    set: &ChangeSet,
    changes: &[FieldDiff],
    note: &ChangeNote,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let schema = T::schema();
    let secret = |key: &str| field_of_key(&schema, key).is_some_and(|(_, secret)| secret);
    let namespace = store.namespace_str();
    let puts = set.puts.iter().map(|(key, value)| {
        let shown = (!secret(key)).then_some(value.as_str());
        (format!("{namespace}{key}"), shown)
    });
    let puts: Vec<(String, Option<&str>)> = puts.collect();
    let deletes: Vec<String> = set
        .deletes
        .iter()
        .map(|key| format!("{namespace}{}", String::from_utf8_lossy(key)))
        .collect();
    let notes = store.notes_prefix_of::<T>();
    if write.output.json {
        let operations: Vec<Value> = puts
            .iter()
            .map(|(key, value)| match value {
                Some(value) => json!({ "put": key, "value": value }),
                None => json!({ "put": key, "secret": true }),
            })
            .chain(deletes.iter().map(|key| json!({ "delete": key })))
            .collect();
        let note = (!set.is_empty())
            .then(|| json!({ "under": notes, "author": note.author, "reason": note.reason }));
        return print_json(
            out,
            &json!({
                "dry_run": true,
                "diff": diff_json(changes),
                "operations": operations,
                "note": note,
                "if_unchanged_since": revision,
            }),
        );
    }
    for (key, value) in &puts {
        match value {
            Some(value) => writeln!(out, "would put {key} = {value:?}"),
            None => writeln!(out, "would put {key} = (secret)"),
        }
        .map_err(io)?;
    }
    for key in &deletes {
        writeln!(out, "would delete {key}").map_err(io)?;
    }
    if !set.is_empty() {
        writeln!(
            out,
            "would put a note under {notes} (if nothing changed since revision {revision})"
        )
        .map_err(io)?;
    }
    writeln!(out, "(dry run: nothing written)").map_err(io)
}

/// After a change: says at which revision it was written (or that nothing needed writing),
/// and with `--wait` waits until every reporting instance is current for it.
async fn written<T: EtcdConfig>(
    store: &Store,
    changes: &[FieldDiff],
    committed: Committed,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let revision = committed.revision;
    if !write.output.json && committed.written {
        writeln!(out, "saved at revision {revision}").map_err(io)?;
        out.flush().map_err(io)?;
    }
    let rollout = match write.wait {
        Some(seconds) => Some(
            store
                .wait_rollout::<T>(revision, Duration::from_secs(seconds))
                .await,
        ),
        None => None,
    };
    if write.output.json {
        let mut result = json!({
            "dry_run": false,
            "written": committed.written,
            "diff": diff_json(changes),
            "revision": revision,
        });
        if let Some(rollout) = &rollout {
            result["rollout"] = rollout_json(rollout);
        }
        print_json(out, &result)?;
    } else {
        match rollout {
            Some(Ok(0)) => writeln!(
                out,
                "no instance reports on this config: nothing to wait for"
            ),
            Some(Ok(n)) => writeln!(out, "every reporting instance ({n}) is current"),
            _ => Ok(()),
        }
        .map_err(io)?;
    }
    rollout.transpose().map(drop)
}

/// A rollout wait's outcome, for `--json`.
fn rollout_json(rollout: &Result<usize>) -> Value {
    match rollout {
        Ok(instances) => json!({ "applied": true, "instances": instances }),
        Err(Error::RolloutRejected {
            instance,
            revision,
            reason,
            ..
        }) => json!({
            "applied": false,
            "rejected_by": instance,
            "revision": revision,
            "reason": reason,
        }),
        Err(Error::RolloutTimeout { behind, .. }) => json!({
            "applied": false,
            "timed_out": true,
            "behind": behind
                .iter()
                .map(|(instance, serves)| json!({ "instance": instance, "serves": serves }))
                .collect::<Vec<_>>(),
        }),
        Err(err) => json!({ "applied": false, "error": err.to_string() }),
    }
}

pub(super) async fn apply<T: EtcdConfig>(
    store: &Store,
    wanted: &BTreeMap<String, String>,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let edits = edits_to::<T>(store, wanted).await?;
    edit::<T>(store, &edits, write, out).await
}

/// Opens `$EDITOR` on the config as etcd holds it (also when it does not load), then applies
/// what was saved; a refused change leaves the file in place and says where.
pub(super) async fn edit_in_editor<T: EtcdConfig>(
    store: &Store,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let edited = super::editor::session::<T>(store, out).await?;
    let outcome = apply::<T>(store, &edited.wanted, write, out).await;
    edited.finish(outcome, out, write.output.json)
}
