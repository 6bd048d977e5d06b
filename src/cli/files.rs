//! Files of field paths to values (TOML, or JSON), for `edit`, `apply` and `diff FILE`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::{edit, shown, WriteArgs};
use crate::config::{is_secret, EtcdConfig, Store};
use crate::error::{Error, Result};

/// A file of field paths to values: TOML, or JSON by the `.json` extension. Nested tables
/// give dotted paths; a value that is not a string is taken as its text (`8`, `true`).
pub(super) fn read_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let bad = |why: String| Error::invalid(format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let json = path.extension().is_some_and(|e| e == "json");
    let value: serde_json::Value = if json {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
    } else {
        let table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        serde_json::to_value(table).map_err(|e| bad(e.to_string()))?
    };
    let mut flat = BTreeMap::new();
    flatten("", &value, &mut flat).map_err(bad)?;
    Ok(flat)
}

fn flatten(
    path: &str,
    value: &serde_json::Value,
    out: &mut BTreeMap<String, String>,
) -> std::result::Result<(), String> {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten(&path, value, out)?;
            }
        }
        serde_json::Value::String(text) => {
            out.insert(path.to_owned(), text.clone());
        }
        serde_json::Value::Null => return Err(format!("`{path}` has no value")),
        other => {
            out.insert(path.to_owned(), other.to_string());
        }
    }
    Ok(())
}

/// The edits that make the config what `wanted` says: a set for each path in it, an unset
/// for each field there now that it leaves out (secret fields are left alone).
pub(super) async fn edits_to<T: EtcdConfig>(
    store: &Store,
    wanted: &BTreeMap<String, String>,
) -> Result<Vec<(String, Option<String>)>> {
    let schema = T::schema();
    let mut edits: Vec<(String, Option<String>)> = wanted
        .iter()
        .map(|(path, value)| (path.clone(), Some(value.clone())))
        .collect();
    if let Ok(now) = store.load::<T>().await {
        for (field, _) in shown(&now)? {
            if !wanted.contains_key(&field) && !is_secret(&schema, &field) {
                edits.push((field, None));
            }
        }
    }
    Ok(edits)
}

pub(super) async fn apply<T: EtcdConfig>(
    store: &Store,
    wanted: &BTreeMap<String, String>,
    write: &WriteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let edits = edits_to::<T>(store, wanted).await?;
    let borrowed: Vec<(&str, Option<&str>)> = edits
        .iter()
        .map(|(p, v)| (p.as_str(), v.as_deref()))
        .collect();
    edit::<T>(store, &borrowed, write, out).await
}

/// A TOML key for a field path: bare where TOML allows, quoted otherwise.
pub(super) fn toml_key(field: &str) -> String {
    let bare = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    field
        .split('.')
        .map(|part| {
            if bare(part) {
                part.to_owned()
            } else {
                toml_string(part)
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A TOML basic string.
pub(super) fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}
