//! etcd's own errors: every message of etcd's `rpctypes` package, decoded into a
//! [`ServerErrorKind`].

use std::fmt;

/// Declares [`ServerErrorKind`] and its table of etcd's messages in one place, so a kind can
/// never be added without the text that identifies it.
macro_rules! server_error_kinds {
    ($( $(#[$doc:meta])* $kind:ident => $($message:literal)|+ ,)*) => {
        /// Which of etcd's errors a server refusal is.
        ///
        /// Decoded from the message etcd sends; the mapping covers every error string of etcd's
        /// Go client (`rpctypes`). A message this crate does not know is [`ServerErrorKind::Other`],
        /// and the full text stays in [`Error::Server::message`](super::Error::Server).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ServerErrorKind {
            $( $(#[$doc])* $kind, )*
            /// A message this crate does not recognise.
            Other,
        }

        impl ServerErrorKind {
            /// Decodes a message sent by etcd, with or without its `etcdserver: ` prefix, and
            /// also in the Go form etcd puts in a watch's cancel reason
            /// (`rpc error: code = PermissionDenied desc = etcdserver: permission denied`).
            /// The `auth: ` prefix counts too: etcd returns its auth store's own errors
            /// unconverted in a few places (`auth: user name is empty` for a snapshot taken
            /// without a token).
            pub fn from_message(message: &str) -> Self {
                let text = match message.split_once(" desc = ") {
                    Some((head, desc)) if head.starts_with("rpc error: code = ") => desc,
                    _ => message,
                };
                let text = text
                    .strip_prefix("etcdserver: ")
                    .or_else(|| text.strip_prefix("auth: "))
                    .unwrap_or(text);
                match text {
                    $( $($message)|+ => ServerErrorKind::$kind, )*
                    _ => ServerErrorKind::Other,
                }
            }
        }
    };
}

server_error_kinds! {
    /// The request named no key.
    EmptyKey => "key is not provided",
    /// `ignore_value`/`ignore_lease` on a key that does not exist.
    KeyNotFound => "key not found",
    /// A value was given together with `ignore_value`.
    ValueProvided => "value is provided",
    /// A lease was given together with `ignore_lease`.
    LeaseProvided => "lease is provided",
    /// A lease TTL of zero.
    TtlZero => "ttl is 0",
    /// A txn has more operations than the server's `--max-txn-ops`.
    TooManyOps => "too many operations in txn request",
    /// A txn writes the same key twice.
    DuplicateKey => "duplicate key given in txn request",
    /// The sort options of a range are invalid.
    InvalidSortOption => "invalid sort option",
    /// The requested revision has been compacted away.
    Compacted => "mvcc: required revision has been compacted",
    /// The requested revision is newer than the store.
    FutureRevision => "mvcc: required revision is a future revision",
    /// The database reached its space quota.
    NoSpace => "mvcc: database space exceeded",
    /// The lease does not exist (or has expired).
    LeaseNotFound => "requested lease not found",
    /// A lease with that ID already exists.
    LeaseExist => "lease already exists",
    /// The lease TTL is above the server's maximum.
    LeaseTtlTooLarge => "too large lease TTL",
    /// The server cancelled a watch.
    WatchCanceled => "watch canceled",
    /// A member with that ID already exists.
    MemberExist => "member ID already exist",
    /// A member already uses those peer URLs.
    PeerUrlExist => "Peer URLs already exists",
    /// Too few members are started to reconfigure safely.
    MemberNotEnoughStarted => "re-configuration failed due to not enough started members",
    /// Member URLs could not be parsed.
    MemberBadUrls => "given member URLs are invalid",
    /// No member with that ID.
    MemberNotFound => "member not found",
    /// Only learners can be promoted.
    MemberNotLearner => "can only promote a learner member",
    /// The learner has not caught up with the leader yet.
    LearnerNotReady => "can only promote a learner member which is in sync with leader",
    /// The cluster already has its maximum of learners.
    TooManyLearners => "too many learner members in cluster",
    /// The request came from a member of another cluster.
    ClusterIdMismatch => "cluster ID mismatch",
    /// The request is larger than the server accepts (`--max-request-bytes`).
    RequestTooLarge => "request is too large",
    /// The server is overloaded.
    TooManyRequests => "too many requests",
    /// Auth cannot be enabled: there is no `root` user.
    RootUserNotExist => "root user does not exist",
    /// Auth cannot be enabled: `root` lacks the `root` role.
    RootRoleNotExist => "root user does not have root role",
    /// A user with that name already exists.
    UserAlreadyExist => "user name already exists",
    /// The user name is empty.
    UserEmpty => "user name is empty",
    /// No user with that name.
    UserNotFound => "user name not found",
    /// A role with that name already exists.
    RoleAlreadyExist => "role name already exists",
    /// No role with that name.
    RoleNotFound => "role name not found",
    /// The role name is empty.
    RoleEmpty => "role name is empty",
    /// Wrong user name or password.
    AuthFailed => "authentication failed, invalid user ID or password",
    /// The permission to grant was not given.
    PermissionNotGiven => "permission not given",
    /// The user's roles do not allow this request on these keys.
    PermissionDenied => "permission denied",
    /// The user does not have that role.
    RoleNotGranted => "role is not granted to the user",
    /// The role does not have that permission.
    PermissionNotGranted => "permission is not granted to the role",
    /// Auth is not enabled on the server.
    AuthNotEnabled => "authentication is not enabled",
    /// The token is unknown or expired. The client re-authenticates once by itself.
    InvalidAuthToken => "invalid auth token",
    /// An auth management request that cannot be done (e.g. revoking root's role).
    InvalidAuthManagement => "invalid auth management",
    /// The token predates a change to users or roles. The client re-authenticates once by itself.
    AuthOldRevision => "revision of auth store is old",
    /// The cluster has no leader (election in progress, or quorum lost).
    NoLeader => "no leader",
    /// The member is not the leader.
    NotLeader => "not leader",
    /// The leader changed while the request was in flight.
    LeaderChanged => "leader changed",
    /// The cluster does not support this request yet.
    NotCapable => "not capable",
    /// The member is shutting down.
    Stopped => "server stopped",
    /// The request timed out inside the server.
    ServerTimeout => "request timed out"
        | "request timed out, possibly due to previous leader failure"
        | "request timed out, possibly due to connection lost"
        | "request timed out, waiting for the applied index took too long",
    /// The cluster is unhealthy.
    Unhealthy => "unhealthy cluster",
    /// The cluster detected data corruption.
    Corrupt => "corrupt cluster",
    /// A learner member does not serve this request.
    NotSupportedForLearner => "rpc not supported for learner",
    /// The target of a leader move cannot lead.
    BadLeaderTransferee => "bad leader transferee",
    /// Downgrade: the cluster version is unknown.
    ClusterVersionUnavailable => "cluster version not found during downgrade",
    /// Downgrade: the target version is malformed.
    WrongDowngradeVersionFormat => "wrong downgrade target version format",
    /// Downgrade: the target version is not allowed.
    InvalidDowngradeTargetVersion => "invalid downgrade target version",
    /// Downgrade: one is already running.
    DowngradeInProcess => "cluster has a downgrade job in progress",
    /// Downgrade: none is running.
    NoInflightDowngrade => "no inflight downgrade job",
    /// The server cancelled the request.
    Canceled => "request canceled",
    /// The request's deadline passed inside the server.
    DeadlineExceeded => "context deadline exceeded",
}

impl ServerErrorKind {
    /// True for the two answers after which a fresh token makes the same request succeed.
    pub(crate) fn needs_new_token(self) -> bool {
        matches!(
            self,
            ServerErrorKind::InvalidAuthToken | ServerErrorKind::AuthOldRevision
        )
    }
}

impl fmt::Display for ServerErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::ServerErrorKind;

    #[test]
    fn decodes_messages_with_and_without_prefix() {
        assert_eq!(
            ServerErrorKind::from_message("etcdserver: permission denied"),
            ServerErrorKind::PermissionDenied
        );
        assert_eq!(
            ServerErrorKind::from_message("mvcc: required revision has been compacted"),
            ServerErrorKind::Compacted
        );
        assert_eq!(
            ServerErrorKind::from_message(
                "etcdserver: request timed out, possibly due to previous leader failure"
            ),
            ServerErrorKind::ServerTimeout
        );
        assert_eq!(
            ServerErrorKind::from_message(
                "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
            ),
            ServerErrorKind::PermissionDenied
        );
        assert_eq!(
            ServerErrorKind::from_message("auth: user name is empty"),
            ServerErrorKind::UserEmpty
        );
        assert_eq!(
            ServerErrorKind::from_message("etcdserver: something new"),
            ServerErrorKind::Other
        );
    }
}
