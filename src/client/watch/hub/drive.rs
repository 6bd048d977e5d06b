//! Handing a created watch over from its stream to a sink ([`super::super::sink`]).

use std::sync::atomic::Ordering;

use super::super::event::{Shared, WatchResponse};
use super::super::queue;
use super::watcher::{Consumer, Handed};
use super::{Hub, State};
use crate::error::Result;

impl Hub {
    /// Makes `consumer` the consumer of watch `id`. What its stream had not read goes first,
    /// in order: only this task fills the queue, so nothing overtakes it.
    pub(super) fn drive(
        &mut self,
        id: u64,
        mut consumer: Consumer,
        mut receiver: queue::Receiver<Result<WatchResponse>>,
        shared: &Shared,
    ) {
        let mut wanted = true;
        while let Some(item) = receiver.try_recv() {
            wanted = wanted && matches!(consumer.hand(item), Handed::Taken);
        }
        // The watch ended while its queue was full: the error the stream would have read last.
        if let Some(error) = crate::sync::lock(&shared.ended_with).take() {
            consumer.hand(Err(*error));
            return;
        }
        drop(receiver);
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return; // it ended, and its end was in the queue
        };
        if !wanted {
            let state = watcher.state;
            self.watchers.remove(&id);
            if let State::Active(watch_id) = state {
                self.cancel_on_server(watch_id);
            }
            return;
        }
        watcher.events = consumer;
        // Paused for a full queue: a sink takes everything, so the watch goes on.
        if watcher.state == State::Paused {
            watcher.state = State::Waiting;
            shared.paused.store(false, Ordering::Release);
            self.create(id);
        }
    }
}
