//! A namespaced client ([`Client::namespace`]), as Go's `clientv3/namespace`: every key a KV,
//! Txn or Watch request names is put under the namespace, and every key in an answer is given
//! back without it. Locks and elections work on top of these, so they are namespaced too.

use std::sync::Arc;

use super::Client;
use crate::key_range::prefix_end;
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;

impl Client {
    /// A client whose every key is under `namespace` (appended to this client's own): with
    /// `client.namespace("/tenant-a")`, `kv().put("/x", ..)` writes `/tenant-a/x`, a read of
    /// every key reads only the tenant's, and answers and watch events name `/x`. It shares
    /// this client's connections, watch stream and leases.
    ///
    /// What it does not cover, like Go's: auth (users, roles and permissions name real keys),
    /// cluster and maintenance calls; the keys of [`Lease::time_to_live`](super::Lease) are
    /// given back without the namespace when they are under it.
    #[must_use]
    pub fn namespace(&self, namespace: impl AsRef<[u8]>) -> Client {
        let mut joined = self.namespace.to_vec();
        joined.extend_from_slice(namespace.as_ref());
        Client {
            namespace: Arc::from(joined),
            ..self.clone()
        }
    }

    /// This client's namespace (empty for none).
    pub fn namespace_prefix(&self) -> &[u8] {
        &self.namespace
    }
}

/// A request whose keys go under a namespace.
pub(crate) trait Enter {
    fn enter(&mut self, namespace: &[u8]);
}

/// An answer whose keys come back out of a namespace.
pub(crate) trait Leave {
    fn leave(&mut self, namespace: &[u8]);
}

/// `key` under `namespace`; an empty key stays empty, for etcd to refuse.
fn key_in(namespace: &[u8], key: &mut Vec<u8>) {
    if !key.is_empty() {
        prepend(namespace, key);
    }
}

/// The range `[key, range_end)` under `namespace`: a single key, a range, or "every key from
/// `key` on" (`range_end` `\0`), which ends at the end of the namespace.
fn range_in(namespace: &[u8], key: &mut Vec<u8>, range_end: &mut Vec<u8>) {
    if key.is_empty() && range_end.is_empty() {
        return;
    }
    prepend(namespace, key);
    if range_end.as_slice() == [0] {
        *range_end = prefix_end(namespace).unwrap_or_else(|| vec![0]);
    } else if !range_end.is_empty() {
        prepend(namespace, range_end);
    }
}

/// `namespace` + `key`: in place when the key has the room (a store's own ranges are built
/// with it), else in one new allocation of the right size (a splice at the front grows the
/// key and moves it byte by byte).
fn prepend(namespace: &[u8], key: &mut Vec<u8>) {
    if key.capacity() - key.len() >= namespace.len() {
        let len = key.len();
        key.extend_from_slice(namespace);
        key.copy_within(..len, namespace.len());
        key[..namespace.len()].copy_from_slice(namespace);
        return;
    }
    let mut joined = Vec::with_capacity(namespace.len() + key.len());
    joined.extend_from_slice(namespace);
    joined.extend_from_slice(key);
    *key = joined;
}

fn key_out(namespace: &[u8], key: &mut Vec<u8>) {
    if key.starts_with(namespace) {
        key.drain(..namespace.len());
    }
}

fn kv_out(namespace: &[u8], kv: &mut mvccpb::KeyValue) {
    key_out(namespace, &mut kv.key);
}

impl Enter for pb::RangeRequest {
    fn enter(&mut self, namespace: &[u8]) {
        range_in(namespace, &mut self.key, &mut self.range_end);
    }
}

impl Enter for pb::PutRequest {
    fn enter(&mut self, namespace: &[u8]) {
        key_in(namespace, &mut self.key);
    }
}

impl Enter for pb::DeleteRangeRequest {
    fn enter(&mut self, namespace: &[u8]) {
        range_in(namespace, &mut self.key, &mut self.range_end);
    }
}

impl Enter for pb::CompactionRequest {
    fn enter(&mut self, _: &[u8]) {}
}

impl Enter for pb::WatchCreateRequest {
    fn enter(&mut self, namespace: &[u8]) {
        range_in(namespace, &mut self.key, &mut self.range_end);
    }
}

impl Enter for pb::TxnRequest {
    fn enter(&mut self, namespace: &[u8]) {
        use pb::request_op::Request;
        for compare in &mut self.compare {
            range_in(namespace, &mut compare.key, &mut compare.range_end);
        }
        for op in self.success.iter_mut().chain(self.failure.iter_mut()) {
            match &mut op.request {
                Some(Request::RequestRange(r)) => r.enter(namespace),
                Some(Request::RequestPut(r)) => r.enter(namespace),
                Some(Request::RequestDeleteRange(r)) => r.enter(namespace),
                Some(Request::RequestTxn(r)) => r.enter(namespace),
                None => {}
            }
        }
    }
}

impl Leave for pb::RangeResponse {
    fn leave(&mut self, namespace: &[u8]) {
        self.kvs.iter_mut().for_each(|kv| kv_out(namespace, kv));
    }
}

impl Leave for pb::PutResponse {
    fn leave(&mut self, namespace: &[u8]) {
        self.prev_kv.iter_mut().for_each(|kv| kv_out(namespace, kv));
    }
}

impl Leave for pb::DeleteRangeResponse {
    fn leave(&mut self, namespace: &[u8]) {
        self.prev_kvs
            .iter_mut()
            .for_each(|kv| kv_out(namespace, kv));
    }
}

impl Leave for pb::CompactionResponse {
    fn leave(&mut self, _: &[u8]) {}
}

impl Leave for pb::TxnResponse {
    fn leave(&mut self, namespace: &[u8]) {
        use pb::response_op::Response;
        for op in &mut self.responses {
            match &mut op.response {
                Some(Response::ResponseRange(r)) => r.leave(namespace),
                Some(Response::ResponsePut(r)) => r.leave(namespace),
                Some(Response::ResponseDeleteRange(r)) => r.leave(namespace),
                Some(Response::ResponseTxn(r)) => r.leave(namespace),
                None => {}
            }
        }
    }
}

impl Leave for pb::LeaseTimeToLiveResponse {
    fn leave(&mut self, namespace: &[u8]) {
        self.keys.iter_mut().for_each(|key| key_out(namespace, key));
    }
}

/// The keys of a watch response's events out of `namespace` (nothing to do for none).
pub(crate) fn events_out(namespace: &[u8], events: &mut [super::Event]) {
    if !namespace.is_empty() {
        for event in events {
            event_out(namespace, event);
        }
    }
}

/// A watch event's keys out of `namespace`.
fn event_out(namespace: &[u8], event: &mut super::Event) {
    if event.kv.key.starts_with(namespace) {
        event.kv.key.drain(..namespace.len());
    }
    if let Some(prev) = &mut event.prev_kv {
        if prev.key.starts_with(namespace) {
            prev.key.drain(..namespace.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::prepend;
    use crate::key_range::KeyRange;

    proptest! {
        /// In place or not, the namespace ends up in front of the key and nothing else moves.
        #[test]
        fn prepend_puts_the_namespace_in_front(
            namespace in proptest::collection::vec(any::<u8>(), 0..12),
            key in proptest::collection::vec(any::<u8>(), 0..12),
            room in 0usize..16,
        ) {
            let mut with = Vec::with_capacity(key.len() + room);
            with.extend_from_slice(&key);
            prepend(&namespace, &mut with);
            prop_assert_eq!(with, [namespace.as_slice(), key.as_slice()].concat());
        }

        /// A prefix built with room is the same range as one built without.
        #[test]
        fn a_prefix_with_room_is_the_same_range(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..4), 0..3),
            room in 0usize..16,
        ) {
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let roomy = KeyRange::prefix_with_room(&slices, room);
            let plain = KeyRange::prefix(parts.concat());
            prop_assert_eq!(roomy.start(), plain.start());
            prop_assert_eq!(roomy.range_end(), plain.range_end());
        }
    }
}
