//! The commands that read: show, get, history, diff, status and watch, and the field diff
//! every write prints too.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::files::{edits_to, read_file};
use super::{io, print_json, Output};
use crate::config::{
    diff as diff_of, field_of_key, unix_ms, EtcdConfig, FieldDiff, FleetRecord, Store,
};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

pub(super) async fn show<T: EtcdConfig>(
    store: &Store,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let loaded = store.load_versioned::<T>().await?;
    let fields = shown(&loaded.value)?;
    if output.json {
        let values: serde_json::Map<String, Value> = fields
            .iter()
            .filter_map(|f| Some((f.path.clone(), f.value.clone()?.into())))
            .collect();
        let secrets: serde_json::Map<String, Value> = secret_states::<T>(&fields)
            .into_iter()
            .map(|(path, state)| (path, state.into()))
            .collect();
        return print_json(
            out,
            &json!({
                "prefix": store.prefix_of::<T>(),
                "revision": loaded.revision,
                "fields": values,
                "secrets": secrets,
            }),
        );
    }
    writeln!(
        out,
        "# {} at revision {}",
        store.prefix_of::<T>(),
        loaded.revision
    )
    .map_err(io)?;
    for field in &fields {
        if field.value.is_some() {
            writeln!(out, "{} = {}", field.path, field.text()).map_err(io)?;
        }
    }
    for (path, state) in secret_states::<T>(&fields) {
        writeln!(out, "{path} = (secret, {state})").map_err(io)?;
    }
    Ok(())
}

/// Every secret field, `set` or `unset` (map entries only when set): all that is ever shown
/// of them.
fn secret_states<T: EtcdConfig>(fields: &[Shown]) -> Vec<(String, &'static str)> {
    let mut states: Vec<(String, &'static str)> = fields
        .iter()
        .filter(|f| f.value.is_none())
        .map(|f| (f.path.clone(), "set"))
        .collect();
    for field in T::schema().fields {
        let templated = field.field.contains('<');
        if field.secret && !templated && !states.iter().any(|(p, _)| *p == field.field) {
            states.push((field.field, "unset"));
        }
    }
    states
}

pub(super) async fn get<T: EtcdConfig>(
    store: &Store,
    path: &str,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let loaded = store.load::<T>().await?;
    let field = shown(&loaded)?
        .into_iter()
        .find(|field| field.path == path)
        .ok_or_else(|| Error::invalid(format!("no value at `{path}`")))?;
    if output.json {
        let value = match &field.value {
            Some(value) => json!({ "path": path, "value": value }),
            None => json!({ "path": path, "secret": true }),
        };
        return print_json(out, &value);
    }
    writeln!(out, "{}", field.text()).map_err(io)
}

pub(super) async fn history<T: EtcdConfig>(
    store: &Store,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let changes = store.history::<T>().await?;
    if output.json {
        let list: Vec<Value> = changes
            .iter()
            .map(|change| {
                json!({
                    "revision": change.revision,
                    "changed": change.changed,
                    "valid": change.valid,
                    "author": change.note.as_ref().map(|n| &n.author),
                    "reason": change.note.as_ref().map(|n| &n.reason),
                })
            })
            .collect();
        return print_json(out, &Value::Array(list));
    }
    for change in changes {
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
    Ok(())
}

pub(super) async fn diff<T: EtcdConfig>(
    store: &Store,
    file: Option<PathBuf>,
    from: Option<i64>,
    to: Option<i64>,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let changes = match (file, from) {
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
            diff_of(now, &planned.after)
        }
        (None, Some(from)) => {
            let before = store.load_at::<T>(from).await?;
            let after = match to {
                Some(to) => store.load_at::<T>(to).await?,
                None => store.load::<T>().await?,
            };
            diff_of(&before, &after)
        }
        (None, None) => return Err(Error::invalid("diff needs a FILE or --from REVISION")),
    };
    if output.json {
        return print_json(out, &json!({ "diff": diff_json(&changes) }));
    }
    print_diff(out, &changes)
}

pub(super) async fn status<T: EtcdConfig>(
    store: &Store,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let changed_at = last_change::<T>(store).await?;
    let fleet = store.fleet::<T>().await?;
    let mut by_revision: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for record in &fleet {
        by_revision
            .entry(record.revision)
            .or_default()
            .push(&record.instance);
    }
    if output.json {
        let instances: Vec<Value> = fleet
            .iter()
            .map(|r| {
                json!({
                    "instance": r.instance,
                    "revision": r.revision,
                    "state": r.state,
                    "since_ms": unix_ms(r.since),
                    "applied_at_ms": unix_ms(r.applied_at),
                    "current": standing(r, changed_at) == "current",
                    "unconfirmed_since_ms": r.unconfirmed_since.map(unix_ms),
                    "last_rejected": r.last_rejected.as_ref().map(|(revision, reason)| {
                        json!({ "revision": revision, "reason": reason })
                    }),
                })
            })
            .collect();
        let by_revision: serde_json::Map<String, Value> = by_revision
            .iter()
            .map(|(revision, names)| (revision.to_string(), json!(names)))
            .collect();
        return print_json(
            out,
            &json!({ "changed_at": changed_at, "instances": instances, "by_revision": by_revision }),
        );
    }
    writeln!(
        out,
        "# {}: last changed at revision {changed_at}, {} reporting instance(s)",
        store.prefix_of::<T>(),
        fleet.len()
    )
    .map_err(io)?;
    for (revision, names) in by_revision.iter().rev() {
        writeln!(out, "revision {revision}: {}", names.join(", ")).map_err(io)?;
    }
    for record in &fleet {
        let rejected = record
            .last_rejected
            .as_ref()
            .map_or("-".to_owned(), |(revision, reason)| {
                format!("{revision}: {reason}")
            });
        writeln!(
            out,
            "{}\trevision {}\t{}\t{}\trejected {rejected}",
            record.instance,
            record.revision,
            record.state,
            standing(record, changed_at),
        )
        .map_err(io)?;
    }
    Ok(())
}

/// Whether an instance serves the config as it is: `current`, `behind` (an older revision
/// than the last change), or `unconfirmed for Ns` (etcd has not confirmed it lately).
fn standing(record: &FleetRecord, changed_at: i64) -> String {
    if let Some(since) = record.unconfirmed_since {
        let for_secs = since.elapsed().map_or(0, |d| d.as_secs());
        return format!("unconfirmed for {for_secs}s");
    }
    if record.revision < changed_at || record.state != "following" {
        return "behind".to_owned();
    }
    "current".to_owned()
}

/// The revision of the config's last change that etcd can tell without a history walk: the
/// newest modification of its keys, or of its change notes (which also mark deletions made
/// through this crate). A key deleted by hand, without a note, is not seen.
async fn last_change<T: EtcdConfig>(store: &Store) -> Result<i64> {
    let newest = |range: KeyRange| async move {
        let page = store.client().kv().get(range).keys_only().await?;
        Ok::<_, Error>(page.kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0))
    };
    let keys = newest(store.range_of::<T>()).await?;
    let notes = newest(store.notes_range_of::<T>()).await?;
    Ok(keys.max(notes))
}

pub(super) async fn watch<T: EtcdConfig>(
    store: &Store,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let mut updates = store.watch::<T>().await?;
    let initial = updates.initial();
    if output.json {
        print_json(out, &json!({ "revision": initial.revision, "changed": [] }))?;
    } else {
        writeln!(out, "revision {}", initial.revision).map_err(io)?;
    }
    while let Some(update) = updates.next().await {
        match (update, output.json) {
            (Ok(update), true) => print_json(
                out,
                &json!({ "revision": update.revision, "changed": update.changed }),
            )?,
            (Ok(update), false) => writeln!(
                out,
                "revision {}: {}",
                update.revision,
                update.changed.join(", ")
            )
            .map_err(io)?,
            (Err(err), true) => print_json(
                out,
                &json!({ "revision": err.rejected_revision(), "rejected": err.to_string() }),
            )?,
            (Err(err), false) => writeln!(out, "rejected: {err}").map_err(io)?,
        }
        out.flush().map_err(io)?;
    }
    Ok(())
}

/// One field as the command line shows it.
pub(super) struct Shown {
    pub(super) path: String,
    /// The stored value; `None` for a secret field.
    pub(super) value: Option<String>,
}

impl Shown {
    fn text(&self) -> &str {
        self.value.as_deref().unwrap_or("(secret, set)")
    }
}

/// Every field of `value` by field path, as stored, secrets without their values.
pub(super) fn shown<T: EtcdConfig>(value: &T) -> Result<Vec<Shown>> {
    let schema = T::schema();
    let strip = crate::config::local_prefix_of::<T>();
    Ok(crate::config::to_key_values(value)?
        .into_iter()
        .map(|(key, value)| {
            let (path, secret) = field_of_key(&schema, &key).unwrap_or_else(|| {
                let relative = key.strip_prefix(&strip).unwrap_or(&key);
                (relative.replace('/', "."), false)
            });
            Shown {
                path,
                value: (!secret).then_some(value),
            }
        })
        .collect())
}

pub(super) fn diff_json(changes: &[FieldDiff]) -> Value {
    changes
        .iter()
        .map(|change| {
            json!({
                "path": change.field,
                "secret": change.secret,
                "before": change.before,
                "after": change.after,
            })
        })
        .collect()
}

pub(super) fn print_diff(out: &mut impl Write, changes: &[FieldDiff]) -> Result<()> {
    if changes.is_empty() {
        return writeln!(out, "no change").map_err(io);
    }
    for change in changes {
        let field = &change.field;
        match (change.secret, &change.before, &change.after) {
            (true, ..) => writeln!(out, "~ {field} (secret, changed)"),
            (false, None, Some(after)) => writeln!(out, "+ {field}: {after:?}"),
            (false, Some(before), None) => writeln!(out, "- {field}: {before:?}"),
            (false, Some(before), Some(after)) => {
                writeln!(out, "~ {field}: {before:?} -> {after:?}")
            }
            (false, None, None) => Ok(()),
        }
        .map_err(io)?;
    }
    Ok(())
}
