//! Keys as a range answer brought them ([`Pairs`]): the keys in one text, the values in one
//! buffer, the prefix they share cut off. A load decodes from them as they are; a change (an
//! edit before a write, a watch event on a live config) edits them in place: a new value or key
//! goes at the end of its buffer, and the buffers are built again once most of them is unused.

use crate::client::kv::pairs::Pairs;

/// The keys of one range answer, relative to the prefix, sorted, each once, each UTF-8.
#[derive(Debug, Clone)]
pub(super) struct Read {
    /// The keys, one after another, checked once to be UTF-8.
    keys: String,
    values: Vec<u8>,
    /// Per key, in key order: where it is in `keys`, and its value in `values`.
    spans: Vec<Span>,
    /// How many bytes of `keys` and `values` no span points to (replaced or removed, or cut
    /// off the front of the keys).
    unused: usize,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    key: u32,
    key_end: u32,
    value: u32,
    value_end: u32,
}

impl Read {
    /// The keys of `pairs` (relative to the prefix); `Err` unless each is UTF-8 and each is
    /// greater than the one before. Their buffer is checked at once (it also holds the bytes
    /// of keys dropped from `pairs`, and of prefixes cut off): a buffer that is not UTF-8 as a
    /// whole gives `Err` too.
    pub(super) fn new(mut pairs: Pairs) -> Result<Read, Pairs> {
        let keys = match String::from_utf8(pairs.take_key_text()) {
            Ok(keys) => keys,
            Err(err) => {
                pairs.put_key_text(err.into_bytes());
                return Err(pairs);
            }
        };
        // In valid text, a key is valid on its own exactly when it starts and ends between
        // two characters.
        let on_characters = (0..pairs.len()).all(|i| {
            let span = pairs.key_span(i);
            keys.is_char_boundary(span.start) && keys.is_char_boundary(span.end)
        });
        let key = |i: usize| keys.get(pairs.key_span(i)).unwrap_or_default();
        if !on_characters || !(1..pairs.len()).all(|i| key(i - 1) < key(i)) {
            pairs.put_key_text(keys.into_bytes());
            return Err(pairs);
        }
        let spans: Vec<Span> = (0..pairs.len())
            .map(|i| {
                let (key, value) = (pairs.key_span(i), pairs.value_span(i));
                Span {
                    key: at(key.start),
                    key_end: at(key.end),
                    value: at(value.start),
                    value_end: at(value.end),
                }
            })
            .collect();
        let values = pairs.take_values();
        let mut read = Read {
            keys,
            values,
            spans,
            unused: 0,
        };
        read.unused = read.keys.len() + read.values.len() - read.used();
        Ok(read)
    }

    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }

    /// The `i`th key and its value.
    #[inline]
    pub(super) fn get(&self, i: usize) -> (&str, &[u8]) {
        let span = self.spans[i];
        // Each key is UTF-8 on its own, so it starts and ends on a character of the text.
        let key = self.keys.get(span.key as usize..span.key_end as usize);
        let value = self
            .values
            .get(span.value as usize..span.value_end as usize);
        (key.unwrap_or_default(), value.unwrap_or_default())
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.get(mid).0.cmp(key) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }

    /// Sets `key` to `value`.
    pub(super) fn put(&mut self, key: &str, value: &[u8]) {
        let start = at(self.values.len());
        self.values.extend_from_slice(value);
        let end = at(self.values.len());
        match self.position(key) {
            Ok(i) => {
                let span = &mut self.spans[i];
                self.unused += (span.value_end - span.value) as usize;
                (span.value, span.value_end) = (start, end);
            }
            Err(i) => {
                let key_start = at(self.keys.len());
                self.keys.push_str(key);
                let span = Span {
                    key: key_start,
                    key_end: at(self.keys.len()),
                    value: start,
                    value_end: end,
                };
                self.spans.insert(i, span);
            }
        }
        self.tidy();
    }

    /// Removes `key`, if it is there.
    pub(super) fn delete(&mut self, key: &str) {
        if let Ok(i) = self.position(key) {
            let span = self.spans.remove(i);
            self.unused += (span.key_end - span.key + span.value_end - span.value) as usize;
            self.tidy();
        }
    }

    /// The bytes the spans point to.
    fn used(&self) -> usize {
        let len = |s: &Span| (s.key_end - s.key + s.value_end - s.value) as usize;
        self.spans.iter().map(len).sum()
    }

    /// Builds the buffers again, holding only what the spans point to, once more than half
    /// of them is unused: a live config that keeps following a large config does not grow.
    fn tidy(&mut self) {
        if self.unused <= (self.keys.len() + self.values.len()) / 2 {
            return;
        }
        let used = self.used();
        let mut keys = String::with_capacity(used);
        let mut values = Vec::with_capacity(used);
        for i in 0..self.len() {
            let (key, value) = self.get(i);
            let span = Span {
                key: at(keys.len()),
                key_end: at(keys.len() + key.len()),
                value: at(values.len()),
                value_end: at(values.len() + value.len()),
            };
            keys.push_str(key);
            values.extend_from_slice(value);
            self.spans[i] = span;
        }
        (self.keys, self.values, self.unused) = (keys, values, 0);
    }
}

/// An offset in a buffer as a span holds it. A range answer is far smaller than 4 GiB (etcd's
/// messages are limited to a few MiB), and buffers never grow past twice what is in use.
fn at(offset: usize) -> u32 {
    u32::try_from(offset).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::Read;
    use crate::client::kv::answer::RangeAnswer;
    use crate::proto::{etcdserverpb as pb, mvccpb};

    /// A live config that follows a large config edits its keys for as long as it runs: the
    /// buffers hold what is in use and at most as much again.
    #[test]
    fn edits_do_not_grow_the_buffers() {
        let response = pb::RangeResponse {
            kvs: ["a", "b", "c"]
                .map(|key| mvccpb::KeyValue {
                    key: key.into(),
                    value: b"0".to_vec(),
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        };
        let answer = RangeAnswer::decode(response.encode_to_vec().as_slice()).unwrap();
        let mut read = Read::new(answer.pairs).unwrap();
        for i in 0..1_000 {
            read.put("b", format!("value {i}").as_bytes());
            read.put("d", b"new");
            read.delete("d");
        }
        read.delete("a");
        let entries: Vec<_> = (0..read.len()).map(|i| read.get(i)).collect();
        assert_eq!(entries, [("b", &b"value 999"[..]), ("c", b"0")]);
        assert!(read.keys.len() + read.values.len() <= 2 * read.used() + 16);
    }
}
