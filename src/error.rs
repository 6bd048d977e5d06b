//! The crate's one error type.
//!
//! etcd's own refusals arrive as [`Error::Server`] with a [`ServerErrorKind`] decoded from the
//! message etcd sends (the strings of etcd's `rpctypes` package); everything that goes wrong on
//! the way to a server (connecting, timing out, a broken transport, bad input caught before
//! sending) has a variant of its own.

use std::fmt;
use std::time::Duration;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to etcd.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// etcd received the request and refused it.
    ///
    /// `message` is exactly what the server said; `kind` is that message decoded; `request`
    /// names what was refused, so that `Display` can say which key it was about.
    Server {
        /// Which of etcd's errors this is.
        kind: ServerErrorKind,
        /// The server's message, unchanged (e.g. `etcdserver: permission denied`).
        message: String,
        /// The refused request and the first key it touches, e.g. `Put /services/gateway/port`
        /// or `Txn of 12 ops starting at /services/gateway/host`.
        request: String,
    },
    /// No endpoint could be reached within the dial timeout.
    Connect {
        /// Every endpoint that was tried.
        endpoints: Vec<String>,
        /// Why the last attempt failed.
        reason: String,
    },
    /// The connection to an endpoint failed while a request was in flight, and the request was
    /// not safe to send again (a write that may already have been applied).
    Transport {
        /// The endpoint that failed.
        endpoint: String,
        /// The gRPC status reported by the transport.
        source: tonic::Status,
    },
    /// A request did not complete within its deadline.
    Timeout {
        /// What was being done, e.g. `Range /services/gateway/`.
        operation: String,
        /// The deadline that passed.
        after: Duration,
        /// The endpoint the request was last sent to, if it got that far.
        endpoint: Option<String>,
    },
    /// The request was refused before anything was sent because an argument is invalid.
    InvalidArgument {
        /// What is wrong, naming the argument.
        reason: String,
    },
    /// An endpoint string or TLS file could not be used.
    Config {
        /// What is wrong, naming the endpoint or file.
        reason: String,
    },
    /// The server does not have this call (an older etcd).
    Unsupported {
        /// The call, and the etcd version that introduced it.
        operation: String,
        /// The endpoint that answered.
        endpoint: String,
    },
    /// The keys under a config's prefix do not make a valid value. Lists every problem.
    Decode {
        /// The full key prefix of the config, e.g. `/services/gateway/`.
        prefix: String,
        /// The revision that was read.
        revision: i64,
        /// Every missing, unparsable or unknown key.
        problems: Vec<crate::config::Problem>,
    },
    /// A field's value could not be encoded.
    Encode {
        /// The full key.
        key: String,
        /// The Rust field path.
        field: String,
        /// Why (never the value of a secret field).
        reason: String,
    },
    /// The config's `validate` function refused the value.
    Rejected {
        /// The full key prefix of the config.
        prefix: String,
        /// The revision the value was read at; `None` for a value about to be saved.
        revision: Option<i64>,
        /// What `validate` said.
        reason: String,
    },
    /// A compare-and-swap found that keys under the prefix changed since the expected revision;
    /// nothing was written.
    Conflict {
        /// The full key prefix of the config.
        prefix: String,
        /// The revision the caller expected nothing to have changed since (0 for `save`).
        expected: i64,
        /// The store's revision when the conflict was found.
        current: i64,
    },
    /// Saving would need more txn operations than the server allows; nothing was sent.
    TxnTooLarge {
        /// The full key prefix of the config.
        prefix: String,
        /// How many operations (or compares) the txn needs.
        ops: usize,
        /// The limit (`--max-txn-ops`, 128 by default; see `Store::with_max_txn_ops`).
        limit: usize,
    },
    /// A request is larger than the client may send
    /// ([`ConnectOptions::max_send_message_size`](crate::ConnectOptions::max_send_message_size));
    /// it was refused here, so nothing was sent or applied.
    RequestTooLarge {
        /// The request, with its key (for a save: the config's largest value).
        request: String,
        /// Its encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A snapshot could not be saved: the writer failed, or the data does not match the
    /// SHA-256 checksum etcd sent with it. What was written must be discarded.
    Snapshot {
        /// The endpoint the snapshot came from.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// Every member asked answered a read from a store revision older than one this client
    /// had already seen: they are behind (cut off from the leader, or lagging), and their
    /// answer would take the client back in time. Try again later, or read linearizably.
    Behind {
        /// The read.
        request: String,
        /// The revision the answer was at.
        revision: i64,
        /// The revision this client had seen.
        seen: i64,
    },
    /// A background task (a live config's watch) stopped and will not deliver more.
    Stopped {
        /// What stopped.
        what: String,
        /// Why.
        reason: String,
    },
    /// The server answered with a gRPC status that is not one of etcd's errors.
    Grpc {
        /// The endpoint that answered.
        endpoint: String,
        /// The status it answered with.
        source: tonic::Status,
    },
}

impl Error {
    /// The kind of server error, if etcd itself refused the request.
    pub fn server_kind(&self) -> Option<ServerErrorKind> {
        match self {
            Error::Server { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// A copy for a second receiver of the same failure. Errors are not `Clone` (they may hold
    /// a gRPC status); server and connect errors are copied whole, anything else becomes
    /// [`Error::Stopped`] of `what` with the error's text.
    pub(crate) fn duplicate(&self, what: &str) -> Error {
        match self {
            Error::Server {
                kind,
                message,
                request,
            } => Error::Server {
                kind: *kind,
                message: message.clone(),
                request: request.clone(),
            },
            Error::Connect { endpoints, reason } => Error::Connect {
                endpoints: endpoints.clone(),
                reason: reason.clone(),
            },
            other => Error::Stopped {
                what: what.to_owned(),
                reason: other.to_string(),
            },
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            reason: reason.into(),
        }
    }

    /// Turns "this server has no such method" into [`Error::Unsupported`].
    pub(crate) fn unsupported_as(self, operation: &str) -> Self {
        match self {
            Error::Grpc { endpoint, source } if source.code() == tonic::Code::Unimplemented => {
                Error::Unsupported {
                    operation: operation.to_owned(),
                    endpoint,
                }
            }
            other => other,
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Error::Config {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server {
                kind,
                message,
                request,
            } => write!(f, "etcd refused {request} ({kind:?}): {message}"),
            Error::Connect { endpoints, reason } => write!(
                f,
                "could not connect to any etcd endpoint ({}): {reason}",
                endpoints.join(", ")
            ),
            Error::Transport { endpoint, source } => write!(
                f,
                "connection to etcd endpoint {endpoint} failed during the request \
                 (not retried: it may have been applied): {}",
                source.message()
            ),
            Error::Timeout {
                operation,
                after,
                endpoint,
            } => {
                write!(f, "etcd request `{operation}` timed out after {after:?}")?;
                if let Some(endpoint) = endpoint {
                    write!(f, " waiting for endpoint {endpoint}")?;
                }
                Ok(())
            }
            Error::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            Error::Config { reason } => write!(f, "invalid client configuration: {reason}"),
            Error::Decode {
                prefix,
                revision,
                problems,
            } => {
                write!(f, "config under {prefix} at revision {revision} is not valid:")?;
                for problem in problems {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
            Error::Encode { key, field, reason } => {
                write!(f, "cannot encode field `{field}` for key {key}: {reason}")
            }
            Error::Rejected {
                prefix,
                revision,
                reason,
            } => match revision {
                Some(revision) => write!(
                    f,
                    "config under {prefix} at revision {revision} was rejected by its validate function: {reason}"
                ),
                None => write!(
                    f,
                    "config under {prefix} was rejected by its validate function and not saved: {reason}"
                ),
            },
            Error::Conflict {
                prefix,
                expected,
                current,
            } => write!(
                f,
                "keys under {prefix} changed after revision {expected} (now at {current}); nothing was written: load again and retry"
            ),
            Error::TxnTooLarge { prefix, ops, limit } => write!(
                f,
                "saving {prefix} needs {ops} txn operations but the limit is {limit} \
                 (etcd's --max-txn-ops); nothing was sent"
            ),
            Error::RequestTooLarge {
                request,
                size,
                limit,
            } => write!(
                f,
                "{request} is {size} bytes, over the client's limit of {limit} bytes \
                 (max_send_message_size); nothing was sent"
            ),
            Error::Unsupported {
                operation,
                endpoint,
            } => write!(
                f,
                "etcd endpoint {endpoint} does not support {operation}; upgrade etcd to use it"
            ),
            Error::Snapshot { endpoint, reason } => {
                write!(f, "the snapshot from {endpoint} could not be saved: {reason}")
            }
            Error::Stopped { what, reason } => write!(f, "{what} stopped: {reason}"),
            Error::Behind {
                request,
                revision,
                seen,
            } => write!(
                f,
                "every etcd member answered {request} from revision {revision}, behind revision \
                 {seen} this client already saw"
            ),
            Error::Grpc { endpoint, source } => write!(
                f,
                "etcd endpoint {endpoint} answered {:?}: {}",
                source.code(),
                source.message()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport { source, .. } | Error::Grpc { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Declares [`ServerErrorKind`] and its table of etcd's messages in one place, so a kind can
/// never be added without the text that identifies it.
macro_rules! server_error_kinds {
    ($( $(#[$doc:meta])* $kind:ident => $($message:literal)|+ ,)*) => {
        /// Which of etcd's errors a server refusal is.
        ///
        /// Decoded from the message etcd sends; the mapping covers every error string of etcd's
        /// Go client (`rpctypes`). A message this crate does not know is [`ServerErrorKind::Other`],
        /// and the full text stays in [`Error::Server::message`](Error::Server).
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
