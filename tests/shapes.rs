//! Every field shape the docs promise compiles under `#[derive(EtcdConfig)]` and round-trips
//! through etcd: one config struct per shape (a plain map, a map behind a full path, a map
//! behind an alias, an option of a map, a map of options, nested generics, arrays, tuples,
//! boxes, `Arc<str>`, a map inside `each`, a defaulted map), each saved and loaded against a
//! real etcd for values drawn by proptest, and read back by a second client as the JSON a
//! person would type.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use etcd_config::{EtcdConfig, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::{Deserialize, Serialize};
use support::Etcd;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Limit {
    rps: u32,
    burst: u32,
}

type Labels = HashMap<String, String>;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,6}"
}

fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,12}"
}

fn limit() -> impl Strategy<Value = Limit> {
    (any::<u32>(), any::<u32>()).prop_map(|(rps, burst)| Limit { rps, burst })
}

/// Expands, for each `name: Type = strategy`, a config struct with that one field (under its
/// own prefix) and a test that saves proptest's values of it to etcd and loads them back.
macro_rules! shapes {
    ($($test:ident($prefix:literal): $ty:ty = $strategy:expr;)*) => {$(
        mod $test {
            use super::*;

            #[derive(EtcdConfig, Debug, Clone, PartialEq)]
            #[etcd(prefix = $prefix)]
            pub(super) struct Shape {
                pub(super) value: $ty,
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let etcd = Etcd::single().await;
            let store = Store::new(etcd.client().await);
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let mut runner = TestRunner::new(Config::with_cases(24));
                runner
                    .run(&$strategy, |value: $ty| {
                        let config = $test::Shape { value };
                        let back = handle.block_on(async {
                            store.save(&config).await.unwrap();
                            store.load::<$test::Shape>().await
                        });
                        prop_assert_eq!(back.map_err(|e| e.to_string()), Ok(config));
                        Ok(())
                    })
                    .unwrap();
            })
            .await
            .unwrap();
        }
    )*};
}

shapes! {
    plain_map("/shapes/plain_map"): HashMap<String, String> =
        proptest::collection::hash_map(name(), text(), 0..4);
    map_by_full_path("/shapes/map_by_full_path"): std::collections::BTreeMap<String, Limit> =
        proptest::collection::btree_map(name(), limit(), 0..4);
    map_with_number_keys("/shapes/map_with_number_keys"): BTreeMap<u32, u32> =
        proptest::collection::btree_map(any::<u32>(), any::<u32>(), 0..4);
    map_by_alias("/shapes/map_by_alias"): Labels = proptest::collection::hash_map(name(), text(), 0..4);
    option_of_map("/shapes/option_of_map"): Option<BTreeMap<String, u32>> =
        proptest::option::of(proptest::collection::btree_map(name(), any::<u32>(), 0..4));
    map_of_options("/shapes/map_of_options"): BTreeMap<String, Option<u32>> =
        proptest::collection::btree_map(name(), proptest::option::of(any::<u32>()), 0..4);
    nested_generics("/shapes/nested_generics"): Vec<BTreeMap<String, Vec<Option<i64>>>> = proptest::collection::vec(
        proptest::collection::btree_map(
            name(),
            proptest::collection::vec(proptest::option::of(any::<i64>()), 0..3),
            0..3,
        ),
        0..3,
    );
    array("/shapes/array"): [u16; 3] = any::<[u16; 3]>();
    tuple("/shapes/tuple"): (String, u8, bool) = (text(), any::<u8>(), any::<bool>());
    boxed("/shapes/boxed"): Box<Limit> = limit().prop_map(Box::new);
    boxed_str("/shapes/boxed_str"): Box<str> = text().prop_map(String::into_boxed_str);
    shared_str("/shapes/shared_str"): Arc<str> = text().prop_map(Arc::from);
}

/// A map inside an `each` map, and a defaulted plain map.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/shapes/mixed", rename_all = "kebab-case")]
struct Mixed {
    #[etcd(each)]
    tenants: BTreeMap<String, BTreeMap<String, Limit>>,
    #[etcd(default)]
    weights: BTreeMap<String, u32>,
}

/// The `each` entries and the plain map are stored as a person would write them: one key per
/// tenant holding its JSON, and the whole map as one JSON value; an empty defaulted map gets
/// no key.
#[tokio::test]
async fn maps_inside_each_and_defaulted_maps() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let store = Store::new(client.clone());
    let mut tenants = BTreeMap::new();
    tenants.insert(
        "acme".to_owned(),
        BTreeMap::from([("api".to_owned(), Limit { rps: 3, burst: 1 })]),
    );
    let config = Mixed {
        tenants,
        weights: BTreeMap::new(),
    };
    store.save(&config).await.unwrap();
    assert_eq!(store.load::<Mixed>().await.unwrap(), config);
    let page = client
        .kv()
        .get(etcd_config::KeyRange::prefix("/shapes/mixed/"))
        .await
        .unwrap();
    let held: Vec<(String, String)> = page
        .kvs
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap().to_owned();
            (key, kv.value_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        held,
        [(
            "/shapes/mixed/tenants/acme".to_owned(),
            r#"{"api":{"burst":1,"rps":3}}"#.to_owned()
        )]
    );
    client
        .kv()
        .put("/shapes/mixed/weights", r#"{"a":2}"#)
        .await
        .unwrap();
    let loaded = store.load::<Mixed>().await.unwrap();
    assert_eq!(loaded.weights, BTreeMap::from([("a".to_owned(), 2)]));
}
