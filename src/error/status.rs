//! A gRPC status that is not one of etcd's own errors, wrapped so that the transport library
//! stays an implementation detail of this crate.

use std::fmt;

/// What the gRPC layer reported: a connection that broke mid-call, or a status code a server
/// answered with that is not one of etcd's errors (e.g. `Unimplemented` from an older etcd).
///
/// Cheap to clone. The underlying transport error, if any, is its
/// [`source`](std::error::Error::source).
#[derive(Clone)]
pub struct GrpcStatus(tonic::Status);

impl GrpcStatus {
    pub(crate) fn new(status: tonic::Status) -> Self {
        GrpcStatus(status)
    }

    /// The gRPC status code's name, e.g. `Unavailable`, `Unimplemented`.
    pub fn code(&self) -> &'static str {
        code_name(self.0.code())
    }

    /// The message that came with the status.
    pub fn message(&self) -> &str {
        self.0.message()
    }

    /// Whether the status is gRPC's `Unimplemented`: the server has no such call.
    pub(crate) fn is_unimplemented(&self) -> bool {
        self.0.code() == tonic::Code::Unimplemented
    }
}

/// gRPC's names for its status codes, as the gRPC specification spells them.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "Ok",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

impl fmt::Debug for GrpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcStatus")
            .field("code", &self.code())
            .field("message", &self.message())
            .finish()
    }
}

impl fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for GrpcStatus {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}
