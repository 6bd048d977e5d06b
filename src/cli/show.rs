//! `show` and `get`: what etcd holds, field by field, marking the values that come from the
//! code default and the keys no field reads. They work on a config that does not load (the
//! moment an operator needs them most): every stored value is printed with the problems next
//! to their fields, and the command then fails with the decode error (exit code 7).

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{json, Value};

use super::display::{io, print_json, shown, Shown};
use super::Output;
use crate::config::{
    decode_entries, key_of, keys, path_of_key, unknown_keys, Current, EtcdConfig, Store,
};
use crate::error::{Error, ProblemKind, Result};

/// The config as etcd holds it now, decoded if it loads.
pub(super) struct Read<T> {
    pub(super) current: Current,
    pub(super) loaded: Result<T>,
    /// `(relative key, near-miss field path)` of keys no field reads.
    pub(super) unknown: Vec<(String, Option<String>)>,
}

pub(super) async fn read<T: EtcdConfig>(store: &Store) -> Result<Read<T>> {
    let current = store.read_current::<T>().await?;
    let keys = current.raw_keys::<T>();
    let prefix = store.prefix_of::<T>();
    let loaded = decode_entries::<T>(&prefix, store.keyring(), current.revision, &keys);
    if let Err(err) = &loaded {
        if !matches!(err, Error::Decode { .. } | Error::Rejected { .. }) {
            return Err(err.clone());
        }
    }
    let unknown = unknown_keys(&T::schema(), keys.keys());
    Ok(Read {
        current,
        loaded,
        unknown,
    })
}

pub(super) async fn show<T: EtcdConfig>(
    store: &Store,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let read = read::<T>(store).await?;
    let prefix = store.prefix_of::<T>();
    let revision = read.current.revision;
    let present: BTreeSet<&[u8]> = read.current.kvs().map(|kv| kv.key).collect();
    let fields = match &read.loaded {
        Ok(value) => shown(value)?,
        Err(_) => stored_fields::<T>(&read.current),
    };
    let defaulted = |f: &Shown| !present.contains(f.key.as_bytes());
    let secret_state = |f: &Shown| if defaulted(f) { "unset" } else { "set" };
    let problems = read.loaded.as_ref().err().map(problems_of);
    if output.json {
        let json = show_json(&read, &prefix, &fields, &defaulted, problems);
        return print_json(out, &json).and(read.loaded.map(drop));
    }
    let state = match &read.loaded {
        Ok(_) => String::new(),
        Err(_) => ": DOES NOT LOAD (services keep their last good value)".to_owned(),
    };
    writeln!(out, "# {prefix} at revision {revision}{state}").map_err(io)?;
    for field in &fields {
        let text = match (&field.value, defaulted(field)) {
            (None, _) => format!("(secret, {})", secret_state(field)),
            (Some(_), true) => format!("{}    (default: no key in etcd)", field.text()),
            (Some(_), false) => field.text().to_owned(),
        };
        writeln!(out, "{} = {text}", field.path).map_err(io)?;
    }
    for (key, near) in &read.unknown {
        let hint = near
            .as_ref()
            .map(|f| format!(" (did you mean `{f}`?)"))
            .unwrap_or_default();
        writeln!(out, "# unknown key {prefix}{key}: no field reads it{hint}").map_err(io)?;
    }
    for problem in problems.unwrap_or_default() {
        writeln!(out, "! {problem}").map_err(io)?;
    }
    if store.keyring().is_none() && encrypted_secrets(&read.loaded) {
        writeln!(
            out,
            "# this command line has no key ring: it cannot read the encrypted secrets, and a \
             service whose store has none would refuse to load too (give it the service's key \
             file, e.g. the ETCD_CONFIG_KEYS the service reads)"
        )
        .map_err(io)?;
    }
    read.loaded.map(drop)
}

/// `show --json`: every field by path, secrets as set or unset, the fields served by the
/// code default, keys no field reads, and the problems of a config that does not load.
fn show_json<T>(
    read: &Read<T>,
    prefix: &str,
    fields: &[Shown],
    defaulted: &dyn Fn(&Shown) -> bool,
    problems: Option<Vec<String>>,
) -> Value {
    let values: serde_json::Map<String, Value> = fields
        .iter()
        .filter_map(|f| Some((f.path.clone(), f.value.clone()?.into())))
        .collect();
    let secrets: serde_json::Map<String, Value> = fields
        .iter()
        .filter(|f| f.value.is_none())
        .map(|f| {
            let state = if defaulted(f) { "unset" } else { "set" };
            (f.path.clone(), state.into())
        })
        .collect();
    let defaults: Vec<&str> = fields
        .iter()
        .filter(|f| defaulted(f) && f.value.is_some())
        .map(|f| f.path.as_str())
        .collect();
    json!({
        "prefix": prefix,
        "revision": read.current.revision,
        "valid": read.loaded.is_ok(),
        "fields": values,
        "secrets": secrets,
        "defaults": defaults,
        "unknown_keys": unknown_json(prefix, &read.unknown),
        "problems": problems,
    })
}

pub(super) async fn get<T: EtcdConfig>(
    store: &Store,
    path: &str,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let schema = T::schema();
    let key = format!("{}{}", keys::fields::<T>(), key_of(&schema, path)?);
    let read = read::<T>(store).await?;
    let stored = read.current.kvs().find(|kv| kv.key == key.as_bytes());
    let field = match (&read.loaded, stored) {
        (Ok(value), _) => shown(value)?.into_iter().find(|f| f.path == path),
        (Err(_), Some(_)) => stored_fields::<T>(&read.current)
            .into_iter()
            .find(|f| f.path == path),
        (Err(_), None) => None,
    };
    let field = match (field, &read.loaded) {
        (Some(field), _) => field,
        (None, Ok(_)) => return Err(Error::invalid(format!("`{path}` has no value"))),
        (None, Err(err)) => return Err(err.clone()),
    };
    if output.json {
        let value = match &field.value {
            Some(value) => json!({ "path": path, "value": value, "default": stored.is_none() }),
            None => json!({ "path": path, "secret": true }),
        };
        print_json(out, &value)?;
    } else {
        writeln!(out, "{}", field.text()).map_err(io)?;
    }
    read.loaded.map(drop)
}

/// Every key etcd holds under the prefix, by field path where a field owns it (secrets
/// without their values): a config that does not decode, shown as it is.
pub(super) fn stored_fields<T: EtcdConfig>(current: &Current) -> Vec<Shown> {
    let schema = T::schema();
    let local = keys::fields::<T>();
    current
        .kvs()
        .filter_map(|kv| {
            let key = std::str::from_utf8(kv.key).ok()?.to_owned();
            let (path, secret) = path_of_key(&schema, &local, &key);
            let value = (!secret).then(|| String::from_utf8_lossy(kv.value).into_owned());
            Some(Shown { key, path, value })
        })
        .collect()
}

/// Whether decoding failed on a secret that is encrypted (with a key ring, it would open).
fn encrypted_secrets<T>(loaded: &Result<T>) -> bool {
    let Err(Error::Decode { problems, .. }) = loaded else {
        return false;
    };
    problems.iter().any(|p| {
        matches!(
            &p.kind,
            ProblemKind::Secret {
                key_id: Some(_),
                ..
            }
        )
    })
}

/// What is wrong with a config that does not load, one line each (no secret values: the
/// decoder never puts them in).
pub(super) fn problems_of(err: &Error) -> Vec<String> {
    match err {
        Error::Decode { problems, .. } => problems.iter().map(ToString::to_string).collect(),
        Error::Rejected { reason, .. } => vec![format!("validate: {reason}")],
        other => vec![other.to_string()],
    }
}

fn unknown_json(prefix: &str, unknown: &[(String, Option<String>)]) -> Value {
    unknown
        .iter()
        .map(|(key, near)| json!({ "key": format!("{prefix}{key}"), "did_you_mean": near }))
        .collect()
}
