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
//! client is a watch id on it, as in etcd's Go client. Creates are sent as they come and paired
//! with etcd's `created` answers in order (etcd answers the creates of a stream in the order it
//! received them).
//!
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
    /// When the stream last delivered anything.
    heard: tokio::time::Instant,
}

struct Hub {
    transport: Weak<Transport>,
    commands: mpsc::UnboundedReceiver<Command>,
    watchers: HashMap<u64, Watcher>,
    by_watch_id: HashMap<i64, u64>,
    /// Local ids whose creates are in flight, in the order they were sent.
    creating: VecDeque<u64>,
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
            creating: VecDeque::new(),
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
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                message = message => match message {
                    Ok(Some(response)) => {
                        self.backoff = MIN_BACKOFF;
                        if let Some(open) = &mut self.stream {
                            open.heard = tokio::time::Instant::now();
                        }
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
        let token_generation = transport.authenticated().await?;

        // Queue the creates before opening: etcd sends the stream's headers only with its first
        // message, and the call below waits for those headers.
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        self.creating.clear();
        self.by_watch_id.clear();
        let ids: Vec<u64> = self.watchers.keys().copied().collect();
        for id in ids {
            if self.watchers[&id].state != State::Paused {
                self.create_on(&outbound, id);
            }
        }

        let mut request = tonic::Request::new(UnboundedReceiverStream::new(outbound_rx));
        // Make a member that lost its leader cancel our watches, so we move to one that has one.
        request.metadata_mut().insert(
            "hasleader",
            tonic::metadata::AsciiMetadataValue::from_static("true"),
        );
        if let Some(credentials) = &transport.credentials {
            credentials.attach(&mut request);
        }
        let inbound = transport
            .open_stream(endpoint, "Watch", conn.watch().watch(request))
            .await?;
        self.stream = Some(Open {
            endpoint,
            outbound,
            inbound,
            token_generation,
            heard: tokio::time::Instant::now(),
        });
        Ok(())
    }

    /// The stream broke: drop it; the next turn of the loop reopens it elsewhere.
    fn broken(&mut self, why: String) {
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

    /// Sends the create of watch `id` on the open stream (if none is open, the watch is created
    /// when one opens).
    fn create(&mut self, id: u64) {
        if let Some(outbound) = self.stream.as_ref().map(|open| open.outbound.clone()) {
            self.create_on(&outbound, id);
        }
    }

    fn create_on(&mut self, outbound: &mpsc::UnboundedSender<pb::WatchRequest>, id: u64) {
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return;
        };
        let mut request = watcher.request.clone();
        if watcher.next_revision > 0 {
            request.start_revision = watcher.next_revision;
        }
        watcher.state = State::Creating;
        self.creating.push_back(id);
        let _ = outbound.send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(request)),
        });
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
                    // watch's.
                    self.watchers.remove(&id);
                    // A stream that said nothing for the whole timeout is stuck on a member
                    // that stopped answering (frozen, partitioned): move to another.
                    let timeout = self.transport.upgrade().map(|t| t.options.request_timeout);
                    let silent = match (&self.stream, timeout) {
                        (Some(open), Some(timeout)) => open.heard.elapsed() >= timeout,
                        _ => false,
                    };
                    if silent {
                        self.broken("a watch create went unanswered".to_owned());
                    }
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
            let Some(id) = self.creating.pop_front() else {
                return;
            };
            return self.created(id, header, response).await;
        }
        if response.canceled {
            if let Some(id) = self.by_watch_id.remove(&response.watch_id) {
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
            return self.ended(id, &response).await;
        }
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

    /// etcd ended watch `id`: compaction, a refusal, or an expired token.
    async fn ended(&mut self, id: u64, response: &pb::WatchResponse) {
        let reason = &response.cancel_reason;
        let kind = ServerErrorKind::from_message(reason);
        if kind.needs_new_token() {
            return self.renew_token().await;
        }
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
