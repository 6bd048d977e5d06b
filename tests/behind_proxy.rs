//! Live configs behind etcd's gRPC proxy, which lets progress requests go unanswered (3.4 and
//! 3.5): the client's watch task then confirms them by reading their keys, so a quiet config
//! stays confirmed current, and a health check still sees a frozen member.

mod support;

use std::time::{Duration, Instant};

use etcd_config::{EtcdConfig, Store};
use support::{wait_until, Etcd, Front};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/quiet", rename_all = "kebab-case")]
struct Quiet {
    #[etcd(default = 1)]
    pool_size: u32,
    #[etcd(default)]
    mode: String,
}

/// etcdctl's revision after `put KEY VALUE`, straight to the member.
fn put(etcd: &Etcd, key: &str, value: &str) -> i64 {
    let out = etcd.etcdctl(&["put", key, value, "-w", "json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["header"]["revision"].as_i64().unwrap()
}

#[tokio::test]
async fn a_quiet_config_behind_the_grpc_proxy_stays_confirmed() {
    let etcd = Etcd::builder(1).front(Front::GrpcProxy).start().await;
    let store = Store::new(etcd.client().await);
    let live = store.live::<Quiet>().await.unwrap();
    let loaded = live
        .status()
        .confirmed_current_at
        .expect("the load confirms");

    // Two progress requests go unanswered; from then on each period reads the keys.
    wait_until(
        "a confirmation after the load",
        Duration::from_secs(20),
        || live.status().confirmed_current_at,
        |at| at.is_some_and(|at| at > loaded),
    )
    .await;

    // A change by hand, straight to the member: applied, then confirmed at its revision or
    // later, where etcd holds exactly the value served.
    let written = put(&etcd, "/quiet/pool-size", "7");
    wait_until(
        "the change applied",
        Duration::from_secs(10),
        || live.get().pool_size,
        |size| *size == 7,
    )
    .await;
    let applied = Instant::now();
    for round in 0..2 {
        wait_until(
            "confirmed after the change",
            Duration::from_secs(15),
            || live.status(),
            |status| status.confirmed_current_at.is_some_and(|at| at > applied),
        )
        .await;
        let status = live.status();
        assert!(status.confirmed_revision >= written, "{status:?}");
        assert!(!status.is_behind(), "round {round}: {status:?}");
        let there: Quiet = store.load_at(status.confirmed_revision).await.unwrap();
        assert_eq!(there, *live.get());
        tokio::time::sleep(Duration::from_secs(6)).await;
    }

    // A change whose revision is compacted away at once (another key written, then the
    // compaction): its keys before cannot be read; the next change is confirmed again.
    put(&etcd, "/quiet/mode", "a");
    wait_until(
        "mode a",
        Duration::from_secs(10),
        || live.get().mode.clone(),
        |m| m == "a",
    )
    .await;
    let elsewhere = put(&etcd, "/elsewhere", "x");
    let out = etcd.etcdctl(&["compact", &elsewhere.to_string()]);
    assert!(out.status.success(), "{out:?}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let written = put(&etcd, "/quiet/mode", "b");
    wait_until(
        "mode b",
        Duration::from_secs(10),
        || live.get().mode.clone(),
        |m| m == "b",
    )
    .await;
    let applied = Instant::now();
    wait_until(
        "confirmed after the change that followed the compaction",
        Duration::from_secs(15),
        || live.status(),
        |status| {
            status.confirmed_current_at.is_some_and(|at| at > applied)
                && status.confirmed_revision >= written
        },
    )
    .await;

    // The member frozen: reads through the proxy get no answer, nothing confirms, and a health
    // check can see it; thawed, the confirmations come back.
    etcd.pause(0);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let frozen = live.status();
    assert!(
        !frozen.confirmed_within(Duration::from_secs(6)),
        "a frozen member cannot confirm anything: {frozen:?}"
    );
    etcd.resume(0);
    wait_until(
        "confirmed again after the member thawed",
        Duration::from_secs(25),
        || live.status(),
        |status| status.confirmed_within(Duration::from_secs(3)),
    )
    .await;
}

/// Live configs sharing one watch of their parent behind the proxy: a change by hand reaches
/// the config it touches, and each quiet config is confirmed current by the reads that stand
/// in for progress, at a revision where etcd holds the value it serves.
#[tokio::test]
async fn configs_sharing_a_watch_behind_the_grpc_proxy_stay_confirmed() {
    let etcd = Etcd::builder(1).front(Front::GrpcProxy).start().await;
    let root = Store::new(etcd.client().await).share_watch("/tenants/");
    let mut lives = Vec::new();
    for t in 0..3 {
        let store = root.namespace(&format!("/tenants/t{t}"));
        lives.push((store.clone(), store.live::<Quiet>().await.unwrap()));
    }
    let written = put(&etcd, "/tenants/t1/quiet/pool-size", "9");
    let (_, changed) = &lives[1];
    wait_until(
        "t1's change applied",
        Duration::from_secs(10),
        || changed.get().pool_size,
        |size| *size == 9,
    )
    .await;
    let applied = Instant::now();
    for (store, live) in &lives {
        wait_until(
            "confirmed after the change",
            Duration::from_secs(20),
            || live.status(),
            |status| status.confirmed_current_at.is_some_and(|at| at > applied),
        )
        .await;
        let status = live.status();
        assert!(status.confirmed_revision >= written, "{status:?}");
        assert!(!status.is_behind(), "{status:?}");
        let there: Quiet = store.load_at(status.confirmed_revision).await.unwrap();
        assert_eq!(there, *live.get());
    }
    assert_eq!(lives[0].1.get().pool_size, 1, "t0 untouched");
}
