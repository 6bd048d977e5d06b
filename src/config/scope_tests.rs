//! A change by field path encodes and compares only the keys it names ([`Scope::only`]). For
//! any config and any edits, what it sends must be what the whole-value change would send,
//! restricted to those keys, when etcd holds every key as the crate spells it.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use super::change_set::{change_set, ChangeSet, Current, Rules, Scope};
use super::encode::Encoded;
use crate::client::kv::pairs::{Pair, Pairs};
use crate::EtcdConfig;

#[derive(EtcdConfig, Debug, Clone, PartialEq, Default)]
#[etcd(prefix = "/s")]
pub(super) struct Leaf {
    #[etcd(default = 1)]
    weight: u32,
    note: Option<String>,
}

/// A config with a field of each kind: a default, an option, a map, a map of structs, a
/// nested struct (also the follower's test config, `follower/pending.rs`).
#[derive(EtcdConfig, Debug, Clone, PartialEq, Default)]
#[etcd(prefix = "/s")]
pub(super) struct S {
    #[etcd(default = 8)]
    size: u32,
    name: Option<String>,
    #[etcd(each)]
    routes: BTreeMap<String, u32>,
    #[etcd(each, nested)]
    pools: BTreeMap<String, Leaf>,
    #[etcd(nested)]
    inner: Leaf,
}

/// One edit by path: `Some` sets, `None` removes.
#[derive(Debug, Clone)]
enum Edit {
    Size(Option<u32>),
    Name(Option<String>),
    Route(String, Option<u32>),
    Weight(String, Option<u32>),
}

impl Edit {
    /// The key it names, and whether it removes it; applied to `value` as the decode of the
    /// edited keys would give it.
    fn apply(&self, value: &mut S) -> (String, bool) {
        match self {
            Edit::Size(v) => {
                value.size = v.unwrap_or(8);
                ("size".into(), v.is_none())
            }
            Edit::Name(v) => {
                value.name.clone_from(v);
                ("name".into(), v.is_none())
            }
            Edit::Route(name, v) => {
                match v {
                    Some(v) => value.routes.insert(name.clone(), *v),
                    None => value.routes.remove(name),
                };
                (format!("routes/{name}"), v.is_none())
            }
            Edit::Weight(name, v) => {
                let pool = value.pools.entry(name.clone()).or_default();
                pool.weight = v.unwrap_or(1);
                (format!("pools/{name}/weight"), v.is_none())
            }
        }
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    let name = "[a-d]{1,2}";
    let small = proptest::option::of(0u32..4);
    prop_oneof![
        small.clone().prop_map(Edit::Size),
        proptest::option::of("[xy]{0,2}").prop_map(Edit::Name),
        (name, small.clone()).prop_map(|(n, v)| Edit::Route(n, v)),
        (name, small).prop_map(|(n, v)| Edit::Weight(n, v)),
    ]
}

fn config() -> impl Strategy<Value = S> {
    let name = "[a-d]{1,2}";
    (
        0u32..4,
        proptest::option::of("[xy]{0,2}"),
        proptest::collection::btree_map(name, 0u32..4, 0..5),
        proptest::collection::btree_map(name, (0u32..4, proptest::option::of("[z]")), 0..4),
        (0u32..4, proptest::option::of("[z]")),
    )
        .prop_map(|(size, name, routes, pools, (weight, note))| S {
            size,
            name,
            routes,
            pools: pools
                .into_iter()
                .map(|(k, (weight, note))| (k, Leaf { weight, note }))
                .collect(),
            inner: Leaf { weight, note },
        })
}

/// The keys `value` is stored under, as etcd would hold them after a save.
fn stored(value: &S) -> Current {
    let kvs = Encoded::of(value)
        .entries
        .into_iter()
        .filter_map(|e| Some((format!("/s/{}", e.key), e.value?)))
        .collect::<BTreeMap<_, _>>();
    let mut pairs = Pairs::default();
    for (key, value) in &kvs {
        pairs.push(Pair {
            key: key.as_bytes(),
            value: value.as_bytes(),
            create_revision: 2,
            mod_revision: 2,
        });
    }
    Current {
        revision: 2,
        pairs,
        notes: None,
    }
}

fn change(after: &S, current: &Current, scope: &Scope) -> ChangeSet {
    let encoded = match &scope.only {
        Some(keys) => Encoded::of_keys(after, keys),
        None => Encoded::of(after),
    };
    let rules = Rules {
        full_prefix: "/s/",
        keyring: None,
        scope,
        reseal: false,
    };
    change_set::<S>(&encoded, current, &rules).unwrap()
}

proptest! {
    #[test]
    fn a_scoped_change_is_the_whole_change_restricted(
        before in config(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let current = stored(&before);
        let mut after = before.clone();
        let mut only = Vec::new();
        let mut unset = HashSet::new();
        for edit in &edits {
            let (key, removes) = edit.apply(&mut after);
            if removes {
                unset.insert(key.clone());
            } else {
                unset.remove(&key);
            }
            only.push(key);
        }
        let whole = change(&after, &current, &Scope { unset: unset.clone(), only: None });
        let scoped = change(&after, &current, &Scope { unset, only: Some(only.clone()) });
        let named = |key: &[u8]| only.iter().any(|k| format!("/s/{k}").as_bytes() == key);
        let puts: Vec<_> = whole.puts.iter().filter(|(k, _)| named(k.as_bytes())).collect();
        let deletes: Vec<_> = whole.deletes.iter().filter(|k| named(k)).collect();
        prop_assert_eq!(scoped.puts.iter().collect::<Vec<_>>(), puts);
        prop_assert_eq!(scoped.deletes.iter().collect::<Vec<_>>(), deletes);
    }
}
