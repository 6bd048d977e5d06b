//! The cases: the same job done with etcd-config and, by hand, with etcd-client.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, Txn, TxnOp, WatchOptions};
use etcd_config::{EtcdConfig, KeyRange, Store};
use futures_util::StreamExt;

use crate::{compare, summarize, Row};

/// A 20-field settings struct, as a service might have.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/bench/svc", rename_all = "kebab-case")]
pub(crate) struct Service {
    name: String,
    upstream: String,
    region: String,
    owner: String,
    log_level: String,
    port: u16,
    admin_port: u16,
    workers: u32,
    max_conns: u32,
    queue_depth: u32,
    retries: u8,
    ratio: f64,
    enabled: bool,
    tracing: bool,
    read_only: bool,
    timeout: std::time::Duration,
    idle: std::time::Duration,
    origins: Vec<String>,
    tags: Vec<String>,
    weights: Vec<u32>,
}

pub(crate) fn service(i: u32) -> Service {
    Service {
        name: format!("svc-{i}"),
        upstream: "http://backend:8080".into(),
        region: "eu-west".into(),
        owner: "platform".into(),
        log_level: "info".into(),
        port: 8080,
        admin_port: 9090,
        workers: 8 + i % 4,
        max_conns: 1024,
        queue_depth: 128,
        retries: 3,
        ratio: 0.25,
        enabled: true,
        tracing: false,
        read_only: false,
        timeout: std::time::Duration::from_secs(30),
        idle: std::time::Duration::from_millis(1500),
        origins: vec!["https://a.example".into(), "https://b.example".into()],
        tags: vec!["prod".into(), "edge".into()],
        weights: vec![1, 2, 3],
    }
}

/// What a careful user writes without this crate: the keys and values of a `Service`.
fn encode_by_hand(s: &Service) -> Vec<(String, String)> {
    let p = "/bench/svc/";
    let dur = etcd_config::codec::format_duration;
    let json = |v: &dyn erased::Json| v.json();
    vec![
        (format!("{p}name"), s.name.clone()),
        (format!("{p}upstream"), s.upstream.clone()),
        (format!("{p}region"), s.region.clone()),
        (format!("{p}owner"), s.owner.clone()),
        (format!("{p}log-level"), s.log_level.clone()),
        (format!("{p}port"), s.port.to_string()),
        (format!("{p}admin-port"), s.admin_port.to_string()),
        (format!("{p}workers"), s.workers.to_string()),
        (format!("{p}max-conns"), s.max_conns.to_string()),
        (format!("{p}queue-depth"), s.queue_depth.to_string()),
        (format!("{p}retries"), s.retries.to_string()),
        (format!("{p}ratio"), s.ratio.to_string()),
        (format!("{p}enabled"), s.enabled.to_string()),
        (format!("{p}tracing"), s.tracing.to_string()),
        (format!("{p}read-only"), s.read_only.to_string()),
        (format!("{p}timeout"), dur(&s.timeout)),
        (format!("{p}idle"), dur(&s.idle)),
        (format!("{p}origins"), json(&s.origins)),
        (format!("{p}tags"), json(&s.tags)),
        (format!("{p}weights"), json(&s.weights)),
    ]
}

mod erased {
    pub(crate) trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).expect("serializable")
        }
    }
}

/// What a careful user writes without this crate: a `Service` from a prefix read, with serde.
fn decode_by_hand(kvs: &[etcd_client::KeyValue]) -> Service {
    let map: HashMap<&[u8], &[u8]> = kvs
        .iter()
        .map(|kv| (&kv.key()[b"/bench/svc/".len()..], kv.value()))
        .collect();
    let text = |k: &str| {
        std::str::from_utf8(map[k.as_bytes()])
            .expect("utf-8")
            .to_owned()
    };
    fn parse<T: serde::de::DeserializeOwned>(map: &HashMap<&[u8], &[u8]>, k: &str) -> T {
        serde_json::from_slice(map[k.as_bytes()]).expect("valid")
    }
    let dur = |k: &str| etcd_config::codec::parse_duration(&text(k)).expect("duration");
    Service {
        name: text("name"),
        upstream: text("upstream"),
        region: text("region"),
        owner: text("owner"),
        log_level: text("log-level"),
        port: parse(&map, "port"),
        admin_port: parse(&map, "admin-port"),
        workers: parse(&map, "workers"),
        max_conns: parse(&map, "max-conns"),
        queue_depth: parse(&map, "queue-depth"),
        retries: parse(&map, "retries"),
        ratio: parse(&map, "ratio"),
        enabled: parse(&map, "enabled"),
        tracing: parse(&map, "tracing"),
        read_only: parse(&map, "read-only"),
        timeout: dur("timeout"),
        idle: dur("idle"),
        origins: parse(&map, "origins"),
        tags: parse(&map, "tags"),
        weights: parse(&map, "weights"),
    }
}

pub(crate) fn row(name: &str, (ours, theirs): (crate::Summary, crate::Summary)) -> Row {
    Row {
        name: name.to_owned(),
        ours,
        theirs,
        throughput: false,
    }
}

/// Case 1: raw get of one key, put of one key, txn of 20 puts.
pub(crate) async fn raw(
    ours: &etcd_config::Client,
    theirs: &etcd_client::Client,
    n: usize,
) -> Vec<Row> {
    let kv = ours.kv();
    kv.put("/bench/one", "value").await.unwrap();
    let mut rows = Vec::new();
    let t = theirs.clone();
    rows.push(row(
        "get one key",
        compare(
            n,
            |_| {
                let kv = kv.clone();
                async move {
                    kv.get("/bench/one").await.unwrap();
                }
            },
            |_| {
                let mut t = t.clone();
                async move {
                    t.get("/bench/one", None).await.unwrap();
                }
            },
        )
        .await,
    ));
    rows.push(row(
        "put one key",
        compare(
            n,
            |i| {
                let kv = kv.clone();
                async move {
                    kv.put("/bench/put", i.to_string()).await.unwrap();
                }
            },
            |i| {
                let mut t = t.clone();
                async move {
                    t.put("/bench/put", i.to_string(), None).await.unwrap();
                }
            },
        )
        .await,
    ));
    rows.push(row(
        "txn of 20 puts",
        compare(
            n / 2,
            |i| {
                let kv = kv.clone();
                async move {
                    let ops = (0..20).map(|k| {
                        etcd_config::client::TxnOp::put(format!("/bench/txn/{k}"), i.to_string())
                    });
                    kv.txn().and_then(ops).await.unwrap();
                }
            },
            |i| {
                let mut t = t.clone();
                async move {
                    let ops: Vec<TxnOp> = (0..20)
                        .map(|k| TxnOp::put(format!("/bench/txn/{k}"), i.to_string(), None))
                        .collect();
                    t.txn(Txn::new().and_then(ops)).await.unwrap();
                }
            },
        )
        .await,
    ));
    rows
}

/// Cases 2 and 3: typed load and save of the 20-field struct, against the same by hand.
pub(crate) async fn typed(
    ours: &etcd_config::Client,
    theirs: &etcd_client::Client,
    n: usize,
) -> Vec<Row> {
    let store = Store::new(ours.clone());
    store.save(&service(0)).await.unwrap();
    let t = theirs.clone();
    let load = compare(
        n,
        |_| {
            let store = store.clone();
            async move {
                let s: Service = store.load().await.unwrap();
                std::hint::black_box(s);
            }
        },
        |_| {
            let mut t = t.clone();
            async move {
                let r = t
                    .get("/bench/svc/", Some(GetOptions::new().with_prefix()))
                    .await
                    .unwrap();
                std::hint::black_box(decode_by_hand(r.kvs()));
            }
        },
    )
    .await;
    // Sanity: both read the same value.
    let r = theirs
        .clone()
        .get("/bench/svc/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(
        decode_by_hand(r.kvs()),
        store.load::<Service>().await.unwrap()
    );

    let save = compare(
        n / 2,
        |i| {
            let store = store.clone();
            async move {
                store.save(&service(i as u32)).await.unwrap();
            }
        },
        |i| {
            let mut t = t.clone();
            async move {
                let ops: Vec<TxnOp> = encode_by_hand(&service(i as u32))
                    .into_iter()
                    .map(|(k, v)| TxnOp::put(k, v, None))
                    .collect();
                t.txn(Txn::new().and_then(ops)).await.unwrap();
            }
        },
    )
    .await;
    vec![
        row("load 20-field struct", load),
        row("save 20-field struct", save),
    ]
}

/// Case 4: from a put by a second client until the typed update (ours) or the raw event
/// (theirs) is in hand. Both watches are open at once and see the same puts.
pub(crate) async fn update_latency(
    ours: &etcd_config::Client,
    theirs: &etcd_client::Client,
    endpoint: &str,
    n: usize,
) -> Result<Row, Box<dyn std::error::Error>> {
    let writer =
        etcd_config::Client::connect([endpoint], etcd_config::ConnectOptions::default()).await?;
    let store = Store::new(ours.clone());
    store.save(&service(0)).await?;
    let mut typed = store.watch::<Service>().await?;
    let mut raw = theirs
        .clone()
        .watch("/bench/svc/", Some(WatchOptions::new().with_prefix()))
        .await?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..n + 10 {
        let start = Instant::now();
        writer
            .kv()
            .put("/bench/svc/workers", (1000 + i).to_string())
            .await?;
        let (mut got_typed, mut got_raw) = (None, None);
        while got_typed.is_none() || got_raw.is_none() {
            tokio::select! {
                update = typed.next(), if got_typed.is_none() => {
                    update.expect("typed watch ended")?;
                    got_typed = Some(start.elapsed());
                }
                event = raw.message(), if got_raw.is_none() => {
                    let response = event?.expect("raw watch ended");
                    if !response.events().is_empty() {
                        got_raw = Some(start.elapsed());
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(10)) => panic!("no update within 10 s"),
            }
        }
        if i >= 10 {
            a.push(got_typed.unwrap().as_secs_f64() * 1e6);
            b.push(got_raw.unwrap().as_secs_f64() * 1e6);
        }
    }
    Ok(row(
        "put → update in hand (watch)",
        (summarize(a), summarize(b)),
    ))
}

/// Case 5: 64 gets in flight at once on one client: operations per second, rounds alternating.
pub(crate) async fn concurrent_gets(
    ours: &etcd_config::Client,
    theirs: &etcd_client::Client,
    rounds: usize,
) -> Row {
    const TASKS: usize = 64;
    const PER_TASK: usize = 200;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds + 1 {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let kv = ours.kv();
                tokio::spawn(async move {
                    for _ in 0..PER_TASK {
                        kv.get(KeyRange::key("/bench/one")).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let ours_rate = (TASKS * PER_TASK) as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let mut t = theirs.clone();
                tokio::spawn(async move {
                    for _ in 0..PER_TASK {
                        t.get("/bench/one", None).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let theirs_rate = (TASKS * PER_TASK) as f64 / start.elapsed().as_secs_f64();
        if round > 0 {
            a.push(ours_rate);
            b.push(theirs_rate);
        }
    }
    Row {
        name: "64 concurrent gets (throughput)".into(),
        ours: summarize(a),
        theirs: summarize(b),
        throughput: true,
    }
}
