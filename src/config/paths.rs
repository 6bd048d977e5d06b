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

/// [`field_of_key`], or for a key no field owns its path under `local` (the fields' key
/// prefix) with `/` as `.`, not secret: how the command line and diffs name every key.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn path_of_key(schema: &Schema, local: &str, key: &str) -> (String, bool) {
    field_of_key(schema, key).unwrap_or_else(|| {
        let relative = key.strip_prefix(local).unwrap_or(key);
        (relative.replace('/', "."), false)
    })
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

/// Whether the field at field path `path` must have a key (no default, not optional).
pub(crate) fn is_required(schema: &Schema, path: &str) -> bool {
    field_at(schema, path).is_some_and(|(field, _)| field.required)
}

/// The key, relative to the prefix, of field path `path` (`tls.cert_path`,
/// `routes.blue.weight`): the schema's field whose path matches, `<name>` standing for one map
/// entry's name.
pub(crate) fn key_of(schema: &Schema, path: &str) -> Result<String> {
    let strip = super::keys::fields_under(&schema.prefix);
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
    let hint = closest(path, known.iter().copied())
        .map(|near| format!("did you mean `{near}`? "))
        .unwrap_or_default();
    Err(Error::invalid(format!(
        "{} has no field `{path}`; {hint}its fields: {}",
        schema.prefix,
        known.join(", ")
    )))
}

/// The candidate closest to `word`, if one is close enough to be a typo of it: the same once
/// case, `-`, `_`, `.` and `/` are ignored (`rate_limit` for `rate-limit`), or at most a third
/// of its letters apart (`greting` for `greeting`).
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let plain = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '-' | '_' | '.' | '/'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let target = plain(word);
    let limit = (target.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::levenshtein(&target, &plain(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The keys of `keys` (relative to the prefix) that no field of `schema` owns, each with the
/// field path of a near miss ("did you mean"), if there is one.
pub(crate) fn unknown_keys<'k>(
    schema: &Schema,
    keys: impl IntoIterator<Item = &'k str>,
) -> Vec<(String, Option<String>)> {
    let local = super::keys::fields_under(&schema.prefix);
    let known: Vec<(String, &str)> = schema
        .fields
        .iter()
        .filter(|f| !f.key.contains("<name>"))
        .map(|f| {
            (
                f.key.strip_prefix(&local).unwrap_or(&f.key).to_owned(),
                f.field.as_str(),
            )
        })
        .collect();
    keys.into_iter()
        .filter(|key| field_of_key(schema, &format!("{local}{key}")).is_none())
        .map(|key| {
            let near = closest(key, known.iter().map(|(k, _)| k.as_str()));
            let field = near
                .and_then(|k| known.iter().find(|(kk, _)| kk == k))
                .map(|(_, f)| (*f).to_owned());
            (key.to_owned(), field)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn near_misses_are_found_and_strangers_are_not() {
        let fields = ["greeting", "workers", "rate-limit", "tls/enabled"];
        assert_eq!(closest("greting", fields), Some("greeting"));
        assert_eq!(closest("rate_limit", fields), Some("rate-limit"));
        assert_eq!(closest("tls/enable", fields), Some("tls/enabled"));
        assert_eq!(closest("workres", fields), Some("workers"));
        assert_eq!(closest("colour", fields), None);
        assert_eq!(
            closest("greeting", fields),
            None,
            "not a near miss of itself"
        );
    }
}
