//! etcd's Watch service: many watches over one gRPC stream per client.
//!
//! This file holds the handles ([`WatchBuilder`], [`WatchStream`]); [`hub`] the task that owns
//! the stream, with `creates` (creates in flight) and `queue` (each watch's bounded buffer);
//! `event` the types a watch delivers.

use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};

mod creates;
mod event;
pub(crate) mod hub;
mod ids;
mod queue;
mod sink;

use super::BoxFuture;
use super::Client;
use crate::error::{Error, Result};
use crate::key_range::KeyRange;
use event::Shared;
pub use event::{Event, EventKind, WatchResponse};
use hub::spec::{self, Spec};
use hub::{Command, Consumer};
pub(crate) use sink::{Driving, Sink};

/// Options for a new watch; `.await` it to register the watch (one round trip).
#[derive(Debug, Clone)]
#[must_use = "a WatchBuilder does nothing until awaited"]
pub struct WatchBuilder {
    client: Client,
    /// The range, in the client's namespace, and the options.
    spec: Spec,
    /// 0: from now.
    start_revision: i64,
    buffer: usize,
    catch_up_limit: Option<i64>,
}

impl WatchBuilder {
    /// When the stream breaks and the watch would resume more than `revisions` behind the
    /// head of the member the client reconnects to, it ends with [`Error::FellBehind`]
    /// instead of asking etcd to replay every revision since (etcd scans its history for all
    /// keys under its store lock to do so). Load again and watch from the head. Typed watches
    /// and live configs do that themselves ([`Store::catch_up_limit`](crate::Store::catch_up_limit)).
    pub fn catch_up_limit(mut self, revisions: i64) -> Self {
        self.catch_up_limit = Some(revisions);
        self
    }

    /// Start at `revision` instead of "now" (events from that revision on are replayed).
    pub fn start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }

    /// Include each key's previous value in events.
    pub fn prev_kv(mut self) -> Self {
        self.spec.set(spec::PREV_KV);
        self
    }

    /// Leave out put events.
    pub fn no_put(mut self) -> Self {
        self.spec.set(spec::NO_PUT);
        self
    }

    /// Leave out delete events.
    pub fn no_delete(mut self) -> Self {
        self.spec.set(spec::NO_DELETE);
        self
    }

    /// Ask etcd to send progress notifications (empty responses) when the watch is idle.
    pub fn progress_notify(mut self) -> Self {
        self.spec.set(spec::PROGRESS_NOTIFY);
        self
    }

    /// Let etcd split very large revisions into fragments; they are put back together here, so
    /// each response still holds whole revisions.
    pub fn fragment(mut self) -> Self {
        self.spec.set(spec::FRAGMENT);
        self
    }

    /// For a follower that wants to hear it is current: where etcd does not answer progress
    /// requests (its gRPC proxy), the watch task confirms this watch by reading its keys.
    pub(crate) fn confirmed(mut self) -> Self {
        self.spec.set(spec::CONFIRMED);
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

    fn into_future(mut self) -> Self::IntoFuture {
        Box::pin(async move {
            let (events, receiver) = queue::channel(self.buffer);
            let shared = Arc::new(Shared::default());
            let namespace = self.client.namespace.clone();
            let consumer = Consumer::Queue(events, shared.clone());
            let id = self
                .client
                .watch_hub()
                .next_id
                .fetch_add(1, Ordering::Relaxed);
            self.register(id, consumer).await?;
            Ok(WatchStream {
                id,
                namespace,
                receiver,
                shared,
                commands: self.client.watch_hub().commands.clone(),
                handed_over: false,
                _client: self.client,
            })
        })
    }
}

impl WatchBuilder {
    /// Has the watch task create this watch, under local id `id`, with `events` as its
    /// consumer; returns once etcd confirmed it.
    async fn register(&mut self, id: u64, events: Consumer) -> Result<()> {
        let hub = self.client.watch_hub();
        let (created, created_rx) = oneshot::channel();
        hub.send(Command::Create {
            id,
            spec: std::mem::take(&mut self.spec),
            start_revision: self.start_revision,
            events,
            created,
            catch_up_limit: self.catch_up_limit,
        });
        // The watch task fails the create after the request timeout (see `hub::alarm`).
        created_rx.await.map_err(|_| hub_gone())??;
        Ok(())
    }
}

impl Client {
    /// Starts building a watch of `range`. Await the builder to register it.
    pub fn watch(&self, range: impl Into<KeyRange>) -> WatchBuilder {
        let range = range.into();
        let spec = Spec::entered(&self.namespace, range.start(), range.range_end());
        self.watch_of(spec)
    }

    /// A watch of every key under `first + second` (a config's prefix and `/`), its range
    /// built in one allocation.
    pub(crate) fn watch_prefix(&self, parts: [&[u8]; 2]) -> WatchBuilder {
        self.watch_of(Spec::prefix(&self.namespace, parts))
    }

    fn watch_of(&self, spec: Spec) -> WatchBuilder {
        WatchBuilder {
            client: self.clone(),
            spec,
            start_revision: 0,
            buffer: 32,
            catch_up_limit: None,
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

/// A registered watch: a [`Stream`] of [`WatchResponse`]s. Dropping it cancels the watch.
///
/// ```no_run
/// # async fn demo(client: etcd_config::Client) -> etcd_config::Result<()> {
/// use futures_util::StreamExt;
/// use etcd_config::KeyRange;
///
/// let mut watch = client.watch(KeyRange::prefix("/services/")).prev_kv().await?;
/// while let Some(response) = watch.next().await {
///     for event in response?.events {
///         println!("{:?} {}", event.kind, String::from_utf8_lossy(&event.kv.key));
///     }
/// }
/// # Ok(()) }
/// ```
///
/// # How the watches of a client share a stream
///
/// The first watch starts a task that owns one bidirectional Watch stream; every watch of the
/// client is a watch id on it, as in etcd's Go client.
///
/// - **Creating.** A create answer names only a watch id, and nothing in etcd's API promises
///   that creates are answered in the order they were sent: etcd's gRPC proxy answers a create
///   that joins a range it already watches at once, ahead of earlier creates still waiting on
///   etcd. So a watch's identity never depends on answer order: each create asks for a watch id
///   of ours, which etcd (3.4 and later) gives the watch; until the stream has shown that it
///   honours our ids, and always behind a proxy that hands out its own, one create at a time is
///   in flight, as in Go's client. A create that stays unanswered for the request timeout means
///   the stream is stuck: it is reopened elsewhere.
/// - **Auth.** etcd checks a watch's permission with the token the stream was opened with, at
///   each create. Before a create goes out on a stream whose token has since been renewed, the
///   stream is reopened with the new one. A create refused for its token (etcd 3.4: "invalid auth
///   token"; etcd 3.5 says "permission denied" for an expired token too) is retried with a fresh
///   token on a fresh stream. If it is refused again (a short TTL on a busy server can expire
///   the new token too), a count-only read of its range decides: only if that is refused as
///   well is the refusal final.
/// - **Resuming.** When the stream breaks (member stopped, connection reset, leader lost) the
///   task reopens it on the next endpoint, with a fresh token if etcd asks for one, and creates
///   every watch again from its next revision: the last event's revision + 1 (before any
///   event, the revision the watch started at). Nothing is skipped and nothing delivered twice.
///   A progress notification does not move a watch on: before etcd 3.4.24 and 3.5.8 one can
///   overtake the events it covers (etcd-io/etcd#15220). Attempts back off from 50 ms to 2 s.
/// - **Frozen members.** Opening the stream waits at most the dial timeout; a member that does
///   not answer is left for the next. Awaiting a watch waits at most the request timeout for
///   etcd to confirm it (up to one dial timeout more while the stream is being opened on a
///   member that does not answer), then fails with [`Error::Timeout`]; if the stream heard
///   nothing at all in that time, it is taken to be stuck on a member that stopped answering,
///   and moves (with every other watch) to the next endpoint. One timer on the watch task keeps
///   these deadlines, however many watches are awaited.
/// - **Slow consumers.** Each watch has a bounded buffer. When it is full, the task cancels that
///   one watch on the server instead of waiting, and creates it again from the first revision
///   not delivered once the consumer has drained its buffer. Other watches never wait for a slow
///   one, and memory stays bounded.
/// - **Ending.** A watch whose start revision was compacted ends with
///   [`Error::Server`] of kind `Compacted`, and
///   [`WatchStream::compact_revision`] tells which revision to start from; a watch etcd refuses
///   (e.g. permission denied) ends with etcd's error. Dropping a [`WatchStream`] cancels its
///   watch on the server; when no watch is left, the gRPC stream is closed.
pub struct WatchStream {
    id: u64,
    /// The client's namespace, taken off every event's keys.
    namespace: Arc<[u8]>,
    receiver: queue::Receiver<Result<WatchResponse>>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    /// Handed to a sink ([`WatchStream::drive_for`]): dropping the stream cancels nothing.
    handed_over: bool,
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
            Poll::Ready(None) => {
                let ended_with = crate::sync::lock(&this.shared.ended_with).take();
                Poll::Ready(ended_with.map(|error| Err(*error)))
            }
            Poll::Ready(Some(Ok(mut response))) if !this.namespace.is_empty() => {
                crate::client::namespace::events_out(&this.namespace, &mut response.events);
                Poll::Ready(Some(Ok(response)))
            }
            ready => ready,
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        if !self.handed_over {
            let _ = self.commands.send(Command::Cancel(self.id));
        }
    }
}

pub(super) fn hub_gone() -> Error {
    Error::Stopped {
        what: "the client's watch task".to_owned(),
        reason: "the client was dropped".to_owned(),
    }
}
