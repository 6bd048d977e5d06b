//! A member cut off from its peers but still answering its clients: the failure that would let a
//! service serve an old config forever without an error. Its watches never fire again while the
//! majority moves on; etcd cancels watches that asked to require a leader, and the client must
//! move them to a member with a leader and resume without a gap. The cut is made by the
//! harness's peer proxies (tests/support/netfault.rs), on loopback.

mod support;

use std::time::{Duration, Instant};

use etcd_config::{Client, EtcdConfig, Store};
use futures_util::StreamExt;
use support::Etcd;

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/partition/app")]
struct App {
    #[etcd(default)]
    counter: u64,
}

/// A client whose first endpoint is member `first`, so that its streams start there.
async fn client_starting_at(etcd: &Etcd, first: usize) -> Client {
    let mut endpoints = vec![etcd.endpoint(first)];
    endpoints.extend(
        (0..etcd.members.len())
            .filter(|&i| i != first)
            .map(|i| etcd.endpoint(i)),
    );
    let options = etcd
        .options()
        .dial_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(5));
    // Lazily: a connecting client would start on whichever member answers first.
    Client::connect_lazy(endpoints, options).unwrap()
}

/// Three members behind peer fault proxies; the leader, and a follower to cut off.
async fn cluster_with_a_follower_to_cut() -> (Etcd, usize, usize) {
    let etcd = Etcd::builder(3).peer_faults().start().await;
    let leader = etcd.leader(0).await.expect("a leader");
    (etcd, leader, (leader + 1) % 3)
}

/// `Store::watch` and `Live` on a client streaming from a member that gets cut off from its
/// peers: every update written on the majority afterwards arrives, once, in order; `Live`
/// converges to etcd's value; a linearizable read through the same client is answered by
/// another member within the request timeout.
#[tokio::test]
async fn live_following_a_partitioned_member_gets_every_update() {
    if support::skip_behind_front("live_following_a_partitioned_member_gets_every_update") {
        return;
    }
    let (etcd, leader, cut) = cluster_with_a_follower_to_cut().await;
    let client = client_starting_at(&etcd, cut).await;
    let writer = client_starting_at(&etcd, leader).await;
    let store = Store::new(client.clone());
    let writes = Store::new(writer.clone());
    writes.save(&App { counter: 0 }).await.unwrap();

    let mut watch = store.watch::<App>().await.unwrap();
    let live = store.live::<App>().await.unwrap();
    assert_eq!(etcd.member_in_use(&client).await, cut);

    etcd.isolate(cut);
    let mut written = Vec::new();
    for counter in 1..=10 {
        written.push(writes.save(&App { counter }).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A linearizable read through the client does not hang on the leaderless member.
    let started = Instant::now();
    let got = client.kv().get("/partition/app/counter").await.unwrap();
    assert_eq!(got.kvs[0].value, b"10");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let update = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("the watch stalled on the cut-off member")
            .expect("the watch ended")
            .expect("the watch failed");
        seen.push((update.revision, update.config.counter));
    }
    let expected: Vec<(i64, u64)> = written.iter().copied().zip(1..).collect();
    assert_eq!(seen, expected);

    let converged = |v: &std::sync::Arc<App>| v.counter == 10;
    support::wait_until(
        "Live stalled",
        Duration::from_secs(30),
        || live.get(),
        converged,
    )
    .await;
    assert_eq!(live.revision(), *written.last().unwrap());
    assert_ne!(etcd.member_in_use(&client).await, cut);
    etcd.heal();
}

/// A lease kept alive through a member that gets cut off from its peers stays alive: its
/// renewals move to a member with a leader before the 3 s TTL runs out, and the leased key
/// stays (read with a client of the majority).
#[tokio::test]
async fn keep_alive_through_a_partitioned_member_keeps_the_lease() {
    if support::skip_behind_front("keep_alive_through_a_partitioned_member_keeps_the_lease") {
        return;
    }
    let (etcd, leader, cut) = cluster_with_a_follower_to_cut().await;
    let client = client_starting_at(&etcd, cut).await;
    let majority = client_starting_at(&etcd, leader).await;
    let lease = majority.lease().grant(3).await.unwrap();
    majority
        .kv()
        .put("/partition/leased", "v")
        .lease(lease.id)
        .await
        .unwrap();
    let keep = client.lease().keep_alive(lease.id).await.unwrap();
    assert_eq!(etcd.member_in_use(&client).await, cut);

    etcd.isolate(cut);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let got = majority.kv().get("/partition/leased").await.unwrap();
    assert_eq!(
        got.count, 1,
        "the lease expired while its keep-alive was cut off"
    );
    assert_eq!(keep.ttl(), Some(3));
    etcd.heal();
}

/// A client never goes back in time (Go's `ordering` concern): after it saw revision R, a
/// serializable read that fails over to a member cut off from the leader (and so behind R) is
/// not taken as current; the next member answers, at R or later.
#[tokio::test]
async fn reads_never_go_back_after_a_failover() {
    if support::skip_behind_front("reads_never_go_back_after_a_failover") {
        return;
    }
    let mut etcd = Etcd::builder(3).peer_faults().start().await;
    let leader = etcd.leader(0).await.expect("a leader");
    let (a, cut) = ((leader + 1) % 3, (leader + 2) % 3);
    // Endpoints in the order a, cut, leader: after `a` dies, the next is the cut-off member.
    let options = etcd
        .options()
        .dial_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(5));
    let endpoints = [etcd.endpoint(a), etcd.endpoint(cut), etcd.endpoint(leader)];
    let client = Client::connect_lazy(endpoints, options).unwrap();
    let writer = client_starting_at(&etcd, leader).await;

    writer.kv().put("/partition/key", "old").await.unwrap();
    etcd.isolate(cut);
    let mut seen = 0;
    for value in ["v1", "v2", "new"] {
        seen = writer
            .kv()
            .put("/partition/key", value)
            .await
            .unwrap()
            .header
            .revision;
    }
    // Linearizable, so `a` answers with every write (a serializable read there may lag).
    let got = client.kv().get("/partition/key").await.unwrap();
    assert_eq!(etcd.member_in_use(&client).await, a);
    assert!(
        got.header.revision >= seen,
        "{} < {seen}",
        got.header.revision
    );

    etcd.stop(a);
    let got = client
        .kv()
        .get("/partition/key")
        .serializable()
        .await
        .unwrap();
    assert_eq!(
        got.kvs[0].value, b"new",
        "a read went back to the cut-off member's past"
    );
    assert!(
        got.header.revision >= seen,
        "{} < {seen}",
        got.header.revision
    );
    etcd.heal();
}

/// A client whose only member is cut off while 20,000 revisions are written through the
/// others: when the cut heals, a live config and a typed watch do not make etcd replay them
/// (etcd would scan its history holding its store lock): they load again at the head (a
/// `Resynced` event, then the new value), and a raw watch with a catch-up limit ends with
/// `FellBehind`.
#[tokio::test]
async fn far_behind_after_a_partition_reloads_at_the_head() {
    if support::skip_behind_front("far_behind_after_a_partition_reloads_at_the_head") {
        return;
    }
    let (etcd, leader, cut) = cluster_with_a_follower_to_cut().await;
    let options = etcd.options().dial_timeout(Duration::from_secs(1));
    let client = Client::connect([etcd.endpoint(cut)], options)
        .await
        .unwrap();
    let writer = client_starting_at(&etcd, leader).await;
    let writes = Store::new(writer.clone());
    writes.save(&App { counter: 1 }).await.unwrap();
    let store = Store::new(client.clone());
    let live = store.live::<App>().await.unwrap();
    let mut events = live.events();
    let mut typed = store.watch::<App>().await.unwrap();
    let head = client.kv().get("/").await.unwrap().header.revision;
    let mut raw = client
        .watch(etcd_config::KeyRange::prefix("/partition/"))
        .start_revision(head + 1)
        .catch_up_limit(100)
        .await
        .unwrap();

    etcd.isolate(cut);
    // Until the member has lost its leader and the watch stream is gone (etcd closes streams
    // that require a leader; 3.5 with pre-vote takes a few election timeouts to notice).
    support::wait_until(
        "the watch stream broken",
        Duration::from_secs(30),
        || live.status().state,
        |state| matches!(state, etcd_config::FollowerState::Reconnecting { .. }),
    )
    .await;
    let tasks: Vec<_> = (0..50)
        .map(|t| {
            let kv = writer.kv();
            tokio::spawn(async move {
                for i in 0..400 {
                    kv.put(format!("/elsewhere/{t}"), i.to_string())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let last = writes.save(&App { counter: 2 }).await.unwrap();
    assert!(last > head + 20_000, "{last} after {head}");
    etcd.heal();

    let err = tokio::time::timeout(Duration::from_secs(30), raw.next())
        .await
        .expect("the raw watch ends")
        .expect("an item")
        .unwrap_err();
    assert!(
        matches!(err, etcd_config::Error::FellBehind { .. }),
        "{err}"
    );
    let update = tokio::time::timeout(Duration::from_secs(30), typed.next())
        .await
        .expect("the typed watch's update")
        .unwrap()
        .unwrap();
    assert_eq!(update.config.counter, 2);
    assert!(
        update.resynced,
        "the typed watch says it reloaded at the head"
    );
    assert!(update.revision >= last, "{} before {last}", update.revision);
    support::wait_until(
        "the live config at the head",
        Duration::from_secs(30),
        || live.get().counter,
        |c| *c == 2,
    )
    .await;
    let mut resynced = false;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), events.next()).await
    {
        resynced |=
            matches!(event, etcd_config::LiveEvent::Resynced { revision } if revision >= last);
    }
    assert!(resynced, "the live config reloaded at the head");
    // And it follows the watch it started after the reload.
    writes.save(&App { counter: 3 }).await.unwrap();
    support::wait_until(
        "the live config after the reload",
        Duration::from_secs(30),
        || live.get().counter,
        |c| *c == 3,
    )
    .await;
}
