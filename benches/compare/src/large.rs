//! Case: a config with 5,000 `each` entries. Loading it (one range read) and changing one entry
//! (the change set sends that one key, guarded), against etcd-client doing the same by hand:
//! a prefix read parsed entry by entry, and a read, a parse and a guarded put of the one key.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use etcd_config::{ChangeNote, EtcdConfig, Store};
use serde::{Deserialize, Serialize};

use crate::{compare, Row};

pub(crate) const ENTRIES: usize = 5_000;
pub(crate) const PREFIX: &str = "/bench/large/routes/";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Route {
    path: String,
    weight: u32,
}

/// Routes by name, one key each.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/bench/large")]
pub(crate) struct Large {
    #[etcd(each)]
    routes: BTreeMap<String, Route>,
}

pub(crate) fn route(i: usize, round: usize) -> Route {
    Route {
        path: format!("/api/v1/service-{i}"),
        weight: u32::try_from((i + round) % 100).unwrap_or(0),
    }
}

/// What a careful user writes without this crate: every entry parsed from the prefix read.
pub(crate) fn parse_by_hand(kvs: &[etcd_client::KeyValue]) -> BTreeMap<String, Route> {
    kvs.iter()
        .map(|kv| {
            let name = kv
                .key_str()
                .unwrap()
                .strip_prefix(PREFIX)
                .unwrap()
                .to_owned();
            (name, serde_json::from_slice(kv.value()).unwrap())
        })
        .collect()
}

pub(crate) async fn large(
    ours: &etcd_config::Client,
    theirs: &etcd_client::Client,
    n: usize,
) -> Vec<Row> {
    let mut t = theirs.clone();
    // Seeded by hand, 100 keys per txn.
    for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|i| {
                let value = serde_json::to_string(&route(*i, 0)).unwrap();
                TxnOp::put(format!("{PREFIX}r{i:05}"), value, None)
            })
            .collect();
        t.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let store = Store::new(ours.clone());
    let t = theirs.clone();
    let load = compare(
        n,
        |_| {
            let store = store.clone();
            async move {
                let large: Large = store.load().await.unwrap();
                std::hint::black_box(large);
            }
        },
        |_| {
            let mut t = t.clone();
            async move {
                let r = t
                    .get(PREFIX, Some(GetOptions::new().with_prefix()))
                    .await
                    .unwrap();
                std::hint::black_box(parse_by_hand(r.kvs()));
            }
        },
    )
    .await;
    let loaded: Large = store.load().await.unwrap();
    assert_eq!(loaded.routes.len(), ENTRIES);

    let note = ChangeNote::by("bench");
    let change = compare(
        n,
        |i| {
            let (store, note) = (store.clone(), note.clone());
            async move {
                let entry = i % ENTRIES;
                let value = serde_json::to_string(&route(entry, i + 1)).unwrap();
                let path = format!("routes.r{entry:05}");
                store
                    .set::<Large>(&[(path.as_str(), value.as_str())], &note)
                    .await
                    .unwrap();
            }
        },
        |i| {
            let mut t = t.clone();
            async move {
                let entry = i % ENTRIES;
                let r = t
                    .get(PREFIX, Some(GetOptions::new().with_prefix()))
                    .await
                    .unwrap();
                let revision = r.header().unwrap().revision();
                let mut routes = parse_by_hand(r.kvs());
                let name = format!("r{entry:05}");
                routes.insert(name.clone(), route(entry, i + 7));
                let value = serde_json::to_string(&routes[&name]).unwrap();
                let guard =
                    Compare::mod_revision(PREFIX, CompareOp::Less, revision + 1).with_prefix();
                let put = TxnOp::put(format!("{PREFIX}{name}"), value, None);
                let done = t
                    .txn(Txn::new().when([guard]).and_then([put]))
                    .await
                    .unwrap();
                assert!(done.succeeded());
            }
        },
    )
    .await;
    vec![
        crate::work::row("load 5,000-entry config", load),
        crate::work::row("change 1 of 5,000 entries (ours with its note)", change),
    ]
}
