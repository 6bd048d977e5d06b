//! The bounded queue between the watch task and one [`WatchStream`](super::watch::WatchStream).
//!
//! A tokio channel allocates a block of 32 slots up front; with thousands of watches that block
//! is most of what a watch costs. This queue allocates only for responses actually waiting.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct State<T> {
    items: VecDeque<T>,
    waker: Option<Waker>,
    /// The task side was dropped: no more items will come.
    sender_gone: bool,
    /// The stream side was dropped: items are no longer wanted.
    receiver_gone: bool,
}

/// Why [`Sender::try_send`] did not queue an item.
pub(crate) enum TrySendError<T> {
    Full(T),
    Closed(T),
}

pub(crate) struct Sender<T> {
    shared: Arc<Mutex<State<T>>>,
    capacity: usize,
}

pub(crate) struct Receiver<T> {
    shared: Arc<Mutex<State<T>>>,
}

pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(State {
        items: VecDeque::new(),
        waker: None,
        sender_gone: false,
        receiver_gone: false,
    }));
    let sender = Sender {
        shared: shared.clone(),
        capacity: capacity.max(1),
    };
    (sender, Receiver { shared })
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue holds `capacity` items or the receiver is gone.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = crate::sync::lock(&self.shared);
        if state.receiver_gone {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back(item);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = crate::sync::lock(&self.shared);
        state.sender_gone = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        crate::sync::lock(&self.shared).items.pop_front()
    }

    /// The next item; `Ready(None)` once the sender is gone and the queue is empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = crate::sync::lock(&self.shared);
        if let Some(item) = state.items.pop_front() {
            if state.items.is_empty() {
                state.items.shrink_to(2); // give back what a burst took
            }
            return Poll::Ready(Some(item));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = crate::sync::lock(&self.shared);
        state.receiver_gone = true;
        state.items.clear();
    }
}
