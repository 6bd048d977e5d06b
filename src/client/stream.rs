//! The supervisor of a client's long-lived bidirectional streams (Watch, LeaseKeepAlive): the one
//! place that opens such a stream with the auth token, asks etcd to require a leader, notices
//! a broken or silent endpoint, renews the token, and backs off between attempts.
//!
//! The task that owns a stream (the watch hub, the keep-alive task) decides *when*: it opens
//! the stream when it has something to send, reads answers with [`Supervised::message`], and
//! calls [`Supervised::broken`] when the endpoint failed (the next open goes to another one) or
//! [`Supervised::close`] when only the stream must go (the next open reuses the endpoint).

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::transport::{Conn, Transport};
use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// Between failed attempts to open a stream.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What a stream's first request carries: the messages queued before it was opened.
pub(crate) type Outbound<Req> = tonic::Request<UnboundedReceiverStream<Req>>;

/// Whether an open that failed with `err` fails the requests waiting for the stream: an
/// unreachable etcd fails them at once, while a member that timed out is left behind and the
/// next one tried first.
pub(crate) fn fails_waiting(err: &Error) -> bool {
    !matches!(err, Error::Timeout { .. })
}

/// What ended [`Supervised::wait_to_reopen`].
pub(crate) enum Reopen<C> {
    /// The backoff ran out: open again.
    Now,
    /// A command came first: the owner takes it, then opens again.
    Command(C),
    /// The command channel closed: every handle is gone.
    Closed,
}

/// One open stream.
struct Open<Req, Resp> {
    endpoint: usize,
    outbound: mpsc::UnboundedSender<Req>,
    inbound: tonic::Streaming<Resp>,
    /// The generation of the token the stream was opened with (0 without credentials).
    token_generation: u64,
}

/// A long-lived stream of `Req` out and `Resp` in, reopened on demand.
pub(crate) struct Supervised<Req, Resp> {
    transport: Weak<Transport>,
    /// etcd's name of the stream, for errors and logs: `Watch`, `LeaseKeepAlive`.
    what: &'static str,
    open: Option<Open<Req, Resp>>,
    backoff: Backoff,
    health: StreamHealth,
}

/// Whether a supervised stream is working, for whoever reports on it (a live config's status):
/// down from the moment its endpoint failed until the stream on the next one answers.
/// Listeners are told when an outage starts, so nobody has to poll or keep a waiting future.
#[derive(Clone, Default)]
pub(crate) struct StreamHealth(Arc<Health>);

#[derive(Default)]
struct Health {
    outage: Mutex<Option<Outage>>,
    /// Held weakly: a listener that is gone is dropped at the next outage or registration.
    listeners: Mutex<Vec<Weak<dyn OutageListener>>>,
}

/// Told when a supervised stream goes down and when it is back (called on the stream's task:
/// keep it short).
pub(crate) trait OutageListener: Send + Sync {
    fn outage(&self, reason: &str);
    fn recovered(&self);
}

/// Since when a stream has been down, and why.
#[derive(Clone, Debug)]
pub(crate) struct Outage {
    pub(crate) since: Instant,
    pub(crate) reason: String,
}

impl StreamHealth {
    /// The current outage, if the stream is down.
    pub(crate) fn outage(&self) -> Option<Outage> {
        crate::sync::lock(&self.0.outage).clone()
    }

    /// Tells `listener` of each outage from now on, for as long as it lives.
    pub(crate) fn listen(&self, listener: Weak<dyn OutageListener>) {
        let mut listeners = crate::sync::lock(&self.0.listeners);
        // Amortized cleanup: the list never holds more than twice the live listeners.
        if listeners.len() == listeners.capacity() {
            listeners.retain(|l| l.strong_count() > 0);
        }
        listeners.push(listener);
    }

    /// Notes a failure; an outage already under way keeps its start and first reason.
    fn down(&self, reason: &str) {
        {
            let mut outage = crate::sync::lock(&self.0.outage);
            if outage.is_some() {
                return;
            }
            *outage = Some(Outage {
                since: Instant::now(),
                reason: reason.to_owned(),
            });
        }
        for listener in self.listeners() {
            listener.outage(reason);
        }
    }

    /// The listeners still alive.
    fn listeners(&self) -> Vec<Arc<dyn OutageListener>> {
        let mut listeners = crate::sync::lock(&self.0.listeners);
        listeners.retain(|l| l.strong_count() > 0);
        listeners.iter().filter_map(Weak::upgrade).collect()
    }

    /// Notes that the stream answers again, ending an outage (listeners are told).
    fn up(&self) {
        if crate::sync::lock(&self.0.outage).take().is_none() {
            return;
        }
        for listener in self.listeners() {
            listener.recovered();
        }
    }
}

impl<Req, Resp> Supervised<Req, Resp> {
    /// A supervisor holding the transport weakly: the client (and every handle that keeps a
    /// stream in use) holds it strongly, so the task ends with them.
    pub(crate) fn new(transport: Weak<Transport>, what: &'static str) -> Self {
        Supervised {
            transport,
            what,
            open: None,
            backoff: Backoff::new(MIN_BACKOFF, MAX_BACKOFF),
            health: StreamHealth::default(),
        }
    }

    /// The stream's health, to share with whoever reports on it.
    pub(crate) fn health(&self) -> StreamHealth {
        self.health.clone()
    }

    /// The transport, unless the client is gone.
    pub(crate) fn transport(&self) -> Option<Arc<Transport>> {
        self.transport.upgrade()
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The error for a stream whose client was dropped.
    fn client_gone(&self) -> Error {
        Error::Stopped {
            what: self.what.to_owned(),
            reason: "the client was dropped".to_owned(),
        }
    }

    /// Opens the stream on the client's current endpoint, authenticating first if needed.
    ///
    /// `queue` sends the first messages before the call is made: etcd sends a stream's headers
    /// only with its first answer, and opening waits for those headers (at most the dial
    /// timeout, since a frozen member accepts the connection and says nothing). The stream asks
    /// etcd to require a leader (Go's `WithRequireLeader`): a member cut off from its peers
    /// closes it, and the owner moves on. On failure the endpoint is reported broken.
    pub(crate) async fn open<F, Fut>(
        &mut self,
        queue: impl FnOnce(&mpsc::UnboundedSender<Req>),
        call: F,
    ) -> Result<()>
    where
        F: FnOnce(Conn, Outbound<Req>) -> Fut,
        Fut: Future<
            Output = std::result::Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status>,
        >,
    {
        let transport = self.transport().ok_or_else(|| self.client_gone())?;
        let down = |err: &Error| self.health.down(&err.to_string());
        let (endpoint, conn) = transport.current_conn().await.inspect_err(down)?;
        transport.authenticated().await.inspect_err(down)?;
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(outbound_rx));
        request.metadata_mut().insert(
            "hasleader",
            tonic::metadata::AsciiMetadataValue::from_static("true"),
        );
        let token_generation = match &transport.credentials {
            Some(credentials) => credentials.attach(&mut request),
            None => 0,
        };
        queue(&outbound);
        let inbound = transport
            .open_stream(endpoint, self.what, call(conn, request))
            .await
            .inspect_err(|err| self.health.down(&err.to_string()))?;
        self.open = Some(Open {
            endpoint,
            outbound,
            inbound,
            token_generation,
        });
        Ok(())
    }

    /// After a failed open: waits out the backoff (doubling each time) while still taking the
    /// owner's commands, so a new watch or lease is not held up behind a dead endpoint.
    pub(crate) async fn wait_to_reopen<C>(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<C>,
    ) -> Reopen<C> {
        tokio::select! {
            () = tokio::time::sleep(self.backoff.next_delay()) => Reopen::Now,
            command = commands.recv() => match command {
                Some(command) => Reopen::Command(command),
                None => Reopen::Closed,
            },
        }
    }

    /// Sends one message on the open stream; false if none is open.
    pub(crate) fn send(&self, message: Req) -> bool {
        match &self.open {
            Some(open) => open.outbound.send(message).is_ok(),
            None => false,
        }
    }

    /// The next answer on the open stream; never resolves while none is open. An answer
    /// resets the backoff: the endpoint works.
    pub(crate) async fn message(&mut self) -> std::result::Result<Option<Resp>, tonic::Status> {
        let answer = match &mut self.open {
            Some(open) => open.inbound.message().await,
            None => std::future::pending().await,
        };
        if matches!(answer, Ok(Some(_))) {
            self.backoff.reset();
            self.health.up();
        }
        answer
    }

    /// Whether the client's token was renewed since the stream was opened: etcd checks new
    /// requests on a stream against the token it was opened with, which may have expired.
    pub(crate) fn token_renewed(&self) -> bool {
        let Some(open) = &self.open else {
            return false;
        };
        self.transport()
            .and_then(|t| t.credentials.as_ref().map(|c| c.generation()))
            .is_some_and(|current| current != open.token_generation)
    }

    /// The endpoint failed (the stream broke, closed, or stopped answering): drops the stream
    /// and moves the client to the next endpoint.
    pub(crate) fn broken(&mut self, why: &str) {
        self.health.down(why);
        if let Some(open) = self.open.take() {
            tracing::debug!(stream = self.what, error = %why, "stream broke; reopening on another endpoint");
            if let Some(transport) = self.transport() {
                transport.report_broken(open.endpoint);
            }
        }
    }

    /// Drops the stream without blaming its endpoint (no watch left, a new token, a create
    /// answer that matched nothing): the next open uses the same endpoint.
    pub(crate) fn close(&mut self) {
        self.open = None;
    }

    /// etcd refused the stream's token: renews it (once for every caller that saw the same
    /// token) and closes the stream, to be reopened with the new one on the same endpoint.
    pub(crate) async fn renew_token(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let Some(transport) = self.transport() else {
            return;
        };
        if let Err(err) = transport.renew_token(open.token_generation).await {
            tracing::warn!(stream = self.what, error = %err, "could not renew the auth token");
        }
    }
}
