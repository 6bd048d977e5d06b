//! Loads that arrive together go to etcd together: many configs loaded at once cost etcd a few
//! Txns rather than a Range each, and each load still gets exactly its own answer or its own
//! error, whatever the server's `--max-txn-ops`.

use crate::support;

use etcd_config::client::{Permission, PermissionKind};
use etcd_config::{Client, EtcdConfig, KeyRange, ServerErrorKind};
use etcd_config::{Store, Versioned};
use futures_util::future::join_all;
use support::{Etcd, Front};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/cfg")]
struct Small {
    value: u64,
    #[etcd(default)]
    name: String,
}

/// Writes config `i` as `/t/{i}/cfg/…` with etcdctl-like plain puts.
async fn write_configs(client: &Client, root: &str, count: u64) {
    for i in 0..count {
        let kv = client.kv();
        kv.put(format!("{root}/{i}/cfg/value"), i.to_string())
            .await
            .unwrap();
        kv.put(format!("{root}/{i}/cfg/name"), format!("n{i}"))
            .await
            .unwrap();
    }
}

/// Whether the tests talk to the member itself, whose metrics count their calls.
fn direct(etcd: &Etcd) -> bool {
    etcd.front_kind() == Front::Direct
}

/// Loads configs `0..count` under `root`, all at once.
async fn load_all(
    store: &Store,
    root: &str,
    count: u64,
) -> Vec<etcd_config::Result<Versioned<Small>>> {
    join_all((0..count).map(|i| {
        let store = store.namespace(&format!("{root}/{i}"));
        async move { store.load_versioned::<Small>().await }
    }))
    .await
}

/// 300 loads at once: each gets its own config, read at a revision no older than the last
/// write, and etcd served them with far fewer calls than 300 Ranges.
#[tokio::test]
async fn loads_at_once_go_together_and_each_gets_its_own() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    write_configs(&client, "/t", 300).await;
    let written = client.kv().get("/none").await.unwrap().header.revision;
    let direct = direct(&etcd);
    let ranges_before = direct.then(|| etcd.grpc_handled(0, "Range", "OK"));
    let txns_before = direct.then(|| etcd.grpc_handled(0, "Txn", "OK"));

    let store = Store::new(etcd.client().await);
    let loaded = load_all(&store, "/t", 300).await;
    for (i, result) in loaded.into_iter().enumerate() {
        let loaded = result.unwrap_or_else(|err| panic!("config {i}: {err}"));
        let i = i as u64;
        assert_eq!(
            loaded.value,
            Small {
                value: i,
                name: format!("n{i}")
            }
        );
        assert!(
            loaded.revision >= written,
            "config {i} read at {}",
            loaded.revision
        );
    }
    if let (Some(ranges), Some(txns)) = (ranges_before, txns_before) {
        let ranges = etcd.grpc_handled(0, "Range", "OK") - ranges;
        let txns = etcd.grpc_handled(0, "Txn", "OK") - txns;
        assert!(
            ranges + txns <= 30,
            "{ranges} Ranges and {txns} Txns for 300 loads"
        );
        assert!(txns >= 2, "{ranges} Ranges and {txns} Txns for 300 loads");
    }
}

/// A load this user may not do fails with its own permission error, naming its keys; the
/// loads that went to etcd in the same Txn still get their configs.
#[tokio::test]
async fn a_refused_load_fails_alone() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    write_configs(&root, "/ok", 40).await;
    write_configs(&root, "/secret", 1).await;
    let auth = root.auth();
    auth.role_add("reader").await.unwrap();
    auth.role_grant_permission(
        "reader",
        Permission::new(PermissionKind::Read, KeyRange::prefix("/ok/")),
    )
    .await
    .unwrap();
    auth.user_add("reader", "pw").await.unwrap();
    auth.user_grant_role("reader", "reader").await.unwrap();

    let refused_before = direct(&etcd).then(|| etcd.grpc_handled(0, "Txn", "PermissionDenied"));
    let store = Store::new(etcd.client_as("reader", "pw").await);
    // Started in one poll: the first load goes alone, the others (the refused one second)
    // queue behind it and go in one Txn.
    let mut namespaces: Vec<String> = (0..40).map(|i| format!("/ok/{i}")).collect();
    namespaces.insert(1, "/secret/0".to_owned());
    let mut loaded = join_all(namespaces.iter().map(|namespace| {
        let store = store.namespace(namespace);
        async move { store.load::<Small>().await }
    }))
    .await;
    let refused = loaded.remove(1);
    for (i, result) in loaded.into_iter().enumerate() {
        assert_eq!(result.unwrap().value, i as u64);
    }
    let err = refused.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::PermissionDenied),
        "{err}"
    );
    assert!(err.to_string().contains("/secret/0/cfg/"), "{err}");
    // The refused load did go in a batch: etcd refused the Txn, then the load alone.
    if let Some(before) = refused_before {
        let refused = etcd.grpc_handled(0, "Txn", "PermissionDenied") - before;
        assert!(
            refused >= 1,
            "no Txn was refused: the load never went in a batch"
        );
    }
}

/// With `--max-txn-ops 8`, a Txn of many reads is refused; every load still gets its config.
#[tokio::test]
async fn loads_fit_a_small_txn_limit() {
    let etcd = Etcd::builder(1).arg("--max-txn-ops=8").start().await;
    let client = etcd.client().await;
    write_configs(&client, "/t", 100).await;
    let refused_before = direct(&etcd).then(|| etcd.grpc_handled(0, "Txn", "InvalidArgument"));
    let store = Store::new(etcd.client().await);
    for round in 0..3 {
        let loaded = load_all(&store, "/t", 100).await;
        for (i, result) in loaded.into_iter().enumerate() {
            let loaded = result.unwrap_or_else(|err| panic!("round {round}, config {i}: {err}"));
            assert_eq!(loaded.value.value, i as u64);
        }
    }
    // etcd did refuse batches above its limit, and the loads still went through.
    if let Some(before) = refused_before {
        let refused = etcd.grpc_handled(0, "Txn", "InvalidArgument") - before;
        assert!(refused >= 1, "no Txn was refused: the limit was never met");
    }
}

/// Loads given up while queued or in flight (a caller's timeout) leave nothing stuck: every
/// load after them is answered.
#[tokio::test]
async fn loads_given_up_midway_leave_later_loads_answered() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    write_configs(&client, "/t", 50).await;
    let store = Store::new(etcd.client().await);
    for wait_us in [0, 50, 200, 1_000, 5_000] {
        let given_up = join_all((0..50u64).map(|i| {
            let store = store.namespace(&format!("/t/{i}"));
            let wait = std::time::Duration::from_micros(wait_us);
            async move { tokio::time::timeout(wait, store.load::<Small>()).await }
        }))
        .await;
        assert_eq!(given_up.len(), 50);
        let loaded = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            load_all(&store, "/t", 50),
        )
        .await
        .unwrap_or_else(|_| panic!("loads after giving up after {wait_us} µs hang"));
        for (i, result) in loaded.into_iter().enumerate() {
            assert_eq!(result.unwrap().value.value, i as u64);
        }
    }
}
