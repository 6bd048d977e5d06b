//! Who drives: a driver that died is replaced by another process that resumes the rollout
//! where the bake stood, and a driver that was taken over stops without acting.

use std::time::Duration;

use etcd_config::{Error, RolloutOutcome, RolloutPhase, Step, Store};

use super::support::{wait_until, Etcd};
use super::{ended, live, note, pool_in_etcd, quick, rolling, set_pool, Gw};

/// The driver is killed during the bake (its task dropped); another process resumes driving
/// and commits. A driver taken over stops with `RolloutTakenOver`.
#[tokio::test]
async fn another_process_resumes_a_rollout_whose_driver_died() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let fleet = [live(&store, "gw-1").await, live(&store, "gw-2").await];
    let rollout = store
        .start_rollout::<Gw>(
            set_pool(99),
            &note(),
            quick([Step::Instances(1), Step::Percent(100)], 2_500),
        )
        .await
        .unwrap();
    let first = tokio::spawn(rollout.drive());
    wait_until(
        "one member serves the candidate",
        Duration::from_secs(10),
        || fleet.iter().filter(|l| l.get().pool == 99).count(),
        |n| *n == 1,
    )
    .await;
    first.abort(); // the driver dies mid-bake
    let _ = first.await;
    let status = store.rollout_status::<Gw>().await.unwrap().unwrap();
    assert_eq!(status.phase, RolloutPhase::Baking);

    // Another process (its own client) takes over.
    let other = Store::new(etcd.client().await);
    let second = other.resume_driving::<Gw>().await.unwrap();
    let outcome = second.drive().await.unwrap();
    assert!(
        matches!(outcome, RolloutOutcome::Committed { .. }),
        "{outcome:?}"
    );
    assert_eq!(pool_in_etcd(&etcd).as_deref(), Some("99"));

    // Two drivers: the one taken over stops without acting.
    let rollout = store
        .start_rollout::<Gw>(set_pool(100), &note(), quick([Step::Percent(100)], 2_000))
        .await
        .unwrap();
    let old = tokio::spawn(rollout.drive());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = other.resume_driving::<Gw>().await.unwrap();
    let old = tokio::time::timeout(Duration::from_secs(5), old)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(old, Err(Error::RolloutTakenOver { .. })),
        "{old:?}"
    );
    let outcome = new.drive().await.unwrap();
    assert!(
        matches!(outcome, RolloutOutcome::Committed { .. }),
        "{outcome:?}"
    );
    assert_eq!(pool_in_etcd(&etcd).as_deref(), Some("100"));
}

/// Anyone may pause, promote and abort; with nothing active each says so.
#[tokio::test]
async fn pause_promote_and_abort_by_anyone() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let a = live(&store, "gw-a").await;
    let err = store.abort_rollout::<Gw>(&note()).await.unwrap_err();
    assert!(matches!(err, Error::NoRollout { .. }), "{err}");
    let driver = rolling(&store, &a, 55, 600_000).await;
    // Promote ends a ten-minute bake now.
    let other = Store::new(etcd.client().await);
    other.promote_rollout::<Gw>(&note()).await.unwrap();
    let outcome = ended(driver, 10).await;
    assert!(
        matches!(outcome, RolloutOutcome::Committed { .. }),
        "{outcome:?}"
    );

    let driver = rolling(&store, &a, 56, 600_000).await;
    other.pause_rollout::<Gw>(&note()).await.unwrap();
    let status = other.rollout_status::<Gw>().await.unwrap().unwrap();
    assert_eq!(status.phase, RolloutPhase::Paused);
    other.abort_rollout::<Gw>(&note()).await.unwrap();
    let outcome = ended(driver, 10).await;
    assert!(
        matches!(&outcome, RolloutOutcome::Aborted { reason } if reason.contains("alice")),
        "{outcome:?}"
    );
    wait_until(
        "back on the committed value",
        Duration::from_secs(2),
        || a.get().pool,
        |p| *p == 55,
    )
    .await;
}
