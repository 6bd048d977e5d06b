//! etcd's Txn: compares, then one list of operations or another, applied atomically.

use std::future::IntoFuture;

use super::kv::{Delete, DeleteResponse, Get, GetResponse, Kv, Put, PutResponse};
use super::rpc::{Reply, Rpc};
use super::transport::{Conn, Encoded, Retry};
use super::BoxFuture;
use super::ResponseHeader;
use crate::error::Result;
use crate::key_range::describe;
use crate::key_range::KeyRange;
use crate::proto::etcdserverpb as pb;

use pb::compare::{CompareResult, CompareTarget, TargetUnion};

/// How a [`Compare`] relates the key's current state to the given value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

/// One condition of a txn, on one key or on every key of a range.
///
/// Over a range, the condition must hold for every key that exists in it. A key that does not
/// exist has version, create revision and mod revision 0, so `create_revision(k, Equal, 0)`
/// means "k does not exist".
#[derive(Debug, Clone, PartialEq)]
pub struct Compare(pub(crate) pb::Compare);

impl Compare {
    fn new(
        range: impl Into<KeyRange>,
        op: CompareOp,
        target: CompareTarget,
        value: TargetUnion,
    ) -> Self {
        let (key, range_end) = range.into().into_parts();
        let result = match op {
            CompareOp::Equal => CompareResult::Equal,
            CompareOp::NotEqual => CompareResult::NotEqual,
            CompareOp::Greater => CompareResult::Greater,
            CompareOp::Less => CompareResult::Less,
        };
        Compare(pb::Compare {
            result: result as i32,
            target: target as i32,
            key,
            range_end,
            target_union: Some(value),
        })
    }

    /// Compares the value (bytewise).
    pub fn value(range: impl Into<KeyRange>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Self::new(
            range,
            op,
            CompareTarget::Value,
            TargetUnion::Value(value.into()),
        )
    }

    /// Compares the version (writes since creation; 0 if absent).
    pub fn version(range: impl Into<KeyRange>, op: CompareOp, version: i64) -> Self {
        Self::new(
            range,
            op,
            CompareTarget::Version,
            TargetUnion::Version(version),
        )
    }

    /// Compares the create revision (0 if absent).
    pub fn create_revision(range: impl Into<KeyRange>, op: CompareOp, revision: i64) -> Self {
        Self::new(
            range,
            op,
            CompareTarget::Create,
            TargetUnion::CreateRevision(revision),
        )
    }

    /// Compares the mod revision (0 if absent).
    pub fn mod_revision(range: impl Into<KeyRange>, op: CompareOp, revision: i64) -> Self {
        Self::new(
            range,
            op,
            CompareTarget::Mod,
            TargetUnion::ModRevision(revision),
        )
    }

    /// Compares the lease ID (0 for none).
    pub fn lease(range: impl Into<KeyRange>, op: CompareOp, lease: i64) -> Self {
        Self::new(range, op, CompareTarget::Lease, TargetUnion::Lease(lease))
    }
}

/// One operation of a txn branch.
#[derive(Debug, Clone)]
pub struct TxnOp(pub(crate) pb::request_op::Request);

impl TxnOp {
    /// Reads `range` (use [`Get::new`] and `.into()` for options).
    pub fn get(range: impl Into<KeyRange>) -> Self {
        Get::new(range).into()
    }

    /// Writes `value` at `key` (use [`Put::new`] and `.into()` for options).
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Put::new(key, value).into()
    }

    /// Deletes `range` (use [`Delete::new`] and `.into()` for options).
    pub fn delete(range: impl Into<KeyRange>) -> Self {
        Delete::new(range).into()
    }

    /// Runs a nested txn.
    pub fn txn(txn: Txn<()>) -> Self {
        txn.into()
    }
}

impl From<Get<()>> for TxnOp {
    fn from(get: Get<()>) -> Self {
        TxnOp(pb::request_op::Request::RequestRange(get.request))
    }
}

impl From<Put<()>> for TxnOp {
    fn from(put: Put<()>) -> Self {
        TxnOp(pb::request_op::Request::RequestPut(put.request))
    }
}

impl From<Delete<()>> for TxnOp {
    fn from(delete: Delete<()>) -> Self {
        TxnOp(pb::request_op::Request::RequestDeleteRange(delete.request))
    }
}

impl From<Txn<()>> for TxnOp {
    fn from(txn: Txn<()>) -> Self {
        TxnOp(pb::request_op::Request::RequestTxn(txn.request))
    }
}

impl Kv {
    /// Starts a transaction: compares, then the operations to run if they all hold or if any
    /// fails. One Txn round trip, applied atomically at one revision.
    pub fn txn(&self) -> Txn<Kv> {
        Txn::new().on(self.clone())
    }
}

/// A transaction. Await it (`Txn<Kv>`), or nest it in another (`Txn<()>`).
///
/// ```no_run
/// # async fn demo(client: etcd_config::Client) -> etcd_config::Result<()> {
/// use etcd_config::client::{Compare, CompareOp, TxnOp};
/// use etcd_config::KeyRange;
///
/// // Create /lock only if it does not exist yet.
/// let response = client
///     .kv()
///     .txn()
///     .when([Compare::create_revision("/lock", CompareOp::Equal, 0)])
///     .and_then([TxnOp::put("/lock", "me")])
///     .or_else([TxnOp::get(KeyRange::key("/lock"))])
///     .await?;
/// println!("took the lock: {}", response.succeeded);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Txn does nothing until awaited"]
pub struct Txn<C = Kv> {
    client: C,
    request: pb::TxnRequest,
}

impl Txn<()> {
    /// A txn with no client, to nest in another with [`TxnOp::txn`].
    pub fn new() -> Self {
        Txn {
            client: (),
            request: pb::TxnRequest::default(),
        }
    }

    pub(crate) fn on(self, kv: Kv) -> Txn<Kv> {
        Txn {
            client: kv,
            request: self.request,
        }
    }
}

impl Default for Txn<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Txn<C> {
    /// Adds conditions; the txn succeeds if all of them hold (and if there are none).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.request
            .compare
            .extend(compares.into_iter().map(|c| c.0));
        self
    }

    /// Adds operations to run if every condition holds.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.request.success.extend(ops.into_iter().map(op));
        self
    }

    /// Adds operations to run if any condition fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.request.failure.extend(ops.into_iter().map(op));
        self
    }

    /// The number of operations in the larger branch, nested txns counted in full: what etcd
    /// checks against `--max-txn-ops`.
    pub fn op_count(&self) -> usize {
        count_ops(&self.request)
    }
}

fn op(op: TxnOp) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(op.0),
    }
}

pub(super) fn count_ops(request: &pb::TxnRequest) -> usize {
    let branch = |ops: &[pb::RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(pb::request_op::Request::RequestTxn(inner)) => count_ops(inner).max(1),
                _ => 1,
            })
            .sum()
    };
    branch(&request.success).max(branch(&request.failure))
}

/// The answer of one txn operation, in the order the operations were given.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TxnOpResponse {
    /// The answer to a [`TxnOp::get`].
    Get(GetResponse),
    /// The answer to a [`TxnOp::put`].
    Put(PutResponse),
    /// The answer to a [`TxnOp::delete`].
    Delete(DeleteResponse),
    /// The answer to a nested txn.
    Txn(TxnResponse),
}

/// The answer to a txn.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TxnResponse {
    /// Who answered, and the revision after the txn (unchanged if it wrote nothing).
    pub header: ResponseHeader,
    /// True if every condition held and the `and_then` branch ran.
    pub succeeded: bool,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<TxnOpResponse>,
}

impl From<pb::TxnResponse> for TxnResponse {
    fn from(response: pb::TxnResponse) -> Self {
        use pb::response_op::Response;
        let responses = response
            .responses
            .into_iter()
            .filter_map(|op| {
                Some(match op.response? {
                    Response::ResponseRange(r) => TxnOpResponse::Get(r.into()),
                    Response::ResponsePut(r) => TxnOpResponse::Put(r.into()),
                    Response::ResponseDeleteRange(r) => TxnOpResponse::Delete(r.into()),
                    Response::ResponseTxn(r) => TxnOpResponse::Txn(r.into()),
                })
            })
            .collect();
        TxnResponse {
            header: response.header.into(),
            succeeded: response.succeeded,
            responses,
        }
    }
}

impl IntoFuture for Txn<Kv> {
    type Output = Result<TxnResponse>;
    type IntoFuture = BoxFuture<TxnResponse>;

    fn into_future(self) -> Self::IntoFuture {
        super::kv::write(self.client, self.request)
    }
}

impl Rpc for pb::TxnRequest {
    type Response = pb::TxnResponse;
    const NAME: &'static str = "Txn";
    const PATH: &'static str = "/etcdserverpb.KV/Txn";

    /// A txn that only reads may be sent again after a broken connection; one that writes may
    /// not.
    fn retry(&self) -> Retry {
        if writes(self) {
            Retry::Mutation
        } else {
            Retry::Idempotent
        }
    }

    fn subject(&self) -> String {
        use pb::request_op::Request;
        let first = self
            .success
            .iter()
            .chain(&self.failure)
            .find_map(|op| match &op.request {
                Some(Request::RequestRange(g)) => Some(describe(&g.key, &g.range_end)),
                Some(Request::RequestPut(p)) => Some(describe(&p.key, &[])),
                Some(Request::RequestDeleteRange(d)) => Some(describe(&d.key, &d.range_end)),
                _ => None,
            });
        format!(
            "of {} ops starting at {}",
            count_ops(self),
            first.unwrap_or_default()
        )
    }

    async fn send(conn: Conn, request: tonic::Request<Encoded>) -> Reply<Self::Response> {
        conn.unary(Self::PATH, request).await
    }
}

/// Whether a txn writes anything, nested txns included.
fn writes(request: &pb::TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .any(|op| match &op.request {
            Some(pb::request_op::Request::RequestRange(_)) | None => false,
            Some(pb::request_op::Request::RequestTxn(inner)) => writes(inner),
            Some(_) => true,
        })
}
