//! Which create request an etcd `created` answer belongs to.
//!
//! An answer names only a watch id, and nothing in etcd's API promises that creates are answered
//! in the order they were sent: etcd's gRPC proxy answers a create that joins a range it
//! already watches at once, ahead of earlier ones still waiting on etcd. etcd (3.4 and later)
//! gives a watch the id the client asks for, so the answer names its request; the proxy hands
//! out ids of its own. So each create asks for an id of ours, chosen far above the small
//! sequential ids the proxy uses. Until the stream has shown that it honours them, one create
//! at a time is in flight (as Go's client always does); once an answer carries the id we asked
//! for, creates are sent without waiting and matched by id.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::ids::IdMap;

/// Watch ids this client asks for start here: a proxy's own ids count up from 0 per stream and
/// never reach it, so one of its answers cannot pass for an honoured id.
const FIRST_WATCH_ID: i64 = 1 << 40;

/// The creates of one stream: sent and not yet answered.
pub(super) struct Creates {
    next_watch_id: i64,
    /// The next stream sends one create at a time whatever the server does with our ids: a
    /// refusal answered with an id of the server's own (etcd 3.4 answers a create refused for
    /// its token with -1) cannot be matched to one of several creates in flight.
    one_at_a_time_next: bool,
    /// Whether the server at the other end gives watches the ids we ask for; `None` until it
    /// has answered a create it accepted.
    honoured: Option<bool>,
    /// Requested watch id → the local id of the watch.
    in_flight: IdMap<i64, u64>,
    /// (requested watch id, when sent), oldest first; answered ones are dropped lazily.
    order: VecDeque<(i64, Instant)>,
}

impl Creates {
    pub(super) fn new() -> Creates {
        Creates {
            next_watch_id: FIRST_WATCH_ID,
            one_at_a_time_next: false,
            honoured: None,
            in_flight: IdMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Forgets everything: a new stream may end at a server that behaves differently.
    /// (A stream may be reset twice before it sends: the serial one stays due until a create
    /// goes out on it.)
    pub(super) fn reset(&mut self) {
        self.honoured = self.one_at_a_time_next.then_some(false);
        self.in_flight.clear();
        self.order.clear();
    }

    /// Whether another create may go out now.
    pub(super) fn can_send(&self) -> bool {
        self.honoured == Some(true) || self.in_flight.is_empty()
    }

    /// Records the create of local watch `id`; returns the watch id to ask for.
    pub(super) fn sent(&mut self, id: u64) -> i64 {
        // The serial stream that was due is this one.
        self.one_at_a_time_next = false;
        let watch_id = self.next_watch_id;
        self.next_watch_id += 1;
        self.in_flight.insert(watch_id, id);
        self.order.push_back((watch_id, Instant::now()));
        watch_id
    }

    /// The local id of the watch an answer with `watch_id` belongs to, if any.
    pub(super) fn answered(&mut self, watch_id: i64, canceled: bool) -> Option<u64> {
        if self.honoured == Some(true) {
            return self.in_flight.remove(&watch_id);
        }
        // One create in flight: the answer is its. A stream made serial after an answer
        // that matched nothing stays serial: the refusal that caused it comes again.
        let (&requested, _) = self.in_flight.iter().next()?;
        if !canceled && self.honoured.is_none() {
            self.honoured = Some(watch_id == requested);
        }
        self.in_flight.remove(&requested)
    }

    /// An answer matched no create: the stream is to be reopened, and its creates sent one at
    /// a time so that each answer is known to be its create's.
    pub(super) fn unmatched(&mut self) {
        self.one_at_a_time_next = true;
    }

    /// When the oldest unanswered create was sent.
    pub(super) fn oldest(&mut self) -> Option<Instant> {
        while let Some(&(watch_id, sent)) = self.order.front() {
            if self.in_flight.contains_key(&watch_id) {
                return Some(sent);
            }
            self.order.pop_front();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that honours our ids: after the first answer, creates go out without waiting
    /// and answers in any order find their watch.
    #[test]
    fn honoured_ids_pipeline_and_match_out_of_order() {
        let mut creates = Creates::new();
        let first = creates.sent(1);
        assert!(
            !creates.can_send(),
            "one at a time until the server is known"
        );
        assert_eq!(creates.answered(first, false), Some(1));
        assert!(creates.can_send());
        let a = creates.sent(2);
        let b = creates.sent(3);
        assert!(creates.can_send());
        assert_eq!(creates.answered(b, false), Some(3));
        assert_eq!(creates.answered(a, false), Some(2));
        assert_eq!(creates.answered(a, false), None, "answered twice");
        assert_eq!(creates.oldest(), None);
    }

    /// A proxy hands out its own ids: creates stay one at a time, each answer is the one create
    /// in flight.
    #[test]
    fn proxy_ids_keep_one_create_in_flight() {
        let mut creates = Creates::new();
        creates.sent(7);
        assert_eq!(creates.answered(0, false), Some(7));
        assert!(creates.can_send());
        creates.sent(8);
        assert!(!creates.can_send());
        assert_eq!(creates.answered(1, false), Some(8));
        assert!(creates.oldest().is_none());
    }

    /// An answer that matches nothing makes the next stream send one create at a time, to its
    /// end (an accepted create in between must not make it pipeline into the same refusal).
    #[test]
    fn unmatched_answer_makes_the_next_stream_serial() {
        let mut creates = Creates::new();
        let first = creates.sent(1);
        creates.answered(first, false);
        creates.sent(2);
        creates.sent(3);
        assert_eq!(creates.answered(-1, true), None);
        creates.unmatched();
        creates.reset();
        creates.reset();
        creates.sent(2);
        assert!(!creates.can_send());
        assert_eq!(creates.answered(-1, true), Some(2));
        let accepted = creates.sent(4);
        assert_eq!(creates.answered(accepted, false), Some(4));
        creates.sent(5);
        assert!(!creates.can_send(), "serial to the end of the stream");
        creates.reset();
        let again = creates.sent(3);
        assert_eq!(creates.answered(again, false), Some(3));
        assert!(creates.can_send(), "later streams pipeline again");
    }

    /// A refused create (etcd echoes our id; the proxy answers -1) decides nothing.
    #[test]
    fn refusals_do_not_decide() {
        let mut creates = Creates::new();
        creates.sent(1);
        assert_eq!(creates.answered(-1, true), Some(1));
        let second = creates.sent(2);
        assert!(!creates.can_send());
        assert!(creates.oldest().is_some());
        assert_eq!(creates.answered(second, false), Some(2));
        assert!(creates.can_send());
    }
}
