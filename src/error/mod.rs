//! The crate's one error type.
//!
//! etcd's own refusals arrive as [`Error::Server`] with a [`ServerErrorKind`] decoded from the
//! message etcd sends (the strings of etcd's `rpctypes` package); everything that goes wrong on
//! the way to a server (connecting, timing out, a broken transport, bad input caught before
//! sending) has a variant of its own.
//!
//! The error sits below the client and the config layers: it knows etcd's messages
//! ([`server`]), what decoding a config can find wrong ([`problem`]), and wraps the gRPC layer's
//! status ([`status`]), so that neither tonic nor a higher layer of this crate is part of its
//! shape. It is cheap to clone: a failure of a shared stream reaches every waiter whole.

mod problem;
mod server;
mod status;
mod text;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use problem::{Problem, ProblemKind};
pub use server::ServerErrorKind;
pub use status::GrpcStatus;
use text::{at_revision, listed, not_saved, serving, waiting_for};

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to etcd.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// etcd received the request and refused it.
    ///
    /// `message` is exactly what the server said; `kind` is that message decoded; `request`
    /// names what was refused, so that `Display` can say which key it was about.
    #[error("etcd refused {request} ({kind:?}): {message}")]
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
    #[error("could not connect to any etcd endpoint ({}): {reason}", endpoints.join(", "))]
    Connect {
        /// Every endpoint that was tried.
        endpoints: Vec<String>,
        /// Why the last attempt failed.
        reason: String,
    },
    /// The connection to an endpoint failed while a request was in flight, and the request was
    /// not safe to send again (a write that may already have been applied).
    #[error(
        "connection to etcd endpoint {endpoint} failed during the request \
         (not retried: it may have been applied): {}",
        source.message()
    )]
    Transport {
        /// The endpoint that failed.
        endpoint: String,
        /// The gRPC status reported by the transport.
        source: GrpcStatus,
    },
    /// A request did not complete within its deadline.
    #[error(
        "etcd request `{operation}` timed out after {after:?}{}",
        waiting_for(endpoint)
    )]
    Timeout {
        /// What was being done, e.g. `Range /services/gateway/`.
        operation: String,
        /// The deadline that passed.
        after: Duration,
        /// The endpoint the request was last sent to, if it got that far.
        endpoint: Option<String>,
    },
    /// The request was refused before anything was sent because an argument is invalid.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong, naming the argument.
        reason: String,
    },
    /// The client's own options could not be used: an endpoint string, a TLS file, TLS
    /// without a CA file. (Named for [`ConnectOptions`](crate::ConnectOptions); "config" in
    /// this crate means settings structs.)
    #[error("invalid client configuration: {reason}")]
    ClientOptions {
        /// What is wrong, naming the endpoint or file.
        reason: String,
    },
    /// A live config's cache file could not be read, written or understood.
    #[error("config cache file {}: {reason}", path.display())]
    CacheFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
        /// The I/O error, if that is what it was.
        source: Option<Arc<std::io::Error>>,
    },
    /// etcd answered with something this client cannot use (e.g. an auth token that is not
    /// valid gRPC metadata).
    #[error("unexpected answer from etcd: {reason}")]
    Protocol {
        /// What was wrong with the answer, and which request it answered.
        reason: String,
    },
    /// The server does not have this call (an older etcd).
    #[error("etcd endpoint {endpoint} does not support {operation}; upgrade etcd to use it")]
    Unsupported {
        /// The call, and the etcd version that introduced it.
        operation: String,
        /// The endpoint that answered.
        endpoint: String,
    },
    /// The keys under a config's prefix do not make a valid value. Lists every problem.
    #[error(
        "config under {prefix} at revision {revision} is not valid:{}",
        listed(problems)
    )]
    Decode {
        /// The full key prefix of the config, e.g. `/services/gateway/`.
        prefix: String,
        /// The revision that was read.
        revision: i64,
        /// Every missing, unparsable or unknown key.
        problems: Vec<Problem>,
    },
    /// A field's value could not be encoded.
    #[error("cannot encode field `{field}` for key {key}: {reason}")]
    Encode {
        /// The full key.
        key: String,
        /// The Rust field path.
        field: String,
        /// Why (never the value of a secret field).
        reason: String,
    },
    /// The config's `validate` function refused the value.
    #[error(
        "config under {prefix}{} was rejected by its validate function{}: {reason}",
        at_revision(revision),
        not_saved(revision)
    )]
    Rejected {
        /// The full key prefix of the config.
        prefix: String,
        /// The revision the value was read at; `None` for a value about to be saved.
        revision: Option<i64>,
        /// What `validate` said.
        reason: String,
    },
    /// An instance of the fleet rejected a change while waiting for its rollout
    /// (`Store::wait_rollout`): its `validate` refused the value, or it did not decode there.
    #[error("instance {instance} rejected revision {revision} of {prefix}: {reason}")]
    RolloutRejected {
        /// The full key prefix of the config.
        prefix: String,
        /// The instance that rejected it.
        instance: String,
        /// The revision it rejected.
        revision: i64,
        /// Its reason (no secret values).
        reason: String,
    },
    /// A rollout wait (`Store::wait_rollout`, the command line's `--wait`) ran out of time:
    /// some reporting instances were not current for the revision yet. The change itself was
    /// written; nothing is undone.
    #[error(
        "revision {revision} of {prefix} was written, but after {after:?} these instances are \
         not current for it yet: {}",
        serving(behind)
    )]
    RolloutTimeout {
        /// The full key prefix of the config.
        prefix: String,
        /// The revision waited for.
        revision: i64,
        /// Each instance not current yet, with the revision of the value it serves.
        behind: Vec<(String, i64)>,
        /// How long the wait lasted.
        after: Duration,
    },
    /// A watch with a catch-up limit ([`WatchBuilder::catch_up_limit`]) would have resumed
    /// more revisions behind the head than its limit: it ended instead of making etcd replay
    /// them. Load again and watch from the head (typed watches and live configs do).
    ///
    /// [`WatchBuilder::catch_up_limit`]: crate::client::WatchBuilder::catch_up_limit
    #[error(
        "{request} would resume at revision {next}, {} revisions behind the head ({head}): \
         it ended instead of making etcd replay them; load again and watch from the head",
        head + 1 - next
    )]
    FellBehind {
        /// The watch.
        request: String,
        /// The revision it would have resumed at.
        next: i64,
        /// The member's revision.
        head: i64,
    },
    /// A rollout of the config is active: a typed write or a second rollout is refused, and
    /// nothing was written.
    #[error(
        "rollout {id} of {prefix} is active, so nothing was written: wait for it, abort it, or \
         write superseding it (Store::superseding_rollouts, the command line's --force), which \
         aborts it in the same transaction"
    )]
    RolloutActive {
        /// The full key prefix of the config.
        prefix: String,
        /// The active rollout's id.
        id: String,
    },
    /// The command line's `rollout start` or `rollout status --wait`: the rollout ended in
    /// an abort (nothing of its candidate was written).
    #[error("rollout {id} was aborted: {reason}")]
    RolloutAborted {
        /// The rollout's id.
        id: String,
        /// Why.
        reason: String,
    },
    /// `rollout status --wait`: the rollout had not ended when the wait ran out.
    #[error("rollout {id} is still running after {after:?}")]
    RolloutRunning {
        /// The rollout's id.
        id: String,
        /// How long the wait lasted.
        after: Duration,
    },
    /// No rollout of the config is active (to pause, resume, promote, abort or drive).
    #[error("no rollout of {prefix} is active")]
    NoRollout {
        /// The full key prefix of the config.
        prefix: String,
    },
    /// Another process took over driving the rollout ([`Store::resume_driving`]); this one
    /// stopped acting on it.
    ///
    /// [`Store::resume_driving`]: crate::Store::resume_driving
    #[error("rollout {id} of {prefix} is driven by another process now; this one stopped")]
    RolloutTakenOver {
        /// The full key prefix of the config.
        prefix: String,
        /// The rollout's id.
        id: String,
    },
    /// A compare-and-swap found that keys under the prefix changed since the expected revision;
    /// nothing was written.
    #[error(
        "keys under {prefix} changed after revision {expected} (now at {current}); nothing was \
         written: load again and retry"
    )]
    Conflict {
        /// The full key prefix of the config.
        prefix: String,
        /// The revision the caller expected nothing to have changed since (0 for `save`).
        expected: i64,
        /// The store's revision when the conflict was found.
        current: i64,
    },
    /// Saving would need more txn operations than the server allows; nothing was sent.
    #[error(
        "saving {prefix} needs {ops} txn operations but the limit is {limit} \
         (etcd's --max-txn-ops); nothing was sent"
    )]
    TxnTooLarge {
        /// The full key prefix of the config.
        prefix: String,
        /// How many operations (or compares) the txn needs.
        ops: usize,
        /// The limit (`--max-txn-ops`, 128 by default; see `Store::max_txn_ops`).
        limit: usize,
    },
    /// A request is larger than the client may send
    /// ([`ConnectOptions::max_send_message_size`](crate::ConnectOptions::max_send_message_size));
    /// it was refused here, so nothing was sent or applied.
    #[error(
        "{request} is {size} bytes, over the client's limit of {limit} bytes \
         (max_send_message_size); nothing was sent"
    )]
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
    #[error("the snapshot from {endpoint} could not be saved: {reason}")]
    Snapshot {
        /// The endpoint the snapshot came from.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// Every member asked answered a read from a store revision older than one this client
    /// had already seen: they are behind (cut off from the leader, or lagging), and their
    /// answer would take the client back in time. Try again later, or read linearizably.
    #[error(
        "every etcd member answered {request} from revision {revision}, behind revision \
         {seen} this client already saw"
    )]
    Behind {
        /// The read.
        request: String,
        /// The revision the answer was at.
        revision: i64,
        /// The revision this client had seen.
        seen: i64,
    },
    /// A session's lease expired or was revoked (e.g. the process was frozen longer than its
    /// TTL): the locks and leadership held through it are gone.
    #[error(
        "the session's lease {lease:x} expired or was revoked: its locks and leadership are gone"
    )]
    SessionLost {
        /// The session's lease.
        lease: i64,
    },
    /// A lock or a leadership that this handle does not hold (any more): another holder, a
    /// resignation, or a lost session.
    #[error("{what} is not held by this handle")]
    NotHeld {
        /// What, e.g. `leadership of /elections/gw/`.
        what: String,
    },
    /// A background task (a live config's watch) stopped and will not deliver more.
    #[error("{what} stopped: {reason}")]
    Stopped {
        /// What stopped.
        what: String,
        /// Why.
        reason: String,
    },
    /// The server answered with a gRPC status that is not one of etcd's errors.
    #[error("etcd endpoint {endpoint} answered {}: {}", source.code(), source.message())]
    Grpc {
        /// The endpoint that answered.
        endpoint: String,
        /// The status it answered with.
        source: GrpcStatus,
    },
}

impl Error {
    /// For a revision of a config that was not taken (it does not decode, or `validate`
    /// refused it): that revision.
    pub(crate) fn rejected_revision(&self) -> Option<i64> {
        match self {
            Error::Decode { revision, .. } => Some(*revision),
            Error::Rejected { revision, .. } => *revision,
            _ => None,
        }
    }

    /// The kind of server error, if etcd itself refused the request.
    pub fn server_kind(&self) -> Option<ServerErrorKind> {
        match self {
            Error::Server { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// A renewal of lease `id` answered with TTL 0: etcd's way of saying the lease expired or
    /// was revoked (its renewal stream carries no error message).
    pub(crate) fn lease_not_found(id: i64) -> Self {
        Error::Server {
            kind: ServerErrorKind::LeaseNotFound,
            message: "etcdserver: requested lease not found".to_owned(),
            request: format!("LeaseKeepAlive {id:x}"),
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
            Error::Grpc { endpoint, source } if source.is_unimplemented() => Error::Unsupported {
                operation: operation.to_owned(),
                endpoint,
            },
            other => other,
        }
    }

    pub(crate) fn client_options(reason: impl Into<String>) -> Self {
        Error::ClientOptions {
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests;
