//! Leases against a real etcd: keep-alive over one shared LeaseKeepAlive stream (checked with
//! etcd's own gRPC counters), expiry once a handle is dropped, and a revoked lease reported as
//! lost. Results are read back through a second client.

mod support;

use etcd_config::ServerErrorKind;
use support::Etcd;

/// Twenty kept-alive leases share one LeaseKeepAlive stream (etcd's own counters say one stream
/// was started, carrying the renewals); they outlive their TTL, and expire once dropped.
#[tokio::test]
async fn leases_share_one_keep_alive_stream() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let started_before = etcd.grpc_started(0, "LeaseKeepAlive");
    let mut kept = Vec::new();
    for _ in 0..20 {
        let lease = client.lease().grant(2).await.unwrap();
        kept.push(client.lease().keep_alive(lease.id).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;

    assert_eq!(etcd.grpc_started(0, "LeaseKeepAlive") - started_before, 1);
    // At least the first renewal and one more per second, for each lease.
    assert!(etcd.grpc_received(0, "LeaseKeepAlive") >= 20 * 4);
    let check = etcd.client().await.lease();
    for keep in &kept {
        let info = check.time_to_live(keep.id()).await.unwrap();
        assert!(
            info.ttl > 0,
            "lease {:x} expired while kept alive",
            keep.id()
        );
    }

    let ids: Vec<i64> = kept.iter().map(|keep| keep.id()).collect();
    drop(kept);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let left = check.leases().await.unwrap();
    assert!(
        ids.iter().all(|id| !left.contains(id)),
        "leases outlived their handles: {left:?}"
    );
}

/// A kept-alive lease outlives its TTL and its key stays; once the handle is dropped the lease
/// expires and etcd deletes the key. Revoking a kept-alive lease is reported as lost.
#[tokio::test]
async fn lease_keep_alive() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let lease = client.lease().grant(2).await.unwrap();
    client
        .kv()
        .put("/leased", "v")
        .lease(lease.id)
        .await
        .unwrap();
    let keep = client.lease().keep_alive(lease.id).await.unwrap();
    assert_eq!(keep.ttl(), Some(2));
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let check = etcd.client().await;
    assert_eq!(
        check.kv().get("/leased").await.unwrap().count,
        1,
        "the lease expired while kept alive"
    );

    drop(keep);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        check.kv().get("/leased").await.unwrap().count,
        0,
        "the lease outlived its handle"
    );

    let other = client.lease().grant(3).await.unwrap();
    let mut keep = client.lease().keep_alive(other.id).await.unwrap();
    client.lease().revoke(other.id).await.unwrap();
    let lost = tokio::time::timeout(std::time::Duration::from_secs(10), keep.lost())
        .await
        .unwrap();
    assert!(lost.to_string().contains("lease not found"), "{lost}");
    let err = client.lease().keep_alive(other.id).await.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::LeaseNotFound),
        "{err}"
    );
}
