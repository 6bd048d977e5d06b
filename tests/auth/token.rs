//! Authentication: the token is obtained at connect, sent with every call, and renewed once when
//! etcd rejects it, with one re-authentication for many concurrent calls. Counts of
//! `Authenticate` calls come from etcd's own metrics, not from the client.

use crate::support;

use std::time::Duration;

use etcd_config::{Client, ServerErrorKind};
use support::{Etcd, ROOT_PASSWORD};

/// The number of successful Authenticate calls member 0 has served.
fn authentications(etcd: &Etcd) -> u64 {
    etcd.grpc_handled(0, "Authenticate", "OK")
}

/// A wrong password fails at connect with AuthFailed; no credentials are refused by a server
/// with auth on.
#[tokio::test]
async fn wrong_password_and_missing_credentials() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    root.kv().put("/secret", "v").await.unwrap();

    let err = Client::connect(etcd.endpoints(), etcd.options().with_user("root", "wrong"))
        .await
        .unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::AuthFailed),
        "{err}"
    );

    let anonymous = etcd.client().await;
    let err = anonymous.kv().get("/secret").await.unwrap_err();
    assert_eq!(err.server_kind(), Some(ServerErrorKind::UserEmpty), "{err}");
    assert_eq!(root.user(), Some("root"));
}

/// With a 1 s simple-token TTL, a call made after the token expired succeeds by
/// re-authenticating, and etcd sees exactly one new Authenticate.
#[tokio::test]
async fn expired_token_is_renewed() {
    let etcd = Etcd::builder(1).arg("--auth-token-ttl=1").start().await;
    let root = etcd.enable_auth().await;
    root.kv().put("/k", "v1").await.unwrap();
    let before = authentications(&etcd);

    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = root.kv().get("/k").await.unwrap();
    assert_eq!(got.kvs[0].value, b"v1");
    assert_eq!(authentications(&etcd), before + 1);

    // Writes are renewed the same way: an expired token is refused before anything is applied.
    tokio::time::sleep(Duration::from_secs(3)).await;
    root.kv().put("/k", "v2").await.unwrap();
    assert_eq!(authentications(&etcd), before + 2);
    let check = etcd.client_as("root", ROOT_PASSWORD).await;
    assert_eq!(check.kv().get("/k").await.unwrap().kvs[0].value, b"v2");
}

/// Fifty calls that all meet the expired token trigger one re-authentication, not fifty.
#[tokio::test]
async fn concurrent_calls_share_one_renewal() {
    let etcd = Etcd::builder(1).arg("--auth-token-ttl=1").start().await;
    let root = etcd.enable_auth().await;
    root.kv().put("/k", "v").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = authentications(&etcd);

    let calls = (0..50).map(|_| {
        let client = root.clone();
        tokio::spawn(async move { client.kv().get("/k").await })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap().unwrap().kvs[0].value, b"v");
    }
    assert_eq!(authentications(&etcd), before + 1);
}

/// A change to users or roles does not disturb a client already logged in: its next write is
/// applied exactly once. (etcd answers "revision of auth store is old" only when the auth store
/// changes between a request's check and its apply, a race no test can force; the client
/// handles that answer with the same single renewal as an expired token, tested above.)
#[tokio::test]
async fn old_auth_revision_is_renewed() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    let admin = etcd.client_as("root", ROOT_PASSWORD).await;
    root.kv().put("/k", "1").await.unwrap();

    admin.auth().user_add("someone", "pw").await.unwrap();
    let put = root.kv().put("/k", "2").await.unwrap();
    let got = admin.kv().get("/k").await.unwrap();
    assert_eq!(got.kvs[0].value, b"2");
    assert_eq!(got.kvs[0].mod_revision, put.header.revision);
    assert_eq!(got.kvs[0].version, 2, "the write was applied exactly once");
}

/// With auth on and a 1 s token TTL, a kept-alive lease outlives many token expiries: its
/// renewals carry a valid token, renewed when etcd asks, and the leased key stays.
#[tokio::test]
async fn keep_alive_outlives_the_token() {
    let etcd = Etcd::builder(1).arg("--auth-token-ttl=1").start().await;
    let root = etcd.enable_auth().await;
    let lease = root.lease().grant(2).await.unwrap();
    root.kv().put("/kept", "v").lease(lease.id).await.unwrap();
    let keep = root.lease().keep_alive(lease.id).await.unwrap();

    tokio::time::sleep(Duration::from_secs(6)).await;
    let check = etcd.client_as("root", ROOT_PASSWORD).await;
    assert_eq!(check.kv().get("/kept").await.unwrap().count, 1);
    assert_eq!(keep.ttl(), Some(2));
}
