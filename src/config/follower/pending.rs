//! What changed since a followed config's stored form was made, so that the next value's is
//! made by encoding only the fields of the keys a revision touched. Encoding every field of
//! the value again was most of a watch event's work: 55 k of 88 k instructions for one field
//! of a 20-field struct.

use super::{stored, Stored, Tracked};
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
    /// value's with the touched keys' fields encoded again, when only top-level fields were
    /// touched (a key under a map or nested struct may bring or take fields it has no key
    /// for: defaults, a new entry's other fields); else `value` encoded whole. Leaves the
    /// last good value's stored form made.
    pub(super) fn stored_next(&mut self, value: &T) -> Stored {
        let good = &self.good;
        let good_stored = self.good_stored.get_or_insert_with(|| stored(&**good));
        match self.pending.take() {
            None => good_stored.clone(),
            Some(pending) if !pending.all && pending.keys.iter().all(|k| !k.contains('/')) => {
                good_stored.patched(value, &pending.keys)
            }
            Some(_) => stored(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ops::ControlFlow;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::{replay, Stored, Tracked};
    use crate::client::watch::{Event, EventKind};
    use crate::client::KeyValue;
    use crate::config::decode::RawKeys;
    use crate::config::store::decode_entries;
    use crate::EtcdConfig;

    #[derive(EtcdConfig, Debug, Clone, PartialEq)]
    #[etcd(prefix = "/f")]
    struct Leaf {
        #[etcd(default = 1)]
        weight: u32,
        note: Option<String>,
    }

    #[derive(EtcdConfig, Debug, Clone, PartialEq)]
    #[etcd(prefix = "/f", validate = "F::check")]
    struct F {
        #[etcd(default = 8)]
        size: u32,
        #[etcd(default)]
        name: String,
        limit: Option<u32>,
        #[etcd(each)]
        routes: BTreeMap<String, u32>,
        #[etcd(each, nested)]
        pools: BTreeMap<String, Leaf>,
    }

    impl F {
        fn check(&self) -> Result<(), String> {
            match self.size {
                13 => Err("13 is not a size".to_owned()),
                _ => Ok(()),
            }
        }
    }

    const KEYS: &[&str] = &[
        "size",
        "name",
        "limit",
        "routes/a",
        "routes/b",
        "pools/x/weight",
        "pools/x/note",
        "pools/y/weight",
        "stray",
    ];
    const VALUES: &[&str] = &["1", "8", "13", "", "abc", "\"q\"", "007"];

    /// What one revision came to, comparable across the two followers.
    fn outcome(result: Option<crate::Result<crate::config::update::Update<F>>>) -> String {
        match result {
            None => "current".to_owned(),
            Some(Ok(update)) => format!("updated {:?} {:?}", update.changed, update.config),
            Some(Err(err)) => format!("rejected {err}"),
        }
    }

    fn follower(kvs: &[(usize, usize)]) -> Tracked<F> {
        let kvs = kvs.iter().map(|&(k, v)| {
            (
                format!("/f/{}", KEYS[k]).into_bytes(),
                VALUES[v].as_bytes().to_vec(),
            )
        });
        let keys = RawKeys::from_kvs::<F>(kvs);
        // Started on an invalid value, a live config keeps a fallback, as here.
        let decoded = decode_entries::<F>("/f/", None, 1, &keys);
        let fallback = decoded.is_err();
        let good = decoded.unwrap_or_else(|_| F::decode_default());
        let mut tracked = Tracked::new(keys, 1, Arc::new(good));
        if fallback {
            tracked.touch(None);
        }
        tracked
    }

    impl F {
        fn decode_default() -> F {
            decode_entries::<F>("/f/", None, 1, &RawKeys::default()).unwrap()
        }
    }

    /// Applies one revision's events; `known` says whether the touched keys are passed on.
    fn step(
        tracked: &mut Tracked<F>,
        revision: i64,
        edits: &[(usize, Option<usize>)],
        known: bool,
    ) -> String {
        let events = edits
            .iter()
            .map(|&(k, v)| {
                let kv = KeyValue {
                    key: format!("/f/{}", KEYS[k]).into_bytes(),
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
        let _ = replay::<F>(&mut keys, events, |revision, keys, touched| {
            let touched = known.then_some(touched);
            out = outcome(tracked.evaluate_at("/f/", None, revision, keys, touched));
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
                let stored = |t: &Tracked<F>| t.good_stored.clone().unwrap_or_else(|| Stored::of(&*t.good));
                prop_assert_eq!(stored(&patched), stored(&whole));
                prop_assert_eq!(stored(&patched), Stored::of(&*patched.good));
            }
        }
    }
}
