//! One unary call: the retry loop, re-authentication, the per-endpoint share of the request
//! timeout for reads, and what each kind of failure means for it (see the module docs of
//! [`transport`](super)).

use std::error::Error as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::connection::NotSent;
use super::endpoint::source_chain;
use super::{Conn, Encoded, Retry, Transport, NONE};
use crate::backoff::Backoff;
use crate::error::{Error, GrpcStatus, Result, ServerErrorKind};

/// What a failed gRPC call means for the retry loop.
pub(super) enum Failure {
    /// The connection had closed before the request was handed to it: the request never
    /// left this process.
    NotSent(tonic::Status),
    /// The connection broke while the request was in flight.
    Broken(tonic::Status),
    /// etcd answered with one of its errors.
    Server(ServerErrorKind, String),
    /// Some other gRPC status (e.g. `Unimplemented` from an older server).
    Other(tonic::Status),
}

impl Failure {
    pub(super) fn classify(status: tonic::Status) -> Failure {
        let kind = ServerErrorKind::from_message(status.message());
        let from_etcd = ["etcdserver:", "auth:"]
            .iter()
            .any(|prefix| status.message().starts_with(prefix));
        if kind != ServerErrorKind::Other || from_etcd {
            let message = status.message().to_owned();
            return Failure::Server(kind, message);
        }
        let mut source = status.source();
        while let Some(err) = source {
            if err.is::<NotSent>() {
                return Failure::NotSent(status);
            }
            source = err.source();
        }
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                Failure::Broken(status)
            }
            _ => Failure::Other(status),
        }
    }
}

/// True for server answers that mean "this member cannot serve right now; another may".
fn transient(kind: ServerErrorKind) -> bool {
    use ServerErrorKind::*;
    matches!(
        kind,
        NoLeader
            | LeaderChanged
            | NotCapable
            | Stopped
            | ServerTimeout
            | Unhealthy
            | NotSupportedForLearner
            | TooManyRequests
    )
}

impl Transport {
    /// Runs one unary call with failover, retries, the auth token and the request timeout.
    ///
    /// `call` receives a connection and a request carrying the token; it is invoked once per
    /// attempt. `operation` describes the request in a timeout error (e.g. `Range prefix /a/`).
    pub(crate) async fn unary<Req, Resp, F, Fut>(
        &self,
        operation: impl FnOnce(&Req) -> String,
        retry: Retry,
        message: &Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: prost::Message,
        F: Fn(Conn, tonic::Request<Encoded>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        // tonic would refuse it too, but only once the call is under way, as a failure that
        // cannot tell whether the request was applied.
        let size = message.encoded_len();
        let limit = self.options.max_send_message_size;
        if size > limit {
            return Err(Error::RequestTooLarge {
                request: operation(message),
                size,
                limit,
            });
        }
        let encoded = Encoded::of(message);
        let in_flight = AtomicUsize::new(NONE);
        let attempts = self.attempts(retry, true, &encoded, &in_flight, call);
        self.within_request_timeout(|| operation(message), &in_flight, attempts)
            .await
    }

    /// Like `unary` but sends no token and never re-authenticates: for
    /// `Authenticate` itself.
    pub(crate) async fn unary_without_token<Req, Resp, F, Fut>(
        &self,
        operation: impl FnOnce() -> String,
        message: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: prost::Message,
        F: Fn(Conn, tonic::Request<Encoded>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let encoded = Encoded::of(&message);
        let in_flight = AtomicUsize::new(NONE);
        let attempts = self.attempts(Retry::Idempotent, false, &encoded, &in_flight, call);
        self.within_request_timeout(operation, &in_flight, attempts)
            .await
    }

    /// Bounds `work` by the request timeout. On timeout, the endpoint the request was waiting
    /// on (recorded in `in_flight`) is left for the next one: a member that accepts connections
    /// but answers nothing (frozen, overloaded) must not hold every later call too.
    async fn within_request_timeout<T>(
        &self,
        operation: impl FnOnce() -> String,
        in_flight: &AtomicUsize,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let after = self.options.request_timeout;
        match tokio::time::timeout(after, work).await {
            // `attempts` does not know how to describe the request; name it here.
            Ok(Err(Error::Server { kind, message, .. })) => Err(Error::Server {
                kind,
                message,
                request: operation(),
            }),
            Ok(result) => result,
            Err(_) => {
                let index = in_flight.load(Ordering::Acquire);
                let endpoint = (index != NONE).then(|| {
                    self.fail_over(index);
                    self.endpoint_name(index)
                });
                Err(Error::Timeout {
                    operation: operation(),
                    after,
                    endpoint,
                })
            }
        }
    }

    /// The retry loop of one call: an attempt per endpoint as needed, under the policy of
    /// the module docs. `in_flight` tells the caller's timeout which endpoint is waited on.
    async fn attempts<Resp, F, Fut>(
        &self,
        retry: Retry,
        with_token: bool,
        message: &Encoded,
        in_flight: &AtomicUsize,
        call: F,
    ) -> Result<Resp>
    where
        F: Fn(Conn, tonic::Request<Encoded>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let credentials = self.credentials.as_ref().filter(|_| with_token);
        if credentials.is_some() {
            self.authenticated().await?;
        }
        let mut tries = Tries::new();
        loop {
            let index = self.current.load(Ordering::Acquire);
            let conn = match self.conn(index).await {
                Ok(conn) => conn,
                Err(why) => {
                    self.fail_over(index);
                    tries.unreachable_in_a_row += 1;
                    if tries.unreachable_in_a_row >= self.endpoint_count() {
                        return Err(Error::Connect {
                            endpoints: self.endpoint_names(),
                            reason: why,
                        });
                    }
                    continue;
                }
            };
            tries.unreachable_in_a_row = 0;
            in_flight.store(index, Ordering::Release);

            let mut request = tonic::Request::new(message.clone());
            let generation = match credentials {
                Some(credentials) => credentials.attach(&mut request),
                None => 0,
            };
            let reply = match (retry, self.endpoint_count()) {
                (Retry::Idempotent, endpoints) if endpoints > 1 => {
                    let budget = self.options.request_timeout / endpoints as u32;
                    match tokio::time::timeout(budget, call(conn, request)).await {
                        Ok(reply) => reply,
                        Err(_elapsed) => {
                            let endpoint = &self.endpoint_name(index);
                            tracing::debug!(%endpoint, ?budget, "read unanswered; trying the next endpoint");
                            self.fail_over(index);
                            continue;
                        }
                    }
                }
                _ => call(conn, request).await,
            };
            let status = match reply {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            let may_refresh = credentials.is_some() && !tries.reauthenticated;
            match self.after_failure(
                Failure::classify(status),
                retry,
                index,
                may_refresh,
                &mut tries,
            ) {
                Next::Again => {}
                Next::AfterBackoff => tries.backoff.wait().await,
                Next::Refresh => {
                    tries.reauthenticated = true;
                    self.renew_token(generation).await?;
                }
                Next::Fail(err) => return Err(err),
            }
        }
    }

    /// What a failed attempt on endpoint `index` means for the next: the policy of the module
    /// docs, in one place.
    fn after_failure(
        &self,
        failure: Failure,
        retry: Retry,
        index: usize,
        may_refresh: bool,
        tries: &mut Tries,
    ) -> Next {
        if !matches!(failure, Failure::NotSent(_)) {
            tries.not_sent_in_a_row = 0;
        }
        let endpoint = self.endpoint_name(index);
        match failure {
            Failure::Server(kind, _) if may_refresh && kind.needs_new_token() => Next::Refresh,
            Failure::Server(kind, message) if retry == Retry::Idempotent && transient(kind) => {
                tracing::debug!(%endpoint, %message, "transient etcd error; retrying");
                self.fail_over(index);
                Next::AfterBackoff
            }
            Failure::Server(kind, message) => Next::Fail(Error::Server {
                kind,
                message,
                request: String::new(),
            }),
            Failure::NotSent(status) => {
                // The connection closed just as the request was handed to it. The next
                // attempt dials again, and only a failed dial counts as unreachable; a member
                // that keeps closing new connections is retried with a backoff until the
                // request timeout.
                tracing::debug!(%endpoint, error = %source_chain(&status), "request not sent; dialing again");
                self.fail_over(index);
                tries.not_sent_in_a_row += 1;
                if tries.not_sent_in_a_row >= self.endpoint_count() {
                    Next::AfterBackoff
                } else {
                    Next::Again
                }
            }
            Failure::Broken(status) => {
                self.fail_over(index);
                if retry == Retry::Mutation {
                    return Next::Fail(Error::Transport {
                        endpoint,
                        source: GrpcStatus::new(status),
                    });
                }
                tracing::debug!(%endpoint, error = %status.message(), "connection broke; retrying read");
                Next::AfterBackoff
            }
            Failure::Other(status) => Next::Fail(Error::Grpc {
                endpoint,
                source: GrpcStatus::new(status),
            }),
        }
    }
}

/// What the retry loop of one call remembers between attempts.
struct Tries {
    reauthenticated: bool,
    unreachable_in_a_row: usize,
    not_sent_in_a_row: usize,
    backoff: Backoff,
}

impl Tries {
    fn new() -> Tries {
        Tries {
            reauthenticated: false,
            unreachable_in_a_row: 0,
            not_sent_in_a_row: 0,
            backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(500)),
        }
    }
}

/// What to do after a failed attempt.
enum Next {
    /// Try again at once (on the endpoint now current).
    Again,
    /// Try again after the backoff.
    AfterBackoff,
    /// Renew the token, then try again (once per call).
    Refresh,
    /// Give up with this error.
    Fail(Error),
}

/// Turns a status from a stream (which does its own retrying) into the crate's error;
/// `request` names the stream, e.g. `Watch /services/`.
pub(crate) fn status_error(endpoint: &str, request: &str, status: tonic::Status) -> Error {
    match Failure::classify(status) {
        Failure::Server(kind, message) => Error::Server {
            kind,
            message,
            request: request.to_owned(),
        },
        Failure::NotSent(status) | Failure::Broken(status) => Error::Transport {
            endpoint: endpoint.to_owned(),
            source: GrpcStatus::new(status),
        },
        Failure::Other(status) => Error::Grpc {
            endpoint: endpoint.to_owned(),
            source: GrpcStatus::new(status),
        },
    }
}
