//! The commands that read: history, diff and status.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::display::{diff_json, io, one_line, print_diff, print_json};
use super::files::{edits_to, read_file};
use super::Output;
use crate::config::{
    diff as diff_of, diff_of_change, diff_of_stored, unix_ms, EtcdConfig, FieldDiff, FleetRecord,
    Store,
};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

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
                    // Strings either way: a hand edit (no note) has empty ones and `noted: false`.
                    "author": change.note.as_ref().map_or("", |n| n.author.as_str()),
                    "reason": change.note.as_ref().map_or("", |n| n.reason.as_str()),
                    "noted": change.note.is_some(),
                    "compacted": change.compacted,
                })
            })
            .collect();
        return print_json(out, &Value::Array(list));
    }
    writeln!(out, "REVISION\tAUTHOR\tCHANGED\tREASON").map_err(io)?;
    for change in changes {
        let (author, reason) = change
            .note
            .map_or(("-".to_owned(), String::new()), |n| (n.author, n.reason));
        let changed = match (change.compacted, change.valid) {
            (true, _) => "(compacted)".to_owned(),
            (false, true) => change.changed.join(","),
            (false, false) => format!("{} (invalid)", change.changed.join(",")),
        };
        writeln!(out, "{}\t{author}\t{changed}\t{reason}", change.revision).map_err(io)?;
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
            let wanted = read_file::<T>(&file)?;
            let edits = edits_to::<T>(store, &wanted).await?;
            // Exactly what applying the file would write.
            let planned = store.plan_edit::<T>(&edits).await?;
            let set = store.change_of(&planned.after, &planned.current, &planned.scope, false)?;
            diff_of_change::<T>(&planned.current, &set)
        }
        (None, Some(from)) => between::<T>(store, from, to, output, out).await?,
        (None, None) => return Err(Error::invalid("diff needs a FILE or --from REVISION")),
    };
    if output.json {
        return print_json(out, &json!({ "diff": diff_json(&changes) }));
    }
    print_diff::<T>(out, &changes)
}

/// The field diff between the config at `from` and at `to` (default: now): of the values
/// when both load, else of the keys as etcd held them, saying which side does not load.
async fn between<T: EtcdConfig>(
    store: &Store,
    from: i64,
    to: Option<i64>,
    output: Output,
    out: &mut impl Write,
) -> Result<Vec<FieldDiff>> {
    let before = store.read_at::<T>(from).await?;
    let after = match to {
        Some(to) => store.read_at::<T>(to).await?,
        None => store.read_current::<T>().await?,
    };
    let prefix = store.prefix_of::<T>();
    let decode = |keys: &crate::config::Current| {
        let raw = keys.raw_keys::<T>();
        crate::config::decode_entries::<T>(&prefix, store.keyring(), keys.revision, &raw)
    };
    match (decode(&before), decode(&after)) {
        (Ok(before), Ok(after)) => Ok(diff_of(&before, &after)),
        (old, new) => {
            for (revision, err) in [(before.revision, old.err()), (after.revision, new.err())] {
                let Some(err) = err else { continue };
                if err.rejected_revision().is_none() {
                    return Err(err);
                }
                if !output.json {
                    let why = one_line(&err.to_string());
                    writeln!(out, "# revision {revision} does not load: {why}").map_err(io)?;
                }
            }
            Ok(diff_of_stored::<T>(&before, &after))
        }
    }
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
                    "current_through": r.current_through,
                    "state": r.state,
                    "since_ms": unix_ms(r.since),
                    "applied_at_ms": unix_ms(r.applied_at),
                    "current": standing(r, changed_at) == "current",
                    "standing": standing(r, changed_at),
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
        writeln!(out, "serving revision {revision}: {}", names.join(", ")).map_err(io)?;
    }
    if fleet.is_empty() {
        return Ok(());
    }
    writeln!(out, "INSTANCE\tREVISION\tSTATE\tSTANDING\tREJECTED").map_err(io)?;
    for record in &fleet {
        // Only a rejection the instance has not got past is news; one line, whatever the
        // reason holds.
        let rejected = record
            .rejected_news()
            .map_or("-".to_owned(), |(revision, reason)| {
                format!("{revision}: {}", one_line(reason))
            });
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{rejected}",
            record.instance,
            record.revision,
            record.state,
            standing(record, changed_at),
        )
        .map_err(io)?;
    }
    Ok(())
}

/// Whether an instance serves the config as it is: `current` (it is current through the
/// config's last change), `behind` (it is not, or it rejects the config etcd holds now), or
/// `unconfirmed for Ns` (etcd has not confirmed its value lately).
fn standing(record: &FleetRecord, changed_at: i64) -> String {
    if let Some(since) = record.unconfirmed_since {
        let for_secs = since.elapsed().map_or(0, |d| d.as_secs());
        return format!("unconfirmed for {for_secs}s");
    }
    let rejects_now = record.rejected_news().is_some();
    if rejects_now || record.current_through < changed_at || record.state != "following" {
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
