//! Endpoint sync against a real cluster: a client given one member's endpoint learns the
//! others from the member list, and keeps working (reads, writes, its watch) after the only
//! member it was given was replaced by new ones.

mod support;

use std::time::Duration;

use etcd_config::{Client, KeyRange};
use futures_util::StreamExt;
use support::{wait_until, Etcd};

/// The ports of a client's endpoints (URLs from the member list, or `host:port` as given).
fn ports(client: &Client) -> Vec<String> {
    let mut ports: Vec<String> = client
        .endpoints()
        .iter()
        .filter_map(|e| e.rsplit(':').next().map(str::to_owned))
        .collect();
    ports.sort();
    ports
}

fn member_ports(etcd: &Etcd, members: impl IntoIterator<Item = usize>) -> Vec<String> {
    let mut ports: Vec<String> = members
        .into_iter()
        .map(|i| etcd.endpoint(i).rsplit(':').next().unwrap().to_owned())
        .collect();
    ports.sort();
    ports
}

#[tokio::test]
async fn a_client_follows_its_cluster_to_new_members() {
    if support::skip_behind_front("a_client_follows_its_cluster_to_new_members") {
        return;
    }
    let mut etcd = Etcd::single().await;
    let options = etcd.options().auto_sync(Duration::from_millis(300));
    let client = Client::connect([etcd.endpoint(0)], options).await.unwrap();
    let mut watch = client.watch(KeyRange::prefix("/k")).await.unwrap();
    let first = client.kv().put("/k", "1").await.unwrap().header.revision;

    let added = [etcd.add_member().await, etcd.add_member().await];
    let three = member_ports(&etcd, 0..3);
    wait_until(
        "the new members learned",
        Duration::from_secs(10),
        || ports(&client),
        |p| *p == three,
    )
    .await;
    etcd.remove_member(0).await;
    let new = member_ports(&etcd, added.iter().copied());
    wait_until(
        "only the new members left",
        Duration::from_secs(10),
        || ports(&client),
        |p| *p == new,
    )
    .await;

    // Every endpoint it was given is gone, and it still reads, writes and watches, once the
    // two members left have settled on a leader (the removed one led; etcd answers writes
    // with a timeout meanwhile).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let put = loop {
        match client.kv().put("/k", "2").await {
            Ok(put) => break put,
            Err(err) if std::time::Instant::now() < deadline => {
                assert!(err.server_kind().is_some(), "not etcd's refusal: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("{err}\nm1:\n{}\nm2:\n{}", etcd.log(1), etcd.log(2)),
        }
    };
    let got = client.kv().get("/k").await.unwrap();
    assert_eq!(got.kvs[0].value_str().unwrap(), "2");
    let mut seen = Vec::new();
    while seen.last() != Some(&put.header.revision) {
        let response = tokio::time::timeout(Duration::from_secs(15), watch.next())
            .await
            .expect("the watch moved to a new member")
            .unwrap()
            .unwrap();
        seen.extend(response.events.iter().map(|e| e.kv.mod_revision));
    }
    // (A write etcd timed out on may have been applied too: then it is in between.)
    assert_eq!(seen.first(), Some(&first), "{seen:?}");
}

/// Without auto sync, `sync_endpoints` does it once.
#[tokio::test]
async fn sync_endpoints_by_hand() {
    if support::skip_behind_front("sync_endpoints_by_hand") {
        return;
    }
    let etcd = Etcd::cluster().await;
    let client = Client::connect([etcd.endpoint(1)], etcd.options())
        .await
        .unwrap();
    assert_eq!(client.endpoints().len(), 1);
    let synced = client.sync_endpoints().await.unwrap();
    assert_eq!(synced.len(), 3, "{synced:?}");
    assert_eq!(ports(&client), member_ports(&etcd, 0..3));
    client.kv().put("/x", "y").await.unwrap();
}
