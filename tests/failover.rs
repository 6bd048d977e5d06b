//! Several endpoints: a dead member is skipped, reads are retried elsewhere, writes are sent
//! again only when they never reached a server, and no call waits past its deadline.
//! Three real etcd members; members are killed, frozen and restarted.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use etcd_config::{Client, Error, KeyRange};
use support::Etcd;

/// Waits until the cluster has a leader other than `old` (etcd elects one within seconds).
async fn wait_for_new_leader(client: &Client, old: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client.maintenance().status().await {
            Ok(status) if status.leader != 0 && status.leader != old => return,
            _ => {}
        }
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Killing the member in use: reads and writes keep working on the others, and a client of the
/// survivors sees every write.
#[tokio::test]
async fn stop_member_in_use() {
    let mut etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    client.kv().put("/f/before", "1").await.unwrap();

    let used = etcd.member_in_use(&client).await;
    let used_id = client
        .kv()
        .get("/probe")
        .serializable()
        .await
        .unwrap()
        .header
        .member_id;
    etcd.stop(used);

    // Reads are retried, through a leader election if the member was the leader.
    assert_eq!(client.kv().get("/f/before").await.unwrap().count, 1);
    // A write racing the member's death (or the election it causes) may already be on its way
    // and is reported, not sent twice; once the cluster has settled, writes go through.
    wait_for_new_leader(&client, used_id).await;
    let put = client.kv().put("/f/after", "2").await.unwrap();
    let got = client.kv().get(KeyRange::prefix("/f/")).await.unwrap();
    assert_eq!(got.count, 2);
    assert_ne!(etcd.member_index(got.header.member_id).await, used);

    let check = Client::connect(etcd.endpoints_without(used), etcd.options())
        .await
        .unwrap();
    let after = check.kv().get("/f/after").await.unwrap();
    assert_eq!(after.kvs[0].mod_revision, put.header.revision);

    // The member comes back and catches up.
    etcd.restart(used).await;
    let only_it = Client::connect([etcd.endpoint(used)], etcd.options())
        .await
        .unwrap();
    let caught_up = only_it.kv().get("/f/after").await.unwrap();
    assert_eq!(caught_up.kvs[0].value, b"2");
}

/// Killing the leader: reads are retried through the election and succeed; once a new leader
/// is in place, writes succeed and are applied once.
#[tokio::test]
async fn lose_the_leader() {
    let mut etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    client.kv().put("/l0", "v").await.unwrap();
    let leader_id = client.maintenance().status().await.unwrap().leader;
    let leader = etcd.member_index(leader_id).await;
    etcd.stop(leader);

    // A linearizable read needs a leader: "no leader"/"timed out" answers are retried.
    let read = client.kv().get("/l0").await.unwrap();
    assert_eq!(read.kvs[0].value, b"v");

    // A write during the election may be answered "request timed out, possibly due to previous
    // leader failure" (it may still apply, so the client does not resend it); after the
    // election it goes through.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .maintenance()
        .status()
        .await
        .map(|s| s.leader == 0 || s.leader == leader_id)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let put = client.kv().put("/l", "v").await.unwrap();
    let got = client.kv().get("/l").await.unwrap();
    assert_eq!(got.kvs[0].version, 1);
    assert_eq!(got.kvs[0].mod_revision, put.header.revision);
    let new_leader = client.maintenance().status().await.unwrap().leader;
    assert_ne!(new_leader, 0);
    assert_ne!(new_leader, leader_id);
}

/// A frozen member (SIGSTOP) accepts connections but answers nothing. A write in flight there
/// (never sent twice) ends at its deadline with a Timeout naming that endpoint, and the next
/// call goes elsewhere; a read moves on to another member after its share of the request
/// timeout and is answered.
#[tokio::test]
async fn frozen_member_times_out_then_fails_over() {
    let etcd = Etcd::cluster().await;
    let options = etcd.options().request_timeout(Duration::from_secs(1));
    let probe = Client::connect(etcd.endpoints(), options.clone())
        .await
        .unwrap();
    let used = etcd.member_in_use(&probe).await;
    // Two clients whose current endpoint is the member about to freeze.
    let mut endpoints = vec![etcd.endpoint(used)];
    endpoints.extend((0..3).filter(|&i| i != used).map(|i| etcd.endpoint(i)));
    let writer = Client::connect_lazy(endpoints.clone(), options.clone()).unwrap();
    let reader = Client::connect_lazy(endpoints, options).unwrap();
    writer.kv().get("/warm").serializable().await.unwrap();
    reader.kv().get("/warm").serializable().await.unwrap();
    etcd.pause(used);

    let started = Instant::now();
    let err = writer.kv().put("/x", "v").await.unwrap_err();
    let waited = started.elapsed();
    match &err {
        Error::Timeout { endpoint, .. } => {
            assert_eq!(endpoint.as_deref(), Some(etcd.endpoint(used).as_str()))
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    // Serializable, so the answer does not wait for an election if the frozen one led.
    let got = writer.kv().get("/x").serializable().await.unwrap();
    assert_ne!(etcd.member_index(got.header.member_id).await, used);

    let started = Instant::now();
    let got = reader.kv().get("/x").serializable().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_ne!(etcd.member_index(got.header.member_id).await, used);
    etcd.resume(used);
}

/// A kept-alive lease survives losing the member its keep-alive stream is on, whether the
/// member freezes (its renewals go unanswered) or dies: the stream moves to another member
/// within the lease's TTL, and the leased key is still there afterwards.
#[tokio::test]
async fn keep_alive_survives_member_loss() {
    let mut etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    // 15 s: each loss below must be survived within it, on a 2-core machine that also runs
    // this binary's other clusters and an election (8 s failed twice and 10 s once in CI runs
    // under load, on etcd 3.5 after the member in use was killed; alone it passes every time;
    // 17 s of sleep still proves the renewals).
    let lease = client.lease().grant(15).await.unwrap();
    client.kv().put("/kept", "v").lease(lease.id).await.unwrap();
    let keep = client.lease().keep_alive(lease.id).await.unwrap();

    let frozen = etcd.member_in_use(&client).await;
    etcd.pause(frozen);
    tokio::time::sleep(Duration::from_secs(17)).await;
    let check = Client::connect(etcd.endpoints_without(frozen), etcd.options())
        .await
        .unwrap();
    assert_eq!(check.kv().get("/kept").await.unwrap().count, 1);
    etcd.resume(frozen);

    let used = etcd.member_in_use(&client).await;
    assert_ne!(used, frozen);
    etcd.stop(used);
    tokio::time::sleep(Duration::from_secs(17)).await;
    let alive = (0..3).find(|&i| i != used).unwrap();
    let check = Client::connect([etcd.endpoint(alive)], etcd.options())
        .await
        .unwrap();
    assert_eq!(check.kv().get("/kept").await.unwrap().count, 1);
    let info = check.lease().time_to_live(lease.id).await.unwrap();
    assert!(info.ttl > 0, "{info:?}");
    assert_eq!(keep.ttl(), Some(15));
}

/// A write whose connection breaks while the server holds it is not sent again: the caller
/// gets a Transport error naming the endpoint, and nothing was written twice. A read in the
/// same situation is retried on another member and succeeds.
#[tokio::test]
async fn broken_connection_retries_reads_not_writes() {
    let mut etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    client.kv().put("/w", "0").await.unwrap();
    let used = etcd.member_in_use(&client).await;
    let used_endpoint = etcd.endpoint(used);

    // Freeze the member, start a write, then kill it so the connection resets mid-call.
    etcd.pause(used);
    let writer = client.clone();
    let write = tokio::spawn(async move { writer.kv().put("/w", "1").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    etcd.stop(used);
    let err = write.await.unwrap().unwrap_err();
    match &err {
        Error::Transport { endpoint, .. } => assert_eq!(endpoint, &used_endpoint),
        other => panic!("expected a transport error, got {other}"),
    }
    let got = client.kv().get("/w").await.unwrap();
    assert_eq!(
        got.kvs[0].value, b"0",
        "the frozen member never applied the write"
    );

    // The same with a read: it is retried and answered by a survivor. (Bring the first member
    // back so that two of three members, a quorum, remain after the next kill.)
    etcd.restart(used).await;
    let used = etcd.member_in_use(&client).await;
    etcd.pause(used);
    let reader = client.clone();
    let read = tokio::spawn(async move { reader.kv().get("/w").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    etcd.stop(used);
    let got = read.await.unwrap().unwrap();
    assert_ne!(etcd.member_index(got.header.member_id).await, used);
    assert_eq!(got.kvs[0].value, b"0");
}

/// With every member gone, a call fails at once with a Connect error naming every endpoint
/// instead of waiting for its deadline.
#[tokio::test]
async fn all_members_down() {
    let mut etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    for i in 0..3 {
        etcd.stop(i);
    }
    let started = Instant::now();
    let err = client.kv().get("/x").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &err {
        Error::Connect { endpoints, .. } => assert_eq!(endpoints, &etcd.endpoints()),
        other => panic!("expected a connect error, got {other}"),
    }
    let text = err.to_string();
    for endpoint in etcd.endpoints() {
        assert!(text.contains(&endpoint), "{text}");
    }
}

/// Connecting to endpoints that are down fails within the dial timeout, naming them: one
/// refuses connections, one accepts TCP but never speaks HTTP/2.
#[tokio::test]
async fn connect_to_dead_endpoints_fails_within_dial_timeout() {
    let refused = format!("127.0.0.1:{}", support::free_port());
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_endpoint = silent.local_addr().unwrap().to_string();
    let dial = Duration::from_millis(800);

    let started = Instant::now();
    let options = etcd_config::ConnectOptions::default().dial_timeout(dial);
    let err = Client::connect([refused.clone(), silent_endpoint.clone()], options)
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited < dial + Duration::from_millis(500),
        "waited {waited:?}"
    );
    match &err {
        Error::Connect { endpoints, .. } => {
            assert_eq!(endpoints, &[refused.clone(), silent_endpoint.clone()])
        }
        other => panic!("expected a connect error, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&refused) && text.contains(&silent_endpoint),
        "{text}"
    );
    drop(silent);
}

/// One live endpoint among dead ones is enough to connect, whatever its position.
#[tokio::test]
async fn connect_skips_dead_endpoints() {
    let etcd = Etcd::single().await;
    let dead = format!("127.0.0.1:{}", support::free_port());
    let client = Client::connect([dead.clone(), etcd.endpoint(0), dead], etcd.options())
        .await
        .unwrap();
    client.kv().put("/ok", "1").await.unwrap();
    assert_eq!(client.kv().get("/ok").await.unwrap().count, 1);
}
