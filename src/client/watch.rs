//! etcd's Watch service: many watches over one gRPC stream per client.
//!
//! ```no_run
//! # async fn demo(client: etcd_config::Client) -> etcd_config::Result<()> {
//! use futures_util::StreamExt;
//! use etcd_config::KeyRange;
//!
//! let mut watch = client.watch(KeyRange::prefix("/services/")).prev_kv().await?;
//! while let Some(response) = watch.next().await {
//!     for event in response?.events {
//!         println!("{:?} {}", event.kind, String::from_utf8_lossy(&event.kv.key));
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # How the watches of a client share a stream
//!
//! The first watch starts a task that owns one bidirectional Watch stream; every watch of the
//! client is a watch id on it, as in etcd's Go client.
//!
//! - **Creating.** A create answer does not say which request it answers, and nothing in etcd's
//!   API promises that answers come back in request order: etcd's gRPC proxy answers a create
//!   that joins a range it already watches at once, ahead of earlier creates still waiting on
//!   etcd. So, as Go's client does, the task keeps one create in flight per stream and sends the
//!   next when etcd has answered it; a watch's identity never depends on answer order. A create
//!   that stays unanswered for the request timeout means the stream is stuck: it is reopened
//!   elsewhere.
//! - **Auth.** etcd checks a watch's permission with the token the stream was opened with, at
//!   each create. Before a create goes out on a stream whose token has since been renewed, the
//!   stream is reopened with the new one. A create refused for its token (etcd 3.4: "invalid auth
//!   token"; etcd 3.5 says "permission denied" for an expired token too) is retried once with a
//!   fresh token on a fresh stream before the refusal is final.
//! - **Resuming.** When the stream breaks (member stopped, connection reset, leader lost) the
//!   task reopens it on the next endpoint, with a fresh token if etcd asks for one, and creates
//!   every watch again from its next revision: the last event's revision + 1, or the last
//!   progress revision + 1. Nothing is skipped and nothing delivered twice. Attempts back off
//!   from 50 ms to 2 s.
//! - **Frozen members.** Opening the stream waits at most the dial timeout; a member that does
//!   not answer is left for the next. Awaiting a watch waits at most the request timeout for
//!   etcd to confirm it, then fails with [`Error::Timeout`]; if the stream heard nothing at all
//!   in that time, it is taken to be stuck on a member that stopped answering, and moves (with
//!   every other watch) to the next endpoint.
//! - **Slow consumers.** Each watch has a bounded buffer. When it is full, the task cancels that
//!   one watch on the server instead of waiting, and creates it again from the first revision
//!   not delivered once the consumer has drained its buffer. Other watches never wait for a slow
//!   one, and memory stays bounded.
//! - **Ending.** A watch whose start revision was compacted ends with
//!   [`Error::Server`] of kind `Compacted`, and
//!   [`WatchStream::compact_revision`] tells which revision to start from; a watch etcd refuses
//!   (e.g. permission denied) ends with etcd's error. Dropping a [`WatchStream`] cancels its
//!   watch on the server; when no watch is left, the gRPC stream is closed.

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::kv::{BoxFuture, KeyValue};
use super::transport::Transport;
use super::watch_queue as queue;
use super::{Client, ResponseHeader};
use crate::error::{Error, Result, ServerErrorKind};
use crate::key_range::KeyRange;
use crate::proto::{etcdserverpb as pb, mvccpb};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or changed.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change; for a delete, the key with the delete's revision as
    /// `mod_revision` and no value.
    pub kv: KeyValue,
    /// The key before the change, if the watch asked for [`prev_kv`](WatchBuilder::prev_kv).
    pub prev_kv: Option<KeyValue>,
}

impl From<mvccpb::Event> for Event {
    fn from(event: mvccpb::Event) -> Self {
        let kind = match mvccpb::event::EventType::try_from(event.r#type) {
            Ok(mvccpb::event::EventType::Delete) => EventKind::Delete,
            _ => EventKind::Put,
        };
        Event {
            kind,
            kv: event.kv.map(KeyValue::from).unwrap_or_default(),
            prev_kv: event.prev_kv.map(KeyValue::from),
        }
    }
}

/// A batch of events from one watch, or a progress notification (no events).
///
/// All events of one revision (one txn) arrive in the same response.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchResponse {
    /// Who answered; `header.revision` is the store revision when it was sent.
    pub header: ResponseHeader,
    /// The events, in revision order. Empty for a progress notification: the watch has seen
    /// everything up to `header.revision`.
    pub events: Vec<Event>,
}

/// Options for a new watch; `.await` it to register the watch (one round trip).
#[derive(Debug, Clone)]
#[must_use = "a WatchBuilder does nothing until awaited"]
pub struct WatchBuilder {
    client: Client,
    request: pb::WatchCreateRequest,
    buffer: usize,
}

impl WatchBuilder {
    /// Start at `revision` instead of "now" (events from that revision on are replayed).
    pub fn start_revision(mut self, revision: i64) -> Self {
        self.request.start_revision = revision;
        self
    }

    /// Include each key's previous value in events.
    pub fn prev_kv(mut self) -> Self {
        self.request.prev_kv = true;
        self
    }

    /// Leave out put events.
    pub fn no_put(mut self) -> Self {
        self.request
            .filters
            .push(pb::watch_create_request::FilterType::Noput as i32);
        self
    }

    /// Leave out delete events.
    pub fn no_delete(mut self) -> Self {
        self.request
            .filters
            .push(pb::watch_create_request::FilterType::Nodelete as i32);
        self
    }

    /// Ask etcd to send progress notifications (empty responses) when the watch is idle.
    pub fn progress_notify(mut self) -> Self {
        self.request.progress_notify = true;
        self
    }

    /// Let etcd split very large revisions into fragments; they are put back together here, so
    /// each response still holds whole revisions.
    pub fn fragment(mut self) -> Self {
        self.request.fragment = true;
        self
    }

    /// How many responses may wait unread before the watch is paused (default 32).
    pub fn buffer(mut self, responses: usize) -> Self {
        self.buffer = responses.max(1);
        self
    }
}

impl IntoFuture for WatchBuilder {
    type Output = Result<WatchStream>;
    type IntoFuture = BoxFuture<WatchStream>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let hub = self.client.watch_hub();
            let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
            let (events, receiver) = queue::channel(self.buffer);
            let (created, created_rx) = oneshot::channel();
            let shared = Arc::new(Shared::default());
            let operation = describe(&self.request);
            hub.send(Command::Create {
                id,
                request: self.request,
                events,
                created,
                shared: shared.clone(),
            });
            let after = self.client.transport().options.request_timeout;
            match tokio::time::timeout(after, created_rx).await {
                Ok(created) => created.map_err(|_| hub_gone())??,
                Err(_elapsed) => {
                    hub.send(Command::Unanswered(id));
                    return Err(Error::Timeout {
                        operation,
                        after,
                        endpoint: None,
                    });
                }
            }
            Ok(WatchStream {
                id,
                receiver,
                shared,
                commands: hub.commands.clone(),
                _client: self.client,
            })
        })
    }
}

impl Client {
    /// Starts building a watch of `range`. Await the builder to register it.
    pub fn watch(&self, range: impl Into<KeyRange>) -> WatchBuilder {
        let (key, range_end) = range.into().into_parts();
        WatchBuilder {
            client: self.clone(),
            request: pb::WatchCreateRequest {
                key,
                range_end,
                ..Default::default()
            },
            buffer: 32,
        }
    }

    /// Asks etcd for a progress notification on every watch of this client: each receives an
    /// empty [`WatchResponse`] whose revision it has caught up to.
    ///
    /// etcd's gRPC proxy (`etcd grpc-proxy`, 3.4 and 3.5) does not answer progress requests:
    /// behind it, nothing comes back (watches go on as before).
    pub fn request_watch_progress(&self) {
        self.watch_hub().send(Command::Progress);
    }
}

/// State a stream shares with the task.
#[derive(Default)]
struct Shared {
    /// Set by the task when it paused the watch because the buffer was full.
    paused: AtomicBool,
    /// The compact revision, if the watch ended because its start revision was compacted.
    compact_revision: AtomicI64,
}

/// A registered watch: a [`Stream`] of [`WatchResponse`]s. Dropping it cancels the watch.
pub struct WatchStream {
    id: u64,
    receiver: queue::Receiver<Result<WatchResponse>>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    _client: Client,
}

impl WatchStream {
    /// If the stream ended because its start revision was compacted: the compact revision, the
    /// oldest revision a new watch can start at.
    pub fn compact_revision(&self) -> Option<i64> {
        Some(self.shared.compact_revision.load(Ordering::Acquire)).filter(|&r| r > 0)
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchResponse>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.receiver.poll_recv(cx) {
            Poll::Pending => {
                // Drained: a watch paused for a full buffer can go on.
                if this.shared.paused.swap(false, Ordering::AcqRel) {
                    let _ = this.commands.send(Command::Resume(this.id));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Cancel(self.id));
    }
}

fn hub_gone() -> Error {
    Error::Stopped {
        what: "the client's watch task".to_owned(),
        reason: "the client was dropped".to_owned(),
    }
}

// ---- the task that owns the stream ----

enum Command {
    Create {
        id: u64,
        request: pb::WatchCreateRequest,
        events: queue::Sender<Result<WatchResponse>>,
        created: oneshot::Sender<Result<()>>,
        shared: Arc<Shared>,
    },
    Cancel(u64),
    /// The create of this watch was not confirmed within the request timeout; its caller got
    /// a timeout error.
    Unanswered(u64),
    Resume(u64),
    Progress,
}

/// The create the stream is waiting on etcd to answer.
struct InFlight {
    id: u64,
    sent: tokio::time::Instant,
}

/// The handle a client keeps to its watch task.
pub(crate) struct WatchHub {
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
}

impl WatchHub {
    /// Starts the task. It holds the transport weakly (streams and clients hold it strongly) and
    /// ends when every sender of commands is gone.
    pub(crate) fn start(transport: Weak<Transport>) -> WatchHub {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(Hub::new(transport, receiver).run());
        WatchHub {
            commands,
            next_id: AtomicU64::new(1),
        }
    }

    fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum State {
    /// Waiting to be (re)created on the stream.
    Waiting,
    /// A create is in flight.
    Creating,
    /// Created; events flow.
    Active(i64),
    /// Cancelled on the server because the consumer's buffer was full.
    Paused,
}

struct Watcher {
    request: pb::WatchCreateRequest,
    events: queue::Sender<Result<WatchResponse>>,
    created: Option<oneshot::Sender<Result<()>>>,
    shared: Arc<Shared>,
    /// The first revision not yet delivered; 0 until known.
    next_revision: i64,
    state: State,
    fragments: Vec<Event>,
    /// A create of this watch was refused for its token and retried with a fresh one; reset
    /// once a create succeeds.
    auth_retried: bool,
}

/// What a watch is, for errors: `Watch prefix /services/gateway/`.
fn describe(request: &pb::WatchCreateRequest) -> String {
    format!(
        "Watch {}",
        super::kv::describe(&request.key, &request.range_end)
    )
}

struct Open {
    endpoint: usize,
    outbound: mpsc::UnboundedSender<pb::WatchRequest>,
    inbound: tonic::Streaming<pb::WatchResponse>,
    /// The token generation the stream was opened with.
    token_generation: u64,
}

struct Hub {
    transport: Weak<Transport>,
    commands: mpsc::UnboundedReceiver<Command>,
    watchers: HashMap<u64, Watcher>,
    by_watch_id: HashMap<i64, u64>,
    /// Local ids whose creates wait to be sent on the open stream, in order.
    queue: VecDeque<u64>,
    /// The one create sent and not answered yet.
    in_flight: Option<InFlight>,
    stream: Option<Open>,
    backoff: Duration,
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Hub {
    fn new(transport: Weak<Transport>, commands: mpsc::UnboundedReceiver<Command>) -> Hub {
        Hub {
            transport,
            commands,
            watchers: HashMap::new(),
            by_watch_id: HashMap::new(),
            queue: VecDeque::new(),
            in_flight: None,
            stream: None,
            backoff: MIN_BACKOFF,
        }
    }

    async fn run(mut self) {
        loop {
            if self.stream.is_none() && self.watchers.values().any(|w| w.state != State::Paused) {
                if let Err(err) = self.open().await {
                    tracing::debug!(error = %err, "watch stream could not be opened; retrying");
                    // Unreachable etcd fails new watches at once; a member that timed out is
                    // left behind and the next one tried.
                    if !matches!(err, Error::Timeout { .. }) {
                        self.fail_unconfirmed(&err);
                    }
                    if self.watchers.is_empty() {
                        continue;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(self.backoff) => {}
                        command = self.commands.recv() => match command {
                            Some(command) => self.command(command),
                            None => return,
                        },
                    }
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            let message = async {
                match &mut self.stream {
                    Some(open) => open.inbound.message().await,
                    None => std::future::pending().await,
                }
            };
            let stuck = async {
                match (&self.in_flight, self.transport.upgrade()) {
                    (Some(create), Some(transport)) => {
                        let deadline = create.sent + transport.options.request_timeout;
                        drop(transport);
                        tokio::time::sleep_until(deadline).await;
                    }
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                // The member stopped answering creates (frozen, partitioned, overloaded): every
                // watch behind this one would wait forever.
                () = stuck => self.broken("a watch create went unanswered".to_owned()),
                message = message => match message {
                    Ok(Some(response)) => {
                        self.backoff = MIN_BACKOFF;
                        self.response(response).await;
                    }
                    Ok(None) => self.broken("the server closed the watch stream".to_owned()),
                    Err(status) => self.broken(status.message().to_owned()),
                },
            }
            if self.watchers.is_empty() && self.stream.is_some() {
                self.stream = None; // the last watch is gone: close the gRPC stream
            }
        }
    }

    /// While etcd cannot be reached, watches whose create has not been confirmed yet fail
    /// instead of waiting forever; established watches keep waiting to resume.
    fn fail_unconfirmed(&mut self, err: &Error) {
        let unconfirmed: Vec<u64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.created.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in &unconfirmed {
            if let Some(mut watcher) = self.watchers.remove(id) {
                if let Some(created) = watcher.created.take() {
                    let _ = created.send(Err(err.duplicate("watch")));
                }
            }
        }
    }

    async fn open(&mut self) -> Result<()> {
        let transport = self.transport.upgrade().ok_or_else(hub_gone)?;
        let (endpoint, conn) = transport.current_conn().await?;
        transport.authenticated().await?;

        // Every watch not paused is created again, oldest first.
        self.queue.clear();
        self.in_flight = None;
        self.by_watch_id.clear();
        let mut ids: Vec<u64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.state != State::Paused)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.watchers.get_mut(&id).expect("listed").state = State::Creating;
            self.queue.push_back(id);
        }

        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(outbound_rx));
        // Make a member that lost its leader cancel our watches, so we move to one that has one.
        request.metadata_mut().insert(
            "hasleader",
            tonic::metadata::AsciiMetadataValue::from_static("true"),
        );
        let token_generation = match &transport.credentials {
            Some(credentials) => credentials.attach(&mut request),
            None => 0,
        };
        // Send the first create before opening: etcd sends the stream's headers only with its
        // first message, and the call below waits for those headers.
        self.send_next_create(&outbound);
        let inbound = transport
            .open_stream(endpoint, "Watch", conn.watch().watch(request))
            .await?;
        self.stream = Some(Open {
            endpoint,
            outbound,
            inbound,
            token_generation,
        });
        Ok(())
    }

    /// The stream broke: drop it; the next turn of the loop reopens it elsewhere.
    fn broken(&mut self, why: String) {
        self.queue.clear();
        self.in_flight = None;
        if let Some(open) = self.stream.take() {
            tracing::debug!(error = %why, "watch stream broke; resuming on another endpoint");
            if let Some(transport) = self.transport.upgrade() {
                transport.report_broken(open.endpoint);
            }
        }
        for watcher in self.watchers.values_mut() {
            if watcher.state != State::Paused {
                watcher.state = State::Waiting;
                watcher.fragments.clear();
            }
        }
    }

    fn send(&mut self, request: pb::watch_request::RequestUnion) {
        if let Some(open) = &self.stream {
            let _ = open.outbound.send(pb::WatchRequest {
                request_union: Some(request),
            });
        }
    }

    /// Queues the create of watch `id` on the open stream (if none is open, the watch is
    /// created when one opens).
    fn create(&mut self, id: u64) {
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return;
        };
        watcher.state = State::Creating;
        if self.stream.is_some() {
            self.queue.push_back(id);
            self.pump();
        }
    }

    /// Sends the next queued create if none is in flight.
    fn pump(&mut self) {
        if self.in_flight.is_some() || self.queue.is_empty() {
            return;
        }
        let Some(open) = &self.stream else {
            return;
        };
        // etcd checks the create with the token the stream was opened with: after a renewal
        // that token may be expired, so move to a stream that carries the new one.
        let renewed = self
            .transport
            .upgrade()
            .and_then(|t| t.credentials.as_ref().map(|c| c.generation()))
            .is_some_and(|current| current != open.token_generation);
        if renewed {
            return self.broken("the auth token was renewed".to_owned());
        }
        let outbound = open.outbound.clone();
        self.send_next_create(&outbound);
    }

    /// Sends the first queued create that still has a watch waiting for it.
    fn send_next_create(&mut self, outbound: &mpsc::UnboundedSender<pb::WatchRequest>) {
        while let Some(id) = self.queue.pop_front() {
            let Some(watcher) = self
                .watchers
                .get(&id)
                .filter(|w| w.state == State::Creating)
            else {
                continue; // dropped or paused while queued
            };
            let mut request = watcher.request.clone();
            if watcher.next_revision > 0 {
                request.start_revision = watcher.next_revision;
            }
            self.in_flight = Some(InFlight {
                id,
                sent: tokio::time::Instant::now(),
            });
            let _ = outbound.send(pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(request)),
            });
            return;
        }
    }

    fn cancel_on_server(&mut self, watch_id: i64) {
        self.by_watch_id.remove(&watch_id);
        self.send(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest { watch_id },
        ));
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Create {
                id,
                request,
                events,
                created,
                shared,
            } => {
                let next_revision = request.start_revision;
                self.watchers.insert(
                    id,
                    Watcher {
                        request,
                        events,
                        created: Some(created),
                        shared,
                        next_revision,
                        state: State::Waiting,
                        fragments: Vec::new(),
                        auth_retried: false,
                    },
                );
                self.create(id);
            }
            Command::Cancel(id) => {
                if let Some(watcher) = self.watchers.remove(&id) {
                    if let State::Active(watch_id) = watcher.state {
                        self.cancel_on_server(watch_id);
                    }
                    // A create still in flight is matched (and cancelled) when its answer comes.
                }
            }
            Command::Unanswered(id) => {
                let unconfirmed = self.watchers.get(&id).is_some_and(|w| w.created.is_some());
                if unconfirmed {
                    // Its answer, if one ever comes, is matched and cancelled like a dropped
                    // watch's. (A stuck stream is noticed by the run loop's own timer.)
                    self.watchers.remove(&id);
                }
            }
            Command::Resume(id) => {
                if self
                    .watchers
                    .get(&id)
                    .is_some_and(|w| w.state == State::Paused)
                {
                    self.watchers.get_mut(&id).expect("present").state = State::Waiting;
                    self.create(id);
                }
            }
            Command::Progress => self.send(pb::watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        }
    }

    async fn response(&mut self, response: pb::WatchResponse) {
        let header: ResponseHeader = response.header.into();
        if response.created {
            let Some(create) = self.in_flight.take() else {
                tracing::debug!("etcd answered a watch create that was not sent; ignored");
                return;
            };
            self.created(create.id, header, response).await;
            return self.pump();
        }
        if response.canceled {
            if let Some(id) = self.by_watch_id.remove(&response.watch_id) {
                if ServerErrorKind::from_message(&response.cancel_reason).needs_new_token() {
                    // An established watch cancelled for its token: renew and resume.
                    return self.renew_token().await;
                }
                self.ended(id, &response).await;
            }
            return;
        }
        if response.watch_id == -1 && response.events.is_empty() {
            // A progress answer for the whole stream.
            let ids: Vec<u64> = self.by_watch_id.values().copied().collect();
            for id in ids {
                self.deliver(id, header, Vec::new());
            }
            return;
        }
        let Some(&id) = self.by_watch_id.get(&response.watch_id) else {
            return; // a watch we cancelled or paused; its late events are not wanted
        };
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return;
        };
        watcher
            .fragments
            .extend(response.events.into_iter().map(Event::from));
        if response.fragment {
            return; // more of the same revision follows
        }
        let events = std::mem::take(&mut watcher.fragments);
        self.deliver(id, header, events);
    }

    async fn created(&mut self, id: u64, header: ResponseHeader, response: pb::WatchResponse) {
        let Some(watcher) = self.watchers.get_mut(&id) else {
            // Dropped while its create was in flight.
            if !response.canceled {
                self.cancel_on_server(response.watch_id);
            }
            return;
        };
        if response.canceled {
            let kind = ServerErrorKind::from_message(&response.cancel_reason);
            let auth = kind.needs_new_token() || kind == ServerErrorKind::PermissionDenied;
            let transport = self.transport.upgrade();
            let with_credentials = transport.is_some_and(|t| t.credentials.is_some());
            if auth && with_credentials && !watcher.auth_retried {
                // Maybe only the stream's token expired (etcd 3.5 calls that "permission
                // denied"): once, renew it and create the watch again on a fresh stream.
                watcher.auth_retried = true;
                return self.renew_token().await;
            }
            return self.ended(id, &response).await;
        }
        watcher.auth_retried = false;
        watcher.state = State::Active(response.watch_id);
        if watcher.next_revision == 0 {
            // "From now": pin "now" so a resume elsewhere starts exactly here.
            watcher.next_revision = header.revision + 1;
        }
        if let Some(created) = watcher.created.take() {
            let _ = created.send(Ok(()));
        }
        self.by_watch_id.insert(response.watch_id, id);
    }

    /// etcd ended watch `id`: compaction, or a refusal that is final.
    async fn ended(&mut self, id: u64, response: &pb::WatchResponse) {
        let reason = &response.cancel_reason;
        let kind = ServerErrorKind::from_message(reason);
        if kind == ServerErrorKind::NoLeader {
            return self.broken(reason.clone());
        }
        // A watch we paused never gets here: it left `by_watch_id` before its cancel was sent.
        let Some(mut watcher) = self.watchers.remove(&id) else {
            return;
        };
        let error = if response.compact_revision > 0 {
            watcher
                .shared
                .compact_revision
                .store(response.compact_revision, Ordering::Release);
            Error::Server {
                kind: ServerErrorKind::Compacted,
                message: format!(
                    "etcdserver: mvcc: required revision has been compacted (watch from {}, compacted at {})",
                    watcher.next_revision, response.compact_revision
                ),
                request: describe(&watcher.request),
            }
        } else {
            Error::Server {
                kind,
                message: if reason.is_empty() {
                    "etcdserver: watch canceled".to_owned()
                } else {
                    reason.clone()
                },
                request: describe(&watcher.request),
            }
        };
        match watcher.created.take() {
            Some(created) => {
                let _ = created.send(Err(error));
            }
            None => {
                let _ = watcher.events.try_send(Err(error));
            }
        }
    }

    /// The token the stream was opened with is no longer valid: renew it and reopen.
    async fn renew_token(&mut self) {
        let Some(transport) = self.transport.upgrade() else {
            return;
        };
        let Some(open) = self.stream.take() else {
            return;
        };
        if let Some(credentials) = &transport.credentials {
            if let Err(err) = credentials.refresh(&transport, open.token_generation).await {
                tracing::warn!(error = %err, "could not renew the auth token for watches");
            }
        }
        self.broken("auth token renewed".to_owned());
    }

    fn deliver(&mut self, id: u64, header: ResponseHeader, events: Vec<Event>) {
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return;
        };
        let first = events.first().map(|e| e.kv.mod_revision);
        let next = match events.last() {
            Some(last) => last.kv.mod_revision + 1,
            None => header.revision + 1,
        };
        match watcher
            .events
            .try_send(Ok(WatchResponse { header, events }))
        {
            Ok(()) => watcher.next_revision = watcher.next_revision.max(next),
            // A progress notification for a full buffer carries nothing to lose.
            Err(queue::TrySendError::Full(_)) if first.is_none() => {}
            Err(queue::TrySendError::Full(_)) => {
                // Pause: cancel on the server and come back for this revision once drained.
                if let Some(first) = first {
                    watcher.next_revision = first;
                }
                let state = std::mem::replace(&mut watcher.state, State::Paused);
                watcher.shared.paused.store(true, Ordering::Release);
                if let State::Active(watch_id) = state {
                    self.cancel_on_server(watch_id);
                }
            }
            Err(queue::TrySendError::Closed(_)) => {
                let state = watcher.state;
                self.watchers.remove(&id);
                if let State::Active(watch_id) = state {
                    self.cancel_on_server(watch_id);
                }
            }
        }
    }
}
