//! A namespaced client against a real etcd: every key of KV, Txn, Watch, locks and config
//! stores goes under the namespace and comes back without it, as a plain client and etcdctl
//! see; keys outside it are out of reach, even for "every key" ranges.

mod support;

use std::time::Duration;

use etcd_config::client::{Compare, CompareOp, Mutex, TxnOp, TxnOpResponse};
use etcd_config::client::{Permission, PermissionKind};
use etcd_config::{Access, EtcdConfig, KeyRange, Keyring, Secret, ServerErrorKind, Store};
use futures_util::StreamExt;
use support::Etcd;

fn keys(page: &etcd_config::client::GetResponse) -> Vec<String> {
    page.kvs
        .iter()
        .map(|kv| kv.key_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn kv_txn_and_watch_stay_in_the_namespace() {
    let etcd = Etcd::single().await;
    let raw = etcd.client().await;
    let tenant = raw.namespace("/tenant-a");
    raw.kv().put("/outside", "o").await.unwrap();
    raw.kv().put("/tenant-b/x", "b").await.unwrap();
    let mut watch = tenant.watch(KeyRange::prefix("/")).await.unwrap();

    tenant.kv().put("/x", "1").await.unwrap();
    tenant.kv().put("/y/z", "2").await.unwrap();
    let out = etcd.etcdctl(&["get", "/tenant-a/x", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    // Every kind of range, all inside.
    let all = tenant.kv().get(KeyRange::all()).await.unwrap();
    assert_eq!(keys(&all), ["/x", "/y/z"]);
    let from = tenant.kv().get(KeyRange::from_key("/y")).await.unwrap();
    assert_eq!(keys(&from), ["/y/z"]);
    let prefix = tenant.kv().get(KeyRange::prefix("/y/")).await.unwrap();
    assert_eq!(keys(&prefix), ["/y/z"]);
    let range = tenant.kv().get(KeyRange::range("/a", "/y")).await.unwrap();
    assert_eq!(keys(&range), ["/x"]);

    // A txn: compares, nested ops and answers in the namespace.
    let answer = tenant
        .kv()
        .txn()
        .when([Compare::value("/x", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("/x", "3"), TxnOp::get(KeyRange::prefix("/"))])
        .await
        .unwrap();
    assert!(answer.succeeded);
    match &answer.responses[1] {
        TxnOpResponse::Get(page) => assert_eq!(keys(page), ["/x", "/y/z"]),
        other => panic!("{other:?}"),
    }
    let put = tenant.kv().put("/x", "4").prev_kv().await.unwrap();
    assert_eq!(put.prev_kv.unwrap().key_str().unwrap(), "/x");

    // Deleting every key deletes only the tenant's.
    let deleted = tenant.kv().delete(KeyRange::all()).await.unwrap();
    assert_eq!(deleted.deleted, 2);
    let left = raw.kv().get(KeyRange::all()).await.unwrap();
    assert_eq!(keys(&left), ["/outside", "/tenant-b/x"]);

    // The watch saw the tenant's changes, by their names in the namespace, and nothing else.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let response = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.extend(
            response
                .events
                .iter()
                .map(|e| e.kv.key_str().unwrap().to_owned()),
        );
    }
    assert_eq!(seen, ["/x", "/y/z", "/x", "/x", "/x", "/y/z"]);
}

/// A lock taken through a namespaced client is the lock of the full name: `etcdctl lock
/// /tenant-a/locks/job` contends with `Mutex::new(.., "/locks/job")` on the tenant client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_namespaced_too() {
    let etcd = Etcd::single().await;
    let tenant = etcd.client().await.namespace("/tenant-a");
    let session = tenant.session(Duration::from_secs(10)).await.unwrap();
    let mut lock = Mutex::new(&session, "/locks/job");
    lock.lock().await.unwrap();
    let full = etcd.client().await;
    let page = full
        .kv()
        .get(KeyRange::prefix("/tenant-a/locks/job/"))
        .await
        .unwrap();
    assert_eq!(page.kvs.len(), 1);
    let command = etcd.etcdctl_command();
    let mut waiting = std::process::Command::new(&command[0])
        .env("ETCDCTL_API", "3")
        .args(&command[1..])
        .args(["lock", "/tenant-a/locks/job", "echo", "got it"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "the lock was not held"
    );
    lock.unlock().await.unwrap();
    let out = tokio::task::spawn_blocking(move || waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("got it"));
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/services/gw")]
struct Gw {
    port: u16,
}

/// A store over a namespaced client and a store with the same namespace address the same keys.
#[tokio::test]
async fn stores_over_a_namespaced_client() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let over = Store::new(client.namespace("/staging"));
    over.save(&Gw { port: 8080 }).await.unwrap();
    let beside = Store::new(client.clone()).namespace("/staging");
    assert_eq!(beside.load::<Gw>().await.unwrap().port, 8080);
    let out = etcd.etcdctl(&["get", "/staging/services/gw/port", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "8080");
    let live = over.live::<Gw>().await.unwrap();
    beside.save(&Gw { port: 9090 }).await.unwrap();
    support::wait_until(
        "the live config over the namespaced client follows",
        Duration::from_secs(10),
        || live.get().port,
        |&port| port == 9090,
    )
    .await;
}

#[derive(EtcdConfig, Debug, Clone)]
#[etcd(prefix = "/services/vault")]
struct Vault {
    port: u16,
    token: Secret<String>,
}

fn ring() -> Keyring {
    Keyring::new("k1", [7; 32]).unwrap()
}

/// `Store::namespace` is the store over the namespaced client: the two are interchangeable down
/// to the encryption of secrets (bound to the full key), messages name the full key, and
/// namespaces compose.
#[tokio::test]
async fn a_store_namespace_is_its_clients_namespace() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let over = Store::new(client.namespace("/staging")).with_keyring(ring());
    let beside = Store::new(client.clone())
        .namespace("/staging/")
        .with_keyring(ring());
    let value = Vault {
        port: 8200,
        token: Secret::new("s3cr3t-t0ken".to_owned()),
    };
    let revision = over.save(&value).await.unwrap();

    // Both name the keys as etcd holds them; the client of each addresses them locally.
    assert_eq!(over.prefix_of::<Vault>(), "/staging/services/vault/");
    assert_eq!(beside.prefix_of::<Vault>(), "/staging/services/vault/");
    let page = beside
        .client()
        .kv()
        .get(beside.range_of::<Vault>())
        .await
        .unwrap();
    assert_eq!(
        keys(&page),
        ["/services/vault/port", "/services/vault/token"]
    );
    assert_eq!(page.header.revision, revision);
    let stored = etcd.etcdctl(&["get", "/staging/services/vault/token", "--print-value-only"]);
    let stored = String::from_utf8_lossy(&stored.stdout);
    assert!(stored.starts_with("enc:v1:k1:"), "{stored}");

    // The secret sealed by one opens with the other: same full key, same associated data.
    let loaded = beside.load::<Vault>().await.unwrap();
    assert_eq!(loaded.token.expose(), "s3cr3t-t0ken");
    assert_eq!(loaded.port, 8200);

    // A hand-typed bad value is named by its full key, by either store.
    etcd.etcdctl(&["put", "/staging/services/vault/port", "eighty"]);
    for store in [&over, &beside] {
        let err = store.load::<Vault>().await.unwrap_err().to_string();
        assert!(err.contains("/staging/services/vault/port"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    // Namespaces compose, the store's after the client's.
    let nested = Store::new(client.namespace("/a")).namespace("/b");
    nested
        .save(&Vault {
            port: 1,
            token: Secret::new("x".to_owned()),
        })
        .await
        .unwrap();
    let out = etcd.etcdctl(&["get", "/a/b/services/vault/port", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    assert_eq!(nested.prefix_of::<Vault>(), "/a/b/services/vault/");
}

/// A grant from a namespaced store is on the full keys (etcd's permissions know no
/// namespace): a service whose client is in the namespace loads its config, and is refused the
/// same config outside the namespace.
#[tokio::test]
async fn a_namespaced_grant_covers_the_keys_as_etcd_holds_them() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    let admin = Store::new(root.clone()).namespace("/staging");
    admin.save(&Gw { port: 7000 }).await.unwrap();
    Store::new(root.clone())
        .save(&Gw { port: 1 })
        .await
        .unwrap();
    root.auth().role_add("gw").await.unwrap();
    admin.grant::<Gw>("gw", Access::Read).await.unwrap();
    assert_eq!(
        root.auth().role_get("gw").await.unwrap(),
        [Permission::new(
            PermissionKind::Read,
            KeyRange::prefix("/staging/services/gw/")
        )]
    );
    root.auth().user_add("gw", "pw").await.unwrap();
    root.auth().user_grant_role("gw", "gw").await.unwrap();

    let service = etcd.client_as("gw", "pw").await;
    let staged = Store::new(service.namespace("/staging"));
    assert_eq!(staged.load::<Gw>().await.unwrap().port, 7000);
    // Refusals name the range as etcd saw it, namespace included.
    let err = Store::new(service.namespace("/prod"))
        .load::<Gw>()
        .await
        .unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::PermissionDenied),
        "{err}"
    );
    assert!(
        err.to_string().contains("Range prefix /prod/services/gw/"),
        "{err}"
    );
    let err = Store::new(service).load::<Gw>().await.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::PermissionDenied),
        "{err}"
    );
}
