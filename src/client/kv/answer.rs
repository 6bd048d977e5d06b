//! Range answers read straight off the wire, for the reads that only want keys and values (a
//! config's load, a change's read).
//!
//! prost's `RangeResponse` holds a `KeyValue` per key with two allocations of its own, in a
//! list that grows by copying. A load of thousands of keys then spends more on the allocator
//! than on anything else, only to take the keys apart again. [`RangeAnswer`] reads the same
//! bytes into [`Pairs`] instead: every key into one buffer, every value into another, three
//! growing allocations for the whole answer. It is decoded from etcd's `RangeResponse` (and
//! [`TxnAnswer`] from a `TxnResponse` of Ranges), so the server sees no difference.

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use super::pairs::Pairs;
use crate::proto::etcdserverpb as pb;

/// etcd's `RangeResponse`, its pairs in one buffer ([`Pairs`]): only their keys, values and
/// revisions are kept, not their versions or leases.
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
                if self.pairs.is_empty() {
                    self.pairs.reserve_ahead(buf.chunk());
                }
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
