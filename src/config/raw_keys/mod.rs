//! The keys under one config's prefix, as the decoder reads them.

mod loose;
mod packed;
mod read;

use loose::Loose;
use packed::Packed;
use read::Read;

use super::EtcdConfig;
use crate::client::kv::pairs::Pairs;

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

/// The UTF-8 entries: a load's as etcd's answer brought them, a list of pairs (a change, any
/// size, changed in place), or, for the few keys a live config keeps for as long as it lives,
/// packed into one allocation ([`RawKeys::pack`]; no key: no allocation). One key as a pair
/// costs three allocations (the list, the key, the value: 128 bytes of the allocator's chunks
/// for a key of a few bytes); packed, one. The first two are boxed: thousands of live configs
/// hold these, 16 bytes each.
#[derive(Debug, Clone)]
enum Entries {
    Many(Box<Many>),
    Packed(Packed),
}

#[derive(Debug, Clone)]
enum Many {
    /// A load's, as etcd's answer brought them: no allocation per key.
    Read(Read),
    /// Pairs (keys not from an answer: a history's, a test's), changed in place.
    Loose(Loose),
}

impl Default for Entries {
    fn default() -> Self {
        Entries::Packed(Packed::empty())
    }
}

impl Entries {
    fn loose(entries: Loose) -> Entries {
        Entries::Many(Box::new(Many::Loose(entries)))
    }
}

impl Many {
    fn len(&self) -> usize {
        match self {
            Many::Read(read) => read.len(),
            Many::Loose(entries) => entries.len(),
        }
    }

    #[inline]
    fn get(&self, i: usize) -> (&str, &[u8]) {
        match self {
            Many::Read(read) => read.get(i),
            Many::Loose(entries) => entries.get(i),
        }
    }

    /// Sets (`Some`) or removes (`None`) `key`.
    fn edit(&mut self, key: &str, value: Option<Vec<u8>>) {
        match (self, value) {
            (Many::Read(read), Some(value)) => read.put(key, &value),
            (Many::Read(read), None) => read.delete(key),
            (Many::Loose(entries), Some(value)) => entries.put(key, value),
            (Many::Loose(entries), None) => entries.delete(key),
        }
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
            keys.entries = Entries::loose(entries);
        }
        keys
    }

    /// The keys of a range answer under `T`'s prefix (keys as a store's client gives them,
    /// inside its namespace; others are ignored), decoded as they are: no allocation per key.
    pub(crate) fn from_answer<T: EtcdConfig>(mut pairs: Pairs) -> RawKeys {
        pairs.retain(|key| super::keys::relative::<T>(key).is_some());
        pairs.cut_keys(T::PREFIX.len() + 1);
        if pairs.is_empty() {
            return RawKeys::default();
        }
        match Read::new(pairs) {
            Ok(read) => RawKeys {
                entries: Entries::Many(Box::new(Many::Read(read))),
                not_utf8: Box::default(),
            },
            // Keys that are not UTF-8 (kept apart), or not sorted (not from etcd, which sends
            // a range in key order, each key once): pairs of their own.
            Err(pairs) => {
                let mut keys = RawKeys::default();
                let mut loose = Loose::relative(Vec::new());
                for (key, value) in pairs.iter() {
                    match std::str::from_utf8(key) {
                        Ok(key) => loose.put(key, value.to_vec()),
                        Err(_) => keys.put_not_utf8(key),
                    }
                }
                if !loose.is_empty() {
                    keys.entries = Entries::loose(loose);
                }
                keys
            }
        }
    }

    /// Packs a small set of keys into one allocation, for a live config that keeps them; the
    /// keys stay packed through [`put`](Self::put) and [`delete`](Self::delete) while they
    /// are few. A set with no key is packed already, in no allocation at all.
    pub(crate) fn pack(&mut self) {
        if matches!(self.entries, Entries::Many(_)) && self.len() <= SMALL {
            let pairs: Vec<(&str, &[u8])> = (0..self.len()).map(|i| self.get(i)).collect();
            self.entries = Entries::Packed(Packed::of(&pairs));
        }
    }

    /// How many UTF-8 keys there are.
    pub(crate) fn len(&self) -> usize {
        match &self.entries {
            Entries::Many(entries) => entries.len(),
            Entries::Packed(packed) => packed.len(),
        }
    }

    /// The `i`th UTF-8 key and its value, in key order.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> (&str, &[u8]) {
        match &self.entries {
            Entries::Many(entries) => entries.get(i),
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
            (Ok(key), Entries::Many(entries)) if entries.len() == 0 => {
                self.entries = Entries::Packed(Packed::of(&[(key, &value)]));
            }
            (Ok(key), Entries::Many(entries)) => entries.edit(key, Some(value)),
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
                Entries::Many(entries) => entries.edit(key, None),
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
mod tests;
