//! Rebuilding a struct from the keys under its prefix, reporting every problem at once.

use std::cell::{Cell, RefCell};

use zeroize::Zeroizing;

use super::keyring::{split, Keyring, Opened, Unreadable};
use super::keys::joined;
use super::{EtcdConfig, Nest};
use crate::error::{Problem, ProblemKind};
use crate::key_range::Escaped;

pub(crate) use super::raw_keys::RawKeys;

/// The keys under one struct's prefix, as `(key relative to prefix/, value)`, sorted by key.
pub(crate) struct Source<'a> {
    full_prefix: &'a str,
    /// Decrypts secret fields.
    keyring: Option<&'a Keyring>,
    keys: &'a RawKeys,
    consumed: Vec<Cell<bool>>,
    problems: RefCell<Vec<Problem>>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(
        full_prefix: &'a str,
        keys: &'a RawKeys,
        keyring: Option<&'a Keyring>,
    ) -> Self {
        let problems = keys
            .not_utf8
            .iter()
            .map(|key| Problem {
                key: format!("{full_prefix}{}", Escaped(key)),
                field: String::new(),
                kind: ProblemKind::KeyNotUtf8,
            })
            .collect();
        Source {
            full_prefix,
            keyring,
            keys,
            consumed: (0..keys.len()).map(|_| Cell::new(false)).collect(),
            problems: RefCell::new(problems),
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

    /// A secret field's stored text, decrypted: `Some` when it was encrypted, `None` to use
    /// it as it is (no key ring and not encrypted, or a plain value being migrated).
    fn open(&self, key: &str, text: &str) -> Result<Option<Zeroizing<String>>, Unreadable> {
        let full = joined(&[self.full_prefix, key]);
        match self.keyring {
            Some(keyring) => match keyring.open(&full, text)? {
                Opened::Plain => Ok(None),
                Opened::Decrypted(plain) => Ok(Some(plain)),
            },
            None => match split(text) {
                Some((id, _)) => Err(Unreadable::NoKeyring(id.to_owned())),
                None => Ok(None),
            },
        }
    }

    /// Where `prefix` + `key` is.
    fn position(&self, prefix: &str, key: &str) -> Option<usize> {
        self.keys.position_joined(prefix, key).ok()
    }

    /// The key of entry `index`.
    fn key(&self, index: usize) -> &'a str {
        self.keys.get(index).0
    }

    /// Indexes of the entries whose key starts with `prefix`.
    fn under(&self, prefix: &str) -> std::ops::Range<usize> {
        let start = match self.keys.position(prefix) {
            Ok(at) | Err(at) => at,
        };
        // The keys under `prefix` come one after another from `start`: the first that is not
        // is found by halving, not by comparing thousands of an `each` map's keys.
        let (mut low, mut high) = (start, self.keys.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.key(mid).starts_with(prefix) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        start..low
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
            key_prefix: joined(&[&self.key_prefix, key, "/"]),
            field_prefix: joined(&[&self.field_prefix, field, "."]),
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
        let (key, bytes) = self.source.keys.get(index);
        self.source.consumed[index].set(true);
        let field_path = || format!("{}{field}", self.field_prefix);
        let text = std::str::from_utf8(bytes).map_err(|_| "the value is not UTF-8 text".to_owned());
        let opened = match (&text, secret) {
            (Ok(text), true) => match self.source.open(key, text) {
                Ok(opened) => opened,
                Err(unreadable) => {
                    let kind = ProblemKind::Secret {
                        key_id: unreadable.key_id().map(str::to_owned),
                        reason: unreadable.to_string(),
                    };
                    self.source.problem(key, field_path(), kind);
                    return None;
                }
            },
            _ => None,
        };
        let result = match &opened {
            Some(plain) => decode(plain.as_str()),
            None => text.and_then(decode),
        };
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
                self.source.problem(key, field_path(), kind);
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
        match self.source.position(&self.key_prefix, key) {
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

    /// A `#[etcd(nested)]` struct under `key/`, checked by its own `validate`.
    pub fn nested<T>(&mut self, key: &str, field: &str, nest: &Nest<T>) -> Option<T> {
        let mut nested = self.nest(key, field);
        let value = (nest.decode)(&mut nested)?;
        nested.validated(value, nest)
    }

    /// `value` if its `validate` accepts it; else `None` and a problem naming this struct.
    fn validated<T>(&self, value: T, nest: &Nest<T>) -> Option<T> {
        match (nest.validate)(&value) {
            Ok(()) => Some(value),
            Err(reason) => {
                let field = self.field_prefix.trim_end_matches('.').to_owned();
                let key = self.key_prefix.clone();
                self.source
                    .problem(&key, field, ProblemKind::Rejected { reason });
                None
            }
        }
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
        let under = self.source.under(&map.key_prefix);
        // Sized once: a config of thousands of entries would otherwise grow it a dozen times.
        let mut entries = Vec::with_capacity(under.len());
        for index in under {
            let name = &self.source.key(index)[map.key_prefix.len()..];
            match map.parse(index, name, secret, expected, &decode) {
                Some(value) => entries.push((name.to_owned(), value)),
                None => ok = false,
            }
        }
        ok.then(|| entries.into_iter().collect())
    }

    /// A `#[etcd(each, nested)]` map of structs, each under `key/<name>/`.
    pub fn each_nested<M, V>(&mut self, key: &str, field: &str, nest: &Nest<V>) -> Option<M>
    where
        M: FromIterator<(String, V)>,
    {
        let map = self.nest(key, field);
        let mut names: Vec<&str> = self
            .source
            .under(&map.key_prefix)
            .map(|index| {
                let rest = &self.source.key(index)[map.key_prefix.len()..];
                rest.split('/').next().unwrap_or(rest)
            })
            .collect();
        names.dedup();
        let mut ok = true;
        let mut entries = Vec::new();
        for name in names {
            let mut entry = map.nest(name, name);
            match (nest.decode)(&mut entry).and_then(|value| entry.validated(value, nest)) {
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
                let key = self.source.key(index);
                self.source
                    .problem(key, String::new(), ProblemKind::Unknown);
                clean = false;
            }
        }
        clean
    }
}
