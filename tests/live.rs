//! Typed updates and Live against a real etcd: one update per revision, nothing missed or
//! repeated across failures and compactions, bad values rejected while the last good one stays,
//! token expiry, the cache file, and cleanup when the last handle goes.

mod support;

use std::time::{Duration, Instant};

use etcd_config::client::TxnOp;
use etcd_config::{Client, Error, EtcdConfig, LiveOptions, Store};
use etcd_config::{ConfigWatch, Update};
use futures_util::StreamExt;
use support::{Etcd, Front, ROOT_PASSWORD};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/app", rename_all = "kebab-case", validate = "App::check")]
struct App {
    name: String,
    #[etcd(default = 8080)]
    port: u16,
    #[etcd(default)]
    workers: u32,
    #[etcd(default)]
    counter: u64,
}

impl App {
    fn check(&self) -> Result<(), String> {
        if self.workers > 1000 {
            return Err(format!(
                "workers must be at most 1000, not {}",
                self.workers
            ));
        }
        Ok(())
    }
}

async fn next<T>(watch: &mut ConfigWatch<T>) -> Result<Update<T>, Error> {
    tokio::time::timeout(Duration::from_secs(15), watch.next())
        .await
        .expect("no update within 15 s")
        .expect("watch ended")
}

/// Asserts that no update arrives for a while.
async fn quiet<T: std::fmt::Debug>(watch: &mut ConfigWatch<T>) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
        panic!("unexpected item: {item:?}");
    }
}

async fn seeded(etcd: &Etcd) -> Store {
    let store = Store::new(etcd.client().await);
    etcd.client()
        .await
        .kv()
        .put("/app/name", "web")
        .await
        .unwrap();
    store
}

/// A txn writing three fields is one update listing exactly those fields; a revision that
/// changes nothing the struct stores (same value, unknown key) gives none.
#[tokio::test]
async fn one_update_per_txn() {
    let etcd = Etcd::single().await;
    let store = seeded(&etcd).await;
    let mut watch = store.watch::<App>().await.unwrap();
    let kv = etcd.client().await.kv();

    let txn = kv
        .txn()
        .and_then([
            TxnOp::put("/app/port", "9000"),
            TxnOp::put("/app/workers", "4"),
            TxnOp::put("/app/name", "api"),
        ])
        .await
        .unwrap();
    let update = next(&mut watch).await.unwrap();
    assert_eq!(update.revision, txn.header.revision);
    assert_eq!(update.changed, ["name", "port", "workers"]);
    assert_eq!(
        (
            update.config.port,
            update.config.workers,
            update.config.name.as_str()
        ),
        (9000, 4, "api")
    );
    assert_eq!(update.previous.port, 8080);

    kv.put("/app/port", "9000").await.unwrap(); // same value
    kv.put("/app/unrelated", "x").await.unwrap(); // a key no field reads
    quiet(&mut watch).await;
}

/// A thousand rapid txns from another client: each txn's revision appears exactly once, in
/// increasing order, and the final value equals what etcd holds.
#[tokio::test]
async fn a_thousand_txns() {
    let etcd = Etcd::single().await;
    let store = seeded(&etcd).await;
    let mut watch = store.watch::<App>().await.unwrap();
    let writer = etcd.client().await;
    let writes = tokio::spawn(async move {
        let mut revisions = Vec::new();
        for i in 1..=1000u64 {
            let txn = writer
                .kv()
                .txn()
                .and_then([
                    TxnOp::put("/app/counter", i.to_string()),
                    TxnOp::put("/app/workers", (i % 7).to_string()),
                ])
                .await
                .unwrap();
            revisions.push(txn.header.revision);
        }
        revisions
    });
    let mut seen = Vec::new();
    while seen.len() < 1000 {
        seen.push(next(&mut watch).await.unwrap().revision);
    }
    let written = writes.await.unwrap();
    assert_eq!(seen, written);
    let held: App = store.load().await.unwrap();
    assert_eq!(held.counter, 1000);
    quiet(&mut watch).await;
}

/// Stop the member the watch uses mid-stream, keep writing, restart it: no revision lost or
/// repeated.
#[tokio::test]
async fn member_stopped_mid_stream() {
    let mut etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    client.kv().put("/app/name", "web").await.unwrap();
    let store = Store::new(client.clone());
    let mut watch = store.watch::<App>().await.unwrap();

    let used = etcd.member_in_use(&client).await;
    let writer = Client::connect(etcd.endpoints(), etcd.options())
        .await
        .unwrap();
    let mut written = Vec::new();
    let mut counter = 0u64;
    let mut write = async |writer: &Client, written: &mut Vec<i64>| {
        counter += 1;
        if let Ok(put) = writer.kv().put("/app/counter", counter.to_string()).await {
            written.push(put.header.revision);
        }
    };
    for _ in 0..5 {
        write(&writer, &mut written).await;
    }
    etcd.stop(used);
    while written.len() < 15 {
        write(&writer, &mut written).await;
    }
    etcd.restart(used).await;
    while written.len() < 20 {
        write(&writer, &mut written).await;
    }
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let update = next(&mut watch).await.unwrap();
        assert!(
            !update.resynced,
            "resumed, not reloaded: {}",
            update.revision
        );
        seen.push(update.revision);
    }
    assert_eq!(seen, written);
}

/// The watcher is cut off while others write and compact past its revision: when it comes
/// back it reloads once, and yields one update with the value etcd holds.
#[tokio::test]
async fn compaction_while_disconnected() {
    let mut etcd = Etcd::cluster().await;
    let admin = etcd.client().await;
    admin.kv().put("/app/name", "web").await.unwrap();
    // The watcher only knows member 0.
    let watcher = Client::connect([etcd.endpoint(0)], etcd.options())
        .await
        .unwrap();
    let mut watch = Store::new(watcher).watch::<App>().await.unwrap();

    etcd.stop(0);
    let survivors = Client::connect([etcd.endpoint(1), etcd.endpoint(2)], etcd.options())
        .await
        .unwrap();
    let mut last = 0;
    for i in 1..=5 {
        loop {
            if let Ok(put) = survivors.kv().put("/app/counter", i.to_string()).await {
                last = put.header.revision;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    survivors.kv().compact(last).physical().await.unwrap();
    etcd.restart(0).await;

    let update = next(&mut watch).await.unwrap();
    assert_eq!(update.config.counter, 5);
    assert_eq!(update.changed, ["counter"]);
    assert!(update.revision >= last);
    assert!(update.resynced, "loaded again, not replayed");
    quiet(&mut watch).await;
}

/// A value that does not parse, or that validate rejects, is an error item naming revision and
/// key; Live keeps the last good value; the next good revision applies against everything etcd
/// holds. Deleting a defaulted key restores the default; deleting a required key is rejected.
#[tokio::test]
async fn bad_values_are_rejected_and_live_keeps_the_last_good() {
    let etcd = Etcd::single().await;
    let store = seeded(&etcd).await;
    let mut watch = store.watch::<App>().await.unwrap();
    let mut live = store.live::<App>().await.unwrap();
    assert_eq!(live.get().name, "web");

    let out = etcd.etcdctl(&["put", "/app/port", "not-a-port"]);
    assert!(out.status.success());
    let err = next(&mut watch).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Decode { .. }), "{text}");
    assert!(
        text.contains("/app/port") && text.contains("not-a-port") && text.contains("u16"),
        "{text}"
    );
    let bad_revision = etcd
        .client()
        .await
        .kv()
        .get("/app/port")
        .await
        .unwrap()
        .header
        .revision;
    assert!(text.contains(&bad_revision.to_string()), "{text}");

    // validate: also an error item.
    etcd.client()
        .await
        .kv()
        .put("/app/workers", "5000")
        .await
        .unwrap();
    let err = next(&mut watch).await.unwrap_err();
    assert!(
        err.to_string().contains("/app/port"),
        "the bad port is still there: {err}"
    );

    // Fix both in one txn: one good update, computed from everything etcd holds.
    let kv = etcd.client().await.kv();
    kv.txn()
        .and_then([
            TxnOp::put("/app/port", "7000"),
            TxnOp::put("/app/workers", "3"),
        ])
        .await
        .unwrap();
    let good = next(&mut watch).await.unwrap();
    assert_eq!((good.config.port, good.config.workers), (7000, 3));
    tokio::time::timeout(Duration::from_secs(10), live.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.get().port, 7000);
    let held = kv.get("/app/port").await.unwrap();
    assert_eq!(live.revision(), held.header.revision);

    // A value validate rejects leaves Live as it was.
    kv.put("/app/workers", "9999").await.unwrap();
    assert!(next(&mut watch).await.is_err());
    assert_eq!(live.get().workers, 3);

    // Deleting a defaulted key: back to the default.
    kv.put("/app/workers", "2").await.unwrap();
    next(&mut watch).await.unwrap();
    kv.delete("/app/port").await.unwrap();
    let back = next(&mut watch).await.unwrap();
    assert_eq!(back.config.port, 8080);
    assert_eq!(back.changed, ["port"]);

    // Deleting a required key: rejected; the last good value stays.
    kv.delete("/app/name").await.unwrap();
    let err = next(&mut watch).await.unwrap_err();
    assert!(err.to_string().contains("/app/name"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(live.get().name, "web");
    assert_eq!(live.get().port, 8080);
}

/// With a 1 s token TTL, a watch held for longer keeps delivering.
#[tokio::test]
async fn watch_survives_token_expiry() {
    let etcd = Etcd::builder(1).arg("--auth-token-ttl=1").start().await;
    let root = etcd.enable_auth().await;
    root.kv().put("/app/name", "web").await.unwrap();
    let store = Store::new(root.clone());
    let mut watch = store.watch::<App>().await.unwrap();
    let live = store.live::<App>().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let writer = etcd.client_as("root", ROOT_PASSWORD).await;
    writer.kv().put("/app/port", "1234").await.unwrap();
    assert_eq!(next(&mut watch).await.unwrap().config.port, 1234);
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.get().port != 1234 {
        assert!(Instant::now() < deadline, "live did not update");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Started while etcd is down, Live serves the cached copy and says it is stale; once etcd
/// answers, the fresh value replaces it. The cache file is private to its owner.
#[tokio::test]
async fn cache_file_when_etcd_is_down() {
    use std::os::unix::fs::PermissionsExt as _;

    let mut etcd = Etcd::single().await;
    let cache = etcd.dir().join("app-cache.json");
    let store = Store::new(etcd.client().await);
    store
        .client()
        .kv()
        .put("/app/name", "cached")
        .await
        .unwrap();
    {
        let live = store
            .live_with::<App>(LiveOptions::new().cache_file(&cache))
            .await
            .unwrap();
        assert!(!live.is_stale());
    }
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    store.client().kv().put("/app/name", "fresh").await.unwrap();
    etcd.stop(0);

    let offline = Client::connect_lazy(
        etcd.endpoints(),
        etcd.options().dial_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let store = Store::new(offline);
    let mut live = store
        .live_with::<App>(LiveOptions::new().cache_file(&cache))
        .await
        .unwrap();
    assert!(live.is_stale());
    assert_eq!(live.get().name, "cached");

    etcd.restart(0).await;
    tokio::time::timeout(Duration::from_secs(20), live.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(!live.is_stale());
    assert_eq!(live.get().name, "fresh");

    // Without a cache, an unreachable etcd is an error naming the endpoint.
    etcd.stop(0);
    let offline = Client::connect_lazy(
        etcd.endpoints(),
        etcd.options().dial_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let offline = Store::new(offline);
    let err = offline.live::<App>().await.unwrap_err();
    assert!(err.to_string().contains(&etcd.endpoint(0)), "{err}");

    // With a cache that cannot stand in (cut short, another config's), the error says both.
    let text = std::fs::read_to_string(&cache).unwrap();
    let other = text.replace("\"/app/\"", "\"/other/\"");
    for (broken, why) in [
        (&text[..20], "EOF"),
        (other.as_str(), "it caches /other/, not /app/"),
    ] {
        std::fs::write(&cache, broken).unwrap();
        let options = LiveOptions::new().cache_file(&cache);
        let err = offline.live_with::<App>(options).await.unwrap_err();
        let said = err.to_string();
        assert!(
            said.contains(&etcd.endpoint(0)) && said.contains(why),
            "{said}"
        );
        assert!(said.contains(&cache.display().to_string()), "{said}");
    }
}

/// Dropping the last Live handle ends its watch (etcd's watcher gauge drops): for a live config
/// the client's watch task drives, and for one with a settle window, which runs a task.
#[tokio::test]
async fn dropping_live_ends_its_watch() {
    // It counts on the member itself: no proxy in between.
    let etcd = Etcd::builder(1).front(Front::Direct).start().await;
    let store = seeded(&etcd).await;
    let watchers = |etcd: &Etcd| {
        etcd.metrics(0)
            .lines()
            .find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as i64
    };
    let settled = LiveOptions::new().settle(Duration::from_millis(100));
    let with_task = store.live_with::<App>(settled).await.unwrap();
    assert_eq!(watchers(&etcd), 1);
    drop(with_task);
    let deadline = Instant::now() + Duration::from_secs(10);
    while watchers(&etcd) != 0 {
        assert!(
            Instant::now() < deadline,
            "the task's watch was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = store.live::<App>().await.unwrap();
    let copy = live.clone();
    assert_eq!(watchers(&etcd), 1);
    drop(live);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(watchers(&etcd), 1, "a clone is still alive");
    assert_eq!(copy.get().name, "web");
    drop(copy);
    let deadline = Instant::now() + Duration::from_secs(10);
    while watchers(&etcd) != 0 {
        assert!(Instant::now() < deadline, "the watch was not cancelled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A config whose `validate` panics on one value.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/fragile", validate = "Fragile::check")]
struct Fragile {
    #[etcd(default)]
    mode: String,
}

impl Fragile {
    fn check(&self) -> Result<(), String> {
        assert!(self.mode != "boom", "a validate function that panics");
        Ok(())
    }
}

/// The client's watch task applies most live configs' updates: a `validate` that panics ends
/// that live config, saying why (its `changed` fails, its status says stopped), and every
/// other live config of the client goes on following.
#[tokio::test]
async fn a_panicking_validate_ends_only_its_own_live_config() {
    let etcd = Etcd::single().await;
    let store = seeded(&etcd).await;
    let mut fragile = store.live::<Fragile>().await.unwrap();
    let mut app = store.live::<App>().await.unwrap();
    let kv = etcd.client().await.kv();
    kv.put("/fragile/mode", "boom").await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), fragile.changed())
        .await
        .expect("changed resolves")
        .unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert!(
        matches!(
            fragile.status().state,
            etcd_config::FollowerState::Stopped { .. }
        ),
        "{:?}",
        fragile.status().state
    );
    kv.put("/app/name", "after").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), app.changed())
        .await
        .expect("the other live config still follows")
        .unwrap();
    assert_eq!(app.get().name, "after");
}
