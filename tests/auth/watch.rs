//! Watches with auth on and a 1 s token TTL, under the churn that makes a shared watch stream
//! create watches long after it was opened: new watches on an old stream, a slow consumer's
//! pause and resume, a failover to a member that never saw the token, and a watch refused for
//! real. etcd 3.4 answers a create sent with an expired token "invalid auth token", etcd 3.5
//! "permission denied"; either way no watch may end or stall, and every revision arrives once.

use crate::support;

use std::time::Duration;

use etcd_config::client::WatchStream;
use etcd_config::{Client, EtcdConfig, KeyRange, ServerErrorKind, Store};
use futures_util::StreamExt;
use support::{Etcd, ROOT_PASSWORD};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/churn/app")]
struct App {
    #[etcd(default)]
    counter: u64,
}

/// The mod revisions of the next `count` events, failing on an error, an end, or 15 s of
/// silence.
async fn revisions(watch: &mut WatchStream, count: usize) -> Vec<i64> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let response = tokio::time::timeout(Duration::from_secs(15), watch.next())
            .await
            .expect("the watch stalled: nothing for 15 s")
            .expect("the watch ended")
            .expect("the watch failed");
        seen.extend(response.events.iter().map(|e| e.kv.mod_revision));
    }
    seen
}

async fn put_counter(writer: &Client, value: u64) -> i64 {
    writer
        .kv()
        .put("/churn/app/counter", value.to_string())
        .await
        .unwrap()
        .header
        .revision
}

/// Longer than the token TTL: the stream's token has expired on the server after this.
async fn let_token_expire() {
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

#[tokio::test]
async fn watches_outlive_expired_tokens_under_churn() {
    if support::skip_behind_front("watches_outlive_expired_tokens_under_churn") {
        return;
    }
    let mut etcd = Etcd::builder(3).arg("--auth-token-ttl=1").start().await;
    let root = etcd.enable_auth().await;
    let client = etcd.client_as("root", ROOT_PASSWORD).await;
    let writer = etcd.client_as("root", ROOT_PASSWORD).await;
    let store = Store::new(client.clone());
    put_counter(&writer, 0).await;

    // A slow consumer (buffer of one response) and a typed watch, on one stream.
    let mut slow = client
        .watch(KeyRange::prefix("/churn/"))
        .buffer(1)
        .await
        .unwrap();
    let mut typed = store.watch::<App>().await.unwrap();
    let live = store.live::<App>().await.unwrap();
    let mut written = Vec::new();

    // 1. A new watch on the old stream after its token expired.
    let_token_expire().await;
    let mut late = client.watch(KeyRange::prefix("/churn/")).await.unwrap();

    // 2. The slow consumer falls behind (paused on the server), the token expires, and it
    //    drains: its watch is created again on the old stream.
    for i in 1..=20 {
        written.push(put_counter(&writer, i).await);
    }
    let_token_expire().await;
    assert_eq!(revisions(&mut slow, 20).await, written);
    assert_eq!(revisions(&mut late, 20).await, written);

    // 3. The member the client streams from dies: every watch resumes on a member that never
    //    issued the client's token.
    let used = etcd.member_in_use(&client).await;
    etcd.stop(used);
    let_token_expire().await;
    let mut more = Vec::new();
    for i in 21..=25 {
        more.push(put_counter(&writer, i).await);
    }
    assert_eq!(revisions(&mut slow, 5).await, more);
    assert_eq!(revisions(&mut late, 5).await, more);
    written.extend(more);
    etcd.restart(used).await;

    // The typed watch saw every revision once, in order; Live holds etcd's value.
    let mut updates = Vec::new();
    while updates.len() < written.len() {
        let update = tokio::time::timeout(Duration::from_secs(15), typed.next())
            .await
            .expect("the typed watch stalled")
            .expect("the typed watch ended")
            .expect("the typed watch failed");
        updates.push(update.revision);
    }
    assert_eq!(updates, written);
    let converged = |v: &std::sync::Arc<App>| v.counter == 25;
    support::wait_until(
        "Live stalled",
        Duration::from_secs(15),
        || live.get(),
        converged,
    )
    .await;
    assert_eq!(live.revision(), *written.last().unwrap());

    // A watch refused for real (no permission) still fails, once, with etcd's answer.
    let auth = root.auth();
    auth.user_add("reader", "pw").await.unwrap();
    auth.role_add("reader").await.unwrap();
    auth.user_grant_role("reader", "reader").await.unwrap();
    let reader = etcd.client_as("reader", "pw").await;
    let err = reader.watch(KeyRange::prefix("/churn/")).await.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::PermissionDenied),
        "{err}"
    );
}

/// A watch refused for real on a stream that already carries an accepted one (so creates go
/// out without waiting): etcd 3.4 answers the refusal with an id of its own, which matches no
/// create. The refused watch fails with etcd's answer, not the request timeout, and the
/// watches beside it go on.
#[tokio::test]
async fn a_refused_watch_beside_an_accepted_one_fails_with_etcds_answer() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    let auth = root.auth();
    auth.role_add("mine").await.unwrap();
    auth.role_grant_permission(
        "mine",
        etcd_config::client::Permission::new(
            etcd_config::client::PermissionKind::Read,
            KeyRange::prefix("/mine/"),
        ),
    )
    .await
    .unwrap();
    auth.user_add("svc", "pw").await.unwrap();
    auth.user_grant_role("svc", "mine").await.unwrap();
    let svc = etcd.client_as("svc", "pw").await;
    let mut mine = svc.watch(KeyRange::prefix("/mine/")).await.unwrap();

    let started = std::time::Instant::now();
    let err = svc.watch(KeyRange::prefix("/theirs/")).await.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::PermissionDenied),
        "{err} after {:?}",
        started.elapsed()
    );

    let mut again = svc.watch(KeyRange::prefix("/mine/")).await.unwrap();
    let put = root.kv().put("/mine/a", "1").await.unwrap();
    let written = vec![put.header.revision];
    assert_eq!(revisions(&mut mine, 1).await, written);
    assert_eq!(revisions(&mut again, 1).await, written);
}
