//! The schema of a config struct: every key with its type, default, docs and flags.

use std::fmt;

use serde_json::{json, Map, Value};

use super::{keys, EtcdConfig, Nest};
use crate::key_range::KeyRange;

/// One key of a config struct.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaField {
    /// The full key. A `#[etcd(each)]` entry shows its name as `<name>`.
    pub key: String,
    /// The Rust field path, e.g. `tls.cert_path`.
    pub field: String,
    /// The Rust type, e.g. `u16` or `Vec<String>`.
    pub type_name: String,
    /// The default as it would be stored; never the value of a secret field.
    pub default: Option<String>,
    /// The field's doc comment.
    pub doc: String,
    /// True if loading fails when the key is absent.
    pub required: bool,
    /// True for `#[etcd(secret)]` fields.
    pub secret: bool,
    /// For a map entry stored as JSON, what one looks like: a sample value's JSON
    /// (`{"path":"","weight":0}`), so a person sees the shape to write.
    pub example: Option<String>,
}

/// Every key a config struct owns, from [`EtcdConfig::schema`].
///
/// `Display` prints an aligned table; [`Schema::to_json_schema`] gives JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Schema {
    /// The struct's prefix, e.g. `/services/gateway`. It owns every key under `prefix/`.
    pub prefix: String,
    /// The struct's keys, in field order.
    pub fields: Vec<SchemaField>,
}

impl Schema {
    /// The keys the struct owns (everything under `prefix/`, outside any namespace): the range a
    /// role needs, as [`Store::grant`](crate::Store::grant) grants it.
    pub fn range(&self) -> KeyRange {
        KeyRange::prefix(keys::fields_under(&self.prefix))
    }

    pub(crate) fn of<T: EtcdConfig>() -> Schema {
        Schema::described::<T>(false)
    }

    /// The schema, with the defaults of secret fields too when `secret_defaults` (for the
    /// crate's own use: whether a field is at its default, never to show).
    pub(crate) fn described<T: EtcdConfig>(secret_defaults: bool) -> Schema {
        let mut fields = Vec::new();
        T::__describe(&mut Describe {
            key_prefix: crate::config::keys::fields::<T>(),
            field_prefix: String::new(),
            out: &mut fields,
            secret_defaults,
        });
        Schema {
            prefix: T::PREFIX.to_owned(),
            fields,
        }
    }

    /// The schema as JSON Schema (draft 2020-12): one property per key, named by its path under
    /// the prefix, with `description`, `default`, `writeOnly` for secrets and `x-etcd-key`.
    /// Every etcd value is text, so `type` is the JSON type the text parses as.
    pub fn to_json_schema(&self) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        let strip = super::keys::fields_under(&self.prefix);
        for field in &self.fields {
            let name = field
                .key
                .strip_prefix(&strip)
                .unwrap_or(&field.key)
                .to_owned();
            let mut property = Map::new();
            property.insert("type".into(), json!(json_type(&field.type_name)));
            property.insert("x-rust-type".into(), json!(field.type_name));
            property.insert("x-etcd-key".into(), json!(field.key));
            if let Some(example) = &field.example {
                let value: Value = serde_json::from_str(example).unwrap_or(Value::Null);
                property.insert("examples".into(), json!([value]));
            }
            if !field.doc.is_empty() {
                property.insert("description".into(), json!(field.doc));
            }
            if let Some(default) = &field.default {
                property.insert("default".into(), json!(default));
            }
            if field.secret {
                property.insert("writeOnly".into(), json!(true));
            }
            if field.required {
                required.push(json!(name));
            }
            properties.insert(name, Value::Object(property));
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.prefix,
            "type": "object",
            "properties": properties,
            "required": required,
        })
    }
}

fn json_type(rust: &str) -> &'static str {
    match rust {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128"
        | "isize" => "integer",
        "f32" | "f64" => "number",
        "bool" => "boolean",
        _ => "string",
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["KEY", "TYPE", "DEFAULT", "REQUIRED", "DOC"];
        let rows: Vec<[String; 5]> = self
            .fields
            .iter()
            .map(|field| {
                let default = match (&field.default, field.secret) {
                    (Some(_), true) => "(secret)".to_owned(),
                    (Some(d), false) => d.clone(),
                    (None, _) => "-".to_owned(),
                };
                let mut flags = if field.required { "yes" } else { "no" }.to_owned();
                if field.secret {
                    flags.push_str(", secret");
                }
                let doc = field.doc.lines().next().unwrap_or("").to_owned();
                let type_name = match &field.example {
                    Some(example) => format!("{} as {example}", field.type_name),
                    None => field.type_name.clone(),
                };
                [field.key.clone(), type_name, default, flags, doc]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 5]| -> fmt::Result {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            writeln!(f, "{}", text.trim_end())
        };
        line(f, header)?;
        for row in &rows {
            line(f, [&row[0], &row[1], &row[2], &row[3], &row[4]])?;
        }
        let fields = shown(&self.range());
        let area = |name| shown(&KeyRange::prefix(keys::area_under(&self.prefix, name)));
        let (notes, fleet, rollout) = (area(keys::NOTES), area(keys::FLEET), area(keys::ROLLOUT));
        writeln!(f, "roles need (Store::grant grants each):")?;
        writeln!(f, "  a service (Access::Read): read on {fields}")?;
        writeln!(
            f,
            "  a service that reports (Access::ReadAndReport): that, readwrite on {fleet}, read on {rollout}"
        )?;
        writeln!(
            f,
            "  an editor (Access::ReadWrite): readwrite on {fields}, {notes} and {rollout}, read on {fleet}"
        )
    }
}

/// `[start, end)` of a range, as etcdctl's permissions print it.
fn shown(range: &KeyRange) -> String {
    format!(
        "[{}, {})",
        crate::key_range::Escaped(range.start()),
        crate::key_range::Escaped(range.range_end())
    )
}

/// Lists a struct's keys for its schema; driven by derived code.
#[doc(hidden)]
pub struct Describe<'a> {
    key_prefix: String,
    field_prefix: String,
    out: &'a mut Vec<SchemaField>,
    /// Keep secret fields' defaults (never shown: see [`Schema::described`]).
    secret_defaults: bool,
}

/// The properties of one field, as the derive knows them.
#[doc(hidden)]
pub struct FieldInfo<'a> {
    pub key: &'a str,
    pub field: &'a str,
    pub type_name: &'a str,
    pub doc: &'a str,
    pub required: bool,
    pub secret: bool,
}

impl Describe<'_> {
    /// A field stored under one key, with its default as stored (if any).
    pub fn value(&mut self, info: FieldInfo<'_>, default: Option<Result<String, String>>) {
        self.out.push(SchemaField {
            key: format!("{}{}", self.key_prefix, info.key),
            field: format!("{}{}", self.field_prefix, info.field),
            type_name: info.type_name.to_owned(),
            // A secret's default is a secret too.
            default: default
                .and_then(Result::ok)
                .filter(|_| !info.secret || self.secret_defaults),
            doc: info.doc.to_owned(),
            required: info.required,
            secret: info.secret,
            example: None,
        });
    }

    /// A `#[etcd(nested)]` struct: its keys, under `key/`.
    pub fn nested<T>(&mut self, key: &str, field: &str, nest: &Nest<T>) {
        (nest.describe)(&mut Describe {
            key_prefix: format!("{}{key}/", self.key_prefix),
            field_prefix: format!("{}{field}.", self.field_prefix),
            out: self.out,
            secret_defaults: self.secret_defaults,
        });
    }

    /// A `#[etcd(each)]` map of values: one `key/<name>` row, with what an entry looks like
    /// when it is JSON (`sample`; never for a secret map).
    pub fn each(&mut self, info: FieldInfo<'_>, sample: Option<fn() -> Option<String>>) {
        let secret = info.secret;
        let key = format!("{}/<name>", info.key);
        let field = format!("{}.<name>", info.field);
        self.value(
            FieldInfo {
                key: &key,
                field: &field,
                required: false,
                ..info
            },
            None,
        );
        let example = sample.filter(|_| !secret).and_then(|sample| sample());
        // JSON values only: a plain text entry (a string, a number) needs no example.
        let example = example.filter(|json| json.starts_with(['{', '[']));
        if let Some(row) = self.out.last_mut() {
            row.example = example;
        }
    }

    /// A `#[etcd(each, nested)]` map of structs: the struct's keys under `key/<name>/`.
    pub fn each_nested<T>(&mut self, key: &str, field: &str, nest: &Nest<T>) {
        self.nested(&format!("{key}/<name>"), &format!("{field}.<name>"), nest);
    }
}
