//! Every unary call of etcd's API, described once: its name, whether it may be sent twice, what
//! it is about (for error messages), and which generated stub sends it.
//!
//! A service method builds the request message and hands it to
//! [`Transport::call`](super::transport::Transport::call), which applies the retry policy, the
//! token and the request timeout; the method only turns etcd's answer into the crate's types.

use std::future::Future;

use super::transport::{Conn, Retry, Transport};
use crate::error::Result;
use crate::key_range::{describe, Escaped};
use crate::proto::etcdserverpb as pb;

/// What a gRPC stub call returns.
pub(crate) type Reply<T> = std::result::Result<tonic::Response<T>, tonic::Status>;

/// One unary request message of etcd's API.
pub(crate) trait Rpc: prost::Message + Clone + Send + 'static {
    /// The message etcd answers with.
    type Response: Send + 'static;

    /// etcd's name for the call, e.g. `Range`.
    const NAME: &'static str;

    /// Whether the call may be sent again after its connection broke mid-flight.
    fn retry(&self) -> Retry;

    /// What the request is about, for errors: a key, a range, a user or role (may be empty).
    fn subject(&self) -> String;

    /// Sends the request on `conn` through the generated stub.
    fn send(
        conn: Conn,
        request: tonic::Request<Self>,
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
    pub(crate) async fn call<R: Rpc>(&self, request: R) -> Result<R::Response> {
        let retry = request.retry();
        self.unary(R::describe, retry, request, R::send).await
    }

    /// Like [`call`](Self::call) but sends no token and never re-authenticates: for
    /// `Authenticate` itself.
    pub(crate) async fn call_without_token<R: Rpc>(&self, request: R) -> Result<R::Response> {
        let operation = request.describe();
        self.unary_without_token(|| operation, request, R::send)
            .await
    }
}

/// `Request => Response: "Name", Retry, service.method, |request| subject;`
macro_rules! rpcs {
    ($(
        $request:ident => $response:ident: $name:literal, $retry:ident, $service:ident . $method:ident,
        |$r:ident| $subject:expr;
    )*) => {
        $(
            impl Rpc for pb::$request {
                type Response = pb::$response;
                const NAME: &'static str = $name;

                fn retry(&self) -> Retry {
                    Retry::$retry
                }

                fn subject(&self) -> String {
                    let $r = self;
                    $subject
                }

                fn send(
                    conn: Conn,
                    request: tonic::Request<Self>,
                ) -> impl Future<Output = Reply<Self::Response>> + Send {
                    async move { conn.$service().$method(request).await }
                }
            }
        )*
    };
}

/// No subject: the call is about the whole cluster or member.
fn none<T>(_: &T) -> String {
    String::new()
}

rpcs! {
    // KV (Txn is below: whether it may be resent depends on its operations).
    RangeRequest => RangeResponse: "Range", Idempotent, kv.range,
        |r| describe(&r.key, &r.range_end);
    PutRequest => PutResponse: "Put", Mutation, kv.put,
        |r| Escaped(&r.key).to_string();
    DeleteRangeRequest => DeleteRangeResponse: "DeleteRange", Mutation, kv.delete_range,
        |r| describe(&r.key, &r.range_end);
    CompactionRequest => CompactionResponse: "Compact", Mutation, kv.compact,
        |r| r.revision.to_string();

    // Lease (LeaseKeepAlive once is below: it is a stream of one message).
    LeaseGrantRequest => LeaseGrantResponse: "LeaseGrant", Mutation, lease.lease_grant,
        |r| format!("ttl={}", r.ttl);
    LeaseRevokeRequest => LeaseRevokeResponse: "LeaseRevoke", Idempotent, lease.lease_revoke,
        |r| format!("{:x}", r.id);
    LeaseTimeToLiveRequest => LeaseTimeToLiveResponse: "LeaseTimeToLive", Idempotent,
        lease.lease_time_to_live, |r| format!("{:x}", r.id);
    LeaseLeasesRequest => LeaseLeasesResponse: "LeaseLeases", Idempotent, lease.lease_leases,
        |r| none(r);

    // Cluster
    MemberListRequest => MemberListResponse: "MemberList", Idempotent, cluster.member_list,
        |r| none(r);
    MemberAddRequest => MemberAddResponse: "MemberAdd", Mutation, cluster.member_add,
        |r| format!("{:?}", r.peer_urls);
    MemberRemoveRequest => MemberRemoveResponse: "MemberRemove", Mutation, cluster.member_remove,
        |r| format!("{:x}", r.id);
    MemberUpdateRequest => MemberUpdateResponse: "MemberUpdate", Mutation, cluster.member_update,
        |r| format!("{:x}", r.id);
    MemberPromoteRequest => MemberPromoteResponse: "MemberPromote", Mutation,
        cluster.member_promote, |r| format!("{:x}", r.id);

    // Maintenance
    StatusRequest => StatusResponse: "Status", Idempotent, maintenance.status, |r| none(r);
    AlarmRequest => AlarmResponse: "Alarm", Idempotent, maintenance.alarm, |r| none(r);
    DefragmentRequest => DefragmentResponse: "Defragment", Idempotent, maintenance.defragment,
        |r| none(r);
    HashRequest => HashResponse: "Hash", Idempotent, maintenance.hash, |r| none(r);
    HashKvRequest => HashKvResponse: "HashKV", Idempotent, maintenance.hash_kv,
        |r| r.revision.to_string();
    MoveLeaderRequest => MoveLeaderResponse: "MoveLeader", Mutation, maintenance.move_leader,
        |r| format!("{:x}", r.target_id);
    DowngradeRequest => DowngradeResponse: "Downgrade", Mutation, maintenance.downgrade,
        |r| format!("{:?} to {}", r.action(), r.version);

    // Auth
    AuthEnableRequest => AuthEnableResponse: "AuthEnable", Idempotent, auth.auth_enable,
        |r| none(r);
    AuthDisableRequest => AuthDisableResponse: "AuthDisable", Idempotent, auth.auth_disable,
        |r| none(r);
    AuthStatusRequest => AuthStatusResponse: "AuthStatus", Idempotent, auth.auth_status,
        |r| none(r);
    AuthenticateRequest => AuthenticateResponse: "Authenticate", Idempotent, auth.authenticate,
        |r| r.name.clone();
    AuthUserAddRequest => AuthUserAddResponse: "UserAdd", Mutation, auth.user_add,
        |r| r.name.clone();
    AuthUserDeleteRequest => AuthUserDeleteResponse: "UserDelete", Mutation, auth.user_delete,
        |r| r.name.clone();
    AuthUserGetRequest => AuthUserGetResponse: "UserGet", Idempotent, auth.user_get,
        |r| r.name.clone();
    AuthUserListRequest => AuthUserListResponse: "UserList", Idempotent, auth.user_list,
        |r| none(r);
    AuthUserChangePasswordRequest => AuthUserChangePasswordResponse: "UserChangePassword",
        Mutation, auth.user_change_password, |r| r.name.clone();
    AuthUserGrantRoleRequest => AuthUserGrantRoleResponse: "UserGrantRole", Mutation,
        auth.user_grant_role, |r| r.user.clone();
    AuthUserRevokeRoleRequest => AuthUserRevokeRoleResponse: "UserRevokeRole", Mutation,
        auth.user_revoke_role, |r| r.name.clone();
    AuthRoleAddRequest => AuthRoleAddResponse: "RoleAdd", Mutation, auth.role_add,
        |r| r.name.clone();
    AuthRoleDeleteRequest => AuthRoleDeleteResponse: "RoleDelete", Mutation, auth.role_delete,
        |r| r.role.clone();
    AuthRoleGetRequest => AuthRoleGetResponse: "RoleGet", Idempotent, auth.role_get,
        |r| r.role.clone();
    AuthRoleListRequest => AuthRoleListResponse: "RoleList", Idempotent, auth.role_list,
        |r| none(r);
    AuthRoleGrantPermissionRequest => AuthRoleGrantPermissionResponse: "RoleGrantPermission",
        Mutation, auth.role_grant_permission, |r| {
            let range = r.perm.as_ref().map(|p| describe(&p.key, &p.range_end));
            format!("{} {}", r.name, range.unwrap_or_default())
        };
    AuthRoleRevokePermissionRequest => AuthRoleRevokePermissionResponse: "RoleRevokePermission",
        Mutation, auth.role_revoke_permission, |r| format!("{} {}", r.role, describe(&r.key, &r.range_end));
}

/// One renewal, as a LeaseKeepAlive stream of one message and its first answer.
impl Rpc for pb::LeaseKeepAliveRequest {
    type Response = pb::LeaseKeepAliveResponse;
    const NAME: &'static str = "LeaseKeepAlive";

    fn retry(&self) -> Retry {
        Retry::Idempotent
    }

    fn subject(&self) -> String {
        format!("{:x}", self.id)
    }

    async fn send(conn: Conn, request: tonic::Request<Self>) -> Reply<Self::Response> {
        let (metadata, extensions, message) = request.into_parts();
        let outbound = futures_util::stream::iter([message]);
        let request = tonic::Request::from_parts(metadata, extensions, outbound);
        let mut answers = conn.lease().lease_keep_alive(request).await?.into_inner();
        match answers.message().await? {
            Some(answer) => Ok(tonic::Response::new(answer)),
            None => Err(tonic::Status::unavailable("keep-alive stream closed")),
        }
    }
}
