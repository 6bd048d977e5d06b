//! Rebuilding a struct from the keys under its prefix, reporting every problem at once.

use std::cell::{Cell, RefCell};
use std::fmt;

use super::EtcdConfig;

/// What is wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A required key is absent.
    Missing,
    /// The value does not parse as the field's type.
    Invalid {
        /// The field's type, e.g. `u16`.
        expected: String,
        /// Why it does not parse.
        reason: String,
        /// The value as found, or `None` for a secret field.
        value: Option<String>,
    },
    /// A key no field reads, under a struct with `#[etcd(deny_unknown_keys)]`.
    Unknown,
}

/// One problem found while decoding, naming the key and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The full etcd key.
    pub key: String,
    /// The Rust field path (`tls.cert_path`); empty for an unknown key.
    pub field: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProblemKind::Missing => write!(
                f,
                "{}: missing (field `{}` is required)",
                self.key, self.field
            ),
            ProblemKind::Invalid {
                expected,
                reason,
                value,
            } => {
                write!(
                    f,
                    "{}: expected {expected} for field `{}`",
                    self.key, self.field
                )?;
                match value {
                    Some(value) => write!(f, ", found {value:?}: {reason}"),
                    None => write!(f, " (secret value not shown): {reason}"),
                }
            }
            ProblemKind::Unknown => write!(f, "{}: unknown key (deny_unknown_keys)", self.key),
        }
    }
}

/// The keys under one struct's prefix, as `(key relative to prefix/, value)`, sorted by key.
pub(crate) struct Source<'a> {
    full_prefix: &'a str,
    entries: &'a [(String, Vec<u8>)],
    consumed: Vec<Cell<bool>>,
    problems: RefCell<Vec<Problem>>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(full_prefix: &'a str, entries: &'a [(String, Vec<u8>)]) -> Self {
        debug_assert!(
            entries.windows(2).all(|w| w[0].0 < w[1].0),
            "entries must be sorted"
        );
        Source {
            full_prefix,
            entries,
            consumed: entries.iter().map(|_| Cell::new(false)).collect(),
            problems: RefCell::new(Vec::new()),
        }
    }

    /// Decodes `T`, or returns every problem found.
    pub(crate) fn decode<T: EtcdConfig>(&self) -> Result<T, Vec<Problem>> {
        let value = T::__decode(&mut Decoder {
            source: self,
            key_prefix: String::new(),
            field_prefix: String::new(),
        });
        let problems = self.problems.take();
        match value {
            Some(value) if problems.is_empty() => Ok(value),
            _ => Err(problems),
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
    }

    /// Indexes of the entries whose key starts with `prefix`.
    fn under(&self, prefix: &str) -> std::ops::Range<usize> {
        let start = self.entries.partition_point(|(k, _)| k.as_str() < prefix);
        let len = self.entries[start..]
            .iter()
            .take_while(|(k, _)| k.starts_with(prefix))
            .count();
        start..start + len
    }

    fn problem(&self, key: &str, field: String, kind: ProblemKind) {
        self.problems.borrow_mut().push(Problem {
            key: format!("{}{key}", self.full_prefix),
            field,
            kind,
        });
    }
}

/// Reads a struct's fields from a [`Source`]; driven by derived code.
#[doc(hidden)]
pub struct Decoder<'s> {
    source: &'s Source<'s>,
    key_prefix: String,
    field_prefix: String,
}

impl<'s> Decoder<'s> {
    fn nest(&self, key: &str, field: &str) -> Decoder<'s> {
        Decoder {
            source: self.source,
            key_prefix: format!("{}{key}/", self.key_prefix),
            field_prefix: format!("{}{field}.", self.field_prefix),
        }
    }

    /// Decodes the value at entry `index`; `None` (and a recorded problem) if it does not parse.
    fn parse<T>(
        &self,
        index: usize,
        field: &str,
        secret: bool,
        expected: &str,
        decode: &impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (key, bytes) = &self.source.entries[index];
        self.source.consumed[index].set(true);
        let result = std::str::from_utf8(bytes)
            .map_err(|_| "the value is not UTF-8 text".to_owned())
            .and_then(decode);
        match result {
            Ok(value) => Some(value),
            Err(reason) => {
                let (reason, value) = if secret {
                    // The parser's message may quote the value.
                    (format!("not a valid {expected}"), None)
                } else {
                    (reason, Some(String::from_utf8_lossy(bytes).into_owned()))
                };
                let kind = ProblemKind::Invalid {
                    expected: expected.to_owned(),
                    reason,
                    value,
                };
                self.source
                    .problem(key, format!("{}{field}", self.field_prefix), kind);
                None
            }
        }
    }

    /// The value of `key`: `Some(None)` if absent, `None` if present but invalid.
    fn lookup<T>(
        &self,
        key: &str,
        field: &str,
        secret: bool,
        expected: &str,
        decode: &impl Fn(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        let full = format!("{}{key}", self.key_prefix);
        match self.source.position(&full) {
            Some(index) => self.parse(index, field, secret, expected, decode).map(Some),
            None => Some(None),
        }
    }

    /// A field that must be present.
    pub fn required<T>(
        &mut self,
        key: &str,
        field: &str,
        secret: bool,
        expected: &str,
        decode: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.lookup(key, field, secret, expected, &decode)? {
            Some(value) => Some(value),
            None => {
                let full = format!("{}{key}", self.key_prefix);
                self.source.problem(
                    &full,
                    format!("{}{field}", self.field_prefix),
                    ProblemKind::Missing,
                );
                None
            }
        }
    }

    /// An `Option` field: absent is `None`.
    pub fn optional<T>(
        &mut self,
        key: &str,
        field: &str,
        secret: bool,
        expected: &str,
        decode: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        self.lookup(key, field, secret, expected, &decode)
    }

    /// A field with a default: absent takes `default()`.
    pub fn defaulted<T>(
        &mut self,
        key: &str,
        field: &str,
        secret: bool,
        expected: &str,
        decode: impl Fn(&str) -> Result<T, String>,
        default: impl FnOnce() -> T,
    ) -> Option<T> {
        Some(
            self.lookup(key, field, secret, expected, &decode)?
                .unwrap_or_else(default),
        )
    }

    /// A `#[etcd(nested)]` struct under `key/`.
    pub fn nested<T: EtcdConfig>(&mut self, key: &str, field: &str) -> Option<T> {
        T::__decode(&mut self.nest(key, field))
    }

    /// A `#[etcd(each)]` map of values, one key per entry under `key/`.
    pub fn each<M, V>(
        &mut self,
        key: &str,
        field: &str,
        secret: bool,
        expected: &str,
        decode: impl Fn(&str) -> Result<V, String>,
    ) -> Option<M>
    where
        M: FromIterator<(String, V)>,
    {
        let map = self.nest(key, field);
        let mut ok = true;
        let mut entries = Vec::new();
        for index in self.source.under(&map.key_prefix) {
            let name = &self.source.entries[index].0[map.key_prefix.len()..];
            match map.parse(index, name, secret, expected, &decode) {
                Some(value) => entries.push((name.to_owned(), value)),
                None => ok = false,
            }
        }
        ok.then(|| entries.into_iter().collect())
    }

    /// A `#[etcd(each, nested)]` map of structs, each under `key/<name>/`.
    pub fn each_nested<M, V>(&mut self, key: &str, field: &str) -> Option<M>
    where
        M: FromIterator<(String, V)>,
        V: EtcdConfig,
    {
        let map = self.nest(key, field);
        let mut names: Vec<&str> = self
            .source
            .under(&map.key_prefix)
            .map(|index| {
                let rest = &self.source.entries[index].0[map.key_prefix.len()..];
                rest.split('/').next().unwrap_or(rest)
            })
            .collect();
        names.dedup();
        let mut ok = true;
        let mut entries = Vec::new();
        for name in names {
            match V::__decode(&mut map.nest(name, name)) {
                Some(value) => entries.push((name.to_owned(), value)),
                None => ok = false,
            }
        }
        ok.then(|| entries.into_iter().collect())
    }

    /// Ends a struct: with `deny_unknown_keys`, every key under it that no field read is a
    /// problem.
    pub fn finish(&mut self, deny_unknown_keys: bool) -> bool {
        if !deny_unknown_keys {
            return true;
        }
        let mut clean = true;
        for index in self.source.under(&self.key_prefix) {
            if !self.source.consumed[index].get() {
                let key = &self.source.entries[index].0;
                self.source
                    .problem(key, String::new(), ProblemKind::Unknown);
                clean = false;
            }
        }
        clean
    }
}
