//! Files of field paths to values (TOML, or JSON), for `edit`, `apply` and `diff FILE`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{
    field_of_key, is_required, is_secret, key_of, EtcdConfig, FieldEdits, Schema, Store,
};
use crate::error::{Error, Result};

/// A file of field paths to values: TOML, or JSON by the `.json` extension. Nested tables
/// give dotted paths; a table or array at a field's path (a map entry, a JSON field) is that
/// field's value as compact JSON, so `[limits] acme = { rps = 3 }` sets `limits.acme` to
/// `{"rps":3}`; any other value that is not a string is taken as its text (`8`, `true`).
pub(super) fn read_file<T: EtcdConfig>(path: &Path) -> Result<BTreeMap<String, String>> {
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
    flatten(&T::schema(), "", &value, &mut flat).map_err(bad)?;
    Ok(flat)
}

fn flatten(
    schema: &Schema,
    path: &str,
    value: &serde_json::Value,
    out: &mut BTreeMap<String, String>,
) -> std::result::Result<(), String> {
    let whole = !path.is_empty() && key_of(schema, path).is_ok();
    match value {
        serde_json::Value::Object(_) | serde_json::Value::Array(_) if whole => {
            out.insert(path.to_owned(), value.to_string());
        }
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten(schema, &path, value, out)?;
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
///
/// # Errors
///
/// A secret field in the file: a secret never comes from a file (it would stay on disk, in
/// backups and in the editor's history), only from standard input or a prompt (`set PATH=-`).
pub(super) async fn edits_to<T: EtcdConfig>(
    store: &Store,
    wanted: &BTreeMap<String, String>,
) -> Result<FieldEdits> {
    let schema = T::schema();
    if let Some(path) = wanted.keys().find(|path| is_secret(&schema, path)) {
        return Err(Error::invalid(format!(
            "`{path}` is secret and a file cannot set it: remove it from the file and run \
             `set {path}=-` with the value on standard input; nothing was written"
        )));
    }
    let mut edits: FieldEdits = wanted
        .iter()
        .map(|(path, value)| (path.clone(), Some(value.clone())))
        .collect();
    // The fields etcd holds a key for (whether or not the config loads now) that the file
    // leaves out are removed; secrets stay.
    let current = store.read_current::<T>().await?;
    let mut held: Vec<String> = current
        .kvs()
        .filter_map(|kv| field_of_key(&schema, std::str::from_utf8(kv.key).ok()?))
        .filter(|(path, secret)| !secret && !wanted.contains_key(path))
        .map(|(path, _)| path)
        .collect();
    held.dedup();
    for path in held {
        if is_required(&schema, &path) {
            return Err(Error::invalid(format!(
                "the file leaves out `{path}`, which is required: apply makes the config what \
                 the file says, so add `{path} = ...` to it; nothing was written"
            )));
        }
        edits.push(path, None);
    }
    Ok(edits)
}
