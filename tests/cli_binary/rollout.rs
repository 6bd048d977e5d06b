//! `admin rollout ...` as a user runs it: a fleet of two builds in this process, a rollout the
//! stricter build rejects (exit code 8, nothing written), then one that commits, with status as
//! text and JSON checked against etcdctl.

use std::time::Duration;

use etcd_config::{LiveOptions, Store};

use super::settings::Settings;
use super::setup;
use super::{etcdctl_get, fleet_of, run_admin, text, Strict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_from_the_command_line() {
    let (etcd, endpoint, _dir, keys) = setup().await;
    let admin = |args: &[&str]| run_admin(&endpoint, &keys, args);
    assert!(admin(&["set", "greeting=hi"]).status.success());
    let store = Store::new(etcd.client().await);
    let v1 = store
        .live_with::<Settings>(LiveOptions::new().report_as("svc-1").build("v1"))
        .await
        .unwrap();
    let strict = store
        .live_with::<Strict>(LiveOptions::new().report_as("svc-2").build("v2"))
        .await
        .unwrap();
    fleet_of(&store, 2).await;

    // A plain change with --preflight: every build checks it before anything is written.
    let before = etcdctl_get(&etcd, "/services/demo/workers");
    let out = admin(&["set", "workers=20", "--preflight"]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("svc-2"), "{}", text(&out.stderr));
    assert_eq!(etcdctl_get(&etcd, "/services/demo/workers"), before);
    let out = admin(&["set", "workers=10", "--preflight", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (workers, revision) = etcdctl_get(&etcd, "/services/demo/workers");
    assert_eq!(workers, "10");
    let written: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(written["revision"], revision, "{written}");

    // The stricter build rejects 32 workers in the preflight: aborted, exit code 8.
    let out = admin(&[
        "rollout",
        "start",
        "set",
        "workers=32",
        "--steps",
        "1,100%",
        "--bake",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("svc-2") && err.contains("v2") && err.contains("16 workers"),
        "{err}"
    );
    assert_eq!(
        etcdctl_get(&etcd, "/services/demo/workers"),
        (workers, revision)
    );
    let out = admin(&["rollout", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["phase"], "aborted", "{status}");

    // 12 workers passes both builds: committed, one revision, read back by etcdctl.
    let out = admin(&[
        "rollout",
        "start",
        "set",
        "workers=12",
        "--steps",
        "1,100%",
        "--bake",
        "1s",
        "--json",
        "--author",
        "ops",
        "--reason",
        "more",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["outcome"], "committed", "{done}");
    let (workers, revision) = etcdctl_get(&etcd, "/services/demo/workers");
    assert_eq!(workers, "12");
    assert_eq!(done["revision"], revision);
    let out = admin(&["rollout", "status", "--wait", "5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    assert!(status.contains("committed at revision"), "{status}");
    assert!(
        status.contains("svc-1\tv1\tok") && status.contains("svc-2\tv2\tok"),
        "{status}"
    );
    store
        .wait_rollout::<Settings>(revision, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(v1.get().workers, 12);
    assert_eq!(strict.get().workers, 12);

    // Nothing to act on: exit code 1, said plainly.
    let out = admin(&["rollout", "abort"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no rollout"),
        "{}",
        text(&out.stderr)
    );
}
