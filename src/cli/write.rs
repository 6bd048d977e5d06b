//! The commands that write (set, unset, apply, edit, rollback): the diff first, then the
//! write with its note, or with `--dry-run` the operations it would send; then the rollout.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::{json, Value};

use super::report::{diff_json, print_diff};
use super::{io, print_json, WriteArgs};
use crate::config::{
    diff, field_of_key, is_secret, EtcdConfig, FieldDiff, Opened, PlannedEdit, Store,
};
use crate::error::{Error, Result};

/// `PATH=VALUE` pairs as (path, value); a secret field's value is read from standard input
/// (`PATH=-`), never taken from the command line, which other users can see.
pub(super) fn assignments<T: EtcdConfig>(assignments: &[String]) -> Result<Vec<(String, String)>> {
    let schema = T::schema();
    let mut owned = Vec::new();
    for assignment in assignments {
        let (path, value) = assignment
            .split_once('=')
            .ok_or_else(|| Error::invalid(format!("`{assignment}` is not PATH=VALUE")))?;
        let value = match (is_secret(&schema, path), value) {
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
    Ok(owned)
}

/// A secret's value: typed at a prompt without echo when standard input is a terminal, else
/// one line of standard input (without its line end).
fn read_secret(path: &str) -> Result<String> {
    let failed = |e: std::io::Error| Error::invalid(format!("cannot read `{path}`: {e}"));
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("value for `{path}` (not shown): "))
            .map_err(failed);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(failed)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Sets (`Some`) and removes (`None`) fields by path, as one change.
pub(super) async fn edit<T: EtcdConfig>(
    store: &Store,
    edits: &[(&str, Option<&str>)],
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let planned = store.plan_edit::<T>(edits).await?;
    let changes = match &planned.before {
        Some(before) => diff(before, &planned.after),
        None => {
            if !write.output.json {
                let why = "the config in etcd is not valid now: the diff is against its keys";
                writeln!(out, "({why})").map_err(io)?;
            }
            diff_from_stored(store, &planned.after).await?
        }
    };
    if !write.output.json {
        print_diff(out, &changes)?;
    }
    if write.dry_run {
        return dry_run::<T>(store, &planned, &changes, write, out);
    }
    let revision = store.change_fields::<T>(edits, &write.note()).await?;
    written::<T>(store, &changes, revision, write, out).await
}

/// The fields whose stored text `value` would change, against the keys etcd holds now: for a
/// config that does not load (a value that does not parse, a missing field), where there is
/// no valid value to diff against. Secrets without their values.
async fn diff_from_stored<T: EtcdConfig>(store: &Store, value: &T) -> Result<Vec<FieldDiff>> {
    let schema = T::schema();
    let page = store.client().kv().get(store.range_of::<T>()).await?;
    let namespace = store.namespace_str();
    let before: BTreeMap<String, String> = page
        .kvs
        .iter()
        .filter_map(|kv| {
            let key = kv.key_str().ok()?.to_owned();
            let full = &format!("{namespace}{key}");
            let text = String::from_utf8_lossy(&kv.value).into_owned();
            // A secret compares by its plain text, when the key ring opens it.
            let opened = store
                .keyring()
                .and_then(|ring| match ring.open(full, &text) {
                    Ok(Opened::Decrypted(plain)) => Some(plain.to_string()),
                    _ => None,
                });
            Some((key, opened.unwrap_or(text)))
        })
        .collect();
    let after: BTreeMap<String, String> =
        crate::config::to_key_values(value)?.into_iter().collect();
    let strip = crate::config::local_prefix_of::<T>();
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .filter(|key| before.get(*key) != after.get(*key))
        .map(|key| {
            let (field, secret) = field_of_key(&schema, key).unwrap_or_else(|| {
                let relative = key.strip_prefix(&strip).unwrap_or(key);
                (relative.replace('/', "."), false)
            });
            FieldDiff {
                before: before.get(key).filter(|_| !secret).cloned(),
                after: after.get(key).filter(|_| !secret).cloned(),
                secret,
                field,
            }
        })
        .collect())
}

/// Saves the config as it was at `revision` again.
pub(super) async fn rollback<T: EtcdConfig>(
    store: &Store,
    revision: i64,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let old = store.load_at::<T>(revision).await?;
    let now = store.load::<T>().await?;
    let changes = diff(&now, &old);
    if !write.output.json {
        print_diff(out, &changes)?;
    }
    if write.dry_run {
        if write.output.json {
            return print_json(
                out,
                &json!({ "dry_run": true, "diff": diff_json(&changes) }),
            );
        }
        return writeln!(out, "(dry run: nothing written)").map_err(io);
    }
    let at = store.rollback::<T>(revision, &write.note()).await?;
    written::<T>(store, &changes, at, write, out).await
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
            "would re-encrypt every secret field of {} with key `{}`",
            store.prefix_of::<T>(),
            keyring.writing_id()
        );
        if write.output.json {
            let json = json!({ "dry_run": true, "diff": [], "rotate_to": keyring.writing_id() });
            return print_json(out, &json);
        }
        return writeln!(out, "{what}\n(dry run: nothing written)").map_err(io);
    }
    let revision = store.rotate_secrets::<T>(&write.note()).await?;
    if !write.output.json {
        writeln!(
            out,
            "secrets re-encrypted with key `{}`",
            keyring.writing_id()
        )
        .map_err(io)?;
    }
    written::<T>(store, &[], revision, write, out).await
}

/// One operation of the transaction a write would send.
enum Operation {
    /// A put; the value is `None` for a secret field.
    Put(String, Option<String>),
    Delete(String),
}

/// Prints what the write would do: a put for each key whose value changes, a delete for each
/// key that goes (secret values not shown), and the note.
fn dry_run<T: EtcdConfig>(
    store: &Store,
    planned: &PlannedEdit<T>,
    changes: &[FieldDiff],
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
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
    let secret = |key: &str| field_of_key(&schema, key).is_some_and(|(_, secret)| secret);
    let mut operations: Vec<Operation> = after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(value))
        .map(|(key, value)| Operation::Put(key.clone(), (!secret(key)).then(|| value.clone())))
        .collect();
    operations.extend(
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|key| Operation::Delete(key.clone())),
    );
    let notes = store.notes_prefix_of::<T>();
    if write.output.json {
        let operations: Vec<Value> = operations
            .iter()
            .map(|op| match op {
                Operation::Put(key, Some(value)) => json!({ "put": key, "value": value }),
                Operation::Put(key, None) => json!({ "put": key, "secret": true }),
                Operation::Delete(key) => json!({ "delete": key }),
            })
            .collect();
        let note = write.note();
        return print_json(
            out,
            &json!({
                "dry_run": true,
                "diff": diff_json(changes),
                "operations": operations,
                "note": { "under": notes, "author": note.author, "reason": note.reason },
                "if_unchanged_since": planned.revision,
            }),
        );
    }
    for op in &operations {
        match op {
            Operation::Put(key, Some(value)) => writeln!(out, "would put {key} = {value:?}"),
            Operation::Put(key, None) => writeln!(out, "would put {key} = (secret)"),
            Operation::Delete(key) => writeln!(out, "would delete {key}"),
        }
        .map_err(io)?;
    }
    writeln!(
        out,
        "would put a note under {notes} (if nothing changed since revision {})",
        planned.revision
    )
    .map_err(io)?;
    writeln!(out, "(dry run: nothing written)").map_err(io)
}

/// After a write at `revision`: says so, and with `--wait` waits for the rollout.
async fn written<T: EtcdConfig>(
    store: &Store,
    changes: &[FieldDiff],
    revision: i64,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    if !write.output.json {
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
            "diff": diff_json(changes),
            "revision": revision,
        });
        if let Some(rollout) = &rollout {
            result["rollout"] = match rollout {
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
                Err(err) => json!({ "applied": false, "error": err.to_string() }),
            };
        }
        print_json(out, &result)?;
    } else {
        match rollout {
            Some(Ok(0)) => writeln!(
                out,
                "no instance reports on this config: nothing to wait for"
            ),
            Some(Ok(n)) => writeln!(out, "every reporting instance ({n}) applied it"),
            _ => Ok(()),
        }
        .map_err(io)?;
    }
    rollout.transpose().map(drop)
}
