//! The opt-in cache file of a live config: the last value etcd gave, so a service can start
//! while etcd is unreachable (see [`LiveOptions::cache_file`](super::LiveOptions::cache_file)).
//!
//! The file is JSON (`prefix`, `revision`, and the keys relative to the prefix with their
//! values as etcd holds them), written to a temporary file and renamed into place, readable
//! only by its owner on Unix.

use std::path::Path;
use std::sync::Arc;

use super::decode::RawKeys;
use super::store::decode_entries;
use super::{to_key_values, EtcdConfig};
use crate::error::{Error, Result};

pub(super) fn write_cache_logged<T: EtcdConfig>(
    prefix: &str,
    path: &Path,
    value: &T,
    revision: i64,
) {
    if let Err(err) = write_cache(prefix, path, value, revision) {
        tracing::warn!(cache = %path.display(), error = %err, "cannot write the config cache");
    }
}

/// The cache file: `{"prefix": ..., "revision": ..., "keys": {relative key: value}}`.
fn write_cache<T: EtcdConfig>(prefix: &str, path: &Path, value: &T, revision: i64) -> Result<()> {
    use std::io::Write as _;

    let strip = crate::config::keys::fields::<T>();
    let keys: serde_json::Map<String, serde_json::Value> = to_key_values(value)?
        .into_iter()
        .map(|(k, v)| (k.strip_prefix(&strip).unwrap_or(&k).to_owned(), v.into()))
        .collect();
    let body = serde_json::json!({ "prefix": prefix, "revision": revision, "keys": keys });
    let io = |e: std::io::Error| Error::CacheFile {
        path: path.to_owned(),
        reason: e.to_string(),
        source: Some(Arc::new(e)),
    };
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // The cache holds the config's values, secrets included: only its owner may read it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary).map_err(io)?;
    file.write_all(body.to_string().as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

pub(super) fn read_cache<T: EtcdConfig>(prefix: &str, path: &Path) -> Result<(T, i64)> {
    let bad = |reason: String| Error::CacheFile {
        path: path.to_owned(),
        reason,
        source: None,
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::CacheFile {
        path: path.to_owned(),
        reason: e.to_string(),
        source: Some(Arc::new(e)),
    })?;
    let body: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    match body["prefix"].as_str() {
        Some(cached) if cached == prefix => {}
        Some(cached) => return Err(bad(format!("it caches {cached}, not {prefix}"))),
        None => {
            return Err(bad(
                "it is not a config cache (it names no prefix)".to_owned()
            ))
        }
    }
    let revision = body["revision"].as_i64().unwrap_or(0);
    let mut keys = RawKeys::default();
    for (key, value) in body["keys"]
        .as_object()
        .ok_or_else(|| bad("no keys".to_owned()))?
    {
        let value = value.as_str().unwrap_or_default().as_bytes().to_vec();
        keys.put(key.as_bytes(), value);
    }
    Ok((
        decode_entries::<T>(prefix, None, revision, &keys)?,
        revision,
    ))
}
