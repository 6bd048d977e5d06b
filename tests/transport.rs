//! The client's own HTTP/2 connection against a real etcd: answers larger than HTTP/2's
//! flow-control windows arrive whole on reads and on the shared watch stream, a slow reader of
//! one watch holds up nobody else, calls abandoned midway leave the connection usable, and
//! keep-alive pings alone find a frozen member.

mod support;

use std::time::Duration;

use etcd_config::client::{WatchResponse, WatchStream};
use etcd_config::{Client, KeyRange};
use futures_util::StreamExt;
use support::Etcd;

/// The client's windows: 2 MiB per stream, 5 MiB per connection. A value of 1 MB is below
/// etcd's default request limit (1.5 MiB); twelve of them exceed both windows twice over.
const VALUE: usize = 1_000_000;
const COUNT: usize = 12;

fn value(i: usize) -> Vec<u8> {
    (0..VALUE).map(|j| ((i * 31 + j) % 251) as u8).collect()
}

async fn next(watch: &mut WatchStream, what: &str) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no watch response within 10 s"))
        .unwrap_or_else(|| panic!("{what}: the watch ended"))
        .unwrap_or_else(|err| panic!("{what}: {err}"))
}

#[tokio::test]
async fn answers_larger_than_the_flow_control_windows_arrive_whole() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let kv = client.kv();
    // Both watches share the client's one Watch stream.
    let mut big = client.watch(KeyRange::prefix("/big/")).await.unwrap();
    let mut small = client.watch("/small").await.unwrap();

    let mut revisions = Vec::new();
    for i in 0..COUNT {
        let put = kv.put(format!("/big/{i:02}"), value(i)).await.unwrap();
        revisions.push(put.header.revision);
        kv.put("/small", i.to_string()).await.unwrap();
    }

    // One read of 12 MB, while 12 MB of watch events wait unread on the same connection.
    let page = kv.get(KeyRange::prefix("/big/")).await.unwrap();
    assert_eq!(page.kvs.len(), COUNT);
    for (i, kv) in page.kvs.iter().enumerate() {
        assert_eq!(kv.value.len(), VALUE, "value {i}");
        assert!(kv.value == value(i), "value {i} differs from what was put");
        assert_eq!(kv.mod_revision, revisions[i]);
    }

    // The small watch is read first: the big one's unread events must not hold it up.
    let mut small_values = Vec::new();
    while small_values.len() < COUNT {
        let response = next(&mut small, "the small watch").await;
        small_values.extend(response.events.into_iter().map(|e| e.kv.value));
    }
    let expected: Vec<Vec<u8>> = (0..COUNT).map(|i| i.to_string().into_bytes()).collect();
    assert_eq!(small_values, expected);

    let mut seen = Vec::new();
    while seen.len() < COUNT {
        let response = next(&mut big, "the big watch").await;
        for event in response.events {
            let i = seen.len();
            assert!(
                event.kv.value == value(i),
                "event {i} differs from what was put"
            );
            seen.push(event.kv.mod_revision);
        }
    }
    assert_eq!(seen, revisions);

    // etcdctl agrees on what etcd holds.
    let out = etcd.etcdctl(&["get", "/big/", "--prefix", "--keys-only"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let keys: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let expected: Vec<String> = (0..COUNT).map(|i| format!("/big/{i:02}")).collect();
    assert_eq!(keys, expected);
}

/// Calls dropped before their answers (a caller's own timeout) reset their streams; the
/// connection stays usable and the next calls are answered at once.
#[tokio::test]
async fn abandoned_calls_leave_the_connection_usable() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let kv = client.kv();
    for i in 0..COUNT {
        kv.put(format!("/big/{i:02}"), value(i)).await.unwrap();
    }
    for _ in 0..20 {
        // Far too short for a 12 MB answer: dropped mid-transfer.
        let _ = tokio::time::timeout(
            Duration::from_micros(300),
            kv.get(KeyRange::prefix("/big/")),
        )
        .await;
    }
    // A stalled connection would fail these with the request timeout.
    let put = kv.put("/after", "ok").await.unwrap();
    let got = kv.get("/after").await.unwrap();
    assert_eq!(got.kvs[0].mod_revision, put.header.revision);
    let whole = kv.get(KeyRange::prefix("/big/")).await.unwrap();
    assert_eq!(whole.kvs.len(), COUNT);
    assert!(whole
        .kvs
        .iter()
        .enumerate()
        .all(|(i, kv)| kv.value == value(i)));
}

/// A member frozen (SIGSTOP) while the client has nothing on it but an idle watch: no call
/// times out and etcd closes nothing, since the kernel keeps the socket open. Only the
/// keep-alive ping goes unanswered; that must be enough for the watch to move to another
/// member and deliver every event written meanwhile.
#[tokio::test]
async fn keep_alive_pings_alone_find_a_frozen_member() {
    if support::skip_behind_front("keep_alive_pings_alone_find_a_frozen_member") {
        return;
    }
    let etcd = Etcd::cluster().await;
    let options = etcd
        .options()
        .keep_alive(Duration::from_secs(1), Duration::from_secs(1));
    let client = Client::connect(etcd.endpoints(), options).await.unwrap();
    let mut watch = client.watch(KeyRange::prefix("/idle/")).await.unwrap();
    let frozen = etcd.member_in_use(&client).await;
    etcd.pause(frozen);

    let writer = Client::connect(etcd.endpoints_without(frozen), etcd.options())
        .await
        .unwrap();
    let written = Etcd::put_through_election(&writer, "/idle/", 3).await;
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let response = next(&mut watch, "the idle watch").await;
        seen.extend(response.events.iter().map(|e| e.kv.mod_revision));
    }
    assert_eq!(seen, written);
    etcd.resume(frozen);
}
