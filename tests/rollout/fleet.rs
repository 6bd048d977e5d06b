//! The fleet moving under a rollout: a member restarting with its identity (keeps its place)
//! or with a new one (replaced), an instance joining mid-step (it preflights before it can be
//! a member), the events a member sees, and a cluster that loses a member and its leader while
//! a rollout bakes (it finishes or stops clearly, never half committed, nobody left on the
//! candidate).

use std::time::Duration;

use etcd_config::{
    Client, LiveEvent, LiveOptions, RolloutOutcome, RolloutPhase, Serving, Step, Store,
};
use futures_util::StreamExt;

use super::support::{wait_until, Etcd};
use super::{ended, live, note, pool_in_etcd, quick, set_pool, Gw};

async fn members(store: &Store) -> Vec<String> {
    store
        .rollout_status::<Gw>()
        .await
        .unwrap()
        .map(|s| s.members)
        .unwrap_or_default()
}

/// A member that restarts under its identity is a member again at once; one that comes back
/// under a new identity is replaced by the next in rank once its record is gone for good.
#[tokio::test]
async fn restarts_keep_or_replace_membership() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let mut fleet = vec![
        ("gw-1", live(&store, "gw-1").await),
        ("gw-2", live(&store, "gw-2").await),
        ("gw-3", live(&store, "gw-3").await),
    ];
    let rollout = store
        .start_rollout::<Gw>(
            set_pool(21),
            &note(),
            quick([Step::Instances(1), Step::Percent(100)], 60_000),
        )
        .await
        .unwrap();
    let driver = tokio::spawn(rollout.drive());
    let mut first = Vec::new();
    for _ in 0..100 {
        first = members(&store).await;
        if !first.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first.len(), 1, "{first:?}");
    let member = first[0].clone();
    let at = fleet.iter().position(|(name, _)| *name == member).unwrap();

    // Restart under the same identity: a member again, the cohort unchanged.
    drop(fleet.remove(at));
    let again = store
        .live_with::<Gw>(LiveOptions::new().report_as(member.clone()).build("v1"))
        .await
        .unwrap();
    wait_until(
        "the restarted member serves the candidate",
        Duration::from_secs(10),
        || again.get().pool,
        |p| *p == 21,
    )
    .await;
    assert_eq!(members(&store).await, first);

    // Back under a new identity: the old one is replaced after the record's lease (10 s).
    drop(again);
    let renamed = store
        .live_with::<Gw>(
            LiveOptions::new()
                .report_as("gw-9")
                .identity("gw-9")
                .build("v1"),
        )
        .await
        .unwrap();
    let mut replaced = Vec::new();
    for _ in 0..200 {
        replaced = members(&store).await;
        if !replaced.contains(&member) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert!(!replaced.contains(&member), "{replaced:?}");
    wait_until(
        "exactly one instance serves the candidate",
        Duration::from_secs(10),
        || {
            fleet
                .iter()
                .map(|(_, l)| l)
                .chain([&renamed])
                .filter(|l| l.get().pool == 21)
                .count()
        },
        |n| *n == 1,
    )
    .await;
    store.abort_rollout::<Gw>(&note()).await.unwrap();
    let outcome = driver.await.unwrap().unwrap();
    assert!(
        matches!(outcome, RolloutOutcome::Aborted { .. }),
        "{outcome:?}"
    );
}

/// An instance that joins during a step gives its verdict first and becomes a member at the
/// next step; a member's events say what it checked and what it serves.
#[tokio::test]
async fn an_instance_joining_mid_step_preflights_first() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let a = live(&store, "gw-1").await;
    let mut events = a.events();
    let b = live(&store, "gw-2").await;
    let rollout = store
        .start_rollout::<Gw>(
            set_pool(22),
            &note(),
            quick([Step::Instances(1), Step::Percent(100)], 2_000),
        )
        .await
        .unwrap();
    let id = rollout.id().to_owned();
    let driver = tokio::spawn(rollout.drive());
    wait_until(
        "a member",
        Duration::from_secs(10),
        || (a.get().pool, b.get().pool),
        |p| p.0 == 22 || p.1 == 22,
    )
    .await;
    let c = live(&store, "gw-3").await;
    let outcome = ended(driver, 20).await;
    let RolloutOutcome::Committed { revision } = outcome else {
        panic!("{outcome:?}");
    };
    store
        .wait_rollout::<Gw>(revision, Duration::from_secs(5))
        .await
        .unwrap();
    let status = store.rollout_status::<Gw>().await.unwrap().unwrap();
    assert_eq!(status.phase, RolloutPhase::Committed);
    assert_eq!(status.members.len(), 3, "{status:?}");
    assert!(
        status.instances.iter().all(|i| i.verdict == Some(Ok(()))),
        "{status:?}"
    );
    for l in [&a, &b, &c] {
        assert_eq!(l.get().pool, 22);
        assert_eq!(l.status().serving, Serving::Committed);
    }
    // gw-1 saw its own verdict, then served the candidate, then the committed value.
    let mut seen = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(200), events.next()).await
    {
        seen.push(event);
    }
    let verdict = seen.iter().position(
        |e| matches!(e, LiveEvent::Verdict { rollout, rejected: None } if *rollout == id),
    );
    let candidate = seen.iter().position(|e| {
        matches!(e, LiveEvent::Serving { serving: Serving::Candidate { rollout } } if *rollout == id)
    });
    let back = seen.iter().rposition(|e| {
        matches!(
            e,
            LiveEvent::Serving {
                serving: Serving::Committed
            }
        )
    });
    assert!(
        verdict < candidate && candidate < back && verdict.is_some(),
        "{seen:?}"
    );
}

/// A three-member cluster loses a member and then its leader while a rollout bakes: the
/// rollout commits (resumed by another driver if this one failed), etcd holds all of the
/// candidate, and nobody is left serving an overlay.
#[tokio::test]
async fn a_member_and_the_leader_lost_during_a_rollout() {
    let mut etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    let store = Store::new(client.clone());
    let a = live(&store, "gw-1").await;
    let b = live(&store, "gw-2").await;
    let rollout = store
        .start_rollout::<Gw>(
            |gw| {
                gw.pool = 23;
                gw.host = "db-new".into();
                Ok(())
            },
            &note(),
            quick([Step::Instances(1), Step::Percent(100)], 3_000),
        )
        .await
        .unwrap();
    let driver = tokio::spawn(rollout.drive());
    wait_until(
        "a member",
        Duration::from_secs(10),
        || (a.get().pool, b.get().pool),
        |p| p.0 == 23 || p.1 == 23,
    )
    .await;
    // Lose a follower, then move the leadership and lose the old leader.
    let leader = etcd.leader(0).await.expect("a leader");
    let follower = (0..3).find(|i| *i != leader).unwrap();
    etcd.stop(follower);
    let ids = etcd.member_ids().await;
    let to = ids
        .iter()
        .find(|(_, i)| **i != leader && **i != follower)
        .map(|(id, _)| *id)
        .unwrap();
    let _ = maintenance_of(&etcd, leader).await.move_leader(to).await;
    etcd.restart(follower).await;
    etcd.stop(leader);
    let outcome = match tokio::time::timeout(Duration::from_secs(40), driver)
        .await
        .unwrap()
        .unwrap()
    {
        Ok(outcome) => outcome,
        Err(err) => {
            // The driver stopped clearly; another takes over.
            eprintln!("driver stopped: {err}");
            Store::new(etcd.client().await)
                .resume_driving::<Gw>()
                .await
                .unwrap()
                .drive()
                .await
                .unwrap()
        }
    };
    etcd.restart(leader).await;
    let RolloutOutcome::Committed { revision } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(pool_in_etcd(&etcd).as_deref(), Some("23"));
    let host = etcd.etcdctl(&["get", "/ro/gw/host", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&host.stdout).trim(), "db-new");
    store
        .wait_rollout::<Gw>(revision, Duration::from_secs(20))
        .await
        .unwrap();
    wait_until(
        "nobody on an overlay",
        Duration::from_secs(10),
        || (a.status().serving, b.status().serving),
        |s| s.0 == Serving::Committed && s.1 == Serving::Committed,
    )
    .await;
}

/// The maintenance service of member `i` alone.
async fn maintenance_of(etcd: &Etcd, i: usize) -> etcd_config::client::Maintenance {
    Client::connect([etcd.endpoint(i)], etcd.options())
        .await
        .unwrap()
        .maintenance()
}
