//! Input a careful library must survive, against a real etcd: keys that are not UTF-8 under a
//! config's prefix, nested structs whose own `validate` refuses them, map entry names that
//! would not load back, JSON-looking values, and values larger than the client may send. Each
//! is reported by name, and etcd holds exactly what it held before a refused save (read back
//! with a second client or etcdctl).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_config::ProblemKind;
use etcd_config::{Client, Error, EtcdConfig, KeyRange, Store};
use futures_util::StreamExt;
use support::Etcd;

#[derive(EtcdConfig, Debug, Clone, PartialEq, Default)]
#[etcd(prefix = "/unused", rename_all = "kebab-case", validate = "Tls::check")]
struct Tls {
    #[etcd(default)]
    enabled: bool,
    #[etcd(default)]
    cert_path: String,
}

impl Tls {
    fn check(&self) -> Result<(), String> {
        if self.enabled && self.cert_path.is_empty() {
            return Err("cert-path is required when TLS is enabled".into());
        }
        Ok(())
    }
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/hostile", rename_all = "kebab-case")]
struct Service {
    name: String,
    #[etcd(nested)]
    tls: Tls,
    #[etcd(each)]
    routes: BTreeMap<String, String>,
    #[etcd(each, nested)]
    backends: BTreeMap<String, Tls>,
    extra: Option<serde_json::Value>,
}

fn sample() -> Service {
    Service {
        name: "svc".into(),
        tls: Tls::default(),
        routes: BTreeMap::from([("api".to_owned(), "/api".to_owned())]),
        backends: BTreeMap::new(),
        extra: None,
    }
}

/// Every key under the prefix with its value, read by a client of its own.
async fn held(etcd: &Etcd) -> (i64, Vec<(Vec<u8>, Vec<u8>)>) {
    let reader = Client::connect(etcd.endpoints(), etcd.options())
        .await
        .unwrap();
    let got = reader
        .kv()
        .get(KeyRange::prefix("/hostile/"))
        .await
        .unwrap();
    let kvs = got.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    (got.header.revision, kvs)
}

fn problems(err: Error) -> Vec<(String, String, ProblemKind)> {
    match err {
        Error::Decode { problems, .. } => problems
            .into_iter()
            .map(|p| (p.key, p.field, p.kind))
            .collect(),
        other => panic!("expected a decode error, got {other}"),
    }
}

/// Two binary keys whose lossy names are the same: the load reports both, escaped, instead of
/// panicking or merging them; a watch reports them as an error item and goes on; a save of the
/// map removes them from etcd.
#[tokio::test]
async fn binary_keys_are_reported_never_merged_and_removed_by_save() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let store = Store::new(client.clone());
    store.save(&sample()).await.unwrap();
    let mut watch = store.watch::<Service>().await.unwrap();

    client
        .kv()
        .put(b"/hostile/routes/\xff".to_vec(), "a")
        .await
        .unwrap();
    client
        .kv()
        .put(b"/hostile/routes/\xfe".to_vec(), "b")
        .await
        .unwrap();
    let found = problems(store.load::<Service>().await.unwrap_err());
    let keys: Vec<&str> = found.iter().map(|(key, _, _)| key.as_str()).collect();
    assert_eq!(keys, ["/hostile/routes/\\xfe", "/hostile/routes/\\xff"]);
    assert!(found
        .iter()
        .all(|(_, _, kind)| *kind == ProblemKind::KeyNotUtf8));

    for _ in 0..2 {
        let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the watch stalled")
            .expect("the watch ended");
        let err = item.expect_err("a revision with a binary key is not a valid config");
        assert!(err.to_string().contains("/hostile/routes/\\xf"), "{err}");
    }

    let mut fixed = sample();
    fixed.name = "fixed".into();
    let rev = store.save(&fixed).await.unwrap();
    let (_, kvs) = held(&etcd).await;
    assert!(
        kvs.iter().all(|(k, _)| std::str::from_utf8(k).is_ok()),
        "a binary entry key was left behind: {kvs:?}"
    );
    assert_eq!(store.load::<Service>().await.unwrap(), fixed);
    let update = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(update.revision, rev);
    assert_eq!(*update.config, fixed);
}

/// A nested struct's own `validate` runs on save (nothing is sent), on load and on watch, and
/// the error names the nested field path; for `each, nested` maps, the entry's path.
#[tokio::test]
async fn nested_validate_runs_everywhere() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    store.save(&sample()).await.unwrap();
    let before = held(&etcd).await;
    let mut watch = store.watch::<Service>().await.unwrap();

    let mut bad = sample();
    bad.tls.enabled = true;
    let err = store.save(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("`tls`"), "{err}");
    assert!(err.to_string().contains("cert-path is required"), "{err}");
    let mut bad_entry = sample();
    bad_entry.backends.insert(
        "east".into(),
        Tls {
            enabled: true,
            cert_path: String::new(),
        },
    );
    let err = store.save(&bad_entry).await.unwrap_err();
    assert!(err.to_string().contains("`backends.east`"), "{err}");
    assert_eq!(held(&etcd).await, before, "a refused save changed etcd");

    // By hand, past the library: load and watch refuse it, naming the field.
    let out = etcd.etcdctl(&["put", "/hostile/tls/enabled", "true"]);
    assert!(out.status.success());
    let found = problems(store.load::<Service>().await.unwrap_err());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "tls");
    assert!(
        matches!(&found[0].2, ProblemKind::Rejected { reason } if reason.contains("cert-path"))
    );
    let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert!(item
        .unwrap_err()
        .to_string()
        .contains("cert-path is required"));
}

/// Entry names that would load back as something else (a `/` in a nested entry's name) or
/// that are empty are refused by `save` before anything is sent, naming the field and entry.
#[tokio::test]
async fn entry_names_that_cannot_round_trip_are_refused() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    store.save(&sample()).await.unwrap();
    let before = held(&etcd).await;

    let mut slash = sample();
    slash.backends.insert("a/b".into(), Tls::default());
    match store.save(&slash).await.unwrap_err() {
        Error::Encode { field, key, reason } => {
            assert_eq!(field, "backends.\"a/b\"");
            assert_eq!(key, "/hostile/backends/a/b");
            assert!(reason.contains('/'), "{reason}");
        }
        other => panic!("expected Error::Encode, got {other}"),
    }
    let mut empty = sample();
    empty.routes.insert(String::new(), "/x".into());
    let err = store.save(&empty).await.unwrap_err();
    assert!(
        matches!(&err, Error::Encode { field, .. } if field == "routes.\"\""),
        "{err}"
    );
    assert_eq!(held(&etcd).await, before, "a refused save changed etcd");

    // A `/` in a plain entry's name is one key, and loads back as the same entry.
    let mut nested_path = sample();
    nested_path.routes.insert("v1/users".into(), "/u".into());
    store.save(&nested_path).await.unwrap();
    assert_eq!(store.load::<Service>().await.unwrap(), nested_path);
}

/// JSON-looking strings inside a `serde_json::Value` load back as strings, and etcdctl shows
/// them quoted; a plain string stays raw.
#[tokio::test]
async fn json_looking_values_round_trip_through_etcd() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    for text in ["123", "true", "null", "[1]", "plain"] {
        let mut value = sample();
        value.name = text.into();
        value.extra = Some(serde_json::Value::String(text.into()));
        store.save(&value).await.unwrap();
        assert_eq!(store.load::<Service>().await.unwrap(), value);
        let out = etcd.etcdctl(&["get", "--print-value-only", "/hostile/name"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), text);
    }
    let out = etcd.etcdctl(&["get", "--print-value-only", "/hostile/extra"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "plain");
    let mut number = sample();
    number.extra = Some(serde_json::Value::String("123".into()));
    store.save(&number).await.unwrap();
    let out = etcd.etcdctl(&["get", "--print-value-only", "/hostile/extra"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "\"123\"");
}

/// A value over the client's max send size is refused by the client with the key, the size
/// and the limit; nothing reaches etcd.
#[tokio::test]
async fn oversized_values_are_refused_before_sending() {
    let etcd = Etcd::single().await;
    let options = etcd.options().max_send_message_size(64 * 1024);
    let client = Client::connect(etcd.client_endpoints(), options)
        .await
        .unwrap();
    let big = "x".repeat(100 * 1024);

    let err = client
        .kv()
        .put("/hostile/blob", big.clone())
        .await
        .unwrap_err();
    match &err {
        Error::RequestTooLarge {
            request,
            size,
            limit,
        } => {
            assert!(request.contains("/hostile/blob"), "{request}");
            assert!(*size > 100 * 1024, "{size}");
            assert_eq!(*limit, 64 * 1024);
        }
        other => panic!("expected RequestTooLarge, got {other}"),
    }
    assert!(!err.to_string().contains("may have been applied"), "{err}");

    let store = Store::new(client);
    store.save(&sample()).await.unwrap();
    let before = held(&etcd).await;
    let mut huge = sample();
    huge.routes.insert("big".into(), big);
    let err = store.save(&huge).await.unwrap_err();
    assert!(matches!(err, Error::RequestTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("/hostile/routes/big"), "{err}");
    assert_eq!(held(&etcd).await, before, "a refused save changed etcd");
}
