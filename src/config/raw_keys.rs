//! The keys under one config's prefix, as the decoder reads them.

use super::EtcdConfig;

/// The keys under one config's prefix as etcd holds them, relative to the prefix.
///
/// Keys that are UTF-8 text are what fields read; the others are kept apart, byte for byte, so
/// that two of them can never merge into one name, and each is reported when decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawKeys {
    /// `(relative key, value)`, sorted by key, each key once.
    pub(super) entries: Vec<(String, Vec<u8>)>,
    /// Relative keys that are not UTF-8, sorted, each once. Almost always none: a boxed
    /// slice costs thousands of live configs eight bytes less each than a `Vec`.
    pub(super) not_utf8: Box<[Vec<u8>]>,
}

/// Up to this many keys, a new key grows the entries by exactly one.
const EXACT_UP_TO: usize = 16;

impl RawKeys {
    /// The keys of `kvs` under `T`'s prefix (keys as a store's client gives them, inside its
    /// namespace; others are ignored). Later pairs for the same key replace earlier ones.
    pub(crate) fn from_kvs<T: EtcdConfig>(
        kvs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> RawKeys {
        let mut keys = RawKeys::default();
        let kvs = kvs.into_iter();
        keys.entries.reserve_exact(kvs.size_hint().0);
        for (key, value) in kvs {
            let Some(skip) = super::keys::relative::<T>(&key).map(|r| key.len() - r.len()) else {
                continue;
            };
            match String::from_utf8(key) {
                // The key's own allocation becomes the relative key. A range answer comes in
                // key order, so appending keeps the entries sorted without a search.
                Ok(mut relative) => {
                    relative.drain(..skip);
                    match keys.entries.last() {
                        Some((last, _)) if *last >= relative => {
                            keys.put(relative.as_bytes(), value);
                        }
                        _ => keys.entries.push((relative, value)),
                    }
                }
                Err(err) => keys.put(&err.as_bytes()[skip..], value),
            }
        }
        keys
    }

    /// True when etcd holds no key under the prefix.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.not_utf8.is_empty()
    }

    /// The UTF-8 keys, relative to the prefix, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The UTF-8 keys whose value differs between `self` and `other`, or that only one holds.
    pub(crate) fn diff<'a>(&'a self, other: &'a RawKeys) -> impl Iterator<Item = &'a str> + 'a {
        let value = |keys: &'a RawKeys, key: &str| {
            keys.entries
                .binary_search_by(|(k, _)| k.as_str().cmp(key))
                .ok()
                .map(|i| &keys.entries[i].1)
        };
        let changed = move |key: &&'a str| value(self, key) != value(other, key);
        self.keys()
            .chain(other.keys().filter(move |k| value(self, k).is_none()))
            .filter(changed)
    }

    /// Sets `relative` to `value`, as a watch's put event does.
    pub(crate) fn put(&mut self, relative: &[u8], value: Vec<u8>) {
        match std::str::from_utf8(relative) {
            Ok(key) => match self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
                Ok(i) => self.entries[i].1 = value,
                Err(i) => {
                    // A small config grows by exactly one: a Vec would double (to four
                    // entries at once), and thousands of live configs would carry the room.
                    if self.entries.len() < EXACT_UP_TO {
                        self.entries.reserve_exact(1);
                    }
                    self.entries.insert(i, (key.to_owned(), value));
                }
            },
            Err(_) => {
                if let Err(i) = self
                    .not_utf8
                    .binary_search_by(|k| k.as_slice().cmp(relative))
                {
                    let mut keys = std::mem::take(&mut self.not_utf8).into_vec();
                    keys.insert(i, relative.to_vec());
                    self.not_utf8 = keys.into_boxed_slice();
                }
            }
        }
    }

    /// Removes `relative`, as a watch's delete event does.
    pub(crate) fn delete(&mut self, relative: &[u8]) {
        match std::str::from_utf8(relative) {
            Ok(key) => {
                if let Ok(i) = self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
                    self.entries.remove(i);
                }
            }
            Err(_) => {
                if let Ok(i) = self
                    .not_utf8
                    .binary_search_by(|k| k.as_slice().cmp(relative))
                {
                    let mut keys = std::mem::take(&mut self.not_utf8).into_vec();
                    keys.remove(i);
                    self.not_utf8 = keys.into_boxed_slice();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::RawKeys;
    use crate::EtcdConfig;

    #[derive(EtcdConfig, Debug)]
    #[etcd(prefix = "/p")]
    struct P {
        #[etcd(default)]
        a: String,
    }

    proptest! {
        /// Whatever the order of the pairs (a range answer's sorted order, or not), the keys
        /// are what a map of the last value per key under the prefix holds.
        #[test]
        fn from_kvs_is_the_last_value_per_key(
            pairs in proptest::collection::vec(("[a-c/]{0,3}", "[xy]{0,2}", any::<bool>()), 0..40),
            sorted in any::<bool>(),
        ) {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
                .into_iter()
                .map(|(key, value, inside)| {
                    let prefix = if inside { "/p/" } else { "/q/" };
                    (format!("{prefix}{key}").into_bytes(), value.into_bytes())
                })
                .collect();
            if sorted {
                pairs.sort();
                pairs.dedup_by(|a, b| a.0 == b.0);
            }
            let mut expected = BTreeMap::new();
            for (key, value) in &pairs {
                if let Some(relative) = key.strip_prefix(b"/p/") {
                    expected.insert(String::from_utf8(relative.to_vec()).unwrap(), value.clone());
                }
            }
            let keys = RawKeys::from_kvs::<P>(pairs);
            let got: BTreeMap<String, Vec<u8>> = keys.entries.iter().cloned().collect();
            prop_assert_eq!(&got, &expected);
            prop_assert!(keys.entries.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn keys_that_are_not_utf8_are_kept_apart() {
        let keys = RawKeys::from_kvs::<P>([
            (b"/p/a".to_vec(), b"1".to_vec()),
            (b"/p/\xff".to_vec(), b"2".to_vec()),
            (b"/p/b".to_vec(), b"3".to_vec()),
        ]);
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(&*keys.not_utf8, [b"\xff".to_vec()]);
    }
}
