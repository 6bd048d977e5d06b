//! Up to [`SMALL`](super::SMALL) keys in one allocation, for the few keys a live config keeps
//! for as long as it lives.

use super::{Entries, Loose, SMALL};

/// Entries one after another (none: nothing at all): the count, then per entry where its key and its value end in
/// the text (two `u32`s, little-endian), then the text (each key, then its value). Keys come
/// from `String`s, so each key's bytes are UTF-8.
#[derive(Debug, Clone)]
pub(super) struct Packed(Box<[u8]>);

const COUNT: usize = 4;
const ENDS: usize = 8;

impl Packed {
    /// No entry, and no allocation.
    pub(super) fn empty() -> Packed {
        Packed(Box::default())
    }

    pub(super) fn of(entries: &[(&str, &[u8])]) -> Packed {
        if entries.is_empty() {
            return Packed::empty();
        }
        let text: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut out = Vec::with_capacity(COUNT + ENDS * entries.len() + text);
        let end = |at: usize| u32::try_from(at).unwrap_or(u32::MAX).to_le_bytes();
        out.extend_from_slice(&end(entries.len()));
        let mut at = 0;
        for (key, value) in entries {
            at += key.len();
            out.extend_from_slice(&end(at));
            at += value.len();
            out.extend_from_slice(&end(at));
        }
        for (key, value) in entries {
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(value);
        }
        Packed(out.into_boxed_slice())
    }

    /// The entries with `key` set to `value` (`None`: removed): packed again while they are
    /// few (one allocation, nothing unpacked), as a list past that; `None` if nothing changes
    /// (a key removed that is not there).
    pub(super) fn edited(&self, key: &str, value: Option<&[u8]>) -> Option<Entries> {
        let mut pairs: Vec<(&str, &[u8])> = (0..self.len()).map(|i| self.get(i)).collect();
        match (pairs.binary_search_by(|(k, _)| (*k).cmp(key)), value) {
            (Ok(i), Some(value)) => pairs[i].1 = value,
            (Ok(i), None) => {
                pairs.remove(i);
            }
            (Err(i), Some(value)) => pairs.insert(i, (key, value)),
            (Err(_), None) => return None,
        }
        if pairs.is_empty() {
            Some(Entries::Packed(Packed::empty()))
        } else if pairs.len() > SMALL {
            let owned = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.to_vec()));
            Some(Entries::loose(Loose::relative(owned.collect())))
        } else {
            Some(Entries::Packed(Packed::of(&pairs)))
        }
    }

    fn u32_at(&self, at: usize) -> usize {
        let bytes: [u8; 4] = self.0[at..at + 4].try_into().unwrap_or_default();
        u32::from_le_bytes(bytes) as usize
    }

    pub(super) fn len(&self) -> usize {
        if self.0.is_empty() {
            return 0;
        }
        self.u32_at(0)
    }

    pub(super) fn get(&self, i: usize) -> (&str, &[u8]) {
        let text = COUNT + ENDS * self.len();
        let start = if i == 0 {
            0
        } else {
            self.u32_at(COUNT + ENDS * i - 4)
        };
        let key_end = self.u32_at(COUNT + ENDS * i);
        let value_end = self.u32_at(COUNT + ENDS * i + 4);
        let key = std::str::from_utf8(&self.0[text + start..text + key_end]).unwrap_or_default();
        (key, &self.0[text + key_end..text + value_end])
    }
}
