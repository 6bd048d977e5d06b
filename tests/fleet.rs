//! Fleet reports against a real etcd: a live config started with `report_as` keeps a record
//! that `Store::fleet` and `etcdctl` read, with the revision it serves and its last rejection;
//! the record goes when the live config is dropped, and when its process dies without a word
//! (its lease expires). A role granted `ReadAndReport` can report but not change the config.

mod support;

use std::time::Duration;

use etcd_config::{Access, EtcdConfig, LiveOptions, ServerErrorKind, Store};
use support::Etcd;

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/fleet/app", validate = "App::check")]
struct App {
    #[etcd(default = 1)]
    workers: u32,
}

impl App {
    fn check(&self) -> Result<(), String> {
        (self.workers > 0)
            .then_some(())
            .ok_or_else(|| "workers must be positive".to_owned())
    }
}

async fn records(store: &Store) -> Vec<(String, i64, Option<i64>)> {
    store
        .fleet::<App>()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.instance, r.revision, r.last_rejected.map(|(rev, _)| rev)))
        .collect()
}

/// Records appear with what each instance serves and rejected, and go with the instance.
#[tokio::test]
async fn records_follow_what_instances_apply() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let a = store
        .live_with::<App>(LiveOptions::new().report_as("a"))
        .await
        .unwrap();
    let b = store
        .live_with::<App>(LiveOptions::new().report_as("b"))
        .await
        .unwrap();
    let kv = etcd.client().await.kv();
    let good = kv
        .put("/fleet/app/workers", "4")
        .await
        .unwrap()
        .header
        .revision;
    let bad = kv
        .put("/fleet/app/workers", "0")
        .await
        .unwrap()
        .header
        .revision;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = records(&store).await;
        if seen == [("a".into(), good, Some(bad)), ("b".into(), good, Some(bad))] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        [("a".into(), good, Some(bad)), ("b".into(), good, Some(bad))]
    );
    // etcdctl sees the same record, outside the config's own keys.
    let out = etcd.etcdctl(&["get", "/fleet/app.fleet/a", "--print-value-only"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("\"revision\":{good}")), "{text}");
    assert!(text.contains("workers must be positive"), "{text}");

    drop(a);
    for _ in 0..100 {
        if records(&store).await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(records(&store).await.len(), 1, "a's record outlived it");
    drop(b);
}

/// A process that dies leaves no goodbye: its record goes when its lease expires (10 s).
#[tokio::test]
async fn a_dead_instance_record_expires_with_its_lease() {
    let etcd = Etcd::single().await;
    let endpoints = etcd.endpoints();
    // The "process": a runtime of its own, dropped without letting its tasks finish.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let options = etcd.options();
    let live = runtime
        .spawn(async move {
            let client = etcd_config::Client::connect(endpoints, options)
                .await
                .unwrap();
            Store::new(client)
                .live_with::<App>(LiveOptions::new().report_as("doomed"))
                .await
                .unwrap()
        })
        .await
        .unwrap();
    let store = Store::new(etcd.client().await);
    for _ in 0..50 {
        if !records(&store).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(records(&store).await.len(), 1);
    std::thread::spawn(move || drop(runtime)).join().unwrap();
    std::mem::forget(live); // its runtime is gone: nothing may run its drop
    let mut gone = false;
    for _ in 0..300 {
        if records(&store).await.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the record outlived its process by more than its lease"
    );
}

/// Auth on; user `svc` holds a role granted `ReadAndReport` on `App`. Root's client, root's
/// store and the service's store.
async fn reporting_service(etcd: &Etcd) -> (etcd_config::Client, Store, Store) {
    let root = etcd.enable_auth().await;
    let admin = Store::new(root.clone());
    root.auth().role_add("app-service").await.unwrap();
    admin
        .grant::<App>("app-service", Access::ReadAndReport)
        .await
        .unwrap();
    root.auth().user_add("svc", "pw").await.unwrap();
    root.auth()
        .user_grant_role("svc", "app-service")
        .await
        .unwrap();
    let service = Store::new(etcd.client_as("svc", "pw").await);
    (root, admin, service)
}

/// `ReadAndReport` lets a service report but not change the config.
#[tokio::test]
async fn a_reporting_role_may_report_but_not_write() {
    if support::skip_behind_front("a_reporting_role_may_report_but_not_write") {
        return;
    }
    let etcd = Etcd::single().await;
    let (root, admin, service) = reporting_service(&etcd).await;
    let _live = service
        .live_with::<App>(LiveOptions::new().report_as("svc-1"))
        .await
        .unwrap();
    for _ in 0..50 {
        if !records(&admin).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(records(&admin).await.len(), 1);
    let err = service.save(&App { workers: 2 }).await.unwrap_err();
    assert_eq!(err.server_kind(), Some(ServerErrorKind::PermissionDenied));
    admin.revoke::<App>("app-service").await.unwrap();
    assert!(root
        .auth()
        .role_get("app-service")
        .await
        .unwrap()
        .is_empty());
}

/// A live config that stops following (its read permission was revoked, and the watch could
/// not be made again after a restart) keeps reporting: `stopped` at once, and unconfirmed
/// once etcd has not confirmed its value for `UNCONFIRMED_AFTER`.
#[tokio::test]
async fn a_stopped_instance_reports_itself_stopped_then_unconfirmed() {
    if support::skip_behind_front("a_stopped_instance_reports_itself_stopped_then_unconfirmed") {
        return;
    }
    let mut etcd = Etcd::single().await;
    let (root, admin, service) = reporting_service(&etcd).await;
    let live = service
        .live_with::<App>(LiveOptions::new().report_as("svc-1"))
        .await
        .unwrap();
    let record = || async { admin.fleet::<App>().await.unwrap().into_iter().next() };
    for _ in 0..50 {
        if record().await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = record().await.expect("a record");
    assert_eq!(
        (first.state.as_str(), first.unconfirmed_since),
        ("following", None)
    );

    root.auth()
        .role_revoke_permission("app-service", admin.range_of::<App>())
        .await
        .unwrap();
    etcd.stop(0);
    etcd.restart(0).await;
    let stopped_at = std::time::Instant::now();
    let mut last = None;
    for _ in 0..200 {
        last = record().await;
        if last.as_ref().is_some_and(|r| r.state == "stopped") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last.as_ref().map(|r| r.state.as_str()),
        Some("stopped"),
        "{last:?}"
    );
    assert!(matches!(
        live.status().state,
        etcd_config::FollowerState::Stopped { .. }
    ));

    let limit = etcd_config::FleetRecord::UNCONFIRMED_AFTER + Duration::from_secs(15);
    while stopped_at.elapsed() < limit {
        last = record().await;
        if last.as_ref().is_some_and(|r| r.unconfirmed_since.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let since = last
        .as_ref()
        .and_then(|r| r.unconfirmed_since)
        .unwrap_or_else(|| panic!("never reported unconfirmed: {last:?}"));
    // Since the last confirmation, which came before the member stopped.
    let ago = since.elapsed().unwrap();
    assert!(
        ago >= etcd_config::FleetRecord::UNCONFIRMED_AFTER && ago < limit + Duration::from_secs(10),
        "unconfirmed since {ago:?} ago"
    );
}
