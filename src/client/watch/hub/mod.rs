//! The task behind a client's watches: it owns the one Watch stream, creates every watch on it
//! (one create in flight at a time), routes responses to their watches, and reopens the stream
//! elsewhere when it breaks. The behaviour is described in [`super::watch`]; the public types
//! live there.

mod alarm;
mod answers;
mod catch_up;
mod drive;
mod probe;
pub(super) mod spec;
mod stand_in;
mod watcher;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::creates::Creates;
use super::event::{Event, Shared, WatchResponse};
use super::ids::IdMap;
use super::queue;
use crate::client::stream::{fails_waiting, Reopen, StreamHealth, Supervised};
use crate::client::transport::{Encoded, Transport};
use crate::error::Result;
use crate::proto::etcdserverpb as pb;
use alarm::Confirmations;
use probe::Probe;
pub(super) use spec::Spec;
use stand_in::StandIn;
pub(super) use watcher::Consumer;
use watcher::{State, Watcher};

pub(super) enum Command {
    Create {
        id: u64,
        spec: Spec,
        /// 0: from now.
        start_revision: i64,
        /// A stream's queue, or a sink that takes the watch's answers from the create on.
        events: Consumer,
        created: oneshot::Sender<Result<()>>,
        /// See [`WatchBuilder::catch_up_limit`](super::WatchBuilder::catch_up_limit).
        catch_up_limit: Option<i64>,
    },
    /// Hand a created watch to a sink ([`WatchStream::drive_for`](super::WatchStream::drive_for)),
    /// with what its stream had not read yet.
    Drive {
        id: u64,
        sink: Box<dyn super::Sink>,
        receiver: queue::Receiver<Result<WatchResponse>>,
        shared: Arc<Shared>,
    },
    Cancel(u64),
    Resume(u64),
    Progress,
}

/// The handle a client keeps to its watch task.
pub(crate) struct WatchHub {
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) next_id: AtomicU64,
    /// Whether the Watch stream is up (for live configs' status).
    pub(crate) health: StreamHealth,
    /// How many followers want their watches confirmed current: while any do, the task asks
    /// etcd for progress every [`PROGRESS_EVERY`].
    pub(crate) confirming: Arc<AtomicUsize>,
}

/// How often the watch task asks etcd to confirm that its watches are current, while a live
/// config wants to know (one WatchProgressRequest per stream, answered for every watch).
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl WatchHub {
    /// Starts the task. It holds the transport weakly (streams and clients hold it strongly) and
    /// ends when every sender of commands is gone.
    pub(crate) fn start(transport: Weak<Transport>) -> WatchHub {
        let (commands, receiver) = mpsc::unbounded_channel();
        let confirming = Arc::new(AtomicUsize::new(0));
        let hub = Hub::new(transport, receiver, confirming.clone());
        let health = hub.stream.health();
        tokio::spawn(hub.run());
        WatchHub {
            commands,
            next_id: AtomicU64::new(1),
            health,
            confirming,
        }
    }

    pub(super) fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

struct Hub {
    commands: mpsc::UnboundedReceiver<Command>,
    /// Boxed: the map's spare buckets then cost a pointer each, not a whole watch (with
    /// thousands of watches, half the buckets of a map are spare).
    watchers: IdMap<u64, Box<Watcher>>,
    by_watch_id: IdMap<i64, u64>,
    /// The events of revisions etcd sent in fragments, by local id, until the last fragment.
    fragments: IdMap<u64, Vec<Event>>,
    /// Local ids whose creates wait to be sent on the open stream, in order.
    queue: VecDeque<u64>,
    /// The creates sent on the open stream and not answered yet.
    creates: Creates,
    stream: Supervised<Encoded, pb::WatchResponse>,
    confirming: Arc<AtomicUsize>,
    /// The liveness probe: see [`Probe`].
    probe: Probe,
    /// Watches awaited and not yet confirmed, with their deadlines.
    confirmations: Confirmations,
    /// Progress from reading the keys, where no one answers progress requests.
    stand_in: StandIn,
    /// The client's request timeout (its options do not change).
    request_timeout: Option<Duration>,
}

impl Hub {
    fn new(
        transport: Weak<Transport>,
        commands: mpsc::UnboundedReceiver<Command>,
        confirming: Arc<AtomicUsize>,
    ) -> Hub {
        let request_timeout = transport.upgrade().map(|t| t.options.request_timeout);
        Hub {
            commands,
            watchers: IdMap::default(),
            by_watch_id: IdMap::default(),
            fragments: IdMap::default(),
            queue: VecDeque::new(),
            creates: Creates::new(),
            stream: Supervised::new(transport, "Watch"),
            confirming,
            probe: Probe::default(),
            confirmations: Confirmations::default(),
            stand_in: StandIn::default(),
            request_timeout,
        }
    }

    async fn run(mut self) {
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Every deadline of the task on one timer (see `alarm`).
        let mut alarm = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
        loop {
            if !self.stream.is_open() && self.watchers.values().any(|w| w.state != State::Paused) {
                if let Err(err) = self.open().await {
                    tracing::debug!(error = %err, "watch stream could not be opened; retrying");
                    if fails_waiting(&err) {
                        self.fail_unconfirmed(&err);
                    }
                    self.expire_unconfirmed();
                    if self.watchers.is_empty() {
                        continue;
                    }
                    // Waiting watches time out on time while the task backs off.
                    let confirm_by = self.confirm_by();
                    let reopen = tokio::select! {
                        reopen = self.stream.wait_to_reopen(&mut self.commands) => reopen,
                        () = alarm::at(confirm_by) => Reopen::Now,
                    };
                    self.expire_unconfirmed();
                    match reopen {
                        Reopen::Now => {}
                        Reopen::Command(command) => self.command(command),
                        Reopen::Closed => return,
                    }
                    continue;
                }
            }
            let due = self.next_deadline();
            if let Some(due) = due.filter(|&due| due != alarm.deadline()) {
                alarm.as_mut().reset(due);
            }
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => {
                        self.command(command);
                        // Whatever else is already queued, in the same turn.
                        for _ in 0..64 {
                            let Ok(command) = self.commands.try_recv() else { break };
                            self.command(command);
                        }
                    }
                    None => return,
                },
                () = &mut alarm, if due.is_some() => self.ring(),
                // Live configs want etcd to confirm, now and then, that they are current: one
                // request answers for every watch on the stream.
                // (The count is read at each tick: a precondition would be read only when the
                // wait starts, and a quiet stream never wakes the loop to read it again.)
                _ = progress.tick() => self.progress_due(),
                readings = stand_in::round_ended(&mut self.stand_in.round) => {
                    self.stood_in(readings);
                }
                message = self.stream.message() => {
                    self.received(message).await;
                    // Whatever else has already arrived, in the same turn.
                    for _ in 0..64 {
                        let Some(message) = self.stream.message().now_or_never() else { break };
                        self.received(message).await;
                    }
                }
            }
            if self.watchers.is_empty() && self.stream.is_open() {
                self.stream.close(); // the last watch is gone: close the gRPC stream
            }
        }
    }

    async fn open(&mut self) -> Result<()> {
        self.probe = Probe::default();
        self.end_far_behind().await?;
        // Every watch not paused is created again, oldest first.
        self.queue.clear();
        self.creates.reset();
        self.by_watch_id.clear();
        let mut ids: Vec<u64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.state != State::Paused)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(watcher) = self.watchers.get_mut(&id) {
                watcher.state = State::Creating;
            }
            self.queue.push_back(id);
        }
        // The first creates go out with the stream (see `Supervised::open`).
        let (watchers, queue, creates) = (&self.watchers, &mut self.queue, &mut self.creates);
        let first = |outbound: &mpsc::UnboundedSender<Encoded>| {
            send_creates(watchers, queue, creates, |request| {
                let _ = outbound.send(request);
            });
        };
        self.stream
            .open(first, |conn, request| async move {
                conn.streaming("/etcdserverpb.Watch/Watch", request).await
            })
            .await
    }

    /// The stream broke: drop it and move on to another endpoint; the next turn of the loop
    /// reopens it there.
    fn broken(&mut self, why: &str) {
        self.stream.broken(why);
        self.restart();
    }

    /// The stream is gone: every watch not paused waits to be created again.
    fn restart(&mut self) {
        self.probe = Probe::default();
        self.queue.clear();
        self.creates.reset();
        self.fragments.clear();
        for watcher in self.watchers.values_mut() {
            if watcher.state != State::Paused {
                watcher.state = State::Waiting;
            }
        }
    }

    fn send(&mut self, request: pb::watch_request::RequestUnion) {
        self.stream.send(Encoded::of(&pb::WatchRequest {
            request_union: Some(request),
        }));
    }

    /// Queues the create of watch `id` on the open stream (if none is open, the watch is
    /// created when one opens).
    fn create(&mut self, id: u64) {
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return;
        };
        watcher.state = State::Creating;
        if self.stream.is_open() {
            self.queue.push_back(id);
            self.pump();
        }
    }

    /// Sends queued creates, as many as may be in flight.
    fn pump(&mut self) {
        if !self.creates.can_send() || self.queue.is_empty() || !self.stream.is_open() {
            return;
        }
        // etcd checks the create with the token the stream was opened with: after a renewal
        // that token may be expired, so move to a stream that carries the new one (same
        // endpoint: nothing is wrong with it).
        if self.stream.token_renewed() {
            self.stream.close();
            return self.restart();
        }
        let stream = &self.stream;
        send_creates(
            &self.watchers,
            &mut self.queue,
            &mut self.creates,
            |request| {
                stream.send(request);
            },
        );
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
                spec,
                start_revision,
                events,
                created,
                catch_up_limit,
            } => {
                self.watchers.insert(
                    id,
                    Box::new(Watcher {
                        spec,
                        events,
                        created: Some(created),
                        next_revision: start_revision,
                        state: State::Waiting,
                        auth_retried: false,
                        catch_up_limit: catch_up_limit.unwrap_or(i64::MAX),
                    }),
                );
                let deadline = self.request_timeout().map(|t| Instant::now() + t);
                self.confirmations.registered(id, deadline);
                self.create(id);
            }
            Command::Drive {
                id,
                sink,
                receiver,
                shared,
            } => self.drive(id, Consumer::Sink(sink), receiver, &shared),
            Command::Cancel(id) => {
                // A revision it was receiving in fragments is not wanted any more.
                self.fragments.remove(&id);
                if let Some(watcher) = self.watchers.remove(&id) {
                    if let State::Active(watch_id) = watcher.state {
                        self.cancel_on_server(watch_id);
                    }
                    // A create still in flight is matched (and cancelled) when its answer comes.
                }
            }
            Command::Resume(id) => {
                if let Some(watcher) = self.watchers.get_mut(&id) {
                    if watcher.state == State::Paused {
                        watcher.state = State::Waiting;
                        self.create(id);
                    }
                }
            }
            Command::Progress => self.send(pb::watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        }
    }
}

/// Sends queued creates that still have a watch waiting for them, while more may be in flight.
fn send_creates(
    watchers: &IdMap<u64, Box<Watcher>>,
    queue: &mut VecDeque<u64>,
    creates: &mut Creates,
    send: impl Fn(Encoded),
) {
    while creates.can_send() {
        let Some(id) = queue.pop_front() else {
            return;
        };
        let Some(watcher) = watchers.get(&id).filter(|w| w.state == State::Creating) else {
            continue; // dropped or paused while queued
        };
        let watch_id = creates.sent(id);
        send(watcher.spec.create_message(watcher.next_revision, watch_id));
    }
}
