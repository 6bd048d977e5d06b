//! Range answers read straight off the wire into one buffer, for the reads that only want keys
//! and values (a config's load).
//!
//! prost's `RangeResponse` holds a `KeyValue` per key with two allocations of its own, in a
//! list that grows by copying. A load of thousands of keys then spends more on the allocator
//! than on anything else, only to take the keys apart again. [`RangeAnswer`] reads the same
//! bytes and appends every key to one buffer and every value to another instead: three growing
//! allocations for the whole answer. It is decoded from etcd's `RangeResponse` (and [`TxnAnswer`] from a
//! `TxnResponse` of Ranges), so the server sees no difference.

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::proto::etcdserverpb as pb;

/// The key-value pairs of a range answer, in the order etcd sent them: the keys one after
/// another in one buffer, the values in another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pairs {
    keys: Vec<u8>,
    values: Vec<u8>,
    spans: Vec<Span>,
}

/// Where one pair's key and value are in their buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    key: u32,
    key_end: u32,
    value: u32,
    value_end: u32,
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
        let span = &self.spans[i];
        &self.values[span.value as usize..span.value_end as usize]
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

    /// The pairs, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        (0..self.len()).map(|i| self.get(i))
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

    /// True when every key is greater than the one before it (etcd sends a range in key
    /// order, each key once).
    pub(crate) fn is_strictly_sorted(&self) -> bool {
        (1..self.len()).all(|i| self.get(i - 1).0 < self.get(i).0)
    }

    /// Reads one `KeyValue` message (length-delimited) off `buf`, keeping its key and value.
    fn merge_key_value(
        &mut self,
        buf: &mut impl Buf,
        ctx: &DecodeContext,
    ) -> Result<(), DecodeError> {
        let len = encoding::decode_varint(buf)?;
        let len = usize::try_from(len).map_err(|_| underflow())?;
        if len > buf.remaining() {
            return Err(underflow());
        }
        let limit = buf.remaining() - len;
        let (key, value) = (self.keys.len(), self.values.len());
        while buf.remaining() > limit {
            let (tag, wire_type) = encoding::decode_key(buf)?;
            let into = match tag {
                1 => &mut self.keys,
                5 => &mut self.values,
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
        });
        Ok(())
    }

    fn encode_raw(&self, tag: u32, buf: &mut impl BufMut) {
        for (key, value) in self.iter() {
            encoding::encode_key(tag, WireType::LengthDelimited, buf);
            encoding::encode_varint(key_value_len(key, value) as u64, buf);
            for (field, bytes) in [(1, key), (5, value)] {
                if !bytes.is_empty() {
                    encoding::encode_key(field, WireType::LengthDelimited, buf);
                    encoding::encode_varint(bytes.len() as u64, buf);
                    buf.put_slice(bytes);
                }
            }
        }
    }

    fn encoded_len(&self, tag: u32) -> usize {
        self.iter()
            .map(|(key, value)| {
                let len = key_value_len(key, value);
                encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
            })
            .sum()
    }
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

/// The encoded length of a `KeyValue` with only its key and value.
fn key_value_len(key: &[u8], value: &[u8]) -> usize {
    [(1, key), (5, value)]
        .into_iter()
        .filter(|(_, bytes)| !bytes.is_empty())
        .map(|(field, bytes)| {
            encoding::key_len(field)
                + encoding::encoded_len_varint(bytes.len() as u64)
                + bytes.len()
        })
        .sum()
}

/// A field longer than what is left of its message. (prost deprecates `DecodeError::new` for
/// use outside prost, but has no other way to make one; tonic turns it into a status.)
#[allow(deprecated)]
fn underflow() -> DecodeError {
    DecodeError::new("buffer underflow")
}

/// etcd's `RangeResponse`, its pairs in one buffer ([`Pairs`]): only their keys and values are
/// kept, not their revisions, versions or leases.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RangeAnswer {
    pub(crate) header: Option<pb::ResponseHeader>,
    pub(crate) pairs: Pairs,
    pub(crate) more: bool,
    pub(crate) count: i64,
}

impl Message for RangeAnswer {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(header) = &self.header {
            encoding::message::encode(1, header, buf);
        }
        self.pairs.encode_raw(2, buf);
        if self.more {
            encoding::bool::encode(3, &self.more, buf);
        }
        if self.count != 0 {
            encoding::int64::encode(4, &self.count, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let header = self.header.get_or_insert_with(Default::default);
                encoding::message::merge(wire_type, header, buf, ctx)
            }
            2 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                self.pairs.merge_key_value(buf, &ctx)
            }
            3 => encoding::bool::merge(wire_type, &mut self.more, buf, ctx),
            4 => encoding::int64::merge(wire_type, &mut self.count, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.header
            .as_ref()
            .map_or(0, |header| encoding::message::encoded_len(1, header))
            + self.pairs.encoded_len(2)
            + if self.more {
                encoding::bool::encoded_len(3, &self.more)
            } else {
                0
            }
            + if self.count != 0 {
                encoding::int64::encoded_len(4, &self.count)
            } else {
                0
            }
    }

    fn clear(&mut self) {
        *self = RangeAnswer::default();
    }
}

/// One of a [`TxnAnswer`]'s results: a Range's answer, or `None` for any other operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ReadOp {
    pub(crate) range: Option<RangeAnswer>,
}

impl Message for ReadOp {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(range) = &self.range {
            encoding::message::encode(1, range, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let range = self.range.get_or_insert_with(Default::default);
                encoding::message::merge(wire_type, range, buf, ctx)
            }
            // Another operation's answer: the oneof holds one of them, the last one read.
            _ => {
                self.range = None;
                encoding::skip_field(wire_type, tag, buf, ctx)
            }
        }
    }

    fn encoded_len(&self) -> usize {
        self.range
            .as_ref()
            .map_or(0, |range| encoding::message::encoded_len(1, range))
    }

    fn clear(&mut self) {
        self.range = None;
    }
}

/// etcd's `TxnResponse` of a Txn of Ranges, each answer a [`RangeAnswer`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TxnAnswer {
    pub(crate) header: Option<pb::ResponseHeader>,
    pub(crate) succeeded: bool,
    pub(crate) responses: Vec<ReadOp>,
}

impl Message for TxnAnswer {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(header) = &self.header {
            encoding::message::encode(1, header, buf);
        }
        if self.succeeded {
            encoding::bool::encode(2, &self.succeeded, buf);
        }
        encoding::message::encode_repeated(3, &self.responses, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let header = self.header.get_or_insert_with(Default::default);
                encoding::message::merge(wire_type, header, buf, ctx)
            }
            2 => encoding::bool::merge(wire_type, &mut self.succeeded, buf, ctx),
            3 => encoding::message::merge_repeated(wire_type, &mut self.responses, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.header
            .as_ref()
            .map_or(0, |header| encoding::message::encoded_len(1, header))
            + if self.succeeded {
                encoding::bool::encoded_len(2, &self.succeeded)
            } else {
                0
            }
            + encoding::message::encoded_len_repeated(3, &self.responses)
    }

    fn clear(&mut self) {
        *self = TxnAnswer::default();
    }
}
