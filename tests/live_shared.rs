//! Live configs that share one watch of their parent (`Store::share_watch`), against a real
//! etcd: each config gets exactly its own changes, etcd holds one watcher for all of them, and
//! when sharing is not possible (no permission on the parent, a compaction, a config outside
//! the parent) each config still follows etcd through a watch of its own.

mod support;

use std::time::Duration;

use etcd_config::client::{Permission, PermissionKind, TxnOp};
use etcd_config::{Client, EtcdConfig, KeyRange, Live, LiveEvent, LiveEvents, Store};
use futures_util::StreamExt;
use support::{wait_until, Etcd, Front};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/app", validate = "App::check")]
struct App {
    name: String,
    #[etcd(default = 8080)]
    port: u16,
    #[etcd(default)]
    workers: u32,
}

impl App {
    fn check(&self) -> Result<(), String> {
        if self.port == 0 {
            return Err("port must not be 0".to_owned());
        }
        Ok(())
    }
}

const TENANTS: usize = 20;

/// etcd's own count of the watchers member 0 holds (all streams, all clients).
fn watchers(etcd: &Etcd) -> u64 {
    etcd.metrics(0)
        .lines()
        .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .expect("etcd reports its watcher count") as u64
}

async fn seed(client: &Client) {
    for t in 0..TENANTS {
        client
            .kv()
            .put(format!("/tenants/t{t}/app/name"), format!("t{t}"))
            .await
            .unwrap();
    }
    client
        .kv()
        .put("/tenants/t1/app/inner/app/name", "inner")
        .await
        .unwrap();
    client.kv().put("/other/app/name", "other").await.unwrap();
}

async fn tenants(root: &Store) -> Vec<Live<App>> {
    let mut lives = Vec::new();
    for t in 0..TENANTS {
        lives.push(
            root.namespace(&format!("/tenants/t{t}"))
                .live::<App>()
                .await
                .unwrap(),
        );
    }
    lives
}

async fn wait_for(live: &Live<App>, what: &str, done: impl Fn(&App) -> bool) {
    wait_until(
        what,
        Duration::from_secs(15),
        || live.get(),
        |app| done(app),
    )
    .await;
}

/// Twenty tenants and a config nested in one of them ride one etcd watcher; a config outside
/// the parent watches alone. A Txn over three tenants, an etcdctl put, a key no config reads
/// and a bad value each reach exactly the configs they touch, and every config ends holding
/// what a second client loads. Dropping the configs leaves etcd with no watcher.
#[tokio::test]
async fn configs_under_one_parent_share_one_watch() {
    let etcd = Etcd::builder(1).front(Front::Direct).start().await;
    let admin = etcd.client().await;
    seed(&admin).await;
    let root = Store::new(etcd.client().await).share_watch("/tenants/");
    let lives = tenants(&root).await;
    let inner = root
        .namespace("/tenants/t1/app/inner")
        .live::<App>()
        .await
        .unwrap();
    let other = root.namespace("/other").live::<App>().await.unwrap();
    assert_eq!(watchers(&etcd), 2, "one shared watch, and /other's own");

    let txn = admin
        .kv()
        .txn()
        .and_then([
            TxnOp::put("/tenants/t3/app/port", "9003"),
            TxnOp::put("/tenants/t7/app/workers", "7"),
            TxnOp::put("/tenants/t1/app/inner/app/port", "1111"),
        ])
        .await
        .unwrap();
    wait_for(&lives[3], "t3's port", |app| app.port == 9003).await;
    wait_for(&lives[7], "t7's workers", |app| app.workers == 7).await;
    wait_for(&inner, "the nested config's port", |app| app.port == 1111).await;
    for live in [&lives[3], &lives[7], &inner] {
        assert_eq!(live.revision(), txn.header.revision);
    }
    // The nested config's keys are under t1's prefix too: keys t1 does not read.
    assert_eq!(lives[1].get().port, 8080);

    let put = etcd.etcdctl(&["put", "/tenants/t5/app/name", "renamed"]);
    assert!(put.status.success(), "{put:?}");
    wait_for(&lives[5], "t5's name", |app| app.name == "renamed").await;
    admin
        .kv()
        .put("/tenants/nobody/app/port", "1")
        .await
        .unwrap();
    let bad = admin.kv().put("/tenants/t9/app/port", "0").await.unwrap();
    wait_until(
        "t9 rejecting port 0",
        Duration::from_secs(15),
        || lives[9].status().last_rejected.map(|r| r.revision),
        |seen| *seen == Some(bad.header.revision),
    )
    .await;
    assert_eq!(lives[9].get().port, 8080, "the last good value stays");
    admin.kv().put("/other/app/port", "7000").await.unwrap();
    wait_for(&other, "/other's port", |app| app.port == 7000).await;

    let reader = Store::new(etcd.client().await);
    for (t, live) in lives.iter().enumerate() {
        let held: App = reader
            .namespace(&format!("/tenants/t{t}"))
            .load()
            .await
            .unwrap_or_else(|_| App {
                port: 8080,
                ..(*live.get()).clone()
            });
        assert_eq!(*live.get(), held, "tenant t{t}");
    }

    drop((lives, inner, other));
    wait_until(
        "etcd's watchers once every config is gone",
        Duration::from_secs(10),
        || watchers(&etcd),
        |n| *n == 0,
    )
    .await;
}

/// A user who may read each tenant but not the parent: etcd refuses the shared watch, and
/// each config watches its own prefix instead, and follows its changes.
#[tokio::test]
async fn without_permission_on_the_parent_each_watches_alone() {
    let etcd = Etcd::builder(1).front(Front::Direct).start().await;
    let root = etcd.enable_auth().await;
    seed(&root).await;
    let auth = root.auth();
    auth.role_add("tenants").await.unwrap();
    for t in 0..TENANTS {
        auth.role_grant_permission(
            "tenants",
            Permission::new(
                PermissionKind::Read,
                KeyRange::prefix(format!("/tenants/t{t}/")),
            ),
        )
        .await
        .unwrap();
    }
    auth.user_add("svc", "svc-password").await.unwrap();
    auth.user_grant_role("svc", "tenants").await.unwrap();

    let svc = Store::new(etcd.client_as("svc", "svc-password").await).share_watch("/tenants");

    let lives = tenants(&svc).await;
    assert_eq!(watchers(&etcd), TENANTS as u64, "a watch each");
    root.kv().put("/tenants/t4/app/port", "9004").await.unwrap();
    wait_for(&lives[4], "t4's port", |app| app.port == 9004).await;
}

/// etcd restarted under a shared watch: nothing is missed, nothing loaded again. The shared
/// watch cut off while others write and compact past it: each config loads again once, holds
/// what etcd holds, and they go on following through a new shared watch.
#[tokio::test]
async fn compaction_and_restart_under_a_shared_watch() {
    if support::skip_behind_front("compaction_and_restart_under_a_shared_watch") {
        return;
    }
    let mut etcd = Etcd::cluster().await;
    let admin = etcd.client().await;
    seed(&admin).await;
    // The configs' client only knows member 0.
    let watcher = Client::connect([etcd.endpoint(0)], etcd.options())
        .await
        .unwrap();
    let lives = tenants(&Store::new(watcher).share_watch("/tenants/")).await;

    // A restart: the shared watch resumes where it was.
    let mut t2 = lives[2].events();
    etcd.stop(0);
    let survivors = Client::connect([etcd.endpoint(1), etcd.endpoint(2)], etcd.options())
        .await
        .unwrap();
    put_until_written(&survivors, "/tenants/t2/app/port", "9002").await;
    etcd.restart(0).await;
    let seen = until_applied(&mut t2).await;
    assert!(
        !seen.iter().any(resynced),
        "resumed, not loaded again: {seen:?}"
    );
    assert_eq!(lives[2].get().port, 9002);

    // A compaction past the shared watch while it is away.
    let mut t6 = lives[6].events();
    etcd.stop(0);
    let mut last = 0;
    for t in [6, 8] {
        last = put_until_written(&survivors, &format!("/tenants/t{t}/app/workers"), "3").await;
    }
    survivors.kv().compact(last).physical().await.unwrap();
    etcd.restart(0).await;
    let seen = until_applied(&mut t6).await;
    assert!(seen.iter().any(resynced), "loaded again: {seen:?}");
    wait_for(&lives[8], "t8's workers after the compaction", |app| {
        app.workers == 3
    })
    .await;
    assert_eq!(lives[6].get().workers, 3);
    // Loaded again, they ride a new shared watch: member 0 holds one watcher again.
    wait_until(
        "one shared watch after the reloads",
        Duration::from_secs(10),
        || watchers(&etcd),
        |n| *n == 1,
    )
    .await;
    admin
        .kv()
        .put("/tenants/t8/app/port", "9008")
        .await
        .unwrap();
    wait_for(&lives[8], "t8's port on the new shared watch", |app| {
        app.port == 9008
    })
    .await;
    assert!(lives[8].revision() > last);
}

/// The events up to the next value applied.
async fn until_applied(events: &mut LiveEvents) -> Vec<LiveEvent> {
    let mut seen = Vec::new();
    while !matches!(seen.last(), Some(LiveEvent::Applied { .. })) {
        let event = tokio::time::timeout(Duration::from_secs(15), events.next())
            .await
            .unwrap_or_else(|_| panic!("no value applied within 15 s: {seen:?}"))
            .expect("events ended");
        seen.push(event);
    }
    seen
}

fn resynced(event: &LiveEvent) -> bool {
    matches!(event, LiveEvent::Resynced { .. })
}

async fn put_until_written(client: &Client, key: &str, value: &str) -> i64 {
    loop {
        if let Ok(put) = client.kv().put(key, value).await {
            return put.header.revision;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
