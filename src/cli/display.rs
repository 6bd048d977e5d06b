//! How the command line shows things: fields by path (secrets without values), field diffs,
//! JSON lines, and output errors. Every command uses these; they use no command.

use std::io::Write;

use serde_json::{json, Value};

use crate::config::{path_of_key, DiffKind, EtcdConfig, FieldDiff};
use crate::error::{Error, Result};

/// An output error, as the command's error.
pub(super) fn io(err: std::io::Error) -> Error {
    Error::invalid(format!("cannot write the output: {err}"))
}

/// A value as a diff line shows it: quoted, and a long one cut to its start and its size
/// (`--json` has it whole).
fn brief(value: &str) -> String {
    const SHOWN: usize = 80;
    if value.len() <= 2 * SHOWN {
        return format!("{value:?}");
    }
    let cut = (0..=SHOWN)
        .rev()
        .find(|&i| value.is_char_boundary(i))
        .unwrap_or(0);
    format!("{:?}... ({} bytes)", &value[..cut], value.len())
}

/// Prints one JSON value on a line.
pub(super) fn print_json(out: &mut impl Write, value: &serde_json::Value) -> Result<()> {
    writeln!(out, "{value}").map_err(io)
}

/// `text` on one line: line breaks (a decode error lists its problems on several) become `; `.
pub(super) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// One field as the command line shows it.
pub(super) struct Shown {
    /// The key, as the store's client addresses it.
    pub(super) key: String,
    pub(super) path: String,
    /// The stored value; `None` for a secret field.
    pub(super) value: Option<String>,
}

impl Shown {
    pub(super) fn text(&self) -> &str {
        self.value.as_deref().unwrap_or("(secret, set)")
    }
}

/// Every field of `value` by field path, as stored, secrets without their values.
pub(super) fn shown<T: EtcdConfig>(value: &T) -> Result<Vec<Shown>> {
    let schema = T::schema();
    let strip = crate::config::keys::fields::<T>();
    Ok(crate::config::to_key_values(value)?
        .into_iter()
        .map(|(key, value)| {
            let (path, secret) = path_of_key(&schema, &strip, &key);
            Shown {
                key,
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
                "change": match change.kind {
                    DiffKind::Added => "added",
                    DiffKind::Removed => "removed",
                    _ => "changed",
                },
            })
        })
        .collect()
}

/// Prints a field diff, one line per field: `+` added, `~` changed, `-` removed (with the code
/// default that serves from then on, for a defaulted field); secrets without values.
pub(super) fn print_diff<T: EtcdConfig>(out: &mut impl Write, changes: &[FieldDiff]) -> Result<()> {
    if changes.is_empty() {
        return writeln!(out, "no change").map_err(io);
    }
    let schema = T::schema();
    let default_of = |field: &str| {
        schema
            .fields
            .iter()
            .find(|f| f.field == field)
            .and_then(|f| f.default.clone())
    };
    for change in changes {
        let field = &change.field;
        match (change.secret, change.kind, &change.before, &change.after) {
            (true, DiffKind::Added, ..) => writeln!(out, "+ {field} (secret, set)"),
            (true, DiffKind::Removed, ..) => writeln!(out, "- {field} (secret, removed)"),
            (true, ..) => writeln!(out, "~ {field} (secret, changed)"),
            (false, _, None, Some(after)) => writeln!(out, "+ {field}: {}", brief(after)),
            (false, _, Some(before), None) => match default_of(field) {
                Some(default) => writeln!(
                    out,
                    "- {field}: {} (key removed: the default {default:?} applies)",
                    brief(before)
                ),
                None => writeln!(out, "- {field}: {}", brief(before)),
            },
            (false, _, Some(before), Some(after)) => {
                writeln!(out, "~ {field}: {} -> {}", brief(before), brief(after))
            }
            (false, _, None, None) => Ok(()),
        }
        .map_err(io)?;
    }
    Ok(())
}
