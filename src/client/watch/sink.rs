//! Watches the watch task hands to a [`Sink`] itself, instead of queueing their responses for
//! a [`WatchStream`] that a task of its own polls. For a process with thousands of live
//! configs, that task per watch was most of what one cost (over a kilobyte each); a sink is
//! the consumer's own state and nothing more.
//!
//! A sink runs on the watch task: it must not block or wait, only update state and hand on.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::hub::{Command, Consumer};
use super::{queue, WatchBuilder, WatchResponse, WatchStream};
use crate::client::Client;
use crate::error::Result;

/// A consumer the watch task calls with each response of a watch, in order, and with the
/// error that ends it.
pub(crate) trait Sink: Send + Sync {
    /// Takes one response, or the error that ends the watch (nothing follows it). Returns
    /// false once the consumer is gone: the watch is then cancelled.
    fn deliver(&mut self, response: Result<WatchResponse>) -> bool;

    /// The namespace the watch task takes off every event's keys before handing them on.
    fn namespace(&self) -> &[u8] {
        &[]
    }
}

/// A watch handed to a sink. Dropping it cancels the watch (and drops the sink).
pub(crate) struct Driving {
    /// The watch it names now: a sink that had to start over drives a new watch under the
    /// same handle ([`WatchStream::drive_for`]).
    id: AtomicU64,
    commands: mpsc::UnboundedSender<Command>,
}

impl Driving {
    /// A handle for watches of `client` to be driven under ([`WatchBuilder::drive`]).
    pub(crate) fn new(client: &Client) -> Driving {
        Driving {
            id: AtomicU64::new(0),
            commands: client.watch_hub().commands.clone(),
        }
    }
}

impl WatchBuilder {
    /// Registers this watch with `sink` as its consumer from the create on, under
    /// `driving` (in place of the watch it named before, if any). Returns once etcd
    /// confirmed the watch; on an error the sink is dropped.
    pub(crate) async fn drive(mut self, driving: &Driving, sink: Box<dyn Sink>) -> Result<()> {
        let consumer = Consumer::Sink(sink);
        // Named before the create goes out: a handle dropped while it is in flight cancels it.
        let id = self
            .client
            .watch_hub()
            .next_id
            .fetch_add(1, Ordering::Relaxed);
        driving.id.store(id, Ordering::Release);
        self.register(id, consumer).await
    }
}

impl WatchStream {
    /// Hands this watch to `sink` under `driving`, in place of the watch it named (which
    /// ended).
    pub(crate) fn drive_for(self, driving: &Driving, sink: Box<dyn Sink>) {
        driving.id.store(self.id, Ordering::Release);
        self.hand_over(sink);
    }

    fn hand_over(mut self, sink: Box<dyn Sink>) {
        let receiver = std::mem::replace(&mut self.receiver, queue::channel(1).1);
        self.handed_over = true;
        let _ = self.commands.send(Command::Drive {
            id: self.id,
            sink,
            receiver,
            shared: self.shared.clone(),
        });
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        let _ = self
            .commands
            .send(Command::Cancel(self.id.load(Ordering::Acquire)));
    }
}
