//! Changes made while a rollout is active: by etcdctl (a field the rollout changes aborts it,
//! another field pauses it until resumed), and by a typed write (refused, or superseding the
//! rollout in the same transaction).

use std::time::Duration;

use etcd_config::{ChangeNote, Error, RolloutOutcome, RolloutPhase, Step, Store};

use super::support::{wait_until, Etcd};
use super::{ended, live, note, pool_in_etcd, quick, rolling, set_pool, Gw};

async fn phase(store: &Store) -> Option<RolloutPhase> {
    store.rollout_status::<Gw>().await.unwrap().map(|s| s.phase)
}

/// `etcdctl put` of the field the rollout changes aborts it; of another field pauses it, and a
/// resume runs a new preflight and goes on to commit.
#[tokio::test]
async fn hand_edits_abort_or_pause_the_rollout() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let a = live(&store, "gw-a").await;
    let driver = rolling(&store, &a, 40, 60_000).await;
    assert!(etcd.etcdctl(&["put", "/ro/gw/pool", "12"]).status.success());
    let outcome = ended(driver, 10).await;
    let RolloutOutcome::Aborted { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("/ro/gw/pool"), "{reason}");
    wait_until(
        "the hand edit is served",
        Duration::from_secs(5),
        || a.get().pool,
        |p| *p == 12,
    )
    .await;

    // Another field: paused until resumed, then committed.
    let driver = rolling(&store, &a, 41, 1_000).await;
    assert!(etcd
        .etcdctl(&["put", "/ro/gw/host", "db9"])
        .status
        .success());
    let mut paused = None;
    for _ in 0..100 {
        paused = phase(&store).await;
        if paused == Some(RolloutPhase::Paused) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(paused, Some(RolloutPhase::Paused));
    let status = store.rollout_status::<Gw>().await.unwrap().unwrap();
    assert!(status.outcome.unwrap().contains("/ro/gw/host"));
    // Held: the driver waits, nothing is committed.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(phase(&store).await, Some(RolloutPhase::Paused));
    assert_eq!(pool_in_etcd(&etcd).as_deref(), Some("12"));
    store
        .resume_rollout::<Gw>(&ChangeNote::by("bob"))
        .await
        .unwrap();
    let outcome = ended(driver, 15).await;
    assert!(
        matches!(outcome, RolloutOutcome::Committed { .. }),
        "{outcome:?}"
    );
    assert_eq!(pool_in_etcd(&etcd).as_deref(), Some("41"));
    let host = etcd.etcdctl(&["get", "/ro/gw/host", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&host.stdout).trim(), "db9");
}

/// A typed write to a config with an active rollout is refused and writes nothing; a store
/// that supersedes rollouts writes and aborts the rollout in the same transaction.
#[tokio::test]
async fn typed_writes_are_refused_or_supersede_the_rollout() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let _a = live(&store, "gw-a").await;
    let rollout = store
        .start_rollout::<Gw>(set_pool(70), &note(), quick([Step::Percent(100)], 60_000))
        .await
        .unwrap();
    let id = rollout.id().to_owned();
    let driver = tokio::spawn(rollout.drive());
    let before = store.client().kv().get("/").await.unwrap().header.revision;
    for err in [
        store
            .set::<Gw>(&[("host", "x")], &note())
            .await
            .unwrap_err(),
        store
            .save(&Gw {
                pool: 1,
                host: "y".into(),
            })
            .await
            .unwrap_err(),
        store
            .start_rollout::<Gw>(set_pool(71), &note(), quick([Step::Percent(100)], 10))
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::RolloutActive { id: active, .. } if *active == id),
            "{err}"
        );
        assert!(err.to_string().contains("nothing was written"), "{err}");
    }
    assert_eq!(pool_in_etcd(&etcd), None);
    let host = etcd.etcdctl(&["get", "/ro/gw/host"]);
    assert!(host.stdout.is_empty());
    let _ = before;

    let forced = store.clone().superseding_rollouts();
    let revision = forced
        .set::<Gw>(
            &[("host", "fix")],
            &ChangeNote::by("oncall").reason("incident"),
        )
        .await
        .unwrap();
    let outcome = ended(driver, 10).await;
    let RolloutOutcome::Aborted { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        reason.contains("superseded") && reason.contains("oncall"),
        "{reason}"
    );
    // The abort is the write's own transaction.
    let last = etcd.etcdctl(&["get", "/ro/gw.rollout/last", "-w", "json"]);
    let json = String::from_utf8_lossy(&last.stdout);
    assert!(
        json.contains(&format!("\"mod_revision\":{revision}")),
        "{json}"
    );
    let history = store.history::<Gw>().await.unwrap();
    let note = history.last().unwrap().note.clone().unwrap();
    assert!(
        note.reason.contains(&format!("supersedes rollout {id}")),
        "{note:?}"
    );
    let state = etcd.etcdctl(&["get", "/ro/gw.rollout/state"]);
    assert!(state.stdout.is_empty());
    assert_eq!(pool_in_etcd(&etcd), None);
}
