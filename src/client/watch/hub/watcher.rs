//! One watch as the hub keeps it: its request, where its events go, and how far it got.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::super::event::{Event, Shared, WatchResponse};
use super::super::queue;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb as pb;

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

pub(super) struct Watcher {
    pub(super) request: pb::WatchCreateRequest,
    pub(super) events: queue::Sender<Result<WatchResponse>>,
    pub(super) created: Option<oneshot::Sender<Result<()>>>,
    pub(super) shared: Arc<Shared>,
    /// The first revision not yet delivered; 0 until known.
    pub(super) next_revision: i64,
    pub(super) state: State,
    pub(super) fragments: Vec<Event>,
    /// A create of this watch was refused for its token and retried with a fresh one; reset
    /// once a create succeeds.
    pub(super) auth_retried: bool,
    /// Resuming more than this many revisions behind the head ends the watch instead.
    pub(super) catch_up_limit: Option<i64>,
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
                if let Err(queue::TrySendError::Full(Err(error))) = self.events.try_send(Err(error))
                {
                    // Handed out once the consumer has read what is buffered.
                    *crate::sync::lock(&self.shared.ended_with) = Some(error);
                }
            }
        }
    }
}

/// What a watch is, for errors: `Watch prefix /services/gateway/`.
pub(in crate::client::watch) fn describe(request: &pb::WatchCreateRequest) -> String {
    format!(
        "Watch {}",
        crate::key_range::describe(&request.key, &request.range_end)
    )
}
