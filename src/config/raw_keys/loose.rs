//! Keys as a list of pairs: a load's or a change's, of any size, changed in place.

use super::SMALL;
use crate::config::keys::joined;

/// `(key, value)` pairs sorted by key, each key once. The keys are kept as etcd sent them: the
/// first `skip` bytes of every key are the prefix they all share, and the rest is the key
/// relative to it. Cutting the prefix off would move the bytes of every key of every load.
#[derive(Debug, Clone, Default)]
pub(super) struct Loose {
    skip: usize,
    entries: Vec<(String, Vec<u8>)>,
}

impl Loose {
    /// Pairs of relative keys, sorted, each key once.
    pub(super) fn relative(entries: Vec<(String, Vec<u8>)>) -> Loose {
        Loose { skip: 0, entries }
    }

    /// Room for `capacity` keys that all start with the same `skip` bytes.
    pub(super) fn with_capacity(skip: usize, capacity: usize) -> Loose {
        Loose {
            skip,
            entries: Vec::with_capacity(capacity),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `i`th key, relative, and its value.
    pub(super) fn get(&self, i: usize) -> (&str, &[u8]) {
        let (key, value) = &self.entries[i];
        (key.get(self.skip..).unwrap_or_default(), value)
    }

    /// Where the relative `key` is (`Err`: where it would go).
    pub(super) fn position(&self, key: &str) -> Result<usize, usize> {
        let skip = self.skip;
        self.entries
            .binary_search_by(|(k, _)| k.get(skip..).unwrap_or_default().cmp(key))
    }

    /// Adds a key of a range answer: `full` starts with the `skip` bytes every key shares. An
    /// answer comes in key order, so the key is appended without a search.
    pub(super) fn push_read(&mut self, full: String, value: Vec<u8>) {
        let relative = full.get(self.skip..).unwrap_or_default();
        match self.entries.last() {
            Some((last, _)) if last.get(self.skip..).unwrap_or_default() >= relative => {
                match self.position(relative) {
                    Ok(i) => self.entries[i].1 = value,
                    Err(i) => self.entries.insert(i, (full, value)),
                }
            }
            _ => self.entries.push((full, value)),
        }
    }

    /// Sets the relative `key` to `value`.
    pub(super) fn put(&mut self, key: &str, value: Vec<u8>) {
        match self.position(key) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => {
                let shared = self.entries.first().and_then(|(k, _)| k.get(..self.skip));
                let full = match shared {
                    Some(shared) if !shared.is_empty() => joined(&[shared, key]),
                    _ => {
                        self.skip = 0;
                        key.to_owned()
                    }
                };
                // A small config grows by exactly one: a Vec would double (to four entries at
                // once), and thousands of live configs would carry the room.
                if self.entries.len() < SMALL {
                    self.entries.reserve_exact(1);
                }
                self.entries.insert(i, (full, value));
            }
        }
    }

    /// Removes the relative `key`, if it is there.
    pub(super) fn delete(&mut self, key: &str) {
        if let Ok(i) = self.position(key) {
            self.entries.remove(i);
        }
    }
}
