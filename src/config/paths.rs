//! Field paths (`tls.cert_path`, `routes.blue.weight`) matched against a config's schema: the
//! key a path names, the path a key belongs to, and whether it is secret. One matcher for the
//! admin API, the command line and diffs.

use super::{Schema, SchemaField};
use crate::error::{Error, Result};

/// The entry names if `text` fits `template` (`routes.<name>.weight`, `/p/routes/<name>`),
/// split on `sep`: `<name>` stands for one entry's name, or for all the rest when it comes last
/// (an `each` map's entry names may contain `/`).
fn fit<'t>(template: &str, text: &'t str, sep: char) -> Option<Vec<&'t str>> {
    let pattern: Vec<&str> = template.split(sep).collect();
    let mut names = Vec::new();
    let mut rest = text;
    for (i, part) in pattern.iter().enumerate() {
        let last = i + 1 == pattern.len();
        let (segment, tail) = match rest.split_once(sep) {
            Some((segment, tail)) if !(last && *part == "<name>") => (segment, Some(tail)),
            _ => (rest, None),
        };
        if *part == "<name>" {
            if segment.is_empty() {
                return None;
            }
            names.push(segment);
        } else if *part != segment {
            return None;
        }
        match (tail, last) {
            (Some(tail), false) => rest = tail,
            (None, true) => return Some(names),
            _ => return None,
        }
    }
    None
}

/// The schema field at field path `path`, and the map entry names in the path.
fn field_at<'s, 'p>(schema: &'s Schema, path: &'p str) -> Option<(&'s SchemaField, Vec<&'p str>)> {
    schema
        .fields
        .iter()
        .find_map(|field| Some((field, fit(&field.field, path, '.')?)))
}

/// The field path of full key `key` (`/p/routes/blue` → `routes.blue`) and whether its field is
/// secret; `None` for a key no field owns.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn field_of_key(schema: &Schema, key: &str) -> Option<(String, bool)> {
    schema.fields.iter().find_map(|field| {
        let names = fit(&field.key, key, '/')?;
        let mut names = names.into_iter();
        let path = field
            .field
            .split("<name>")
            .enumerate()
            .map(|(i, part)| match i {
                0 => part.to_owned(),
                _ => format!("{}{part}", names.next().unwrap_or_default()),
            })
            .collect();
        Some((path, field.secret))
    })
}

/// Whether the field at field path `path` is secret (a map entry of a secret map included).
pub(crate) fn is_secret(schema: &Schema, path: &str) -> bool {
    field_at(schema, path).is_some_and(|(field, _)| field.secret)
}

/// The key, relative to the prefix, of field path `path` (`tls.cert_path`,
/// `routes.blue.weight`): the schema's field whose path matches, `<name>` standing for one map
/// entry's name.
pub(crate) fn key_of(schema: &Schema, path: &str) -> Result<String> {
    let strip = format!("{}/", schema.prefix);
    if let Some((field, names)) = field_at(schema, path) {
        let template = field.key.strip_prefix(&strip).unwrap_or(&field.key);
        let mut names = names.into_iter();
        let mut key = String::new();
        for (i, part) in template.split("<name>").enumerate() {
            if i > 0 {
                key.push_str(names.next().unwrap_or_default());
            }
            key.push_str(part);
        }
        return Ok(key);
    }
    let known: Vec<&str> = schema.fields.iter().map(|f| f.field.as_str()).collect();
    Err(Error::invalid(format!(
        "{} has no field `{path}` (its fields: {})",
        schema.prefix,
        known.join(", ")
    )))
}
