//! Every unary call of etcd's API, described once: its name, whether it may be sent twice, what
//! it is about (for error messages), and which generated stub sends it.
//!
//! A service method builds the request message and hands it to
//! [`Transport::call`](super::transport::Transport::call), which applies the retry policy, the
//! token and the request timeout; the method only turns etcd's answer into the crate's types.

use std::future::Future;
use std::pin::Pin;

use super::transport::{Conn, Encoded, Retry, Transport};
use crate::error::Result;
use crate::key_range::{describe, Escaped};
use crate::proto::etcdserverpb as pb;

/// What a gRPC stub call returns.
pub(crate) type Reply<T> = std::result::Result<tonic::Response<T>, tonic::Status>;

/// One unary request message of etcd's API.
pub(crate) trait Rpc: prost::Message + Send + 'static {
    /// The message etcd answers with.
    type Response: Send + 'static;

    /// etcd's name for the call, e.g. `Range`.
    const NAME: &'static str;

    /// The method's path, e.g. `/etcdserverpb.KV/Range`.
    const PATH: &'static str;

    /// Whether the call may be sent again after its connection broke mid-flight.
    fn retry(&self) -> Retry;

    /// What the request is about, for errors: a key, a range, a user or role (may be empty).
    fn subject(&self) -> String;

    /// Sends the request, encoded, on `conn`.
    fn send(
        conn: Conn,
        request: tonic::Request<Encoded>,
    ) -> impl Future<Output = Reply<Self::Response>> + Send;

    /// The request as an error message names it: `Range prefix /a/`, `UserAdd alice`.
    fn describe(&self) -> String {
        let subject = self.subject();
        if subject.is_empty() {
            Self::NAME.to_owned()
        } else {
            format!("{} {subject}", Self::NAME)
        }
    }
}

/// The calls above go through the transport; the transport knows nothing of them.
impl Transport {
    /// Sends one of etcd's unary calls (see [`Rpc`]) with failover, retries, the auth token and
    /// the request timeout.
    pub(crate) async fn call<R: Rpc>(&self, request: &R) -> Result<R::Response> {
        self.unary(R::describe, request.retry(), request, R::send)
            .await
    }

    /// [`call`](Self::call), etcd's answer read as `A`: the same message decoded otherwise
    /// (a Range's answer as a [`RangeAnswer`](super::kv::RangeAnswer)).
    pub(crate) async fn call_as<R, A>(&self, request: &R) -> Result<A>
    where
        R: Rpc,
        A: prost::Message + Default + Send + 'static,
    {
        let send = |conn: Conn, request| async move { conn.unary(R::PATH, request).await };
        self.unary(R::describe, request.retry(), request, send)
            .await
    }

    /// Like [`call`](Self::call) but sends no token and never re-authenticates: for
    /// `Authenticate` itself.
    pub(crate) async fn call_without_token<R: Rpc>(&self, request: R) -> Result<R::Response> {
        let operation = request.describe();
        self.unary_without_token(|| operation, request, R::send)
            .await
    }

    /// Asks etcd for a token (the function the credentials renew theirs with). Boxed: it is a
    /// call through the transport, made from inside the transport's own retry loop.
    pub(crate) fn authenticate(
        &self,
        request: pb::AuthenticateRequest,
    ) -> Pin<Box<dyn Future<Output = Result<pb::AuthenticateResponse>> + Send + '_>> {
        Box::pin(self.call_without_token(request))
    }
}

/// `Request => Response: "Name", Retry, "Service", |request| subject;` (the method's path is
/// `/etcdserverpb.Service/Name`).
macro_rules! rpcs {
    ($(
        $request:ident => $response:ident: $name:literal, $retry:ident, $service:literal,
        |$r:ident| $subject:expr;
    )*) => {
        $(
            impl Rpc for pb::$request {
                type Response = pb::$response;
                const NAME: &'static str = $name;
                const PATH: &'static str = concat!("/etcdserverpb.", $service, "/", $name);

                fn retry(&self) -> Retry {
                    Retry::$retry
                }

                fn subject(&self) -> String {
                    let $r = self;
                    $subject
                }

                fn send(
                    conn: Conn,
                    request: tonic::Request<Encoded>,
                ) -> impl Future<Output = Reply<Self::Response>> + Send {
                    async move { conn.unary(Self::PATH, request).await }
                }
            }
        )*

        /// Every path above, for the test that etcd's API has each.
        #[cfg(test)]
        const PATHS: &[&str] = &[$(<pb::$request as Rpc>::PATH),*];
    };
}

/// No subject: the call is about the whole cluster or member.
fn none<T>(_: &T) -> String {
    String::new()
}

rpcs! {
    // KV (Txn is below: whether it may be resent depends on its operations).
    RangeRequest => RangeResponse: "Range", Idempotent, "KV",
        |r| describe(&r.key, &r.range_end);
    PutRequest => PutResponse: "Put", Mutation, "KV",
        |r| Escaped(&r.key).to_string();
    DeleteRangeRequest => DeleteRangeResponse: "DeleteRange", Mutation, "KV",
        |r| describe(&r.key, &r.range_end);
    CompactionRequest => CompactionResponse: "Compact", Mutation, "KV",
        |r| r.revision.to_string();

    // Lease (LeaseKeepAlive once is below: it is a stream of one message).
    LeaseGrantRequest => LeaseGrantResponse: "LeaseGrant", Mutation, "Lease",
        |r| format!("ttl={}", r.ttl);
    LeaseRevokeRequest => LeaseRevokeResponse: "LeaseRevoke", Idempotent, "Lease",
        |r| format!("{:x}", r.id);
    LeaseTimeToLiveRequest => LeaseTimeToLiveResponse: "LeaseTimeToLive", Idempotent,
        "Lease", |r| format!("{:x}", r.id);
    LeaseLeasesRequest => LeaseLeasesResponse: "LeaseLeases", Idempotent, "Lease",
        |r| none(r);

    // Cluster
    MemberListRequest => MemberListResponse: "MemberList", Idempotent, "Cluster",
        |r| none(r);
    MemberAddRequest => MemberAddResponse: "MemberAdd", Mutation, "Cluster",
        |r| format!("{:?}", r.peer_urls);
    MemberRemoveRequest => MemberRemoveResponse: "MemberRemove", Mutation, "Cluster",
        |r| format!("{:x}", r.id);
    MemberUpdateRequest => MemberUpdateResponse: "MemberUpdate", Mutation, "Cluster",
        |r| format!("{:x}", r.id);
    MemberPromoteRequest => MemberPromoteResponse: "MemberPromote", Mutation,
        "Cluster", |r| format!("{:x}", r.id);

    // Maintenance
    StatusRequest => StatusResponse: "Status", Idempotent, "Maintenance", |r| none(r);
    AlarmRequest => AlarmResponse: "Alarm", Idempotent, "Maintenance", |r| none(r);
    DefragmentRequest => DefragmentResponse: "Defragment", Idempotent, "Maintenance",
        |r| none(r);
    HashRequest => HashResponse: "Hash", Idempotent, "Maintenance", |r| none(r);
    HashKvRequest => HashKvResponse: "HashKV", Idempotent, "Maintenance",
        |r| r.revision.to_string();
    MoveLeaderRequest => MoveLeaderResponse: "MoveLeader", Mutation, "Maintenance",
        |r| format!("{:x}", r.target_id);
    DowngradeRequest => DowngradeResponse: "Downgrade", Mutation, "Maintenance",
        |r| format!("{:?} to {}", r.action(), r.version);

    // Auth
    AuthEnableRequest => AuthEnableResponse: "AuthEnable", Idempotent, "Auth",
        |r| none(r);
    AuthDisableRequest => AuthDisableResponse: "AuthDisable", Idempotent, "Auth",
        |r| none(r);
    AuthStatusRequest => AuthStatusResponse: "AuthStatus", Idempotent, "Auth",
        |r| none(r);
    AuthenticateRequest => AuthenticateResponse: "Authenticate", Idempotent, "Auth",
        |r| r.name.clone();
    AuthUserAddRequest => AuthUserAddResponse: "UserAdd", Mutation, "Auth",
        |r| r.name.clone();
    AuthUserDeleteRequest => AuthUserDeleteResponse: "UserDelete", Mutation, "Auth",
        |r| r.name.clone();
    AuthUserGetRequest => AuthUserGetResponse: "UserGet", Idempotent, "Auth",
        |r| r.name.clone();
    AuthUserListRequest => AuthUserListResponse: "UserList", Idempotent, "Auth",
        |r| none(r);
    AuthUserChangePasswordRequest => AuthUserChangePasswordResponse: "UserChangePassword",
        Mutation, "Auth", |r| r.name.clone();
    AuthUserGrantRoleRequest => AuthUserGrantRoleResponse: "UserGrantRole", Mutation,
        "Auth", |r| r.user.clone();
    AuthUserRevokeRoleRequest => AuthUserRevokeRoleResponse: "UserRevokeRole", Mutation,
        "Auth", |r| r.name.clone();
    AuthRoleAddRequest => AuthRoleAddResponse: "RoleAdd", Mutation, "Auth",
        |r| r.name.clone();
    AuthRoleDeleteRequest => AuthRoleDeleteResponse: "RoleDelete", Mutation, "Auth",
        |r| r.role.clone();
    AuthRoleGetRequest => AuthRoleGetResponse: "RoleGet", Idempotent, "Auth",
        |r| r.role.clone();
    AuthRoleListRequest => AuthRoleListResponse: "RoleList", Idempotent, "Auth",
        |r| none(r);
    AuthRoleGrantPermissionRequest => AuthRoleGrantPermissionResponse: "RoleGrantPermission",
        Mutation, "Auth", |r| {
            let range = r.perm.as_ref().map(|p| describe(&p.key, &p.range_end));
            format!("{} {}", r.name, range.unwrap_or_default())
        };
    AuthRoleRevokePermissionRequest => AuthRoleRevokePermissionResponse: "RoleRevokePermission",
        Mutation, "Auth", |r| format!("{} {}", r.role, describe(&r.key, &r.range_end));
}

/// One renewal, as a LeaseKeepAlive stream of one message and its first answer.
impl Rpc for pb::LeaseKeepAliveRequest {
    type Response = pb::LeaseKeepAliveResponse;
    const NAME: &'static str = "LeaseKeepAlive";
    const PATH: &'static str = "/etcdserverpb.Lease/LeaseKeepAlive";

    fn retry(&self) -> Retry {
        Retry::Idempotent
    }

    fn subject(&self) -> String {
        format!("{:x}", self.id)
    }

    async fn send(conn: Conn, request: tonic::Request<Encoded>) -> Reply<Self::Response> {
        use futures_util::StreamExt;
        use prost::Message;
        let (metadata, extensions, encoded) = request.into_parts();
        // A stream of one message: the generated stub sends it, decoded again (one id).
        let message = Self::decode(encoded.bytes().clone())
            .map_err(|err| tonic::Status::internal(err.to_string()))?;
        // The stream stays open until the answer: etcd's gRPC proxy drops a keep-alive stream
        // whose client has finished sending before it answered (Go's client does not finish
        // sending either). Dropping the answers ends the stream.
        let outbound = futures_util::stream::iter([message]).chain(futures_util::stream::pending());
        let request = tonic::Request::from_parts(metadata, extensions, outbound);
        let mut answers = conn
            .streaming("/etcdserverpb.Lease/LeaseKeepAlive", request)
            .await?
            .into_inner();
        match answers.message().await? {
            Some(answer) => Ok(tonic::Response::new(answer)),
            None => Err(tonic::Status::unavailable("keep-alive stream closed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Rpc, PATHS};
    use crate::proto::etcdserverpb as pb;

    /// Each call goes to a method the generated stubs (from etcd's proto files) name.
    #[test]
    fn every_path_is_a_method_of_etcds_api() {
        let generated = include_str!("../proto/etcdserverpb.rs");
        let txn = <pb::TxnRequest as Rpc>::PATH;
        let keep_alive = <pb::LeaseKeepAliveRequest as Rpc>::PATH;
        for path in PATHS.iter().chain([&txn, &keep_alive]) {
            assert!(
                generated.contains(&format!("\"{path}\"")),
                "{path} is not a method of etcd's API"
            );
        }
        assert_eq!(
            PATHS.len(),
            37,
            "every unary call but Txn and LeaseKeepAlive"
        );
    }
}
