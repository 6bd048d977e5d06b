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
//!
//! Each endpoint has at most one connection: TCP, TLS (rustls) if the endpoint is `https`, and
//! HTTP/2 driven by the crate with `h2` ([`connection`]), shared by every call and stream to
//! that endpoint. A call's task opens its HTTP/2 stream and queues its request itself; no
//! other task stands between the caller and the connection's I/O task.

mod calls;
mod codec;
mod connection;
mod encoded;
mod endpoint;
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
mod tls;
#[cfg(feature = "tls")]
mod tls;

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use futures_util::stream::{FuturesUnordered, StreamExt};

pub(crate) use calls::status_error;
use calls::Failure;
use connection::{Http2, Target};
pub(crate) use encoded::{never_decoded, Encoded};
use endpoint::{source_chain, target};
use tls::Tls;

use super::options::ConnectOptions;
use super::token::Credentials;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{maintenance_client::MaintenanceClient, StatusRequest};

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
    target: Target,
    channel: Mutex<Option<Http2>>,
}

/// The shared state behind every clone of a [`Client`](super::Client).
pub(crate) struct Transport {
    /// The endpoints. Replaced whole by an endpoint sync; an index into an older list is
    /// taken modulo the length of the current one.
    slots: ArcSwap<Vec<Arc<Slot>>>,
    /// What new endpoints are made with (an endpoint sync).
    tls: Option<Tls>,
    current: AtomicUsize,
    /// The highest store revision any response to this client carried: a read answered at an
    /// older one comes from a member that is behind (see `kv::Get`).
    seen_revision: AtomicI64,
    pub(crate) options: ConnectOptions,
    pub(crate) credentials: Option<Credentials>,
}

impl Slot {
    fn new(name: &str, tls: Option<&Tls>) -> Result<Arc<Slot>> {
        Ok(Arc::new(Slot {
            name: name.to_owned(),
            target: target(name, tls)?,
            channel: Mutex::new(None),
        }))
    }
}

/// A connection to one endpoint: unary calls ([`Conn::unary`]), bidirectional streams
/// ([`Conn::streaming`]) and the Maintenance service's generated stub, with the configured
/// message limits.
#[derive(Clone)]
pub(crate) struct Conn {
    channel: Http2,
    origin: http::Uri,
    max_send: usize,
    max_receive: usize,
}

macro_rules! stubs {
    ($($method:ident -> $stub:ident),* $(,)?) => {
        impl Conn {
            $(
                pub(crate) fn $method(&self) -> $stub<Http2> {
                    $stub::with_origin(self.channel.clone(), self.origin.clone())
                        .max_encoding_message_size(self.max_send)
                        .max_decoding_message_size(self.max_receive)
                }
            )*
        }
    };
}

// Snapshot and Status go through the generated stub (unary calls go through [`Conn::unary`],
// the Watch and LeaseKeepAlive streams through [`Conn::streaming`]).
stubs! {
    maintenance -> MaintenanceClient,
}

impl Transport {
    /// Builds the endpoint list without connecting.
    pub(crate) fn new(
        endpoints: Vec<String>,
        options: ConnectOptions,
        credentials: Option<Credentials>,
    ) -> Result<Transport> {
        if endpoints.is_empty() {
            return Err(Error::client_options("no endpoints given"));
        }
        #[cfg(feature = "tls")]
        let tls = options.tls.as_ref().map(tls::tls_config).transpose()?;
        #[cfg(not(feature = "tls"))]
        let tls: Option<Tls> = None;
        let slots = endpoints
            .iter()
            .map(|name| Slot::new(name, tls.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Transport {
            slots: ArcSwap::from_pointee(slots),
            tls,
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
        let mut dials: FuturesUnordered<_> = (0..transport.endpoint_count())
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
                endpoints: self.endpoint_names(),
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
                        self.endpoint_name(index),
                        source_chain(&status)
                    ))
                }
            },
        }
    }

    /// The endpoints, as given to `connect` (or found by the last endpoint sync).
    pub(crate) fn endpoint_names(&self) -> Vec<String> {
        self.slots
            .load()
            .iter()
            .map(|slot| slot.name.clone())
            .collect()
    }

    /// Endpoint `index` (modulo the current list's length: the list may have been replaced).
    fn slot(&self, index: usize) -> Arc<Slot> {
        let slots = self.slots.load();
        slots[index % slots.len()].clone()
    }

    /// The connection to endpoint `index`, opened now if there is none.
    async fn conn(&self, index: usize) -> std::result::Result<Conn, String> {
        let slot = self.slot(index);
        let cached = crate::sync::lock(&slot.channel).clone();
        let channel = match cached.filter(Http2::is_open) {
            Some(channel) => channel,
            None => {
                let dial = slot.target.connect(&self.options);
                let channel = match tokio::time::timeout(self.options.dial_timeout, dial).await {
                    Ok(Ok(channel)) => channel,
                    Ok(Err(why)) => return Err(format!("{}: {why}", slot.name)),
                    Err(_) => {
                        return Err(format!(
                            "{}: no connection within the dial timeout of {:?}",
                            slot.name, self.options.dial_timeout
                        ))
                    }
                };
                *crate::sync::lock(&slot.channel) = Some(channel.clone());
                channel
            }
        };
        Ok(Conn {
            channel,
            origin: slot.target.origin.clone(),
            max_send: self.options.max_send_message_size,
            max_receive: self.options.max_receive_message_size,
        })
    }

    fn drop_conn(&self, index: usize) {
        *crate::sync::lock(&self.slot(index).channel) = None;
    }

    /// Moves on from endpoint `failed` to the next one, unless another call already did.
    fn fail_over(&self, failed: usize) {
        self.drop_conn(failed);
        let count = self.endpoint_count();
        let next = (failed + 1) % count;
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::AcqRel, Ordering::Relaxed);
        if count > 1 {
            tracing::debug!(
                from = %self.endpoint_name(failed),
                to = %self.endpoint_name(next),
                "etcd endpoint failed; switching"
            );
        }
    }

    /// The current endpoint and a connection to it, failing over past endpoints that cannot
    /// be reached. Used by streams, which manage their own retries.
    pub(crate) async fn current_conn(&self) -> Result<(usize, Conn)> {
        let mut last = String::new();
        for _ in 0..self.endpoint_count() {
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
            endpoints: self.endpoint_names(),
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
            self.renew_token(0).await?;
        }
        Ok(credentials.generation())
    }

    /// Gets the client a new auth token, unless it has none to renew or one newer than
    /// generation `seen` is already in place.
    pub(crate) async fn renew_token(&self, seen: u64) -> Result<()> {
        match &self.credentials {
            Some(credentials) => {
                credentials
                    .refresh(seen, |request| self.authenticate(request))
                    .await
            }
            None => Ok(()),
        }
    }

    /// The name of endpoint `index`.
    /// Notes that etcd answered at store revision `revision`; returns the highest revision
    /// seen before this one.
    pub(crate) fn saw_revision(&self, revision: i64) -> i64 {
        self.seen_revision.fetch_max(revision, Ordering::AcqRel)
    }

    /// The highest store revision any response to this client carried so far.
    pub(crate) fn seen_revision(&self) -> i64 {
        self.seen_revision.load(Ordering::Acquire)
    }

    /// How many endpoints the client has.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.slots.load().len()
    }

    /// Leaves the current endpoint for the next one: it answered from behind.
    pub(crate) fn skip_current(&self) {
        self.fail_over(self.current.load(Ordering::Acquire));
    }

    pub(crate) fn endpoint_name(&self, index: usize) -> String {
        self.slot(index).name.clone()
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
            Ok(Err(status)) => status_error(
                &self.endpoint_name(index),
                &format!("{what} stream"),
                status,
            ),
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
}
