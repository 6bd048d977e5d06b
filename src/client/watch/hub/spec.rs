//! What a watch asks etcd for, as the watch task keeps it between creates: the range in one
//! allocation and the options in a byte. A client may hold thousands of watches; the create
//! request itself (about a hundred bytes, with two vectors) is built only when it goes out.

use std::borrow::Cow;

use crate::key_range::{is_prefix_end, prefix_end};
use crate::proto::etcdserverpb as pb;
use pb::watch_create_request::FilterType;

const PREV_KV: u8 = 1;
const PROGRESS_NOTIFY: u8 = 1 << 1;
const FRAGMENT: u8 = 1 << 2;
const NO_PUT: u8 = 1 << 3;
const NO_DELETE: u8 = 1 << 4;
/// The range end is the key's prefix end ([`prefix_end`]), as every config's is: only the key
/// is kept.
const PREFIX: u8 = 1 << 5;

pub(in crate::client::watch) struct Spec {
    /// The key, then the range end (unless it follows from the key: [`PREFIX`]).
    range: Box<[u8]>,
    key_len: u32,
    flags: u8,
}

impl Spec {
    /// What `request` asks for, apart from its start revision and watch id (the watch task
    /// sets those at each create).
    pub(in crate::client::watch) fn of(request: &pb::WatchCreateRequest) -> Spec {
        let (key, end) = (&request.key[..], &request.range_end[..]);
        let prefix = is_prefix_end(key, end);
        let mut range = Vec::with_capacity(key.len() + if prefix { 0 } else { end.len() });
        range.extend_from_slice(key);
        if !prefix {
            range.extend_from_slice(end);
        }
        let mut flags = if prefix { PREFIX } else { 0 };
        for (set, flag) in [
            (request.prev_kv, PREV_KV),
            (request.progress_notify, PROGRESS_NOTIFY),
            (request.fragment, FRAGMENT),
        ] {
            if set {
                flags |= flag;
            }
        }
        for filter in &request.filters {
            match FilterType::try_from(*filter) {
                Ok(FilterType::Noput) => flags |= NO_PUT,
                Ok(FilterType::Nodelete) => flags |= NO_DELETE,
                Err(_) => {}
            }
        }
        Spec {
            range: range.into_boxed_slice(),
            // etcd's request limit (1.5 MiB by default) keeps keys far below 4 GiB.
            key_len: u32::try_from(request.key.len()).unwrap_or(u32::MAX),
            flags,
        }
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

    /// The create request, from `start_revision` (0: now), asking for `watch_id`.
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

    /// What the watch is, for errors: `Watch prefix /services/gateway/`.
    pub(in crate::client::watch) fn describe(&self) -> String {
        format!(
            "Watch {}",
            crate::key_range::describe(self.key(), &self.range_end())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option survives the round trip through the compact form.
    #[test]
    fn the_request_comes_back_whole() {
        let request = pb::WatchCreateRequest {
            key: b"/a/".to_vec(),
            range_end: b"/a0".to_vec(),
            prev_kv: true,
            fragment: true,
            filters: vec![FilterType::Nodelete as i32],
            ..Default::default()
        };
        let spec = Spec::of(&request);
        let again = spec.request(7, 9);
        assert_eq!(again.key, request.key);
        assert_eq!(again.range_end, request.range_end);
        assert!(again.prev_kv && again.fragment && !again.progress_notify);
        assert_eq!(again.filters, request.filters);
        assert_eq!((again.start_revision, again.watch_id), (7, 9));
        let plain = Spec::of(&pb::WatchCreateRequest {
            key: b"k".to_vec(),
            progress_notify: true,
            filters: vec![FilterType::Noput as i32],
            ..Default::default()
        });
        let plain = plain.request(0, 1);
        assert!(plain.range_end.is_empty() && plain.progress_notify);
        assert_eq!(plain.filters, vec![FilterType::Noput as i32]);
        for (key, end) in [
            (&b"/cfg/"[..], &b"/cfg0"[..]),
            (b"/a\xfe", b"/a\xff"),
            (b"/a\xff", b"/b"),
            (b"k", b"\0"),
            (b"", b"\0"),
            (b"a", b"c"),
        ] {
            let request = pb::WatchCreateRequest {
                key: key.to_vec(),
                range_end: end.to_vec(),
                ..Default::default()
            };
            let again = Spec::of(&request).request(0, 0);
            assert_eq!((again.key, again.range_end), (key.to_vec(), end.to_vec()));
        }
    }
}
