//! Cluster membership against a real three-member etcd: the member list and status as the
//! harness started them, and a learner added (then removed) through the Cluster service.

mod support;

use std::time::{Duration, Instant};

use etcd_config::ServerErrorKind;
use support::Etcd;

/// Status names the member that answered and the cluster's leader; member_list lists the three
/// members with the client URLs the harness gave them.
#[tokio::test]
async fn status_and_member_list() {
    let etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    let status = client.maintenance().status().await.unwrap();
    assert!(status.version.starts_with("3."), "{}", status.version);
    assert_ne!(status.leader, 0);
    assert!(status.db_size > 0);

    let members = client.cluster().member_list().await.unwrap().members;
    assert_eq!(members.len(), 3);
    let mut urls: Vec<String> = members.iter().flat_map(|m| m.client_urls.clone()).collect();
    urls.sort();
    let mut expected: Vec<String> = etcd
        .endpoints()
        .iter()
        .map(|e| format!("http://{e}"))
        .collect();
    expected.sort();
    assert_eq!(urls, expected);
    assert!(members.iter().any(|m| m.id == status.leader));
    assert!(members.iter().any(|m| m.id == status.header.member_id));
}

/// A learner added to the cluster is listed as one, and removing it leaves three members.
#[tokio::test]
async fn add_and_remove_a_learner() {
    let etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    let peer = format!("http://127.0.0.1:{}", support::free_port());
    // etcd refuses reconfiguration ("unhealthy cluster") until every member has been connected
    // for its health interval (5 s) after start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let added = loop {
        match client.cluster().member_add([peer.clone()]).learner().await {
            Ok(added) => break added,
            Err(err)
                if err.server_kind() == Some(ServerErrorKind::Unhealthy)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => panic!("member_add: {err}"),
        }
    };
    let learner = added.added.expect("the added member");
    assert!(learner.is_learner);
    assert_eq!(learner.peer_urls, [peer]);
    assert_eq!(added.members.len(), 4);
    // A learner that never started cannot be promoted.
    let err = client
        .cluster()
        .member_promote(learner.id)
        .await
        .unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::LearnerNotReady),
        "{err}"
    );
    // Its peer URL can change (member_update takes URLs as member_add does).
    let moved = format!("http://127.0.0.1:{}", support::free_port());
    client
        .cluster()
        .member_update(learner.id, [moved.as_str()])
        .await
        .unwrap();
    let listed = client.cluster().member_list().await.unwrap();
    let updated = listed.members.iter().find(|m| m.id == learner.id).unwrap();
    assert_eq!(updated.peer_urls, [moved]);
    let after = client.cluster().member_remove(learner.id).await.unwrap();
    assert_eq!(after.members.len(), 3);
    let err = client
        .cluster()
        .member_remove(learner.id)
        .await
        .unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::MemberNotFound),
        "{err}"
    );
}
