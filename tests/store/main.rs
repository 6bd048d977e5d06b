//! The typed Store against a real etcd: values written by hand with etcdctl load; values saved by
//! the crate read naturally with etcdctl and share one revision; compare-and-swap; namespaces;
//! decode errors listing every problem; the txn limit.

#[path = "../support/mod.rs"]
mod support;

mod change;
mod history;
mod large;
mod together;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use etcd_config::ProblemKind;
use etcd_config::{Error, EtcdConfig, KeyRange, Store};
use serde::{Deserialize, Serialize};
use support::{Etcd, Front};

/// The config the change and history tests share: defaults, a secret, an optional field and a
/// validation rule.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(
    prefix = "/svc/pool",
    rename_all = "kebab-case",
    validate = "Pool::check"
)]
struct Pool {
    #[etcd(default = 4)]
    size: u32,
    #[etcd(default)]
    host: String,
    #[etcd(secret, default)]
    password: String,
    max_idle: Option<u32>,
}

impl Pool {
    fn check(&self) -> Result<(), String> {
        (self.size > 0 && self.size <= 100)
            .then_some(())
            .ok_or_else(|| format!("size must be 1..=100, not {}", self.size))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Route {
    path: String,
    weight: u32,
}

#[derive(EtcdConfig, Debug, Clone, PartialEq, Default)]
#[etcd(prefix = "/tls-settings", rename_all = "kebab-case")]
struct TlsSettings {
    /// PEM certificate path.
    #[etcd(default = "/etc/cert.pem")]
    cert_path: String,
    #[etcd(default)]
    enabled: bool,
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(
    prefix = "/services/gateway",
    rename_all = "kebab-case",
    validate = "Gateway::check"
)]
struct Gateway {
    /// Port to listen on.
    #[etcd(default = 8080)]
    listen_port: u16,
    /// Where requests go.
    upstream: String,
    #[etcd(default)]
    allowed_origins: Vec<String>,
    request_timeout: Option<Duration>,
    #[etcd(nested)]
    tls: TlsSettings,
    #[etcd(rename = "log")]
    log_level: LogLevel,
    #[etcd(each)]
    routes: BTreeMap<String, Route>,
    #[etcd(secret)]
    api_token: String,
    #[etcd(skip)]
    cache: Vec<u8>,
}

impl Gateway {
    fn check(&self) -> Result<(), String> {
        if self.listen_port == 0 {
            return Err("listen-port must not be 0".into());
        }
        Ok(())
    }

    fn sample() -> Gateway {
        Gateway {
            listen_port: 9000,
            upstream: "http://backend:80".into(),
            allowed_origins: vec!["a.example".into(), "b.example".into()],
            request_timeout: Some(Duration::from_secs(90)),
            tls: TlsSettings {
                cert_path: "/srv/cert.pem".into(),
                enabled: true,
            },
            log_level: LogLevel::Warn,
            routes: BTreeMap::from([(
                "api".to_owned(),
                Route {
                    path: "/api".into(),
                    weight: 3,
                },
            )]),
            api_token: "s3cret-token".into(),
            cache: Vec::new(),
        }
    }
}

fn etcdctl_ok(etcd: &Etcd, args: &[&str]) -> String {
    let out = etcd.etcdctl(args);
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Keys written by hand with etcdctl load into the struct; absent keys take their defaults.
#[tokio::test]
async fn load_what_etcdctl_wrote() {
    let etcd = Etcd::single().await;
    for (key, value) in [
        ("/services/gateway/upstream", "http://a:80"),
        ("/services/gateway/log", "debug"),
        ("/services/gateway/request-timeout", "1m30s"),
        ("/services/gateway/allowed-origins", r#"["x","y"]"#),
        ("/services/gateway/routes/web", r#"{"path":"/","weight":1}"#),
        ("/services/gateway/tls/enabled", "true"),
        ("/services/gateway/api-token", "tok"),
    ] {
        etcdctl_ok(&etcd, &["put", key, value]);
    }
    let store = Store::new(etcd.client().await);
    let loaded = store.load_versioned::<Gateway>().await.unwrap();
    let gw = loaded.value;
    assert_eq!(gw.listen_port, 8080, "default");
    assert_eq!(gw.upstream, "http://a:80");
    assert_eq!(gw.log_level, LogLevel::Debug);
    assert_eq!(gw.request_timeout, Some(Duration::from_secs(90)));
    assert_eq!(gw.allowed_origins, ["x", "y"]);
    assert_eq!(
        gw.routes["web"],
        Route {
            path: "/".into(),
            weight: 1
        }
    );
    assert_eq!(gw.tls.cert_path, "/etc/cert.pem", "nested default");
    assert!(gw.tls.enabled);
    assert_eq!(gw.api_token, "tok");
    let header = etcd.client().await.kv().get("/x").await.unwrap().header;
    assert_eq!(loaded.revision, header.revision);
}

/// A save is one txn: every key carries the same mod revision, the one save returned, and
/// etcdctl shows plain, hand-editable values.
#[tokio::test]
async fn save_is_one_txn_readable_by_etcdctl() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let revision = store.save(&Gateway::sample()).await.unwrap();

    let check = etcd.client().await;
    let keys = check
        .kv()
        .get(KeyRange::prefix("/services/gateway/"))
        .await
        .unwrap();
    assert!(keys.kvs.len() >= 9);
    assert!(keys.kvs.iter().all(|kv| kv.mod_revision == revision));

    let get = |key: &str| {
        etcdctl_ok(&etcd, &["get", "--print-value-only", key])
            .trim_end()
            .to_owned()
    };
    assert_eq!(get("/services/gateway/listen-port"), "9000");
    assert_eq!(get("/services/gateway/upstream"), "http://backend:80");
    assert_eq!(get("/services/gateway/request-timeout"), "1m30s");
    assert_eq!(get("/services/gateway/log"), "warn");
    assert_eq!(
        get("/services/gateway/allowed-origins"),
        r#"["a.example","b.example"]"#
    );
    assert_eq!(
        get("/services/gateway/routes/api"),
        r#"{"path":"/api","weight":3}"#
    );
    assert_eq!(get("/services/gateway/tls/cert-path"), "/srv/cert.pem");
    assert_eq!(get("/services/gateway/tls/enabled"), "true");

    let back: Gateway = store.load().await.unwrap();
    assert_eq!(back, Gateway::sample());
}

/// None fields and removed `each` entries are deleted by the same txn; keys no field owns are
/// left alone.
#[tokio::test]
async fn save_deletes_none_fields_and_removed_entries() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let mut gw = Gateway::sample();
    gw.routes.insert(
        "old".into(),
        Route {
            path: "/old".into(),
            weight: 1,
        },
    );
    store.save(&gw).await.unwrap();
    etcdctl_ok(&etcd, &["put", "/services/gateway/someone-elses", "keep"]);

    gw.request_timeout = None;
    gw.routes.remove("old");
    let revision = store.save(&gw).await.unwrap();

    let kv = etcd.client().await.kv();
    assert!(kv
        .get("/services/gateway/request-timeout")
        .await
        .unwrap()
        .kvs
        .is_empty());
    assert!(kv
        .get("/services/gateway/routes/old")
        .await
        .unwrap()
        .kvs
        .is_empty());
    assert_eq!(
        kv.get("/services/gateway/someone-elses")
            .await
            .unwrap()
            .count,
        1
    );
    let history = kv.get("/services/gateway/routes/api").await.unwrap();
    assert_eq!(history.kvs[0].mod_revision, revision);
    assert_eq!(store.load::<Gateway>().await.unwrap(), gw);
}

/// Every problem is reported at once, with keys, expected types and parse errors, and a
/// secret's value never appears.
#[tokio::test]
async fn decode_errors_list_every_problem() {
    let etcd = Etcd::single().await;
    etcdctl_ok(&etcd, &["put", "/services/gateway/listen-port", "http"]);
    etcdctl_ok(&etcd, &["put", "/services/gateway/request-timeout", "soon"]);
    let store = Store::new(etcd.client().await);
    let err = store.load::<Gateway>().await.unwrap_err();
    let Error::Decode { problems, .. } = &err else {
        panic!("expected a decode error, got {err}")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"/services/gateway/listen-port"), "{err}");
    assert!(keys.contains(&"/services/gateway/request-timeout"), "{err}");
    assert!(keys.contains(&"/services/gateway/upstream"), "{err}");
    assert!(keys.contains(&"/services/gateway/api-token"), "{err}");
    assert!(keys.contains(&"/services/gateway/log"), "{err}");
    let port = problems
        .iter()
        .find(|p| p.key.ends_with("listen-port"))
        .unwrap();
    assert!(
        matches!(&port.kind, ProblemKind::Invalid { expected, value: Some(v), .. } if expected == "u16" && v == "http")
    );
    let text = err.to_string();
    assert!(
        text.contains("listen-port") && text.contains("u16") && text.contains("upstream"),
        "{text}"
    );

    // A secret that does not parse: named, but its value is not shown.
    etcdctl_ok(&etcd, &["put", "/secret-test/pin", "hunter2"]);
    #[derive(EtcdConfig, Debug)]
    #[etcd(prefix = "/secret-test")]
    struct Pin {
        #[etcd(secret)]
        pin: u32,
    }
    let err = store.load::<Pin>().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("/secret-test/pin"), "{text}");
    assert!(!text.contains("hunter2"), "secret leaked: {text}");
}

/// save_if_unchanged writes only if nothing under the prefix changed since the revision: a put,
/// a delete, or a new key by someone else is a Conflict, and nothing is written.
#[tokio::test]
async fn save_if_unchanged_detects_every_kind_of_change() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let other = etcd.client().await.kv();
    store.save(&Gateway::sample()).await.unwrap();

    type Change = fn(
        &etcd_config::client::Kv,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = etcd_config::Result<()>>>,
    >;
    let changes: [(&str, Change); 3] = [
        ("put", |kv| {
            let kv = kv.clone();
            Box::pin(async move {
                kv.put("/services/gateway/upstream", "http://other")
                    .await
                    .map(drop)
            })
        }),
        ("delete", |kv| {
            let kv = kv.clone();
            Box::pin(async move { kv.delete("/services/gateway/routes/api").await.map(drop) })
        }),
        ("new key", |kv| {
            let kv = kv.clone();
            Box::pin(async move {
                kv.put(
                    "/services/gateway/routes/new",
                    r#"{"path":"/n","weight":1}"#,
                )
                .await
                .map(drop)
            })
        }),
    ];
    for (what, change) in changes {
        let loaded = store.load_versioned::<Gateway>().await.unwrap();
        change(&other).await.unwrap();
        let before = other
            .get(KeyRange::prefix("/services/gateway/"))
            .await
            .unwrap();
        let mut edited = loaded.value.clone();
        edited.listen_port = 1234;
        let err = store
            .save_if_unchanged(&edited, loaded.revision)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Conflict { current, .. } if current == before.header.revision),
            "{what}: {err}"
        );
        let after = other
            .get(KeyRange::prefix("/services/gateway/"))
            .await
            .unwrap();
        assert_eq!(
            after.header.revision, before.header.revision,
            "{what}: something was written"
        );
    }

    // Without a conflicting writer it succeeds.
    let loaded = store.load_versioned::<Gateway>().await.unwrap();
    let mut edited = loaded.value.clone();
    edited.listen_port = 4321;
    let revision = store
        .save_if_unchanged(&edited, loaded.revision)
        .await
        .unwrap();
    assert!(revision > loaded.revision);
    assert_eq!(store.load::<Gateway>().await.unwrap().listen_port, 4321);
}

/// A namespaced store reads and writes only under its namespace; delete removes exactly the
/// struct's prefix (not a sibling whose name starts the same).
#[tokio::test]
async fn namespaces_isolate_and_delete_is_exact() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let staging = store.namespace("/staging");
    let mut gw = Gateway::sample();
    store.save(&gw).await.unwrap();
    gw.upstream = "http://staging".into();
    staging.save(&gw).await.unwrap();
    etcdctl_ok(&etcd, &["put", "/services/gateway2/x", "sibling"]);

    assert_eq!(
        store.load::<Gateway>().await.unwrap().upstream,
        "http://backend:80"
    );
    assert_eq!(
        staging.load::<Gateway>().await.unwrap().upstream,
        "http://staging"
    );
    let kv = etcd.client().await.kv();
    assert_eq!(
        kv.get("/staging/services/gateway/upstream")
            .await
            .unwrap()
            .kvs[0]
            .value,
        b"http://staging"
    );

    staging.delete::<Gateway>().await.unwrap();
    assert_eq!(
        kv.get(KeyRange::prefix("/staging/")).await.unwrap().count,
        0
    );
    assert!(store.load::<Gateway>().await.is_ok());
    store.delete::<Gateway>().await.unwrap();
    assert_eq!(
        kv.get("/services/gateway2/x").await.unwrap().count,
        1,
        "a sibling prefix was deleted"
    );
    assert!(matches!(
        store.load::<Gateway>().await,
        Err(Error::Decode { .. })
    ));
}

/// A struct needing more txn ops than the limit is refused before anything is sent; validate
/// rejects bad values before saving.
#[tokio::test]
async fn txn_limit_and_validation_are_checked_before_sending() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let kv = etcd.client().await.kv();
    let before = kv.get("/none").await.unwrap().header.revision;

    #[derive(EtcdConfig, Debug)]
    #[etcd(prefix = "/big")]
    struct Big {
        #[etcd(each)]
        items: HashMap<String, u32>,
    }
    let big = Big {
        items: (0..200).map(|i| (format!("k{i}"), i)).collect(),
    };
    let err = store.save(&big).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TxnTooLarge {
                ops: 200,
                limit: 128,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("200") && err.to_string().contains("128"));
    let small = store.clone().max_txn_ops(5);
    let err = small.save(&Gateway::sample()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TxnTooLarge {
                ops: 9,
                limit: 5,
                ..
            }
        ),
        "{err}"
    );

    let mut bad = Gateway::sample();
    bad.listen_port = 0;
    let err = store.save(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("listen-port must not be 0"));
    assert_eq!(
        kv.get("/none").await.unwrap().header.revision,
        before,
        "something was written"
    );
}

/// The schema lists every key with its type, default, docs and flags; secrets show no default.
#[test]
fn schema_table_and_json() {
    let schema = Gateway::schema();
    assert_eq!(schema.prefix, "/services/gateway");
    let port = schema
        .fields
        .iter()
        .find(|f| f.field == "listen_port")
        .unwrap();
    assert_eq!(port.key, "/services/gateway/listen-port");
    assert_eq!(port.type_name, "u16");
    assert_eq!(port.default.as_deref(), Some("8080"));
    assert_eq!(port.doc, "Port to listen on.");
    assert!(!port.required);
    let tls = schema
        .fields
        .iter()
        .find(|f| f.field == "tls.cert_path")
        .unwrap();
    assert_eq!(tls.key, "/services/gateway/tls/cert-path");
    assert_eq!(tls.default.as_deref(), Some("/etc/cert.pem"));
    let token = schema
        .fields
        .iter()
        .find(|f| f.field == "api_token")
        .unwrap();
    assert!(token.secret && token.required);
    assert!(schema
        .fields
        .iter()
        .any(|f| f.key == "/services/gateway/routes/<name>"));
    assert!(!schema.fields.iter().any(|f| f.field == "cache"));

    let table = schema.to_string();
    assert!(table.starts_with("KEY"));
    assert!(table.contains("/services/gateway/listen-port") && table.contains("8080"));
    let json = schema.to_json_schema();
    assert_eq!(
        json["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(json["properties"]["listen-port"]["type"], "integer");
    assert_eq!(json["properties"]["api-token"]["writeOnly"], true);
    assert!(json["required"]
        .as_array()
        .unwrap()
        .contains(&"upstream".into()));
}

/// A struct without `each` maps saves in a single Txn and no read (etcd's own counters), and a
/// `None` field's key is deleted by that Txn.
#[tokio::test]
async fn save_without_maps_is_one_round_trip() {
    #[derive(EtcdConfig, Debug, Clone, PartialEq)]
    #[etcd(prefix = "/flat")]
    struct Flat {
        a: u32,
        b: Option<String>,
    }
    // It counts on the member itself: no proxy in between.
    let etcd = Etcd::builder(1).front(Front::Direct).start().await;
    let store = Store::new(etcd.client().await);
    store
        .save(&Flat {
            a: 1,
            b: Some("x".into()),
        })
        .await
        .unwrap();
    let ranges = etcd.grpc_handled(0, "Range", "OK");
    let txns = etcd.grpc_handled(0, "Txn", "OK");
    let revision = store.save(&Flat { a: 2, b: None }).await.unwrap();
    assert_eq!(
        etcd.grpc_handled(0, "Range", "OK"),
        ranges,
        "save read before writing"
    );
    assert_eq!(etcd.grpc_handled(0, "Txn", "OK"), txns + 1);

    let kv = etcd.client().await.kv();
    assert!(kv.get("/flat/b").await.unwrap().kvs.is_empty());
    assert_eq!(
        kv.get("/flat/a").await.unwrap().kvs[0].mod_revision,
        revision
    );
    assert_eq!(store.load::<Flat>().await.unwrap(), Flat { a: 2, b: None });
}
