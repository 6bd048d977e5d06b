//! The KV service's writes: Put, DeleteRange and Compact.

use std::future::IntoFuture;

use super::{write, Kv};
use crate::client::{BoxFuture, KeyValue, ResponseHeader};
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::proto::etcdserverpb as pb;

/// A write of one key. Await it (`Put<Kv>`), or put it in a txn (`Put<()>`).
#[derive(Debug, Clone)]
#[must_use = "a Put does nothing until awaited or added to a txn"]
pub struct Put<C = Kv> {
    client: C,
    pub(crate) request: pb::PutRequest,
}

impl Put<()> {
    /// A write with no client, for a [`Txn`](crate::client::Txn).
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Put {
            client: (),
            request: pb::PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            },
        }
    }

    pub(crate) fn on(self, kv: Kv) -> Put<Kv> {
        Put {
            client: kv,
            request: self.request,
        }
    }
}

impl<C> Put<C> {
    /// Attach the key to a lease: it is deleted when the lease expires or is revoked.
    pub fn lease(mut self, lease: i64) -> Self {
        self.request.lease = lease;
        self
    }

    /// Return the key as it was before this write.
    pub fn prev_kv(mut self) -> Self {
        self.request.prev_kv = true;
        self
    }

    /// Keep the current value (the key must exist; give an empty value).
    pub fn ignore_value(mut self) -> Self {
        self.request.ignore_value = true;
        self
    }

    /// Keep the current lease (the key must exist; give no lease).
    pub fn ignore_lease(mut self) -> Self {
        self.request.ignore_lease = true;
        self
    }
}

/// The answer to a put.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PutResponse {
    /// Who answered, and the revision of this write.
    pub header: ResponseHeader,
    /// The key before the write, if `prev_kv` was asked and the key existed.
    pub prev_kv: Option<KeyValue>,
}

impl From<pb::PutResponse> for PutResponse {
    fn from(response: pb::PutResponse) -> Self {
        PutResponse {
            header: response.header.into(),
            prev_kv: response.prev_kv.map(KeyValue::from),
        }
    }
}

impl IntoFuture for Put<Kv> {
    type Output = Result<PutResponse>;
    type IntoFuture = BoxFuture<PutResponse>;

    fn into_future(self) -> Self::IntoFuture {
        write(self.client, self.request)
    }
}

/// A delete of a range of keys. Await it (`Delete<Kv>`), or put it in a txn (`Delete<()>`).
#[derive(Debug, Clone)]
#[must_use = "a Delete does nothing until awaited or added to a txn"]
pub struct Delete<C = Kv> {
    client: C,
    pub(crate) request: pb::DeleteRangeRequest,
}

impl Delete<()> {
    /// A delete with no client, for a [`Txn`](crate::client::Txn).
    pub fn new(range: impl Into<KeyRange>) -> Self {
        let (key, range_end) = range.into().into_parts();
        Delete {
            client: (),
            request: pb::DeleteRangeRequest {
                key,
                range_end,
                prev_kv: false,
            },
        }
    }

    pub(crate) fn on(self, kv: Kv) -> Delete<Kv> {
        Delete {
            client: kv,
            request: self.request,
        }
    }
}

impl<C> Delete<C> {
    /// Return the deleted keys.
    pub fn prev_kv(mut self) -> Self {
        self.request.prev_kv = true;
        self
    }
}

/// The answer to a delete.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeleteResponse {
    /// Who answered, and the revision of this delete.
    pub header: ResponseHeader,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted keys, if `prev_kv` was asked.
    pub prev_kvs: Vec<KeyValue>,
}

impl From<pb::DeleteRangeResponse> for DeleteResponse {
    fn from(response: pb::DeleteRangeResponse) -> Self {
        DeleteResponse {
            header: response.header.into(),
            deleted: response.deleted,
            prev_kvs: response.prev_kvs.into_iter().map(KeyValue::from).collect(),
        }
    }
}

impl IntoFuture for Delete<Kv> {
    type Output = Result<DeleteResponse>;
    type IntoFuture = BoxFuture<DeleteResponse>;

    fn into_future(self) -> Self::IntoFuture {
        write(self.client, self.request)
    }
}

/// A compaction. Await it.
#[derive(Debug, Clone)]
#[must_use = "a Compact does nothing until awaited"]
pub struct Compact {
    pub(super) client: Kv,
    pub(super) request: pb::CompactionRequest,
}

impl Compact {
    /// Wait until the compaction is physically applied to the backend before answering.
    pub fn physical(mut self) -> Self {
        self.request.physical = true;
        self
    }
}

impl IntoFuture for Compact {
    type Output = Result<ResponseHeader>;
    type IntoFuture = BoxFuture<ResponseHeader>;

    fn into_future(self) -> Self::IntoFuture {
        write(self.client, self.request)
    }
}

impl From<pb::CompactionResponse> for ResponseHeader {
    fn from(response: pb::CompactionResponse) -> Self {
        response.header.into()
    }
}
