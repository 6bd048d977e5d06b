//! The client's watches against a real etcd: events and options, many watches on one gRPC
//! stream (counted by etcd's own gauges), cancellation on drop, compaction, slow consumers, and
//! resuming on another member without losing or repeating a revision.

mod support;

use std::time::{Duration, Instant};

use etcd_config::client::{EventKind, WatchResponse, WatchStream};
use etcd_config::{Client, Error, KeyRange, ServerErrorKind};
use futures_util::StreamExt;
use support::{Etcd, Front};

/// The value of one of etcd's Prometheus gauges on member `i`.
fn gauge(etcd: &Etcd, i: usize, name: &str) -> i64 {
    etcd.metrics(i)
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as i64)
        .unwrap_or(0)
}

/// Waits until `check` holds (etcd's gauges move asynchronously), for at most 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn next(watch: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no watch response within 10 s")
        .expect("watch ended")
        .expect("watch error")
}

/// The mod revisions of the next `count` events.
async fn revisions(watch: &mut WatchStream, count: usize) -> Vec<i64> {
    let mut seen = Vec::new();
    while seen.len() < count {
        seen.extend(
            next(watch)
                .await
                .events
                .into_iter()
                .map(|e| e.kv.mod_revision),
        );
    }
    seen
}

/// Puts and deletes arrive in order with prev_kv; filters leave out what they name; a txn's
/// events arrive together.
#[tokio::test]
async fn events_options_and_txns() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let mut all = client
        .watch(KeyRange::prefix("/w/"))
        .prev_kv()
        .await
        .unwrap();
    let mut deletes = client
        .watch(KeyRange::prefix("/w/"))
        .no_put()
        .await
        .unwrap();
    let kv = client.kv();
    kv.put("/w/a", "1").await.unwrap();
    kv.put("/w/a", "2").await.unwrap();
    let deleted = kv.delete("/w/a").await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.extend(next(&mut all).await.events);
    }
    assert_eq!(seen[0].kind, EventKind::Put);
    assert_eq!(seen[1].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(seen[2].kind, EventKind::Delete);
    assert_eq!(seen[2].kv.mod_revision, deleted.header.revision);
    let only = next(&mut deletes).await;
    assert!(only.events.iter().all(|e| e.kind == EventKind::Delete));

    let txn = kv
        .txn()
        .and_then([
            etcd_config::client::TxnOp::put("/w/x", "1"),
            etcd_config::client::TxnOp::put("/w/y", "1"),
            etcd_config::client::TxnOp::put("/w/z", "1"),
        ])
        .await
        .unwrap();
    let together = next(&mut all).await;
    assert_eq!(together.events.len(), 3);
    assert!(together
        .events
        .iter()
        .all(|e| e.kv.mod_revision == txn.header.revision));
}

/// A start revision replays history; a compacted one ends the watch with a typed error that
/// carries the compact revision.
#[tokio::test]
async fn start_revision_and_compaction() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let kv = client.kv();
    let first = kv.put("/h", "1").await.unwrap().header.revision;
    kv.put("/h", "2").await.unwrap();
    let mut replay = client.watch("/h").start_revision(first).await.unwrap();
    let mut values = Vec::new();
    while values.len() < 2 {
        values.extend(
            next(&mut replay)
                .await
                .events
                .into_iter()
                .map(|e| e.kv.value),
        );
    }
    assert_eq!(values, [b"1".to_vec(), b"2".to_vec()]);

    let last = kv.put("/h", "3").await.unwrap().header.revision;
    kv.compact(last).await.unwrap();
    let mut old = client.watch("/h").start_revision(first).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), old.next())
        .await
        .unwrap()
        .unwrap();
    let err = ended.unwrap_err();
    assert_eq!(err.server_kind(), Some(ServerErrorKind::Compacted), "{err}");
    assert_eq!(old.compact_revision(), Some(last));
    assert!(old.next().await.is_none(), "a compacted watch ends");
}

/// A thousand watches share one gRPC stream; dropping them cancels them on the server, and
/// dropping the last closes the stream. Counted by etcd's watch gauges.
#[tokio::test]
async fn many_watches_one_stream_and_cancel_on_drop() {
    // It counts on the member itself: no proxy in between.
    let etcd = Etcd::builder(1).front(Front::Direct).start().await;
    let client = etcd.client().await;
    let streams = "etcd_debugging_mvcc_watch_stream_total";
    let watchers = "etcd_debugging_mvcc_watcher_total";
    let mut watches = Vec::new();
    for i in 0..1000 {
        watches.push(client.watch(format!("/many/{i}")).await.unwrap());
    }
    eventually("1000 watchers on one stream", || {
        gauge(&etcd, 0, streams) == 1 && gauge(&etcd, 0, watchers) == 1000
    })
    .await;

    client.kv().put("/many/500", "x").await.unwrap();
    let got = next(&mut watches[500]).await;
    assert_eq!(got.events[0].kv.key, b"/many/500");

    watches.truncate(10);
    eventually("990 watchers cancelled", || gauge(&etcd, 0, watchers) == 10).await;
    watches.clear();
    eventually("the stream closed", || gauge(&etcd, 0, streams) == 0).await;
}

/// A consumer that does not read does not hold up another watch on the same stream; once it
/// reads, it gets every event, in order, none twice.
#[tokio::test]
async fn slow_consumer_does_not_block_others() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let mut slow = client.watch("/slow").buffer(2).await.unwrap();
    let mut fast = client.watch("/fast").await.unwrap();
    let kv = client.kv();
    let mut slow_revisions = Vec::new();
    for i in 0..50 {
        slow_revisions.push(
            kv.put("/slow", format!("{i}"))
                .await
                .unwrap()
                .header
                .revision,
        );
        let rev = kv
            .put("/fast", format!("{i}"))
            .await
            .unwrap()
            .header
            .revision;
        let got = next(&mut fast).await;
        assert_eq!(
            got.events[0].kv.mod_revision, rev,
            "the fast watch fell behind"
        );
    }
    let seen = revisions(&mut slow, slow_revisions.len()).await;
    assert_eq!(seen, slow_revisions);
}

/// A progress request gets an empty response at the current revision (except behind etcd's
/// gRPC proxy, which does not answer them).
#[tokio::test]
async fn progress_request() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let mut watch = client.watch("/p").await.unwrap();
    let rev = client
        .kv()
        .put("/other", "1")
        .await
        .unwrap()
        .header
        .revision;
    client.request_watch_progress();
    if etcd.front_kind() == Front::GrpcProxy {
        // etcd's gRPC proxy (3.4, 3.5) ignores progress requests: nothing comes, the watch
        // goes on.
        client.kv().put("/p", "after").await.unwrap();
        assert_eq!(next(&mut watch).await.events[0].kv.value, b"after");
        return;
    }
    let progress = next(&mut watch).await;
    assert!(progress.events.is_empty());
    assert!(progress.header.revision >= rev);
}

/// Kill the member a watch is streaming from, keep writing, bring it back: every revision
/// arrives exactly once, in order.
#[tokio::test]
async fn resumes_on_another_member_without_gaps_or_repeats() {
    let mut etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    let writer = Client::connect(etcd.endpoints(), etcd.options())
        .await
        .unwrap();
    let mut watch = client.watch(KeyRange::prefix("/r/")).await.unwrap();
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(
            writer
                .kv()
                .put(format!("/r/{i}"), "v")
                .await
                .unwrap()
                .header
                .revision,
        );
    }
    let used = etcd.member_in_use(&client).await;
    etcd.stop(used);
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != used)
        .map(|i| etcd.endpoint(i))
        .collect();
    let writer = Client::connect(survivors, etcd.options()).await.unwrap();
    let mut i = 5;
    while written.len() < 15 {
        // Writes during a possible election may be refused as ambiguous; only count applied ones.
        if let Ok(put) = writer.kv().put(format!("/r/{i}"), "v").await {
            written.push(put.header.revision);
        }
        i += 1;
    }
    etcd.restart(used).await;
    for _ in 0..5 {
        written.push(
            writer
                .kv()
                .put(format!("/r/{i}"), "v")
                .await
                .unwrap()
                .header
                .revision,
        );
        i += 1;
    }
    let seen = revisions(&mut watch, written.len()).await;
    assert_eq!(seen, written);
}

/// A member freezes (SIGSTOP) while it holds the watch stream. The next watch create goes
/// unanswered and fails with a timeout after the request timeout; the stream then moves to
/// another member, where a new watch is created and the old one resumes with every event
/// written meanwhile. A client whose first endpoint is frozen opens its stream elsewhere.
#[tokio::test]
async fn frozen_member_watches_move() {
    let etcd = Etcd::cluster().await;
    let options = etcd
        .options()
        .dial_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(3));
    let client = Client::connect(etcd.endpoints(), options.clone())
        .await
        .unwrap();
    let mut old = client.watch(KeyRange::prefix("/z/")).await.unwrap();
    let frozen = etcd.member_in_use(&client).await;
    etcd.pause(frozen);
    let survivors = etcd.endpoints_without(frozen);
    let writer = Client::connect(survivors.clone(), etcd.options())
        .await
        .unwrap();
    let written = Etcd::put_through_election(&writer, "/z/", 3).await;

    let started = Instant::now();
    let err = client.watch("/y").await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(6), "{err}");
    let mut new = client.watch("/y").await.unwrap();
    let put = writer.kv().put("/y", "1").await.unwrap();
    assert_eq!(
        next(&mut new).await.events[0].kv.mod_revision,
        put.header.revision
    );
    assert_eq!(revisions(&mut old, 3).await, written);

    let mut endpoints = vec![etcd.endpoint(frozen)];
    endpoints.extend(survivors);
    let fresh = Client::connect_lazy(endpoints, options).unwrap();
    let started = Instant::now();
    let mut watch = fresh.watch("/y").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let put = writer.kv().put("/y", "2").await.unwrap();
    assert_eq!(
        next(&mut watch).await.events[0].kv.mod_revision,
        put.header.revision
    );
    etcd.resume(frozen);
}

/// The only member freezes before the client's first watch: the stream cannot open (each
/// attempt waits out the dial timeout), and awaiting a watch fails with a timeout naming it,
/// soon after the request timeout (at most one dial timeout late). Both of two watches awaited
/// at once fail; once the member is back, a watch works on the same client.
#[tokio::test]
async fn watch_on_a_frozen_member_times_out() {
    let etcd = Etcd::builder(1).front(Front::Direct).start().await;
    let options = etcd
        .options()
        .dial_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2));
    let client = Client::connect(etcd.endpoints(), options).await.unwrap();
    etcd.pause(0);
    let started = Instant::now();
    let both = async { tokio::join!(client.watch("/a"), client.watch(KeyRange::prefix("/b/"))) };
    let (a, b) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("awaiting the watches never ended");
    let elapsed = started.elapsed();
    for (answer, key) in [(a, "/a"), (b, "/b/")] {
        let err = answer.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.to_string().contains(key), "{err}");
    }
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_millis(3500),
        "{elapsed:?}"
    );
    etcd.resume(0);
    let mut watch = client.watch("/a").await.unwrap();
    let put = client.kv().put("/a", "1").await.unwrap();
    assert_eq!(
        next(&mut watch).await.events[0].kv.mod_revision,
        put.header.revision
    );
}

/// With `fragment`, etcd splits a response larger than its request limit; the pieces come back
/// together as one response holding every event, in order.
#[tokio::test]
async fn fragments_are_reassembled() {
    // etcd fragments above --max-request-bytes plus 512 KiB of gRPC allowance: 576 KiB here.
    let etcd = Etcd::builder(1)
        .arg("--max-request-bytes=65536")
        .start()
        .await;
    let client = etcd.client().await;
    let mut revisions = Vec::new();
    for i in 0..24 {
        let put = client
            .kv()
            .put(format!("/frag/{i:02}"), "x".repeat(50_000))
            .await
            .unwrap();
        revisions.push(put.header.revision);
    }
    // Replaying 24 revisions of 50 KB values (1.2 MB) exceeds the limit.
    let mut watch = client
        .watch(KeyRange::prefix("/frag/"))
        .start_revision(revisions[0])
        .fragment()
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut responses = 0;
    while seen.len() < revisions.len() {
        let response = next(&mut watch).await;
        responses += 1;
        seen.extend(response.events.into_iter().map(|e| e.kv.mod_revision));
    }
    assert_eq!(seen, revisions);
    // etcd sent the replay as one response in fragments; it must come out whole.
    assert_eq!(responses, 1, "fragments were not reassembled");
}

/// Hundreds of watches registered at once on one client, many of them on the same keys or on
/// prefixes covering each other, each get exactly the events of their own range: directly,
/// through etcd's gRPC proxy (which answers a create that joins a range it already watches at
/// once, ahead of earlier creates) and through the TCP gateway.
#[tokio::test]
async fn overlapping_watches_created_at_once_keep_their_identity() {
    for front in [Front::Direct, Front::GrpcProxy, Front::Gateway] {
        let etcd = Etcd::builder(1).front(front).start().await;
        let client = etcd.client().await;
        // Ranges: eight single keys, two prefixes over half of them each, and the whole prefix.
        let ranges: Vec<(String, KeyRange)> = (0..8)
            .map(|k| (format!("key {k}"), KeyRange::key(format!("/o/{k}"))))
            .chain([
                ("prefix /o/ (all)".to_owned(), KeyRange::prefix("/o/")),
                (
                    "range [/o/0, /o/4)".to_owned(),
                    KeyRange::range("/o/0", "/o/4"),
                ),
                (
                    "range [/o/4, /o/8)".to_owned(),
                    KeyRange::range("/o/4", "/o/8"),
                ),
            ])
            .collect();
        let creates = (0..330).map(|i| {
            let (name, range) = ranges[i % ranges.len()].clone();
            let client = client.clone();
            async move { (name, range.clone(), client.watch(range).await.unwrap()) }
        });
        let mut watches = futures_util::future::join_all(creates).await;

        let kv = client.kv();
        for k in 0..8 {
            kv.put(format!("/o/{k}"), format!("v{k}")).await.unwrap();
        }
        for (name, range, watch) in &mut watches {
            let expected: Vec<Vec<u8>> = (0..8)
                .map(|k| format!("/o/{k}").into_bytes())
                .filter(|key| range.contains(key))
                .collect();
            let mut got = Vec::new();
            while got.len() < expected.len() {
                got.extend(next(watch).await.events.into_iter().map(|e| e.kv.key));
            }
            assert_eq!(got, expected, "{front:?}: watch of {name} got other keys");
        }
        // Nothing more arrives on any of them.
        kv.put("/elsewhere", "x").await.unwrap();
        for (name, _, watch) in &mut watches {
            if let Ok(Some(item)) =
                tokio::time::timeout(Duration::from_millis(5), watch.next()).await
            {
                let keys: Vec<_> = item.unwrap().events.into_iter().map(|e| e.kv.key).collect();
                panic!("{front:?}: watch of {name} got an extra response for {keys:?}");
            }
        }
    }
}
