//! Fixed work on etcd-config's hot paths, for instruction counts under callgrind
//! (`scripts/icount`): `etcd-config-icount WORKLOAD ITERATIONS`. Only the function `measured`
//! is counted (`--toggle-collect`), so set-up and start-up are left out, and the count per
//! iteration is what one operation costs. No etcd, no network: the same input every run.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use etcd_config::proto::{etcdserverpb as pb, mvccpb};
use etcd_config::{to_key_values, EtcdConfig, Live};
use prost::Message;

/// A small config, as most services read on every request.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/bench/small")]
struct Small {
    port: u16,
    host: String,
    debug: bool,
    timeout: Duration,
}

/// A 20-field config: text, numbers, a duration, options and a map.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/bench/wide", rename_all = "kebab-case")]
struct Wide {
    name: String,
    region: String,
    upstream: String,
    port: u16,
    admin_port: u16,
    workers: u32,
    queue_depth: u32,
    max_body: u64,
    ratio: f64,
    debug: bool,
    tracing: bool,
    timeout: Duration,
    idle: Duration,
    retries: Option<u32>,
    backup: Option<String>,
    log_level: String,
    cert_path: String,
    key_path: String,
    labels: BTreeMap<String, String>,
    weights: Vec<u32>,
}

fn wide() -> Wide {
    Wide {
        name: "gateway".into(),
        region: "eu-west-1".into(),
        upstream: "http://10.0.0.1:8080".into(),
        port: 8080,
        admin_port: 9090,
        workers: 16,
        queue_depth: 1024,
        max_body: 1 << 20,
        ratio: 0.25,
        debug: false,
        tracing: true,
        timeout: Duration::from_secs(30),
        idle: Duration::from_secs(90),
        retries: Some(3),
        backup: None,
        log_level: "info".into(),
        cert_path: "/etc/gw/cert.pem".into(),
        key_path: "/etc/gw/key.pem".into(),
        labels: [("team".to_owned(), "edge".to_owned())].into(),
        weights: vec![1, 2, 3],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workload = args.get(1).map_or("list", String::as_str);
    let iterations: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let done = match workload {
        "noop" => measured(iterations, &mut |i| i),
        "live-read" => live_read(iterations),
        "live-get" => live_get(iterations),
        "decode-20" => decode_wide(iterations),
        "encode-20" => encode_wide(iterations),
        "watch-event" => watch_event(iterations),
        "unary-range" => unary_range(iterations),
        "decode-5000" => decode_large(iterations),
        "watch-event-5000" => watch_event_large(iterations),
        "by-hand-5000" => by_hand_large(iterations),
        "scaling" => {
            scaling(iterations);
            return;
        }
        _ => {
            println!(
                "noop live-read live-get decode-20 encode-20 watch-event watch-event-5000 unary-range decode-5000 by-hand-5000 scaling"
            );
            return;
        }
    };
    println!("{workload}: {iterations} iterations ({done})");
}

/// The only function callgrind counts: `iterations` runs of `step`.
#[inline(never)]
fn measured(iterations: u64, step: &mut dyn FnMut(u64) -> u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..iterations {
        sum = sum.wrapping_add(step(black_box(i)));
    }
    sum
}

fn small() -> Small {
    Small {
        port: 8080,
        host: "localhost".into(),
        debug: false,
        timeout: Duration::from_secs(1),
    }
}

/// `Live::read()`: the hot-path read.
fn live_read(iterations: u64) -> u64 {
    let live = Live::fixed(small());
    measured(iterations, &mut |_| u64::from(black_box(&live).read().port))
}

/// `Live::get()`: the read that hands out an `Arc`.
fn live_get(iterations: u64) -> u64 {
    let live = Live::fixed(small());
    measured(iterations, &mut |_| u64::from(black_box(&live).get().port))
}

/// Loading a 20-field struct: its range answer, as etcd encodes it, decoded.
fn decode_wide(iterations: u64) -> u64 {
    let kvs = to_key_values(&wide()).unwrap();
    let answer = encoded_answer(
        kvs.into_iter()
            .map(|(k, v)| (k.into_bytes(), v.into_bytes())),
    );
    measured(iterations, &mut |_| {
        let value: Wide =
            etcd_config::__private::decode_range_answer(black_box(answer.clone())).unwrap();
        u64::from(value.port)
    })
}

/// etcd's answer to a Range that found `pairs`, encoded as etcd sends it. Workloads read it
/// from `Bytes`, as from the transport's buffer: prost then takes a field's bytes without
/// copying them first (it does copy them from a `&[u8]`).
fn encoded_answer(pairs: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> bytes::Bytes {
    let mut pairs: Vec<_> = pairs.collect();
    pairs.sort(); // etcd answers in key order
    let kvs: Vec<mvccpb::KeyValue> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| mvccpb::KeyValue {
            key,
            value,
            create_revision: 2,
            mod_revision: 2 + i as i64,
            version: 1,
            lease: 0,
        })
        .collect();
    let count = kvs.len() as i64;
    pb::RangeResponse {
        header: Some(pb::ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 2 + count,
            raft_term: 3,
        }),
        kvs,
        count,
        more: false,
    }
    .encode_to_vec()
    .into()
}

/// One route of a large config.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Route {
    path: String,
    weight: u32,
}

/// A config of 5,000 `each` entries.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/bench/large")]
struct Large {
    #[etcd(each)]
    routes: BTreeMap<String, Route>,
}

/// A range answer of a config of 5,000 `each` entries, as etcd sends it.
fn large_answer() -> bytes::Bytes {
    encoded_answer(large_pairs())
}

/// The keys and values of a config of 5,000 `each` entries.
fn large_pairs() -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    (0..5_000).map(|i| {
        let key = format!("/bench/large/routes/r{i:05}");
        let value = format!(r#"{{"path":"/api/v1/service-{i}","weight":{}}}"#, i % 100);
        (key.into_bytes(), value.into_bytes())
    })
}

/// Loading a config of 5,000 `each` entries: its range answer decoded, then the config.
fn decode_large(iterations: u64) -> u64 {
    let answer = large_answer();
    measured(iterations, &mut |_| {
        let value: Large =
            etcd_config::__private::decode_range_answer(black_box(answer.clone())).unwrap();
        value.routes.len() as u64
    })
}

/// The reference for `decode-5000`: the same answer decoded, then parsed by hand as the
/// benchmark's etcd-client side does (the prefix stripped, the name copied, the value parsed
/// as JSON).
fn by_hand_large(iterations: u64) -> u64 {
    let answer = large_answer();
    measured(iterations, &mut |_| {
        let response = pb::RangeResponse::decode(black_box(answer.clone())).unwrap();
        let routes: BTreeMap<String, Route> = response
            .kvs
            .iter()
            .map(|kv| {
                let key = std::str::from_utf8(&kv.key).unwrap();
                let name = key.strip_prefix("/bench/large/routes/").unwrap().to_owned();
                (name, serde_json::from_slice(&kv.value).unwrap())
            })
            .collect();
        routes.len() as u64
    })
}

/// Encoding a 20-field struct for a save.
fn encode_wide(iterations: u64) -> u64 {
    let value = wide();
    measured(iterations, &mut |_| {
        to_key_values(black_box(&value)).unwrap().len() as u64
    })
}

/// A watch response (one put) turned into a typed update by the follower.
fn watch_event(iterations: u64) -> u64 {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = to_key_values(&wide())
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
        .collect();
    let mut follower = etcd_config::__private::FollowBench::<Wide>::new(pairs, 1).unwrap();
    measured(iterations, &mut |i| {
        let revision = i64::try_from(i).unwrap_or(0) + 2;
        let value = (i % 64 + 1).to_string();
        let event = put_event(b"/bench/wide/workers", value, revision);
        follower.apply(revision, vec![event]) as u64
    })
}

/// One put of one entry of a config of 5,000 `each` entries, turned into a typed update by the
/// follower (a live config of a large routing table, edited one route at a time).
fn watch_event_large(iterations: u64) -> u64 {
    let pairs = large_pairs().collect();
    let mut follower = etcd_config::__private::FollowBench::<Large>::new(pairs, 1).unwrap();
    measured(iterations, &mut |i| {
        let revision = i64::try_from(i).unwrap_or(0) + 2;
        let value = format!(r#"{{"path":"/api/v2/moved","weight":{}}}"#, i % 64);
        let event = put_event(b"/bench/large/routes/r02500", value, revision);
        follower.apply(revision, vec![event]) as u64
    })
}

/// etcd's event for a put of `value` at `key`, at `revision`.
fn put_event(key: &[u8], value: String, revision: i64) -> mvccpb::Event {
    mvccpb::Event {
        r#type: mvccpb::event::EventType::Put as i32,
        kv: Some(mvccpb::KeyValue {
            key: key.to_vec(),
            value: value.into_bytes(),
            create_revision: 1,
            mod_revision: revision,
            version: revision,
            lease: 0,
        }),
        prev_kv: None,
    }
}

/// One unary call's client-side work without the network: the request encoded, a canned
/// answer (a range of 20 keys) decoded and turned into the client's response type.
fn unary_range(iterations: u64) -> u64 {
    let kvs: Vec<mvccpb::KeyValue> = to_key_values(&wide())
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| mvccpb::KeyValue {
            key: k.into_bytes(),
            value: v.into_bytes(),
            create_revision: 2,
            mod_revision: 2 + i as i64,
            version: 1,
            lease: 0,
        })
        .collect();
    let answer = pb::RangeResponse {
        header: Some(pb::ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 40,
            raft_term: 3,
        }),
        count: kvs.len() as i64,
        kvs,
        more: false,
    }
    .encode_to_vec();
    measured(iterations, &mut |_| {
        let request = pb::RangeRequest {
            key: b"/bench/wide/".to_vec(),
            range_end: b"/bench/wide0".to_vec(),
            ..Default::default()
        };
        let sent = black_box(request.encode_to_vec());
        let received = pb::RangeResponse::decode(black_box(answer.as_slice())).unwrap();
        let response = etcd_config::client::GetResponse::from(received);
        (sent.len() + response.kvs.len()) as u64
    })
}

/// Wall clock, not instructions: nanoseconds per read with one thread, then with two threads
/// reading the same `Live` at once, and how the two threads' reads per second compare with
/// one thread's (2.0: no contention at all). Medians of 7 runs of `iterations` reads per
/// thread. Not gated: machines are noisy.
fn scaling(iterations: u64) {
    let live = Live::fixed(small());
    let run = |threads: u64, read: fn(&Live<Small>) -> u16| {
        let mut ns: Vec<f64> = (0..7)
            .map(|_| {
                let start = std::time::Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..threads {
                        scope.spawn(|| {
                            let mut sum = 0u64;
                            for _ in 0..iterations {
                                sum = sum.wrapping_add(u64::from(read(black_box(&live))));
                            }
                            black_box(sum)
                        });
                    }
                });
                start.elapsed().as_nanos() as f64 / iterations as f64
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        ns[3]
    };
    let read: fn(&Live<Small>) -> u16 = |live| live.read().port;
    let get: fn(&Live<Small>) -> u16 = |live| live.get().port;
    println!("| read | ns per read, 1 thread | ns per read, 2 threads | 2 threads / 1 thread |");
    println!("|---|---:|---:|---:|");
    for (name, f) in [("Live::read()", read), ("Live::get()", get)] {
        let one = run(1, f);
        let two = run(2, f);
        // Two threads did twice the reads in `two` ns per iteration each.
        println!("| {name} | {one:.1} | {two:.1} | {:.2} |", 2.0 * one / two);
    }
}
