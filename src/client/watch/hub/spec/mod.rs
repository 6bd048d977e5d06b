//! What a watch asks etcd for, as the watch task keeps it between creates: the range in one
//! allocation and the options in a byte. A client may hold thousands of watches; the create
//! request itself (about a hundred bytes, with two vectors) is built only when it goes out.

use std::borrow::Cow;

use bytes::BufMut;
use prost::encoding::{self, WireType};

use crate::client::transport::{never_decoded, Encoded};
use crate::key_range::{is_prefix_end, prefix_end, prefix_end_parts};
use crate::proto::etcdserverpb as pb;
use pb::watch_create_request::FilterType;

pub(in crate::client::watch) const PREV_KV: u8 = 1;
pub(in crate::client::watch) const PROGRESS_NOTIFY: u8 = 1 << 1;
pub(in crate::client::watch) const FRAGMENT: u8 = 1 << 2;
pub(in crate::client::watch) const NO_PUT: u8 = 1 << 3;
pub(in crate::client::watch) const NO_DELETE: u8 = 1 << 4;
/// The range end is the key's prefix end ([`prefix_end`]), as every config's is: only the key
/// is kept.
const PREFIX: u8 = 1 << 5;
/// The watch's owner wants it confirmed current: where etcd does not answer progress
/// requests, the watch task reads its keys instead (`stand_in`). Not sent to etcd.
pub(in crate::client::watch) const CONFIRMED: u8 = 1 << 6;

#[derive(Debug, Clone, Default)]
pub(in crate::client::watch) struct Spec {
    /// The key, then the range end (unless it follows from the key: [`PREFIX`]).
    range: Box<[u8]>,
    key_len: u32,
    flags: u8,
}

impl Spec {
    /// The watch of `[key, end)` (etcd's encoding of a range: see [`crate::KeyRange`]) of a
    /// client in `namespace`, as etcd is to see it, in one allocation. A range to the end of
    /// the keyspace ends at the namespace's end.
    pub(in crate::client::watch) fn entered(namespace: &[u8], key: &[u8], end: &[u8]) -> Spec {
        if namespace.is_empty() || (key.is_empty() && end.is_empty()) {
            return Spec::built(&[key], &[end], is_prefix_end(key, end));
        }
        if end == [0] {
            let key = [namespace, key].concat();
            let end = prefix_end(namespace).unwrap_or_else(|| vec![0]);
            let prefix = is_prefix_end(&key, &end);
            return Spec::built(&[&key], &[&end], prefix);
        }
        // Under the same namespace, the end is the key's prefix end exactly when it is so
        // without it.
        let end_head = if end.is_empty() { &[][..] } else { namespace };
        Spec::built(&[namespace, key], &[end_head, end], is_prefix_end(key, end))
    }

    /// The watch of every key under `first + second`, in `namespace`: a config's prefix
    /// (`T::PREFIX` and `/`), with no key or range end built first.
    pub(in crate::client::watch) fn prefix(namespace: &[u8], [first, second]: [&[u8]; 2]) -> Spec {
        if first.iter().chain(second).all(|&b| b == 0xff) {
            // No prefix end: every key from it on, as `KeyRange::prefix` has it.
            let key = [first, second].concat();
            let key = if key.is_empty() { vec![0] } else { key };
            return Spec::entered(namespace, &key, &[0]);
        }
        Spec::built(&[namespace, first, second], &[], true)
    }

    /// The key `key` joined and the range end `end` joined; with `prefix` the end is the key's
    /// prefix end and only the key is kept.
    fn built(key: &[&[u8]], end: &[&[u8]], prefix: bool) -> Spec {
        let key_len: usize = key.iter().map(|part| part.len()).sum();
        let end_len: usize = match prefix {
            true => 0,
            false => end.iter().map(|part| part.len()).sum(),
        };
        let mut range = Vec::with_capacity(key_len + end_len);
        for part in key.iter().chain(if prefix { &[][..] } else { end }) {
            range.extend_from_slice(part);
        }
        Spec {
            range: range.into_boxed_slice(),
            // etcd's request limit (1.5 MiB by default) keeps keys far below 4 GiB.
            key_len: u32::try_from(key_len).unwrap_or(u32::MAX),
            flags: if prefix { PREFIX } else { 0 },
        }
    }

    /// Sets one of the options (`PREV_KV`, `NO_PUT`, ...).
    pub(in crate::client::watch) fn set(&mut self, flag: u8) {
        self.flags |= flag;
    }

    /// What `request` asks for, apart from its start revision and watch id: the spec of
    /// the request the builder used to hold, to compare with.
    #[cfg(test)]
    pub(in crate::client::watch) fn of(request: &pb::WatchCreateRequest) -> Spec {
        let mut spec = Spec::entered(&[], &request.key, &request.range_end);
        for (set, flag) in [
            (request.prev_kv, PREV_KV),
            (request.progress_notify, PROGRESS_NOTIFY),
            (request.fragment, FRAGMENT),
        ] {
            if set {
                spec.set(flag);
            }
        }
        for filter in &request.filters {
            match FilterType::try_from(*filter) {
                Ok(FilterType::Noput) => spec.set(NO_PUT),
                Ok(FilterType::Nodelete) => spec.set(NO_DELETE),
                Err(_) => {}
            }
        }
        spec
    }

    /// Whether the watch's owner wants it confirmed current ([`CONFIRMED`]).
    pub(super) fn confirmed(&self) -> bool {
        self.flags & CONFIRMED != 0
    }

    pub(super) fn key(&self) -> &[u8] {
        &self.range[..self.key_len as usize]
    }

    pub(super) fn range_end(&self) -> Cow<'_, [u8]> {
        if self.flags & PREFIX == 0 {
            return Cow::Borrowed(&self.range[self.key_len as usize..]);
        }
        Cow::Owned(prefix_end(self.key()).unwrap_or_default())
    }

    /// The create request, from `start_revision` (0: now), asking for `watch_id`: what
    /// [`Spec::create_message`] encodes, to compare with.
    #[cfg(test)]
    pub(super) fn request(&self, start_revision: i64, watch_id: i64) -> pb::WatchCreateRequest {
        let mut filters = Vec::new();
        if self.flags & NO_PUT != 0 {
            filters.push(FilterType::Noput as i32);
        }
        if self.flags & NO_DELETE != 0 {
            filters.push(FilterType::Nodelete as i32);
        }
        pb::WatchCreateRequest {
            key: self.key().to_vec(),
            range_end: self.range_end().into_owned(),
            start_revision,
            progress_notify: self.flags & PROGRESS_NOTIFY != 0,
            filters,
            prev_kv: self.flags & PREV_KV != 0,
            watch_id,
            fragment: self.flags & FRAGMENT != 0,
        }
    }

    /// The stream message that creates this watch from `start_revision` (0: now), asking for
    /// `watch_id`, encoded from the spec itself: no request is built (two vectors, and the
    /// range end computed again, per create).
    pub(super) fn create_message(&self, start_revision: i64, watch_id: i64) -> Encoded {
        Encoded::of(&CreateMessage(Create {
            spec: self,
            start_revision,
            watch_id,
        }))
    }

    /// What the watch is, for errors: `Watch prefix /services/gateway/`.
    pub(in crate::client::watch) fn describe(&self) -> String {
        format!(
            "Watch {}",
            crate::key_range::describe(self.key(), &self.range_end())
        )
    }
}

/// A `WatchCreateRequest` read from a [`Spec`], as prost would encode the request
/// [`Spec::request`] builds (the tests compare the bytes). Field numbers are etcd's.
#[derive(Debug)]
struct Create<'a> {
    spec: &'a Spec,
    start_revision: i64,
    watch_id: i64,
}

/// The `WatchRequest` around a [`Create`] (its `create_request`, field 1).
#[derive(Debug)]
struct CreateMessage<'a>(Create<'a>);

impl Create<'_> {
    fn flag(&self, flag: u8) -> bool {
        self.spec.flags & flag != 0
    }

    /// The range end: given, or the key's prefix end as its head and last byte.
    fn range_end(&self) -> (&[u8], Option<u8>) {
        let spec = self.spec;
        if spec.flags & PREFIX == 0 {
            return (&spec.range[spec.key_len as usize..], None);
        }
        match prefix_end_parts(spec.key()) {
            Some((head, last)) => (head, Some(last)),
            None => (&[], None), // not a prefix spec (`Spec::entered` checks)
        }
    }

    fn filters(&self) -> Vec<i32> {
        let mut filters = Vec::new();
        if self.flag(NO_PUT) {
            filters.push(FilterType::Noput as i32);
        }
        if self.flag(NO_DELETE) {
            filters.push(FilterType::Nodelete as i32);
        }
        filters
    }
}

impl prost::Message for Create<'_> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_bytes(1, self.spec.key(), None, buf);
        let (head, last) = self.range_end();
        put_bytes(2, head, last, buf);
        if self.start_revision != 0 {
            encoding::int64::encode(3, &self.start_revision, buf);
        }
        if self.flag(PROGRESS_NOTIFY) {
            encoding::bool::encode(4, &true, buf);
        }
        encoding::int32::encode_packed(5, &self.filters(), buf);
        if self.flag(PREV_KV) {
            encoding::bool::encode(6, &true, buf);
        }
        if self.watch_id != 0 {
            encoding::int64::encode(7, &self.watch_id, buf);
        }
        if self.flag(FRAGMENT) {
            encoding::bool::encode(8, &true, buf);
        }
    }

    fn encoded_len(&self) -> usize {
        let key = self.spec.key().len();
        let (head, last) = self.range_end();
        let end = head.len() + usize::from(last.is_some());
        let field = |len: usize| {
            if len == 0 {
                0
            } else {
                1 + encoding::encoded_len_varint(len as u64) + len
            }
        };
        let flags = [PROGRESS_NOTIFY, PREV_KV, FRAGMENT]
            .into_iter()
            .filter(|&flag| self.flag(flag))
            .count();
        field(key)
            + field(end)
            + [self.start_revision, self.watch_id]
                .into_iter()
                .filter(|&n| n != 0)
                .map(|n| 1 + encoding::encoded_len_varint(n as u64))
                .sum::<usize>()
            + 2 * flags
            + encoding::int32::encoded_len_packed(5, &self.filters())
    }

    never_decoded!();
}

/// A bytes field holding `head` then `last`, left out when empty (proto3).
fn put_bytes(tag: u32, head: &[u8], last: Option<u8>, buf: &mut impl BufMut) {
    let len = head.len() + usize::from(last.is_some());
    if len > 0 {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(len as u64, buf);
        buf.put_slice(head);
        if let Some(last) = last {
            buf.put_u8(last);
        }
    }
}

impl prost::Message for CreateMessage<'_> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::message::encode(1, &self.0, buf);
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len(1, &self.0)
    }

    never_decoded!();
}

#[cfg(test)]
mod tests;
