//! [`KeyRange`]: the one place that knows how etcd encodes a set of keys.
//!
//! etcd describes every set of keys (for a range read, a delete, a watch, a txn compare or a
//! permission) as a pair `(key, range_end)`:
//!
//! | `range_end`         | keys                              |
//! |---------------------|-----------------------------------|
//! | empty               | `key` alone                       |
//! | `\0`                | every key `>= key`                |
//! | anything else       | every key in `[key, range_end)`   |
//!
//! and `key = \0, range_end = \0` is every key in the store.

use std::fmt;

/// A set of etcd keys: one key, a half-open range, a prefix, everything from a key on, or all
/// keys.
///
/// ```
/// use etcd_config::KeyRange;
///
/// let r = KeyRange::prefix("/services/gateway/");
/// assert_eq!(r.start(), b"/services/gateway/");
/// assert_eq!(r.range_end(), b"/services/gateway0"); // '/' + 1 == '0'
/// assert!(r.contains(b"/services/gateway/listen-port"));
/// assert!(!r.contains(b"/services/gateway2/x"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyRange {
    key: Vec<u8>,
    range_end: Vec<u8>,
}

/// How a [`KeyRange`] reads to a person, recovered from its `(key, range_end)` encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeKind {
    /// Exactly one key.
    Single,
    /// Every key that starts with `key`.
    Prefix,
    /// Every key `>= key`.
    FromKey,
    /// Every key in the store.
    All,
    /// Every key in `[key, range_end)`.
    Range,
}

impl KeyRange {
    /// Exactly one key.
    ///
    /// The key is sent as given; etcd refuses an empty key with
    /// [`ServerErrorKind::EmptyKey`](crate::ServerErrorKind::EmptyKey).
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            key: key.into(),
            range_end: Vec::new(),
        }
    }

    /// Every key in `[start, end)`.
    ///
    /// An `end` that is not after `start` selects nothing; operations that would silently do
    /// nothing with such a range (granting a permission) refuse it.
    pub fn range(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            key: start.into(),
            range_end: end.into(),
        }
    }

    /// Every key that starts with `prefix`.
    ///
    /// The end is the prefix with trailing `0xff` bytes dropped and its last byte incremented;
    /// a prefix that is empty or all `0xff` has no such end, so it becomes "every key from the
    /// prefix on" (for the empty prefix: every key), as in etcd's Go client.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        if key.is_empty() {
            return KeyRange::all();
        }
        let range_end = prefix_end(&key).unwrap_or_else(|| vec![0]);
        KeyRange { key, range_end }
    }

    /// [`prefix`](Self::prefix) of `parts` one after another, with room for `room` more
    /// bytes in front of both ends: the namespace a client puts there then needs no new
    /// allocation.
    pub(crate) fn prefix_with_room(parts: &[&[u8]], room: usize) -> Self {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        let mut key = Vec::with_capacity(room + len);
        for part in parts {
            key.extend_from_slice(part);
        }
        match prefix_end_with_room(&key, room) {
            Some(range_end) => KeyRange { key, range_end },
            None => KeyRange::prefix(key),
        }
    }

    /// Every key `>= key`. An empty `key` means every key.
    pub fn from_key(key: impl Into<Vec<u8>>) -> Self {
        let mut key = key.into();
        if key.is_empty() {
            key.push(0);
        }
        KeyRange {
            key,
            range_end: vec![0],
        }
    }

    /// Every key in the store.
    pub fn all() -> Self {
        KeyRange {
            key: vec![0],
            range_end: vec![0],
        }
    }

    /// Rebuilds a range from etcd's encoding, e.g. from a permission the server returned.
    pub fn from_raw(key: impl Into<Vec<u8>>, range_end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            key: key.into(),
            range_end: range_end.into(),
        }
    }

    /// The first key (etcd's `key` field).
    pub fn start(&self) -> &[u8] {
        &self.key
    }

    /// etcd's `range_end` field: empty for one key, `\0` for "from key on".
    pub fn range_end(&self) -> &[u8] {
        &self.range_end
    }

    /// Splits into etcd's `(key, range_end)` pair.
    pub fn into_parts(self) -> (Vec<u8>, Vec<u8>) {
        (self.key, self.range_end)
    }

    /// The shape a person would have written this range in.
    pub fn kind(&self) -> RangeKind {
        match (self.key.as_slice(), self.range_end.as_slice()) {
            (_, []) => RangeKind::Single,
            ([0], [0]) => RangeKind::All,
            (_, [0]) if prefix_end(&self.key).is_none() => RangeKind::Prefix,
            (_, [0]) => RangeKind::FromKey,
            (key, end) if prefix_end(key).as_deref() == Some(end) => RangeKind::Prefix,
            _ => RangeKind::Range,
        }
    }

    /// True if `key` is one of the keys this range selects.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self.kind() {
            RangeKind::Single => key == self.key,
            RangeKind::All => true,
            _ if self.range_end == [0] => key >= self.key.as_slice(),
            _ => key >= self.key.as_slice() && key < self.range_end.as_slice(),
        }
    }

    /// True if the range selects no key at all (`end <= start` of a plain range).
    pub fn is_empty(&self) -> bool {
        !self.range_end.is_empty() && self.range_end != [0] && self.range_end <= self.key
    }
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when there is
/// none (the prefix is empty or all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    prefix_end_with_room(prefix, 0)
}

/// [`prefix_end`] without building it: its bytes but the last, and its last byte.
pub(crate) fn prefix_end_parts(prefix: &[u8]) -> Option<(&[u8], u8)> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    Some((&prefix[..last], prefix[last] + 1))
}

/// Whether `end` is [`prefix_end`] of `prefix`, without building it.
pub(crate) fn is_prefix_end(prefix: &[u8], end: &[u8]) -> bool {
    match prefix_end_parts(prefix) {
        Some((head, last)) => end.split_last() == Some((&last, head)),
        None => false,
    }
}

/// [`prefix_end`], with room for `room` more bytes.
fn prefix_end_with_room(prefix: &[u8], room: usize) -> Option<Vec<u8>> {
    let (head, last) = prefix_end_parts(prefix)?;
    let mut end = Vec::with_capacity(room + head.len() + 1);
    end.extend_from_slice(head);
    end.push(last);
    Some(end)
}

/// Writes bytes as text, escaping what is not printable ASCII, so a key shows as it would in
/// `etcdctl` output.
pub(crate) struct Escaped<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = Escaped(&self.key);
        match self.kind() {
            RangeKind::Single => write!(f, "{key}"),
            RangeKind::All => f.write_str("all keys"),
            RangeKind::Prefix => write!(f, "prefix {key}"),
            RangeKind::FromKey => write!(f, "keys from {key}"),
            RangeKind::Range => write!(f, "[{key}, {})", Escaped(&self.range_end)),
        }
    }
}

impl fmt::Debug for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRange({self})")
    }
}

impl From<&str> for KeyRange {
    /// One key.
    fn from(key: &str) -> Self {
        KeyRange::key(key)
    }
}

impl From<String> for KeyRange {
    /// One key.
    fn from(key: String) -> Self {
        KeyRange::key(key)
    }
}

/// A raw `(key, range_end)` pair as a person reads it, for error messages.
pub(crate) fn describe(key: &[u8], range_end: &[u8]) -> String {
    KeyRange::from_raw(key, range_end).to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{is_prefix_end, prefix_end, KeyRange, RangeKind};

    proptest! {
        /// The check agrees with building the end, for ends that are and are not it.
        #[test]
        fn is_prefix_end_agrees_with_prefix_end(
            prefix in proptest::collection::vec(prop_oneof![Just(0xffu8), Just(b'a'), Just(b'b')], 0..4),
            other in proptest::collection::vec(prop_oneof![Just(0xffu8), Just(b'a'), Just(b'b')], 0..4),
        ) {
            let built = prefix_end(&prefix);
            prop_assert_eq!(is_prefix_end(&prefix, &other), built.as_deref() == Some(&other[..]));
            if let Some(end) = built {
                prop_assert!(is_prefix_end(&prefix, &end));
            }
        }
    }

    #[test]
    fn single_key_has_empty_end() {
        let r = KeyRange::key("a");
        assert_eq!((r.start(), r.range_end()), (&b"a"[..], &b""[..]));
        assert_eq!(r.kind(), RangeKind::Single);
        assert!(r.contains(b"a") && !r.contains(b"ab"));
    }

    #[test]
    fn empty_key_is_sent_as_is() {
        let r = KeyRange::key("");
        assert_eq!(r.start(), b"");
        assert_eq!(r.range_end(), b"");
    }

    #[test]
    fn prefix_increments_last_byte() {
        let r = KeyRange::prefix("/a/");
        assert_eq!(r.range_end(), b"/a0");
        assert_eq!(r.kind(), RangeKind::Prefix);
        assert!(r.contains(b"/a/x"));
        assert!(!r.contains(b"/a0"));
        assert!(!r.contains(b"/a"));
    }

    #[test]
    fn prefix_drops_trailing_ff_bytes() {
        let r = KeyRange::prefix(vec![b'a', 0xff, 0xff]);
        assert_eq!(r.range_end(), b"b");
        assert_eq!(r.kind(), RangeKind::Prefix);
        assert!(r.contains(&[b'a', 0xff, 0xff, 0x00]));
        assert!(!r.contains(&[b'a', 0xff]));
    }

    #[test]
    fn all_ff_prefix_becomes_from_key() {
        let r = KeyRange::prefix(vec![0xff, 0xff]);
        assert_eq!(r.start(), &[0xff, 0xff]);
        assert_eq!(r.range_end(), b"\0");
        assert_eq!(r.kind(), RangeKind::Prefix);
        assert!(r.contains(&[0xff, 0xff, 0x01]));
        assert!(!r.contains(&[0xff]));
    }

    #[test]
    fn empty_prefix_is_all_keys() {
        assert_eq!(KeyRange::prefix(""), KeyRange::all());
        assert_eq!(KeyRange::all().kind(), RangeKind::All);
        assert!(KeyRange::all().contains(b""));
    }

    #[test]
    fn from_key_ends_with_nul() {
        let r = KeyRange::from_key("k");
        assert_eq!(r.range_end(), b"\0");
        assert_eq!(r.kind(), RangeKind::FromKey);
        assert!(r.contains(b"k") && r.contains(b"z") && !r.contains(b"a"));
        assert_eq!(KeyRange::from_key(""), KeyRange::all());
    }

    #[test]
    fn plain_range_and_emptiness() {
        let r = KeyRange::range("k1", "k3");
        assert_eq!(r.kind(), RangeKind::Range);
        assert!(r.contains(b"k2") && !r.contains(b"k3"));
        assert!(!r.is_empty());
        assert!(KeyRange::range("b", "a").is_empty());
        assert!(KeyRange::range("a", "a").is_empty());
        // A range whose end happens to be the prefix end reads back as that prefix.
        assert_eq!(KeyRange::range("a", "b").kind(), RangeKind::Prefix);
    }

    #[test]
    fn raw_round_trips_kind() {
        for r in [
            KeyRange::key("x"),
            KeyRange::prefix("/p/"),
            KeyRange::from_key("m"),
            KeyRange::all(),
            KeyRange::range("k1", "k3"),
        ] {
            let (k, e) = r.clone().into_parts();
            assert_eq!(KeyRange::from_raw(k, e), r);
        }
    }

    #[test]
    fn display_escapes_binary() {
        assert_eq!(KeyRange::range("k1", "k3").to_string(), "[k1, k3)");
        assert_eq!(KeyRange::prefix("/a/").to_string(), "prefix /a/");
        assert_eq!(KeyRange::key(vec![b'a', 0xff]).to_string(), "a\\xff");
        assert_eq!(KeyRange::all().to_string(), "all keys");
    }
}
