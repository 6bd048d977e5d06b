//! A large config in a namespace, read as etcd's answers bring it (one buffer of keys, one of
//! values): loaded, changed by one entry, edited by hand and followed, each checked against
//! what etcdctl reads.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_config::client::TxnOp;
use etcd_config::{ChangeNote, EtcdConfig, Store};
use support::Etcd;

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/svc/routes")]
struct Routes {
    #[etcd(each)]
    routes: BTreeMap<String, String>,
}

const ENTRIES: usize = 3_000;

/// 3,000 entries with text that is not ASCII, under a namespace the store's client adds: the
/// load, a change of one entry (read back with etcdctl), a live config that follows hand edits
/// (a delete, a new entry) to what a fresh load gives, and a key that is not UTF-8, which the
/// load names instead of merging.
#[tokio::test]
async fn a_large_config_in_a_namespace_loads_changes_and_follows_exactly() {
    let etcd = Etcd::single().await;
    let raw = etcd.client().await;
    for chunk in 0..ENTRIES / 100 {
        let puts = (chunk * 100..(chunk + 1) * 100).map(|i| {
            let key = format!("/tenant/svc/routes/routes/r{i:04}");
            TxnOp::put(key, format!("höst-{i} ☃"))
        });
        raw.kv().txn().and_then(puts).await.unwrap();
    }
    let store = Store::new(raw.namespace("/tenant"));
    let loaded: Routes = store.load().await.unwrap();
    assert_eq!(loaded.routes.len(), ENTRIES);
    assert_eq!(loaded.routes["r1234"], "höst-1234 ☃");
    let live = store.live::<Routes>().await.unwrap();

    let note = ChangeNote::by("ops");
    let revision = store
        .set::<Routes>(&[("routes.r2999", "ünïcode")], &note)
        .await
        .unwrap();
    let out = etcd.etcdctl(&[
        "get",
        "/tenant/svc/routes/routes/r2999",
        "--print-value-only",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ünïcode\n");
    support::wait_until(
        "the live config at the change",
        Duration::from_secs(10),
        || live.revision(),
        |seen| *seen == revision,
    )
    .await;
    assert_eq!(live.get().routes["r2999"], "ünïcode");

    for args in [
        &["del", "/tenant/svc/routes/routes/r0000"][..],
        &["put", "/tenant/svc/routes/routes/zz", "néw"],
    ] {
        assert!(etcd.etcdctl(args).status.success());
    }
    support::wait_until(
        "the live config after the hand edits",
        Duration::from_secs(10),
        || live.get().routes.contains_key("zz"),
        |has| *has,
    )
    .await;
    let fresh: Routes = store.load().await.unwrap();
    assert_eq!(*live.get(), fresh);
    assert!(!fresh.routes.contains_key("r0000"));
    assert_eq!(
        (fresh.routes.len(), &fresh.routes["zz"][..]),
        (ENTRIES, "néw")
    );

    raw.kv()
        .put(b"/tenant/svc/routes/routes/\xff".to_vec(), "x")
        .await
        .unwrap();
    let err = store.load::<Routes>().await.unwrap_err().to_string();
    assert!(err.contains("\\xff"), "{err}");
}
