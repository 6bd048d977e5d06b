//! Keys as a range answer brought them ([`Pairs`]): the keys in one text, the values in one
//! buffer, the prefix they share cut off. A load decodes from them as they are; the first
//! change turns them into a list of pairs.

use super::Loose;
use crate::client::kv::answer::Pairs;

/// The keys of one range answer, relative to the prefix, sorted, each once, each UTF-8.
#[derive(Debug, Clone)]
pub(super) struct Read {
    /// The answer's keys, checked once to be UTF-8 (`pairs` says where each is).
    keys: String,
    pairs: Pairs,
}

impl Read {
    /// The keys of `pairs`, which must each be UTF-8 and in strictly increasing order; `Err`
    /// if their buffer is not UTF-8 as a whole (it also holds the bytes of keys dropped from
    /// `pairs`, and of prefixes cut off).
    pub(super) fn new(mut pairs: Pairs) -> Result<Read, Pairs> {
        let text = pairs.take_key_text();
        match String::from_utf8(text) {
            Ok(keys) => Ok(Read { keys, pairs }),
            Err(err) => {
                let mut pairs = pairs;
                pairs.put_key_text(err.into_bytes());
                Err(pairs)
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.pairs.len()
    }

    /// The `i`th key and its value.
    pub(super) fn get(&self, i: usize) -> (&str, &[u8]) {
        // Each key is UTF-8 on its own, so it starts and ends on a character of the text.
        let key = self.keys.get(self.pairs.key_span(i)).unwrap_or_default();
        (key, self.pairs.value(i))
    }

    /// The same entries as a list of pairs, to be changed in place.
    pub(super) fn to_loose(&self) -> Loose {
        let pairs = (0..self.len()).map(|i| {
            let (key, value) = self.get(i);
            (key.to_owned(), value.to_vec())
        });
        Loose::relative(pairs.collect())
    }
}
