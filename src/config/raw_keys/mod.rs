//! The keys under one config's prefix, as the decoder reads them.

mod loose;
mod packed;

use loose::Loose;
use packed::Packed;

use super::EtcdConfig;

/// The keys under one config's prefix as etcd holds them, relative to the prefix.
///
/// Keys that are UTF-8 text are what fields read; the others are kept apart, byte for byte, so
/// that two of them can never merge into one name, and each is reported when decoding.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawKeys {
    /// `(relative key, value)`, sorted by key, each key once.
    entries: Entries,
    /// Relative keys that are not UTF-8, sorted, each once. Almost always none: a boxed
    /// slice costs thousands of live configs eight bytes less each than a `Vec`.
    pub(super) not_utf8: Box<[Vec<u8>]>,
}

/// The UTF-8 entries: a list of pairs (a load, a change: any size, changed in place), or, for
/// the few keys a live config keeps for as long as it lives, packed into one allocation
/// ([`RawKeys::pack`]; no key: no allocation). One key as a pair costs three allocations (the
/// list, the key, the value: 128 bytes of the allocator's chunks for a key of a few bytes);
/// packed, one. The list is boxed: thousands of live configs hold these, 16 bytes each.
#[derive(Debug, Clone)]
enum Entries {
    Loose(Box<Loose>),
    Packed(Packed),
}

impl Default for Entries {
    fn default() -> Self {
        Entries::Packed(Packed::empty())
    }
}

/// Up to this many keys, a new key grows the entries by exactly one, and
/// [`pack`](RawKeys::pack) packs them.
const SMALL: usize = 16;

impl RawKeys {
    /// The keys of `kvs` under `T`'s prefix (keys as a store's client gives them, inside its
    /// namespace; others are ignored). Later pairs for the same key replace earlier ones.
    pub(crate) fn from_kvs<T: EtcdConfig>(
        kvs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> RawKeys {
        let mut keys = RawKeys::default();
        let kvs = kvs.into_iter();
        // Every key under the prefix starts with the same bytes: `T::PREFIX` and a slash.
        let skip = T::PREFIX.len() + 1;
        let mut entries = Loose::with_capacity(skip, kvs.size_hint().0);
        for (key, value) in kvs {
            if super::keys::relative::<T>(&key).is_none() {
                continue;
            }
            match String::from_utf8(key) {
                Ok(key) => entries.push_read(key, value),
                Err(err) => keys.put_not_utf8(&err.as_bytes()[skip..]),
            }
        }
        if !entries.is_empty() {
            keys.entries = Entries::Loose(Box::new(entries));
        }
        keys
    }

    /// Packs a small set of keys into one allocation, for a live config that keeps them; the
    /// keys stay packed through [`put`](Self::put) and [`delete`](Self::delete) while they
    /// are few. A set with no key is packed already, in no allocation at all.
    pub(crate) fn pack(&mut self) {
        if let Entries::Loose(entries) = &self.entries {
            if entries.len() <= SMALL {
                let pairs: Vec<(&str, &[u8])> =
                    (0..entries.len()).map(|i| entries.get(i)).collect();
                self.entries = Entries::Packed(Packed::of(&pairs));
            }
        }
    }

    /// How many UTF-8 keys there are.
    pub(crate) fn len(&self) -> usize {
        match &self.entries {
            Entries::Loose(entries) => entries.len(),
            Entries::Packed(packed) => packed.len(),
        }
    }

    /// The `i`th UTF-8 key and its value, in key order.
    pub(crate) fn get(&self, i: usize) -> (&str, &[u8]) {
        match &self.entries {
            Entries::Loose(entries) => entries.get(i),
            Entries::Packed(packed) => packed.get(i),
        }
    }

    /// True when etcd holds no key under the prefix.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0 && self.not_utf8.is_empty()
    }

    /// The UTF-8 keys, relative to the prefix, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i).0)
    }

    /// The value of the UTF-8 key `key`, if it is there.
    fn value(&self, key: &str) -> Option<&[u8]> {
        let i = self.position(key).ok()?;
        Some(self.get(i).1)
    }

    /// Where `key` is among the UTF-8 keys (`Err`: where it would go).
    pub(crate) fn position(&self, key: &str) -> Result<usize, usize> {
        self.position_joined("", key)
    }

    /// Where `prefix` + `key` is among the UTF-8 keys (`Err`: where it would go), without
    /// joining them: a nested struct's fields are looked up on every decode.
    pub(crate) fn position_joined(&self, prefix: &str, key: &str) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match cmp_joined(
                self.get(mid).0.as_bytes(),
                prefix.as_bytes(),
                key.as_bytes(),
            ) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }

    /// The UTF-8 keys whose value differs between `self` and `other`, or that only one holds.
    pub(crate) fn diff<'a>(&'a self, other: &'a RawKeys) -> impl Iterator<Item = &'a str> + 'a {
        let changed = move |key: &&'a str| self.value(key) != other.value(key);
        self.keys()
            .chain(other.keys().filter(move |k| self.value(k).is_none()))
            .filter(changed)
    }

    /// Sets `relative` to `value`, as a watch's put event does.
    pub(crate) fn put(&mut self, relative: &[u8], value: Vec<u8>) {
        match (std::str::from_utf8(relative), &mut self.entries) {
            // A list its deletes emptied is packed again with its first key.
            (Ok(key), Entries::Loose(entries)) if entries.is_empty() => {
                self.entries = Entries::Packed(Packed::of(&[(key, &value)]));
            }
            (Ok(key), Entries::Loose(entries)) => entries.put(key, value),
            (Ok(key), Entries::Packed(_)) => self.edit_packed(key, Some(&value)),
            (Err(_), _) => self.put_not_utf8(relative),
        }
    }

    /// Sets (`Some`) or removes (`None`) `key` in packed entries.
    fn edit_packed(&mut self, key: &str, value: Option<&[u8]>) {
        if let Entries::Packed(packed) = &self.entries {
            if let Some(edited) = packed.edited(key, value) {
                self.entries = edited;
            }
        }
    }

    fn put_not_utf8(&mut self, relative: &[u8]) {
        if let Err(i) = self
            .not_utf8
            .binary_search_by(|k| k.as_slice().cmp(relative))
        {
            let mut keys = std::mem::take(&mut self.not_utf8).into_vec();
            keys.insert(i, relative.to_vec());
            self.not_utf8 = keys.into_boxed_slice();
        }
    }

    /// Removes `relative`, as a watch's delete event does.
    pub(crate) fn delete(&mut self, relative: &[u8]) {
        match std::str::from_utf8(relative) {
            Ok(key) => match &mut self.entries {
                Entries::Loose(entries) => entries.delete(key),
                Entries::Packed(_) => self.edit_packed(key, None),
            },
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

/// How `key` compares with `prefix` + `rest`, byte by byte.
fn cmp_joined(key: &[u8], prefix: &[u8], rest: &[u8]) -> std::cmp::Ordering {
    let shared = key.len().min(prefix.len());
    match key[..shared].cmp(&prefix[..shared]) {
        std::cmp::Ordering::Equal if key.len() < prefix.len() => std::cmp::Ordering::Less,
        std::cmp::Ordering::Equal => key[prefix.len()..].cmp(rest),
        unequal => unequal,
    }
}

/// Two sets of keys are equal when they hold the same keys and values, packed or not.
impl PartialEq for RawKeys {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && (0..self.len()).all(|i| self.get(i) == other.get(i))
            && self.not_utf8 == other.not_utf8
    }
}

impl Eq for RawKeys {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::{Entries, RawKeys, SMALL};
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
            let got: BTreeMap<String, Vec<u8>> = pairs_of(&keys).into_iter().collect();
            prop_assert_eq!(&got, &expected);
            let keys: Vec<&str> = keys.keys().collect();
            prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        }

        /// Packed or not, the same edits leave the same keys and values, found at the same
        /// places; a packed set stays packed while small, and grows loose past that.
        #[test]
        fn packed_keys_behave_as_loose_ones(
            start in proptest::collection::btree_map("[a-e]{1,3}", "[xyz]{0,4}", 0..20),
            edits in proptest::collection::vec(("[a-e]{1,3}", proptest::option::of("[xyz]{0,4}")), 0..30),
        ) {
            let kvs = start
                .into_iter()
                .map(|(k, v)| (format!("/p/{k}").into_bytes(), v.into_bytes()));
            let mut loose = RawKeys::from_kvs::<P>(kvs);
            let mut packed = loose.clone();
            packed.pack();
            prop_assert_eq!(&packed, &loose);
            let mut is_packed = matches!(packed.entries, Entries::Packed(_));
            prop_assert_eq!(is_packed, loose.len() <= SMALL);
            for (key, value) in edits {
                match value {
                    Some(value) => {
                        loose.put(key.as_bytes(), value.clone().into_bytes());
                        packed.put(key.as_bytes(), value.into_bytes());
                    }
                    None => {
                        loose.delete(key.as_bytes());
                        packed.delete(key.as_bytes());
                    }
                }
                prop_assert_eq!(pairs_of(&packed), pairs_of(&loose));
                // Packed only while small; a packed set that stays small stays packed.
                let was_packed = is_packed;
                is_packed = matches!(packed.entries, Entries::Packed(_));
                let small = loose.len() <= SMALL;
                prop_assert!(!is_packed || small);
                prop_assert!(!(was_packed && small) || is_packed);
                for probe in ["a", "b", "cc", "eee", "zz"] {
                    prop_assert_eq!(packed.position(probe), loose.position(probe));
                }
                prop_assert_eq!(packed.diff(&loose).count(), 0);
            }
        }
    }

    proptest! {
        /// Comparing with two parts is comparing with the two joined.
        #[test]
        fn cmp_joined_is_cmp_with_the_parts_joined(
            key in "[ab]{0,4}", prefix in "[ab]{0,3}", rest in "[ab]{0,3}",
        ) {
            let joined = format!("{prefix}{rest}");
            prop_assert_eq!(
                super::cmp_joined(key.as_bytes(), prefix.as_bytes(), rest.as_bytes()),
                key.as_bytes().cmp(joined.as_bytes())
            );
        }
    }

    /// The keys and values, in order, as owned pairs.
    fn pairs_of(keys: &RawKeys) -> Vec<(String, Vec<u8>)> {
        (0..keys.len())
            .map(|i| {
                let (key, value) = keys.get(i);
                (key.to_owned(), value.to_vec())
            })
            .collect()
    }

    /// Thousands of live configs each hold a set of keys: 32 bytes, whatever its form.
    #[test]
    fn a_set_of_keys_is_four_words() {
        assert_eq!(std::mem::size_of::<RawKeys>(), 32);
        assert_eq!(RawKeys::default().len(), 0);
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
