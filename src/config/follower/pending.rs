//! What changed since a followed config's stored form was made, so that the next value's is
//! made by encoding only the fields of the keys a revision touched. Encoding every field of
//! the value again was most of a watch event's work: 55 k of 88 k instructions for one field
//! of a 20-field struct.

use super::{stored, Stored, Tracked};
use crate::config::encode::Encoded;
use crate::config::EtcdConfig;

/// Up to this many keys are encoded again one by one; past it, the whole value is.
const FEW: usize = 32;

/// The keys touched since the stored form was made, or `all` when they are not known: a
/// reload, an overlay, too many keys.
#[derive(Debug, Default)]
pub(super) struct Pending {
    keys: Vec<String>,
    all: bool,
}

impl<T> Tracked<T> {
    /// Notes keys a revision touched (`None`: not known, so every field is encoded again).
    pub(super) fn touch(&mut self, touched: Option<&[String]>) {
        let pending = self.pending.get_or_insert_with(Box::default);
        match touched {
            Some(keys) if !pending.all && pending.keys.len() + keys.len() <= FEW => {
                pending.keys.extend_from_slice(keys);
            }
            _ => {
                pending.all = true;
                pending.keys = Vec::new();
            }
        }
    }
}

impl<T: EtcdConfig> Tracked<T> {
    /// The stored form of `value`, decoded from the keys as they are now: the last good
    /// value's with the touched keys' entries encoded again ([`units`]), or, when they are
    /// not known, `value` encoded whole. Leaves the last good value's stored form made.
    pub(super) fn stored_next(&mut self, value: &T) -> Stored {
        let good = &self.good;
        let good_stored = self.good_stored.get_or_insert_with(|| stored(&**good));
        match self.pending.take() {
            Some(pending) if !pending.all => {
                good_stored.patched(value, &units(value, pending.keys))
            }
            _ => stored(value),
        }
    }
}

/// What a touched key may change in the stored form besides its own entry, as keys to encode
/// again (one ending in `/` stands for every key under it). A key under a map of structs may
/// bring or take its entry's other fields (defaults, a new entry's other keys): the whole
/// entry. A key under a nested struct: the whole struct (if it is optional, its first key
/// brings all its fields). A top-level key, or an entry of a map of values, is one key: a
/// change of one entry of a large map encodes that entry, not the map.
fn units<T: EtcdConfig>(value: &T, mut keys: Vec<String>) -> Vec<String> {
    if keys.iter().all(|key| !key.contains('/')) {
        return keys;
    }
    let maps = Encoded::of_keys(value, &[]).maps;
    for key in &mut keys {
        let Some(slash) = key.find('/') else { continue };
        // A top-level map the key is under (maps in nested structs go with their struct).
        let map = maps
            .iter()
            .find(|map| map.len() == slash + 1 && key.starts_with(map.as_str()));
        let unit = match map {
            // An entry of a map of values, or a whole entry of a map of structs.
            Some(map) => match key[map.len()..].find('/') {
                None => continue,
                Some(at) => map.len() + at + 1,
            },
            // Under a nested struct: all of it.
            None => slash + 1,
        };
        key.truncate(unit);
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::{replay, Stored, Tracked};
    use crate::client::watch::{Event, EventKind};
    use crate::client::KeyValue;
    use crate::config::decode::RawKeys;
    use crate::config::scope_tests::S;
    use crate::config::store::decode_entries;

    const KEYS: &[&str] = &[
        "size",
        "name",
        "routes/a",
        "routes/b",
        "pools/x/weight",
        "pools/x/note",
        "pools/y/weight",
        "inner/weight",
        "inner/note",
        "routes/a/deeper",
        "stray",
    ];
    const VALUES: &[&str] = &["1", "8", "13", "", "abc", "\"q\"", "007"];

    /// What one revision came to, comparable across the two followers.
    fn outcome(result: Option<crate::error::Result<crate::config::update::Update<S>>>) -> String {
        match result {
            None => "current".to_owned(),
            Some(Ok(update)) => format!("updated {:?} {:?}", update.changed, update.config),
            Some(Err(err)) => format!("rejected {err}"),
        }
    }

    fn follower(kvs: &[(usize, usize)]) -> Tracked<S> {
        let kvs = kvs.iter().map(|&(k, v)| {
            (
                format!("/s/{}", KEYS[k]).into_bytes(),
                VALUES[v].as_bytes().to_vec(),
            )
        });
        let keys = RawKeys::from_kvs::<S>(kvs);
        // Started on an invalid value, a live config keeps a fallback, as here: the defaults.
        let (good, fallback) = match decode_entries::<S>("/s/", None, 1, &keys) {
            Ok(good) => (good, false),
            Err(_) => (S::default(), true),
        };
        let mut tracked = Tracked::new(keys, 1, Arc::new(good));
        if fallback {
            tracked.touch(None);
        }
        tracked
    }

    /// Applies one revision's events; `known` says whether the touched keys are passed on.
    fn step(
        tracked: &mut Tracked<S>,
        revision: i64,
        edits: &[(usize, Option<usize>)],
        known: bool,
    ) -> String {
        let events = edits
            .iter()
            .map(|&(k, v)| {
                let kv = KeyValue {
                    key: format!("/s/{}", KEYS[k]).into_bytes(),
                    value: v.map(|v| VALUES[v].as_bytes().to_vec()).unwrap_or_default(),
                    mod_revision: revision,
                    ..Default::default()
                };
                Event {
                    kind: if v.is_some() {
                        EventKind::Put
                    } else {
                        EventKind::Delete
                    },
                    kv,
                    prev_kv: None,
                }
            })
            .collect();
        let mut keys = std::mem::take(&mut tracked.keys);
        let mut out = String::new();
        let _ = replay::<S>(&mut keys, events, |revision, keys, touched| {
            let touched = known.then_some(touched);
            out = outcome(tracked.evaluate_at("/s/", None, revision, keys, touched));
            ControlFlow::Continue(())
        });
        tracked.keys = keys;
        out
    }

    proptest! {
        /// Encoding only the touched keys' fields gives what encoding the whole value gives:
        /// the same outcome for every revision, and the same stored form after it.
        #[test]
        fn patching_the_stored_form_is_encoding_it_whole(
            start in proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..6),
            revisions in proptest::collection::vec(
                proptest::collection::vec((0..KEYS.len(), proptest::option::of(0..VALUES.len())), 1..3),
                1..12,
            ),
        ) {
            let mut patched = follower(&start);
            let mut whole = follower(&start);
            for (i, edits) in revisions.iter().enumerate() {
                let revision = 2 + i64::try_from(i).unwrap();
                let got = step(&mut patched, revision, edits, true);
                let expected = step(&mut whole, revision, edits, false);
                prop_assert_eq!(got, expected);
                let stored = |t: &Tracked<S>| t.good_stored.clone().unwrap_or_else(|| Stored::of(&*t.good));
                prop_assert_eq!(stored(&patched), stored(&whole));
                prop_assert_eq!(stored(&patched), Stored::of(&*patched.good));
            }
        }
    }
}
