//! The key-value pairs of a range answer in three buffers ([`Pairs`]), and how one etcd
//! `KeyValue` message is read into them.

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

/// The key-value pairs of a range answer, in the order etcd sent them: the keys one after
/// another in one buffer, the values in another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pairs {
    keys: Vec<u8>,
    values: Vec<u8>,
    spans: Vec<Span>,
}

/// Where one pair's key and value are in their buffers, and the key's revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    key: u32,
    key_end: u32,
    value: u32,
    value_end: u32,
    create_revision: i64,
    mod_revision: i64,
}

/// One pair of [`Pairs`], borrowed: what a change needs of etcd's `KeyValue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pair<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
    pub(crate) create_revision: i64,
    pub(crate) mod_revision: i64,
}

impl Pairs {
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The `i`th key and its value.
    pub(crate) fn get(&self, i: usize) -> (&[u8], &[u8]) {
        (&self.keys[self.key_span(i)], self.value(i))
    }

    /// Where the `i`th key is in the buffer of the keys
    /// ([`take_key_text`](Self::take_key_text)).
    pub(crate) fn key_span(&self, i: usize) -> std::ops::Range<usize> {
        let span = &self.spans[i];
        span.key as usize..span.key_end as usize
    }

    /// The `i`th value.
    pub(crate) fn value(&self, i: usize) -> &[u8] {
        &self.values[self.value_span(i)]
    }

    /// Where the `i`th value is in the buffer of the values
    /// ([`take_values`](Self::take_values)).
    pub(crate) fn value_span(&self, i: usize) -> std::ops::Range<usize> {
        let span = &self.spans[i];
        span.value as usize..span.value_end as usize
    }

    /// A copy of these pairs that takes their values along, leaving here only the values of the
    /// keys `keep` accepts (the others read as empty): a change that looks at a few keys of a
    /// large config then holds its values once.
    pub(crate) fn split_off_values(&mut self, mut keep: impl FnMut(&[u8]) -> bool) -> Pairs {
        let taken = Pairs {
            keys: self.keys.clone(),
            values: std::mem::take(&mut self.values),
            spans: self.spans.clone(),
        };
        for (i, span) in self.spans.iter_mut().enumerate() {
            let start = self.values.len();
            if keep(&taken.keys[taken.key_span(i)]) {
                self.values.extend_from_slice(taken.value(i));
            }
            span.value = u32::try_from(start).unwrap_or(u32::MAX);
            span.value_end = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        }
        taken
    }

    /// Takes the buffer of the values out (it is left empty): see
    /// [`take_key_text`](Self::take_key_text).
    pub(crate) fn take_values(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.values)
    }

    /// Takes the buffer of the keys out (it is left empty; [`key_span`](Self::key_span) still
    /// says where each key was): to keep it as text once it is known to be UTF-8. It still
    /// holds the bytes of the keys [`retain`](Self::retain) dropped and of the prefixes
    /// [`cut_keys`](Self::cut_keys) and [`leave`](Self::leave) cut off.
    pub(crate) fn take_key_text(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.keys)
    }

    /// Puts back the buffer [`take_key_text`](Self::take_key_text) took.
    pub(crate) fn put_key_text(&mut self, keys: Vec<u8>) {
        self.keys = keys;
    }

    /// The keys and values, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The pairs with their revisions, in order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = Pair<'_>> {
        (0..self.len()).map(|i| {
            let (key, value) = self.get(i);
            let span = &self.spans[i];
            Pair {
                key,
                value,
                create_revision: span.create_revision,
                mod_revision: span.mod_revision,
            }
        })
    }

    /// Adds a pair at the end (for tests).
    #[cfg(test)]
    pub(crate) fn push(&mut self, pair: Pair<'_>) {
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let (key, value) = (at(self.keys.len()), at(self.values.len()));
        self.keys.extend_from_slice(pair.key);
        self.values.extend_from_slice(pair.value);
        self.spans.push(Span {
            key,
            key_end: at(self.keys.len()),
            value,
            value_end: at(self.values.len()),
            create_revision: pair.create_revision,
            mod_revision: pair.mod_revision,
        });
    }

    /// Keeps the pairs whose key `keep` accepts.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        let keys = &self.keys;
        self.spans
            .retain(|span| keep(&keys[span.key as usize..span.key_end as usize]));
    }

    /// Cuts `len` bytes off the front of every key (each is at least that long: the prefix
    /// every key of the answer shares).
    pub(crate) fn cut_keys(&mut self, len: usize) {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        for span in &mut self.spans {
            span.key = span.key.saturating_add(len).min(span.key_end);
        }
    }

    /// Cuts `namespace` off the front of every key that starts with it, as the client's keys
    /// leave its namespace.
    pub(crate) fn leave(&mut self, namespace: &[u8]) {
        let len = u32::try_from(namespace.len()).unwrap_or(u32::MAX);
        for span in &mut self.spans {
            let key = &self.keys[span.key as usize..span.key_end as usize];
            if key.starts_with(namespace) {
                span.key += len;
            }
        }
    }

    /// Makes room for the pairs an answer brings, by looking ahead in `chunk` (the transport's
    /// buffer, at the length of the answer's first `KeyValue`): their number and the length of
    /// their keys and values, as far as they are in the chunk. The buffers are then allocated
    /// once, not grown by copying (for thousands of keys, the copies and the holes they leave
    /// were most of the answer's memory).
    pub(super) fn reserve_ahead(&mut self, chunk: &[u8]) {
        let (mut pairs, mut keys, mut values) = (0, 0, 0);
        let mut rest = chunk;
        while let Some(message) = length_delimited(&mut rest) {
            // A `KeyValue`'s fields: each key is one byte (field numbers up to 6), then a
            // varint, or a length and that many bytes. Only an estimate: it stops at anything
            // else.
            let mut fields = message;
            while let Some((&key, after)) = fields.split_first() {
                fields = after;
                match key {
                    0x0a | 0x2a => {
                        let Some(bytes) = length_delimited(&mut fields) else {
                            break;
                        };
                        *if key == 0x0a { &mut keys } else { &mut values } += bytes.len();
                    }
                    0x10 | 0x18 | 0x20 | 0x30 => {
                        let end = fields.iter().position(|b| b & 0x80 == 0);
                        fields = &fields[end.map_or(fields.len(), |at| at + 1)..];
                    }
                    _ => break,
                }
            }
            pairs += 1;
            // The next pair starts with field 2's key, length-delimited (0x12).
            match rest.split_first() {
                Some((0x12, after)) => rest = after,
                _ => break,
            }
        }
        self.spans.reserve(pairs);
        self.keys.reserve(keys);
        self.values.reserve(values);
    }

    /// Reads one `KeyValue` message (length-delimited) off `buf`, keeping its key and value.
    pub(super) fn merge_key_value(
        &mut self,
        buf: &mut impl Buf,
        ctx: &DecodeContext,
    ) -> Result<(), DecodeError> {
        let len = encoding::decode_varint(buf)?;
        let len = usize::try_from(len).map_err(|_| underflow())?;
        if len > buf.remaining() {
            return Err(underflow());
        }
        // Almost always the whole message is in the buffer's first chunk: read it as a slice,
        // where a step forward is a pointer's (the transport's buffer does more per step).
        if let Some(message) = buf.chunk().get(..len) {
            let mut message = message;
            self.merge_fields(&mut message, 0, ctx)?;
            buf.advance(len);
            return Ok(());
        }
        let limit = buf.remaining() - len;
        self.merge_fields(buf, limit, ctx)
    }

    /// Reads a `KeyValue`'s fields off `buf` until `limit` bytes are left.
    fn merge_fields(
        &mut self,
        buf: &mut impl Buf,
        limit: usize,
        ctx: &DecodeContext,
    ) -> Result<(), DecodeError> {
        let (key, value) = (self.keys.len(), self.values.len());
        let (mut create_revision, mut mod_revision) = (0, 0);
        while buf.remaining() > limit {
            let (tag, wire_type) = encoding::decode_key(buf)?;
            let into = match tag {
                1 => &mut self.keys,
                5 => &mut self.values,
                2 | 3 => {
                    let revision = if tag == 2 {
                        &mut create_revision
                    } else {
                        &mut mod_revision
                    };
                    encoding::int64::merge(wire_type, revision, buf, ctx.clone())?;
                    continue;
                }
                _ => {
                    encoding::skip_field(wire_type, tag, buf, ctx.clone())?;
                    continue;
                }
            };
            encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
            // A field sent twice: the last one counts, as in prost.
            into.truncate(if tag == 1 { key } else { value });
            copy_bytes(buf, limit, into)?;
        }
        if buf.remaining() != limit {
            return Err(underflow());
        }
        let at = |n: usize| u32::try_from(n).map_err(|_| underflow());
        self.spans.push(Span {
            key: at(key)?,
            key_end: at(self.keys.len())?,
            value: at(value)?,
            value_end: at(self.values.len())?,
            create_revision,
            mod_revision,
        });
        Ok(())
    }

    pub(super) fn encode_raw(&self, tag: u32, buf: &mut impl BufMut) {
        for pair in self.entries() {
            encoding::encode_key(tag, WireType::LengthDelimited, buf);
            encoding::encode_varint(key_value_len(&pair) as u64, buf);
            for (field, bytes) in [(1, pair.key), (5, pair.value)] {
                if !bytes.is_empty() {
                    encoding::encode_key(field, WireType::LengthDelimited, buf);
                    encoding::encode_varint(bytes.len() as u64, buf);
                    buf.put_slice(bytes);
                }
            }
            for (field, revision) in [(2, pair.create_revision), (3, pair.mod_revision)] {
                if revision != 0 {
                    encoding::int64::encode(field, &revision, buf);
                }
            }
        }
    }

    pub(super) fn encoded_len(&self, tag: u32) -> usize {
        self.entries()
            .map(|pair| {
                let len = key_value_len(&pair);
                encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
            })
            .sum()
    }
}

/// The bytes of a length-delimited field at the front of `rest` (past its length), if `rest`
/// holds them all; `rest` moves past them.
fn length_delimited<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = encoding::decode_varint(rest).ok()?;
    let bytes = rest.get(..usize::try_from(len).ok()?)?;
    *rest = &rest[bytes.len()..];
    Some(bytes)
}

/// Appends a length-delimited field's bytes (that end before `limit` bytes are left) to `into`.
fn copy_bytes(buf: &mut impl Buf, limit: usize, into: &mut Vec<u8>) -> Result<(), DecodeError> {
    let len = encoding::decode_varint(buf)?;
    let mut len = usize::try_from(len).map_err(|_| underflow())?;
    if len > buf.remaining().saturating_sub(limit) {
        return Err(underflow());
    }
    into.reserve(len);
    while len > 0 {
        let chunk = buf.chunk();
        let take = chunk.len().min(len);
        into.extend_from_slice(&chunk[..take]);
        buf.advance(take);
        len -= take;
    }
    Ok(())
}

/// The encoded length of a `KeyValue` with only a pair's key, value and revisions.
fn key_value_len(pair: &Pair<'_>) -> usize {
    let bytes: usize = [(1, pair.key), (5, pair.value)]
        .into_iter()
        .filter(|(_, bytes)| !bytes.is_empty())
        .map(|(field, bytes)| {
            encoding::key_len(field)
                + encoding::encoded_len_varint(bytes.len() as u64)
                + bytes.len()
        })
        .sum();
    let revisions: usize = [(2, pair.create_revision), (3, pair.mod_revision)]
        .into_iter()
        .filter(|(_, revision)| *revision != 0)
        .map(|(field, revision)| encoding::int64::encoded_len(field, &revision))
        .sum();
    bytes + revisions
}

/// A field longer than what is left of its message. (prost deprecates `DecodeError::new` for
/// use outside prost, but has no other way to make one; tonic turns it into a status.)
#[allow(deprecated)]
fn underflow() -> DecodeError {
    DecodeError::new("buffer underflow")
}
