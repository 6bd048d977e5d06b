//! etcd's KV service: Range, Put, DeleteRange and Compact, as builders you `.await`.

use std::future::IntoFuture;

use super::key_value::{KeyValue, SortOrder, SortTarget};
use super::namespace::{Enter, Leave};
use super::rpc::Rpc;
use super::BoxFuture;
use super::{Client, ResponseHeader};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;
use crate::proto::etcdserverpb as pb;

pub(crate) mod answer;
#[cfg(test)]
mod answer_tests;
pub(crate) mod pairs;
mod read_pairs;
mod together;
mod write;

pub(crate) use together::Together;

pub use write::{Compact, Delete, DeleteResponse, Put, PutResponse};

/// Handle to the KV service of a [`Client`]. Cheap to clone.
///
/// ```no_run
/// # async fn demo(client: etcd_config::Client) -> etcd_config::Result<()> {
/// use etcd_config::KeyRange;
///
/// let kv = client.kv();
/// kv.put("/a/1", "one").await?;
/// let page = kv.get(KeyRange::prefix("/a/")).limit(10).await?;
/// for item in &page.kvs {
///     let key = String::from_utf8_lossy(&item.key);
///     println!("{key} = {}", String::from_utf8_lossy(&item.value));
/// }
/// # Ok(()) }
/// ```
///
/// The builders are generic over their client so the same type serves both as a call of its
/// own (`Get<Kv>`, awaited) and as an operation inside a [`Txn`](crate::client::Txn) (`Get<()>`,
/// made with [`Get::new`] and turned into a [`TxnOp`](crate::client::TxnOp)).
#[derive(Clone, Debug)]
pub struct Kv {
    client: Client,
}

impl Kv {
    pub(crate) fn new(client: Client) -> Self {
        Kv { client }
    }

    /// Reads the keys in `range` (one Range round trip). Add options, then `.await`.
    pub fn get(&self, range: impl Into<KeyRange>) -> Get<Kv> {
        Get::new(range).on(self.clone())
    }

    /// Writes `value` at `key` (one Put round trip).
    pub fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Put<Kv> {
        Put::new(key, value).on(self.clone())
    }

    /// Deletes the keys in `range` (one DeleteRange round trip).
    pub fn delete(&self, range: impl Into<KeyRange>) -> Delete<Kv> {
        Delete::new(range).on(self.clone())
    }

    /// Discards the history before `revision` (one Compact round trip). Reads at older
    /// revisions then fail with [`ServerErrorKind::Compacted`](crate::ServerErrorKind::Compacted).
    pub fn compact(&self, revision: i64) -> Compact {
        Compact {
            client: self.clone(),
            request: pb::CompactionRequest {
                revision,
                physical: false,
            },
        }
    }
}

/// A range read. Await it (`Get<Kv>`), or put it in a txn (`Get<()>`).
#[derive(Debug, Clone)]
#[must_use = "a Get does nothing until awaited or added to a txn"]
pub struct Get<C = Kv> {
    client: C,
    pub(crate) request: pb::RangeRequest,
}

impl Get<()> {
    /// A read of `range` with no client, for a [`Txn`](crate::client::Txn).
    pub fn new(range: impl Into<KeyRange>) -> Self {
        let (key, range_end) = range.into().into_parts();
        Get {
            client: (),
            request: pb::RangeRequest {
                key,
                range_end,
                ..Default::default()
            },
        }
    }

    pub(crate) fn on(self, kv: Kv) -> Get<Kv> {
        Get {
            client: kv,
            request: self.request,
        }
    }
}

impl<C> Get<C> {
    /// Return at most `limit` keys (0 = no limit); `more` says whether keys were left out.
    pub fn limit(mut self, limit: i64) -> Self {
        self.request.limit = limit;
        self
    }

    /// Read the store as it was at `revision` (0 = now).
    pub fn revision(mut self, revision: i64) -> Self {
        self.request.revision = revision;
        self
    }

    /// Sort the result.
    pub fn sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        use pb::range_request::{SortOrder as O, SortTarget as T};
        self.request.sort_target = match target {
            SortTarget::Key => T::Key,
            SortTarget::Version => T::Version,
            SortTarget::CreateRevision => T::Create,
            SortTarget::ModRevision => T::Mod,
            SortTarget::Value => T::Value,
        } as i32;
        self.request.sort_order = match order {
            SortOrder::Ascend => O::Ascend,
            SortOrder::Descend => O::Descend,
        } as i32;
        self
    }

    /// Answer from the member's local state without a quorum round (may be stale).
    pub fn serializable(mut self) -> Self {
        self.request.serializable = true;
        self
    }

    /// Return keys without values.
    pub fn keys_only(mut self) -> Self {
        self.request.keys_only = true;
        self
    }

    /// Return only the number of keys.
    pub fn count_only(mut self) -> Self {
        self.request.count_only = true;
        self
    }

    /// Only keys last modified at or after `revision`.
    pub fn min_mod_revision(mut self, revision: i64) -> Self {
        self.request.min_mod_revision = revision;
        self
    }

    /// Only keys last modified at or before `revision`.
    pub fn max_mod_revision(mut self, revision: i64) -> Self {
        self.request.max_mod_revision = revision;
        self
    }

    /// Only keys created at or after `revision`.
    pub fn min_create_revision(mut self, revision: i64) -> Self {
        self.request.min_create_revision = revision;
        self
    }

    /// Only keys created at or before `revision`.
    pub fn max_create_revision(mut self, revision: i64) -> Self {
        self.request.max_create_revision = revision;
        self
    }
}

/// The answer to a range read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GetResponse {
    /// Who answered, and the revision read.
    pub header: ResponseHeader,
    /// The keys found, in the requested order.
    pub kvs: Vec<KeyValue>,
    /// True if `limit` left keys out.
    pub more: bool,
    /// How many keys are in the range (all of them, not only those returned).
    pub count: i64,
}

impl From<pb::RangeResponse> for GetResponse {
    fn from(response: pb::RangeResponse) -> Self {
        GetResponse {
            header: response.header.into(),
            kvs: response.kvs.into_iter().map(KeyValue::from).collect(),
            more: response.more,
            count: response.count,
        }
    }
}

impl IntoFuture for Get<Kv> {
    type Output = Result<GetResponse>;
    type IntoFuture = BoxFuture<GetResponse>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let client = &self.client.client;
            let namespace = &client.namespace;
            let mut request = self.request;
            if !namespace.is_empty() {
                request.enter(namespace);
            }
            let mut response: pb::RangeResponse = read(client, &request).await?;
            if !namespace.is_empty() {
                response.leave(namespace);
            }
            Ok(response.into())
        })
    }
}

/// Sends a read (a Range, or a Txn that only reads) whose keys are already in the namespace.
///
/// Never back in time (Go's `ordering` package): an answer from a store revision older than
/// one this client had seen before sending the read comes from a member that is behind,
/// typically a serializable read on a member cut off from the leader. Ask the next one. (Only
/// what was seen *before*: a write answered while this read was in flight may be newer than
/// the read, and rightly so.) The answer is read as `A`: etcd's message, or a
/// [`RangeAnswer`](answer::RangeAnswer).
pub(in crate::client) async fn read<R, A>(client: &Client, request: &R) -> Result<A>
where
    R: Rpc,
    A: Answer + prost::Message + Default + Send + 'static,
{
    let transport = client.transport();
    let seen = transport.seen_revision();
    let mut tries = 0;
    loop {
        let response: A = client.call_as(request).await?;
        let revision = response.revision();
        transport.saw_revision(revision);
        if revision >= seen {
            return Ok(response);
        }
        tries += 1;
        if tries >= transport.endpoint_count() {
            return Err(Error::Behind {
                request: request.describe(),
                revision,
                seen,
            });
        }
        tracing::debug!(
            revision,
            seen,
            "a member answered from behind; asking the next"
        );
        transport.skip_current();
    }
}

/// Awaits a write (or compaction) on `kv`: one call, whose revision is noted so that no later
/// read is accepted from before it.
pub(in crate::client) fn write<R, T>(kv: Kv, mut request: R) -> BoxFuture<T>
where
    R: Rpc + Enter,
    R::Response: Answer + Leave,
    T: From<R::Response>,
{
    Box::pin(async move {
        let namespace = &kv.client.namespace;
        if !namespace.is_empty() {
            request.enter(namespace);
        }
        let mut response = kv.client.call(request).await?;
        kv.client.transport().saw_revision(response.revision());
        if !namespace.is_empty() {
            response.leave(namespace);
        }
        Ok(response.into())
    })
}

/// A response of the KV service: it carries the store revision it was made at.
pub(crate) trait Answer {
    /// The store revision in the response's header.
    fn revision(&self) -> i64;
}

macro_rules! answers {
    ($($response:ty),*) => {
        $(impl Answer for $response {
            fn revision(&self) -> i64 {
                self.header.as_ref().map_or(0, |h| h.revision)
            }
        })*
    };
}

answers!(
    pb::RangeResponse,
    pb::PutResponse,
    pb::DeleteRangeResponse,
    pb::CompactionResponse,
    pb::TxnResponse,
    answer::RangeAnswer,
    answer::TxnAnswer
);
