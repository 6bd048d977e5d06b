//! A value as it is stored, kept by every live config to tell which fields the next revision
//! changes: a boxed slice sorted by key, exactly as large as its entries (a map's nodes would
//! cost each of thousands of live configs hundreds of bytes).

use crate::config::encode::Encoded;
use crate::config::EtcdConfig;

/// `key -> (field path, value)`, sorted by key, each key once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stored(Box<[(String, String, Option<String>)]>);

impl Stored {
    /// `value` as stored.
    pub(crate) fn of<T: EtcdConfig>(value: &T) -> Stored {
        let mut entries: Vec<(String, String, Option<String>)> = Encoded::of(value)
            .entries
            .into_iter()
            .map(|e| (e.key, e.field, e.value))
            .collect();
        // Stable: for a key written twice, the last entry stays (as a map's insert would).
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(String, String, Option<String>)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match unique.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => unique.push(entry),
            }
        }
        Stored(unique.into_boxed_slice())
    }

    fn get(&self, key: &str) -> Option<&(String, String, Option<String>)> {
        let i = self
            .0
            .binary_search_by(|(k, _, _)| k.as_str().cmp(key))
            .ok()?;
        Some(&self.0[i])
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The stored value of the field at `path`, if it has one.
    pub(crate) fn value_of(&self, path: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, field, _)| field == path)
            .and_then(|(_, _, value)| value.as_deref())
    }

    /// The field paths whose stored form differs between `self` (before) and `new`.
    pub(crate) fn changed_fields(&self, new: &Stored) -> Vec<String> {
        let mut changed: Vec<String> = Vec::new();
        for (key, field, value) in new.0.iter() {
            if self.get(key).map(|(_, _, v)| v) != Some(value) {
                changed.push(field.clone());
            }
        }
        for (key, field, _) in self.0.iter() {
            if !new.contains_key(key) {
                changed.push(field.clone());
            }
        }
        changed.sort();
        changed.dedup();
        changed
    }
}
