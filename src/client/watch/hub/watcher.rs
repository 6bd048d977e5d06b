//! One watch as the hub keeps it: its request, where its events go, and how far it got.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::super::event::{Shared, WatchResponse};
use super::super::{queue, Sink};
use super::spec::Spec;
use crate::error::{Error, Result};

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub(super) enum State {
    /// Waiting to be (re)created on the stream.
    Waiting,
    /// A create is in flight.
    Creating,
    /// Created; events flow.
    Active(i64),
    /// Cancelled on the server because the consumer's buffer was full.
    Paused,
}

/// Kept small (boxed, about a hundred bytes): a client may hold thousands.
pub(super) struct Watcher {
    pub(super) spec: Spec,
    pub(super) events: Consumer,
    pub(super) created: Option<oneshot::Sender<Result<()>>>,
    /// The first revision not yet delivered; 0 until known.
    pub(super) next_revision: i64,
    pub(super) state: State,
    /// A create of this watch was refused for its token and retried with a fresh one; reset
    /// once a create succeeds.
    pub(super) auth_retried: bool,
    /// Resuming more than this many revisions behind the head ends the watch instead
    /// ([`i64::MAX`]: no limit; an `Option` would cost the watch eight more bytes).
    pub(super) catch_up_limit: i64,
}

impl Watcher {
    /// Ends the watch with `error`: its caller gets it if the create is still unconfirmed,
    /// else its consumer, after what is buffered.
    pub(super) fn end(mut self, error: Error) {
        match self.created.take() {
            Some(created) => {
                let _ = created.send(Err(error));
            }
            None => {
                if let Handed::Full(Err(error)) = self.events.hand(Err(error)) {
                    if let Some(shared) = self.events.shared() {
                        // Handed out once the consumer has read what is buffered.
                        *crate::sync::lock(&shared.ended_with) = Some(Box::new(error));
                    }
                }
            }
        }
    }
}

/// Where a watch's responses go.
pub(in crate::client::watch) enum Consumer {
    /// A [`WatchStream`](super::super::WatchStream) reads them from a queue, and what the
    /// queue cannot carry (paused, compacted, the last error) from the state they share.
    Queue(queue::Sender<Result<WatchResponse>>, Arc<Shared>),
    /// This task hands them to a sink itself ([`super::super::sink`]), without the sink's
    /// namespace, as a stream would.
    Sink(Box<dyn Sink>),
}

/// What became of a response handed on.
pub(super) enum Handed {
    Taken,
    /// The queue is full: the response comes back.
    Full(Result<WatchResponse>),
    /// The consumer is gone.
    Gone,
}

impl Consumer {
    /// The state a stream shares with this task; a sink is handed everything itself.
    pub(super) fn shared(&self) -> Option<&Shared> {
        match self {
            Consumer::Queue(_, shared) => Some(shared),
            Consumer::Sink(_) => None,
        }
    }

    pub(super) fn hand(&mut self, item: Result<WatchResponse>) -> Handed {
        match self {
            Consumer::Queue(queue, _) => match queue.try_send(item) {
                Ok(()) => Handed::Taken,
                Err(queue::TrySendError::Full(item)) => Handed::Full(item),
                Err(queue::TrySendError::Closed(_)) => Handed::Gone,
            },
            Consumer::Sink(sink) => {
                let item = item.map(|mut response| {
                    crate::client::namespace::events_out(sink.namespace(), &mut response.events);
                    response
                });
                if sink.deliver(item) {
                    Handed::Taken
                } else {
                    Handed::Gone
                }
            }
        }
    }
}
