//! The watch task's deadlines, on one timer: a watch not confirmed within the request timeout
//! of its registration fails; a create, or a progress request, unanswered that long means the
//! stream is stuck. Also the watches awaited that fail at once when etcd cannot be reached.
//!
//! A timer per awaited watch (tokio's `timeout` around each registration) registered and
//! removed an entry in tokio's timer wheel for every watch; thousands of live configs started
//! at once paid that thousands of times. The task keeps one `Sleep` instead and moves it to
//! whichever deadline comes first.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::probe::until;
use super::Hub;
use crate::error::Error;

/// Registrations in the order they came, each with the moment it times out. The moments only
/// grow (one timeout for all), so the first entry still unconfirmed is the next to expire.
#[derive(Default)]
pub(super) struct Confirmations {
    order: VecDeque<(Instant, u64)>,
}

impl Confirmations {
    /// Watch `id` was registered: it must be confirmed by `deadline` (no later than any
    /// registered before it).
    pub(super) fn registered(&mut self, id: u64, deadline: Option<Instant>) {
        if let Some(deadline) = deadline {
            self.order.push_back((deadline, id));
        }
    }

    /// When the oldest registration still `waiting` (not confirmed, not dropped) times out.
    /// The others are let go here.
    pub(super) fn next(&mut self, waiting: impl Fn(u64) -> bool) -> Option<Instant> {
        while let Some(&(due, id)) = self.order.front() {
            if waiting(id) {
                return Some(due);
            }
            self.order.pop_front();
        }
        None
    }

    /// The registrations due by `now`, oldest first (confirmed ones among them too: the
    /// caller skips those).
    pub(super) fn due(&mut self, now: Instant) -> Vec<u64> {
        let count = self.order.partition_point(|&(due, _)| due <= now);
        self.order.drain(..count).map(|(_, id)| id).collect()
    }
}

impl Hub {
    pub(super) fn request_timeout(&self) -> Option<Duration> {
        self.request_timeout
    }

    /// The task's next deadline: a registration timing out, a create or a progress request
    /// unanswered for the request timeout.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        let timeout = self.request_timeout()?;
        let stuck = self.creates.oldest().map(|sent| sent + timeout);
        let unanswered = self.probe.waiting_since().map(|asked| asked + timeout);
        let confirm_by = self.confirm_by();
        [stuck, unanswered, confirm_by].into_iter().flatten().min()
    }

    /// When the oldest watch awaited and not yet confirmed times out.
    pub(super) fn confirm_by(&mut self) -> Option<Instant> {
        let watchers = &self.watchers;
        self.confirmations
            .next(|id| watchers.get(&id).is_some_and(|w| w.created.is_some()))
    }

    /// A deadline passed: fail the watches it was for, or leave a stuck stream.
    pub(super) fn ring(&mut self) {
        self.expire_unconfirmed();
        let (Some(timeout), now) = (self.request_timeout(), Instant::now()) else {
            return;
        };
        if self
            .creates
            .oldest()
            .is_some_and(|sent| sent + timeout <= now)
        {
            // The member stopped answering creates (frozen, partitioned, overloaded): every
            // watch behind this one would wait forever.
            self.broken("a watch create went unanswered");
        } else if self
            .probe
            .waiting_since()
            .is_some_and(|asked| asked + timeout <= now)
        {
            self.broken("no answer to a progress request within the request timeout");
        }
    }

    /// While etcd cannot be reached, watches whose create has not been confirmed yet fail
    /// instead of waiting forever; established watches keep waiting to resume.
    pub(super) fn fail_unconfirmed(&mut self, err: &Error) {
        let unconfirmed: Vec<u64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.created.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in &unconfirmed {
            if let Some(mut watcher) = self.watchers.remove(id) {
                if let Some(created) = watcher.created.take() {
                    let _ = created.send(Err(err.clone()));
                }
            }
        }
    }

    /// Fails the watches not confirmed within the request timeout of their registration. An
    /// answer to one of their creates, if one ever comes, is matched and cancelled like a
    /// dropped watch's.
    pub(super) fn expire_unconfirmed(&mut self) {
        let Some(after) = self.request_timeout() else {
            return;
        };
        for id in self.confirmations.due(Instant::now()) {
            let unconfirmed = self.watchers.get(&id).is_some_and(|w| w.created.is_some());
            if !unconfirmed {
                continue;
            }
            if let Some(mut watcher) = self.watchers.remove(&id) {
                if let Some(created) = watcher.created.take() {
                    let _ = created.send(Err(Error::Timeout {
                        operation: watcher.spec.describe(),
                        after,
                        endpoint: None,
                    }));
                }
            }
        }
    }
}

/// Resolves at `deadline`; never without one.
pub(super) async fn at(deadline: Option<Instant>) {
    until(deadline, Some(Duration::ZERO)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registrations come due in order; confirmed and dropped ones neither come due nor hold
    /// back the next deadline.
    #[test]
    fn registrations_come_due_in_order() {
        let mut confirmations = Confirmations::default();
        let start = Instant::now();
        confirmations.registered(1, Some(start + Duration::from_secs(2)));
        confirmations.registered(2, Some(start + Duration::from_secs(3)));
        confirmations.registered(3, None);
        let first = confirmations.next(|id| id == 1 || id == 2);
        assert_eq!(first, Some(start + Duration::from_secs(2)));
        // 1 was confirmed (or dropped): 2 is next.
        let second = confirmations.next(|id| id == 2);
        assert_eq!(second, Some(start + Duration::from_secs(3)));
        assert!(confirmations.due(start + Duration::from_secs(2)).is_empty());
        assert_eq!(confirmations.due(start + Duration::from_secs(3)), vec![2]);
        assert_eq!(confirmations.next(|_| true), None);
    }
}
