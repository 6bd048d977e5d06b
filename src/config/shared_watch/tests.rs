//! Splitting the parent's answers among riders, against a plain model: a rider gets, in
//! order, the events of its prefix from its next revision on, without its namespace.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::{Parent, Rider, Riders};
use crate::client::watch::{Event, EventKind, Sink, WatchResponse};
use crate::client::{KeyValue, ResponseHeader};
use crate::error::Result;
use crate::sync::lock;

/// What a rider's sink was handed: (key, revision) per response, or `None` for progress.
type Got = Arc<Mutex<Vec<Option<Vec<(String, i64)>>>>>;

struct Recording {
    namespace: Vec<u8>,
    got: Got,
    /// Gone after this many responses.
    takes: usize,
}

impl Sink for Recording {
    fn deliver(&mut self, response: Result<WatchResponse>) -> bool {
        let mut got = lock(&self.got);
        if got.len() == self.takes {
            return false;
        }
        let response = response.expect("no errors here");
        got.push((!response.events.is_empty()).then(|| {
            response
                .events
                .iter()
                .map(|e| {
                    (
                        String::from_utf8_lossy(&e.kv.key).into_owned(),
                        e.kv.mod_revision,
                    )
                })
                .collect()
        }));
        true
    }

    fn namespace(&self) -> &[u8] {
        &self.namespace
    }
}

fn event(key: &str, revision: i64) -> Event {
    Event {
        kind: EventKind::Put,
        kv: KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: revision,
            ..KeyValue::default()
        },
        prev_kv: None,
    }
}

/// Namespaces under the parent `/p/`, some nested in others; each config's prefix is
/// `namespace + /app/`.
const NAMESPACES: [&str; 4] = ["/p/a", "/p/b", "/p/a/app/x", "/p/ab"];
const KEYS: [&str; 6] = [
    "/p/a/app/port",
    "/p/b/app/port",
    "/p/a/app/x/app/port",
    "/p/ab/app/name",
    "/p/abc/app/port",
    "/p/a/other",
];

proptest! {
    #[test]
    fn each_rider_gets_its_own_events_from_its_revision_on(
        riders in prop::collection::vec((0..NAMESPACES.len(), 1..6i64, 1..8usize), 1..6),
        revisions in prop::collection::vec(prop::collection::vec(0..KEYS.len(), 0..4), 1..8),
    ) {
        let shared = Arc::new(Mutex::new(Riders::default()));
        let mut recorded = Vec::new();
        for &(ns, next_revision, takes) in &riders {
            let got = Got::default();
            let namespace = NAMESPACES[ns].as_bytes().to_vec();
            let prefix = [namespace.as_slice(), b"/app/"].concat();
            lock(&shared).join(Rider {
                prefix: prefix.clone(),
                next_revision,
                sink: Box::new(Recording { namespace: namespace.clone(), got: got.clone(), takes }),
            });
            recorded.push((namespace, prefix, next_revision, takes, got));
        }
        let mut parent = Parent { riders: shared.clone() };
        let mut sent = Vec::new();
        for (i, keys) in revisions.iter().enumerate() {
            let revision = i as i64 + 1;
            let events: Vec<Event> = keys.iter().map(|&k| event(KEYS[k], revision)).collect();
            sent.push(events.clone());
            let header = ResponseHeader { revision, ..ResponseHeader::default() };
            let goes_on = parent.deliver(Ok(WatchResponse { header, events }));
            prop_assert!(goes_on);
        }
        prop_assert_eq!(lock(&shared).seen, sent.iter().rev().find_map(|e| e.last()).map_or(0, |e| e.kv.mod_revision));

        for (namespace, prefix, next_revision, takes, got) in recorded {
            // The model: per revision, the events under the prefix, if any, and progress to all.
            let mut want = Vec::new();
            for (i, events) in sent.iter().enumerate() {
                let revision = i as i64 + 1;
                if events.is_empty() {
                    want.push(None);
                    continue;
                }
                let mine: Vec<(String, i64)> = events
                    .iter()
                    .filter(|e| e.kv.key.starts_with(&prefix) && revision >= next_revision)
                    .map(|e| (String::from_utf8_lossy(&e.kv.key[namespace.len()..]).into_owned(), revision))
                    .collect();
                if !mine.is_empty() {
                    want.push(Some(mine));
                }
            }
            want.truncate(takes);
            prop_assert_eq!(&*lock(&got), &want);
        }
    }
}

#[test]
fn a_config_may_ride_only_if_nothing_after_its_load_went_by() {
    let riders = Riders {
        seen: 10,
        ..Riders::default()
    };
    assert!(
        riders.admits(10, 5),
        "loaded at the last revision delivered"
    );
    assert!(riders.admits(12, 5), "loaded ahead of the watch");
    assert!(!riders.admits(9, 5), "revision 10 went by unseen");
    assert!(!riders.admits(12, 14), "the watch starts after 13");
    let ended = Riders {
        ended: true,
        ..Riders::default()
    };
    assert!(!ended.admits(10, 1));
}
