//! Endpoints, failover and the retry policy shared by every unary call.
//!
//! The client talks to one endpoint at a time (the *current* one). When a call to it fails at the
//! transport level, the client drops that connection and moves on to the next endpoint. Whether
//! the failed call is sent again depends on what etcd could have done with it:
//!
//! - a request that never reached a server (the connection could not be opened) is always sent
//!   again, to the next endpoint;
//! - a read ([`Retry::Idempotent`]) is also sent again after the connection broke mid-call, or
//!   when the member answered with a transient `Unavailable` error such as "no leader";
//! - a write ([`Retry::Mutation`]) that may have reached a server is never sent twice: the caller
//!   gets [`Error::Transport`] and decides.
//!
//! This is the policy of etcd's Go client (`isSafeRetryImmutableRPC`/`isSafeRetryMutableRPC`).
//! Every call is bounded by the request timeout, retries and re-authentication included.
//!
//! With several endpoints, one attempt of a read may take at most the request timeout divided by
//! the number of endpoints; then it is sent to the next one. A member cut off from its peers
//! still accepts a linearizable read but cannot answer it until it finds a leader again, and
//! the read must go elsewhere rather than wait out the whole timeout there.

use std::error::Error as _;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::options::{ConnectOptions, TlsOptions};
use super::rpc::Rpc;
use super::token::Credentials;
use crate::backoff::Backoff;
use crate::error::{Error, GrpcStatus, Result, ServerErrorKind};
use crate::proto::etcdserverpb::{
    auth_client::AuthClient, cluster_client::ClusterClient, kv_client::KvClient,
    lease_client::LeaseClient, maintenance_client::MaintenanceClient, watch_client::WatchClient,
    StatusRequest,
};

/// `in_flight` before any endpoint was tried.
const NONE: usize = usize::MAX;

/// Whether a call may be sent again after its connection failed mid-flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, and anything else that does the same thing when applied twice.
    Idempotent,
    /// Writes: sent again only if they certainly never reached a server.
    Mutation,
}

/// One etcd endpoint and its connection, opened on first use and dropped when it fails.
struct Slot {
    /// The endpoint as the user wrote it, for error messages.
    name: String,
    endpoint: Endpoint,
    channel: Mutex<Option<Channel>>,
}

/// The shared state behind every clone of a [`Client`](super::Client).
pub(crate) struct Transport {
    slots: Vec<Slot>,
    current: AtomicUsize,
    /// The highest store revision any response to this client carried: a read answered at an
    /// older one comes from a member that is behind (see `kv::Get`).
    seen_revision: AtomicI64,
    pub(crate) options: ConnectOptions,
    pub(crate) credentials: Option<Credentials>,
}

/// A connection to one endpoint, handing out generated stubs with the configured message limits.
#[derive(Clone)]
pub(crate) struct Conn {
    channel: Channel,
    max_send: usize,
    max_receive: usize,
}

macro_rules! stubs {
    ($($method:ident -> $stub:ident),* $(,)?) => {
        impl Conn {
            $(
                pub(crate) fn $method(&self) -> $stub<Channel> {
                    $stub::new(self.channel.clone())
                        .max_encoding_message_size(self.max_send)
                        .max_decoding_message_size(self.max_receive)
                }
            )*
        }
    };
}

stubs! {
    kv -> KvClient,
    watch -> WatchClient,
    lease -> LeaseClient,
    cluster -> ClusterClient,
    maintenance -> MaintenanceClient,
    auth -> AuthClient,
}

/// What a failed gRPC call means for the retry loop.
enum Failure {
    /// The connection could not be opened: the request never left this process.
    NotSent(tonic::Status),
    /// The connection broke while the request was in flight.
    Broken(tonic::Status),
    /// etcd answered with one of its errors.
    Server(ServerErrorKind, String),
    /// Some other gRPC status (e.g. `Unimplemented` from an older server).
    Other(tonic::Status),
}

impl Failure {
    fn classify(status: tonic::Status) -> Failure {
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
            if err.is::<tonic::ConnectError>() {
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
    /// Builds the endpoint list without connecting.
    pub(crate) fn new(
        endpoints: Vec<String>,
        options: ConnectOptions,
        credentials: Option<Credentials>,
    ) -> Result<Transport> {
        if endpoints.is_empty() {
            return Err(Error::config("no endpoints given"));
        }
        let tls = match &options.tls {
            Some(tls) => Some(tls_config(tls)?),
            None => None,
        };
        let slots = endpoints
            .iter()
            .map(|name| {
                let endpoint = endpoint(name, &options, tls.clone())?;
                Ok(Slot {
                    name: name.clone(),
                    endpoint,
                    channel: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Transport {
            slots,
            current: AtomicUsize::new(0),
            seen_revision: AtomicI64::new(0),
            options,
            credentials,
        })
    }

    /// Opens a connection to whichever endpoint answers first within the dial timeout, and
    /// makes it the current one.
    pub(crate) async fn dial(&self) -> Result<()> {
        let transport = self;
        // Dial every endpoint at once and keep the first that answers, so one dead member
        // does not cost a whole dial timeout.
        let dialing = &transport;
        let mut dials: FuturesUnordered<_> = (0..transport.slots.len())
            .map(|index| async move { (index, dialing.probe(index).await) })
            .collect();
        let mut reason = String::from("dial timeout");
        let deadline = tokio::time::sleep(transport.options.dial_timeout);
        tokio::pin!(deadline);
        let winner = loop {
            tokio::select! {
                next = dials.next() => match next {
                    Some((index, Ok(()))) => break Some(index),
                    Some((_, Err(why))) => reason = why,
                    None => break None,
                },
                () = &mut deadline => {
                    reason = format!("no answer within the dial timeout of {:?}", transport.options.dial_timeout);
                    break None;
                }
            }
        };
        drop(dials);
        match winner {
            Some(index) => {
                transport.current.store(index, Ordering::Relaxed);
                Ok(())
            }
            None => Err(Error::Connect {
                endpoints: self.endpoint_names().map(str::to_owned).collect(),
                reason,
            }),
        }
    }

    /// Opens a connection to endpoint `index` and checks that an etcd member answers on it.
    ///
    /// Any answer from etcd counts, an error included (a server with auth on may refuse the
    /// probe): only a transport failure means the endpoint is down.
    async fn probe(&self, index: usize) -> std::result::Result<(), String> {
        let conn = self.conn(index).await?;
        match conn.maintenance().status(StatusRequest {}).await {
            Ok(_) => Ok(()),
            Err(status) => match Failure::classify(status) {
                Failure::Server(..) | Failure::Other(_) => Ok(()),
                Failure::NotSent(status) | Failure::Broken(status) => {
                    self.drop_conn(index);
                    Err(format!(
                        "{}: {}",
                        self.slots[index].name,
                        source_chain(&status)
                    ))
                }
            },
        }
    }

    /// The endpoints, as given to `connect`.
    pub(crate) fn endpoint_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|slot| slot.name.as_str())
    }

    /// The connection to endpoint `index`, opened now if there is none.
    async fn conn(&self, index: usize) -> std::result::Result<Conn, String> {
        let slot = &self.slots[index];
        let cached = slot.channel.lock().expect("channel lock").clone();
        let channel = match cached {
            Some(channel) => channel,
            None => {
                let dial = slot.endpoint.connect();
                let channel = match tokio::time::timeout(self.options.dial_timeout, dial).await {
                    Ok(Ok(channel)) => channel,
                    Ok(Err(err)) => return Err(format!("{}: {}", slot.name, source_chain(&err))),
                    Err(_) => {
                        return Err(format!(
                            "{}: no connection within the dial timeout of {:?}",
                            slot.name, self.options.dial_timeout
                        ))
                    }
                };
                *slot.channel.lock().expect("channel lock") = Some(channel.clone());
                channel
            }
        };
        Ok(Conn {
            channel,
            max_send: self.options.max_send_message_size,
            max_receive: self.options.max_receive_message_size,
        })
    }

    fn drop_conn(&self, index: usize) {
        *self.slots[index].channel.lock().expect("channel lock") = None;
    }

    /// Moves on from endpoint `failed` to the next one, unless another call already did.
    fn fail_over(&self, failed: usize) {
        self.drop_conn(failed);
        let next = (failed + 1) % self.slots.len();
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::AcqRel, Ordering::Relaxed);
        if self.slots.len() > 1 {
            tracing::debug!(
                from = %self.slots[failed].name,
                to = %self.slots[next].name,
                "etcd endpoint failed; switching"
            );
        }
    }

    /// The current endpoint and a connection to it, failing over past endpoints that cannot
    /// be reached. Used by streams, which manage their own retries.
    pub(crate) async fn current_conn(&self) -> Result<(usize, Conn)> {
        let mut last = String::new();
        for _ in 0..self.slots.len() {
            let index = self.current.load(Ordering::Acquire);
            match self.conn(index).await {
                Ok(conn) => return Ok((index, conn)),
                Err(why) => {
                    last = why;
                    self.fail_over(index);
                }
            }
        }
        Err(Error::Connect {
            endpoints: self.endpoint_names().map(str::to_owned).collect(),
            reason: last,
        })
    }

    /// Authenticates first if the client has credentials but no token yet (a lazily made client
    /// before its first call); returns the current token's generation, 0 without credentials.
    pub(crate) async fn authenticated(&self) -> Result<u64> {
        let Some(credentials) = &self.credentials else {
            return Ok(0);
        };
        if credentials.generation() == 0 {
            credentials.refresh(self, 0).await?;
        }
        Ok(credentials.generation())
    }

    /// The name of endpoint `index`.
    /// Notes that etcd answered at store revision `revision`; returns the highest revision
    /// seen before this one.
    pub(crate) fn saw_revision(&self, revision: i64) -> i64 {
        self.seen_revision.fetch_max(revision, Ordering::AcqRel)
    }

    /// How many endpoints the client has.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.slots.len()
    }

    /// Leaves the current endpoint for the next one: it answered from behind.
    pub(crate) fn skip_current(&self) {
        self.fail_over(self.current.load(Ordering::Acquire));
    }

    pub(crate) fn endpoint_name(&self, index: usize) -> &str {
        &self.slots[index].name
    }

    /// Opens a long-lived stream (`what`: `Watch`, `LeaseKeepAlive`) on endpoint `index`.
    ///
    /// Waits at most the dial timeout for etcd's answer: a frozen member accepts the connection
    /// and says nothing. On failure the endpoint is reported broken, so the next attempt goes
    /// to another.
    pub(crate) async fn open_stream<T>(
        &self,
        index: usize,
        what: &str,
        call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        let after = self.options.dial_timeout;
        let error = match tokio::time::timeout(after, call).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => {
                status_error(self.endpoint_name(index), &format!("{what} stream"), status)
            }
            Err(_elapsed) => Error::Timeout {
                operation: format!("opening the {what} stream"),
                after,
                endpoint: Some(self.endpoint_name(index).to_owned()),
            },
        };
        self.report_broken(index);
        Err(error)
    }

    /// Reports that a stream on endpoint `index` broke, so the next call goes elsewhere.
    pub(crate) fn report_broken(&self, index: usize) {
        self.fail_over(index);
    }

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

    /// Runs one unary call with failover, retries, the auth token and the request timeout.
    ///
    /// `call` receives a connection and a request carrying the token; it is invoked once per
    /// attempt. `operation` describes the request in a timeout error (e.g. `Range prefix /a/`).
    async fn unary<Req, Resp, F, Fut>(
        &self,
        operation: impl FnOnce(&Req) -> String,
        retry: Retry,
        message: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: Clone + prost::Message,
        F: Fn(Conn, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        // tonic would refuse it too, but only once the call is under way, as a failure that
        // cannot tell whether the request was applied.
        let size = message.encoded_len();
        let limit = self.options.max_send_message_size;
        if size > limit {
            return Err(Error::RequestTooLarge {
                request: operation(&message),
                size,
                limit,
            });
        }
        let in_flight = AtomicUsize::new(NONE);
        let attempts = self.attempts(retry, true, &message, &in_flight, call);
        self.within_request_timeout(|| operation(&message), &in_flight, attempts)
            .await
    }

    /// Like [`unary`](Self::unary) but sends no token and never re-authenticates: for
    /// `Authenticate` itself.
    async fn unary_without_token<Req, Resp, F, Fut>(
        &self,
        operation: impl FnOnce() -> String,
        message: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(Conn, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let in_flight = AtomicUsize::new(NONE);
        let attempts = self.attempts(Retry::Idempotent, false, &message, &in_flight, call);
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
                    self.slots[index].name.clone()
                });
                Err(Error::Timeout {
                    operation: operation(),
                    after,
                    endpoint,
                })
            }
        }
    }

    async fn attempts<Req, Resp, F, Fut>(
        &self,
        retry: Retry,
        with_token: bool,
        message: &Req,
        in_flight: &AtomicUsize,
        call: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(Conn, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let credentials = self.credentials.as_ref().filter(|_| with_token);
        if credentials.is_some() {
            self.authenticated().await?;
        }
        let mut reauthenticated = false;
        let mut unreachable_in_a_row = 0;
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            let index = self.current.load(Ordering::Acquire);
            let conn = match self.conn(index).await {
                Ok(conn) => conn,
                Err(why) => {
                    self.fail_over(index);
                    unreachable_in_a_row += 1;
                    if unreachable_in_a_row >= self.slots.len() {
                        return Err(Error::Connect {
                            endpoints: self.endpoint_names().map(str::to_owned).collect(),
                            reason: why,
                        });
                    }
                    continue;
                }
            };
            unreachable_in_a_row = 0;
            in_flight.store(index, Ordering::Release);

            let mut request = tonic::Request::new(message.clone());
            let generation = match credentials {
                Some(credentials) => credentials.attach(&mut request),
                None => 0,
            };
            let reply = match (retry, self.slots.len()) {
                (Retry::Idempotent, endpoints) if endpoints > 1 => {
                    let budget = self.options.request_timeout / endpoints as u32;
                    match tokio::time::timeout(budget, call(conn, request)).await {
                        Ok(reply) => reply,
                        Err(_elapsed) => {
                            let endpoint = &self.slots[index].name;
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
            let endpoint = self.slots[index].name.clone();
            match Failure::classify(status) {
                Failure::Server(kind, message) => {
                    if let (Some(credentials), true, false) =
                        (credentials, kind.needs_new_token(), reauthenticated)
                    {
                        reauthenticated = true;
                        credentials.refresh(self, generation).await?;
                        continue;
                    }
                    if retry == Retry::Idempotent && transient(kind) {
                        tracing::debug!(%endpoint, %message, "transient etcd error; retrying");
                        self.fail_over(index);
                        backoff.wait().await;
                        continue;
                    }
                    return Err(Error::Server {
                        kind,
                        message,
                        request: String::new(),
                    });
                }
                Failure::NotSent(status) => {
                    tracing::debug!(%endpoint, error = %status.message(), "request not sent; failing over");
                    self.fail_over(index);
                    unreachable_in_a_row += 1;
                    if unreachable_in_a_row >= self.slots.len() {
                        return Err(Error::Connect {
                            endpoints: self.endpoint_names().map(str::to_owned).collect(),
                            reason: format!("{endpoint}: {}", source_chain(&status)),
                        });
                    }
                }
                Failure::Broken(status) => {
                    self.fail_over(index);
                    if retry == Retry::Mutation {
                        return Err(Error::Transport {
                            endpoint,
                            source: GrpcStatus::new(status),
                        });
                    }
                    tracing::debug!(%endpoint, error = %status.message(), "connection broke; retrying read");
                    backoff.wait().await;
                }
                Failure::Other(status) => {
                    return Err(Error::Grpc {
                        endpoint,
                        source: GrpcStatus::new(status),
                    })
                }
            }
        }
    }
}

/// Turns an endpoint as a user writes it (`127.0.0.1:2379`, `http://h:2379`, `https://h:2379`)
/// into a tonic endpoint with the connection options applied.
fn endpoint(
    name: &str,
    options: &ConnectOptions,
    tls: Option<ClientTlsConfig>,
) -> Result<Endpoint> {
    let uri = if name.contains("://") {
        name.to_owned()
    } else if tls.is_some() {
        format!("https://{name}")
    } else {
        format!("http://{name}")
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|err| Error::config(format!("endpoint `{name}` is not a valid address: {err}")))?
        .connect_timeout(options.dial_timeout)
        .tcp_nodelay(true);
    if let Some((interval, timeout)) = options.keep_alive {
        endpoint = endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
    }
    if name.starts_with("https://") || (tls.is_some() && !name.starts_with("http://")) {
        let tls = tls.ok_or_else(|| {
            Error::config(format!(
                "endpoint `{name}` uses https but no TLS options were given (ConnectOptions::with_tls)"
            ))
        })?;
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|err| Error::config(format!("TLS for endpoint `{name}`: {err}")))?;
    }
    Ok(endpoint)
}

fn tls_config(options: &TlsOptions) -> Result<ClientTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|err| Error::config(format!("cannot read TLS file {}: {err}", path.display())))
    };
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = &options.ca_file {
        config = config.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = &options.identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(domain) = &options.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
}

/// An error with its causes, `a: b: c`, so "connection refused" is not hidden behind
/// "transport error".
fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
