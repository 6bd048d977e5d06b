//! Progressive delivery against a real etcd: a fleet of live configs in one process (several
//! names and builds, one of them a stricter build), rollouts driven through preflight, steps,
//! bake and commit or abort, with etcdctl reading what etcd holds at each point.

#[path = "../support/mod.rs"]
mod support;

mod changes;
mod drivers;
mod fleet;

use std::time::Duration;

use etcd_config::{
    ChangeNote, EtcdConfig, Live, LiveOptions, RolloutOutcome, RolloutPhase, RolloutPlan, Serving,
    Step, Store,
};
use futures_util::StreamExt;
use support::{wait_until, Etcd};

/// The service's config as the current build reads it.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/ro/gw", validate = "Gw::check")]
struct Gw {
    #[etcd(default = 8)]
    pool: u32,
    #[etcd(default)]
    host: String,
}

impl Gw {
    fn check(&self) -> Result<(), String> {
        (self.pool <= 1000)
            .then_some(())
            .ok_or_else(|| format!("pool {} is over 1000", self.pool))
    }
}

/// The same keys as a stricter build reads them: pool at most 100.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/ro/gw", validate = "Strict::check")]
struct Strict {
    #[etcd(default = 8)]
    pool: u32,
    #[etcd(default)]
    host: String,
}

impl Strict {
    fn check(&self) -> Result<(), String> {
        (self.pool <= 100)
            .then_some(())
            .ok_or_else(|| format!("pool {} is over 100 in build v2", self.pool))
    }
}

/// The change most tests roll out.
fn set_pool(pool: u32) -> impl FnOnce(&mut Gw) -> Result<(), String> {
    move |gw| {
        gw.pool = pool;
        Ok(())
    }
}

fn note() -> ChangeNote {
    ChangeNote::by("alice").reason("more connections")
}

/// How a driven rollout ended, within `secs` seconds.
async fn ended(
    driver: tokio::task::JoinHandle<etcd_config::Result<RolloutOutcome>>,
    secs: u64,
) -> RolloutOutcome {
    tokio::time::timeout(Duration::from_secs(secs), driver)
        .await
        .expect("the rollout ends in time")
        .unwrap()
        .unwrap()
}

/// Starts a one-step rollout of `pool` (bake `bake_ms`) and drives it in a task; returns once
/// `member` serves the candidate.
async fn rolling(
    store: &Store,
    member: &Live<Gw>,
    pool: u32,
    bake_ms: u64,
) -> tokio::task::JoinHandle<etcd_config::Result<RolloutOutcome>> {
    let rollout = store
        .start_rollout::<Gw>(
            set_pool(pool),
            &note(),
            quick([Step::Percent(100)], bake_ms),
        )
        .await
        .unwrap();
    let driver = tokio::spawn(rollout.drive());
    wait_until(
        "the member serves the candidate",
        Duration::from_secs(10),
        || member.get().pool,
        |p| *p == pool,
    )
    .await;
    driver
}

/// A plan with short bakes for tests.
fn quick(steps: impl IntoIterator<Item = Step>, bake_ms: u64) -> RolloutPlan {
    RolloutPlan::new()
        .steps(steps)
        .bake(Duration::from_millis(bake_ms))
        .preflight_timeout(Duration::from_secs(5))
}

async fn live(store: &Store, name: &str) -> Live<Gw> {
    store
        .live_with::<Gw>(LiveOptions::new().report_as(name).build("v1"))
        .await
        .unwrap()
}

/// `pool` as etcd holds it, read with etcdctl (`None`: no key).
fn pool_in_etcd(etcd: &Etcd) -> Option<String> {
    let out = etcd.etcdctl(&["get", "/ro/gw/pool", "--print-value-only"]);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// How many keys etcd holds under the config's prefix, the rollout area aside.
fn field_keys(etcd: &Etcd) -> Vec<String> {
    let out = etcd.etcdctl(&["get", "--prefix", "/ro/gw/", "--keys-only"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A rejection by one build in the preflight aborts before anything is served: the reason
/// names the instance and its build, etcd holds exactly the base keys.
#[tokio::test]
async fn a_preflight_rejection_by_one_build_aborts() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let a = live(&store, "gw-a").await;
    let b = live(&store, "gw-b").await;
    let strict = store
        .live_with::<Strict>(LiveOptions::new().report_as("gw-c").build("v2"))
        .await
        .unwrap();
    let before = store.client().kv().get("/").await.unwrap().header.revision;
    let rollout = store
        .start_rollout::<Gw>(set_pool(500), &note(), quick([Step::Percent(100)], 200))
        .await
        .unwrap();
    let outcome = rollout.drive().await.unwrap();
    let RolloutOutcome::Aborted { reason } = outcome else {
        panic!("committed: {outcome:?}");
    };
    assert!(reason.contains("gw-c") && reason.contains("v2"), "{reason}");
    assert!(reason.contains("over 100"), "{reason}");
    // Nothing was served and the real keys never moved.
    assert_eq!(a.get().pool, 8);
    assert_eq!(b.get().pool, 8);
    assert_eq!(strict.get().pool, 8);
    assert_eq!(a.status().serving, Serving::Committed);
    assert_eq!(pool_in_etcd(&etcd), None);
    assert!(field_keys(&etcd).is_empty(), "{:?}", field_keys(&etcd));
    let status = store.rollout_status::<Gw>().await.unwrap().unwrap();
    assert_eq!(status.phase, RolloutPhase::Aborted);
    assert!(status.id.starts_with("r-"));
    let history = store.history::<Gw>().await.unwrap();
    assert!(history.iter().all(|c| c.revision <= before), "{history:?}");
}

/// A clean rollout walks its steps: at each, exactly the chosen members serve the candidate
/// and the others the base; the commit is one revision with its note, read by etcdctl.
#[tokio::test]
async fn a_clean_rollout_walks_its_steps_and_commits_once() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    store
        .set::<Gw>(&[("host", "db1")], &ChangeNote::by("seed"))
        .await
        .unwrap();
    let names = ["gw-1", "gw-2", "gw-3", "gw-4"];
    let mut fleet = Vec::new();
    let mut events = Vec::new();
    for name in &names[..3] {
        let live = live(&store, name).await;
        events.push(live.events());
        fleet.push((*name, live));
    }
    // The fourth keeps a cache file, which the commit's revision reaches too.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("gw-4.json");
    let options = LiveOptions::new()
        .report_as("gw-4")
        .build("v1")
        .cache_file(&cache);
    let live = store.live_with::<Gw>(options).await.unwrap();
    events.push(live.events());
    fleet.push(("gw-4", live));
    let rollout = store
        .start_rollout::<Gw>(
            set_pool(64),
            &note(),
            quick(
                [Step::Instances(1), Step::Percent(50), Step::Percent(100)],
                1500,
            ),
        )
        .await
        .unwrap();
    let id = rollout.id().to_owned();
    let driver = tokio::spawn(rollout.drive());
    let mut seen_steps = Vec::new();
    while !driver.is_finished() {
        let Some(status) = store.rollout_status::<Gw>().await.unwrap() else {
            continue;
        };
        let settled = status.phase == RolloutPhase::Baking
            && !seen_steps.contains(&status.step)
            && status
                .instances
                .iter()
                .all(|i| i.serving_candidate == status.members.contains(&i.identity));
        if settled {
            // Read each instance's value while the step holds.
            for (name, live) in &fleet {
                let member = status.members.iter().any(|m| m == name);
                let expected = if member { 64 } else { 8 };
                assert_eq!(live.get().pool, expected, "{name} at step {}", status.step);
                let serving = live.status().serving;
                assert_eq!(
                    matches!(serving, Serving::Candidate { .. }),
                    member,
                    "{name}"
                );
            }
            let wanted = [1, 2, 4][status.step];
            assert_eq!(status.members.len(), wanted, "{status:?}");
            seen_steps.push(status.step);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = driver.await.unwrap().unwrap();
    let RolloutOutcome::Committed { revision } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(seen_steps, [0, 1, 2]);
    // One revision: the key, and the note naming the rollout.
    assert_eq!(pool_in_etcd(&etcd).as_deref(), Some("64"));
    let out = etcd.etcdctl(&["get", "/ro/gw/pool", "-w", "json"]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.contains(&format!("\"mod_revision\":{revision}")),
        "{json}"
    );
    let history = store.history::<Gw>().await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.revision, revision);
    let note = last.note.as_ref().expect("the commit's note");
    assert!(note.reason.contains(&id), "{note:?}");
    assert_eq!(note.author, "alice");
    // Every instance is current for the commit and serves the committed value.
    assert_eq!(
        store
            .wait_rollout::<Gw>(revision, Duration::from_secs(5))
            .await
            .unwrap(),
        4
    );
    for (name, live) in &fleet {
        assert_eq!(live.get().pool, 64, "{name}");
        assert_eq!(live.status().serving, Serving::Committed, "{name}");
        // The value is etcd's own now: its revision is the commit's, not the one the
        // candidate was overlaid on.
        assert_eq!(live.status().revision, revision, "{name}");
    }
    let cached: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_eq!(cached["revision"], revision, "{cached}");
    assert_eq!(cached["keys"]["pool"], "64", "{cached}");
    // And the fleet says so: every record serves the commit's revision.
    let records = store.fleet::<Gw>().await.unwrap();
    assert_eq!(records.len(), 4);
    for record in &records {
        assert_eq!(record.revision, revision, "{record:?}");
    }
    let status = store.rollout_status::<Gw>().await.unwrap().unwrap();
    assert_eq!(status.phase, RolloutPhase::Committed);
    assert_eq!(status.committed, Some(revision));
    // Each instance took the candidate once and kept it through the commit: its value never
    // stepped back to the old one in between.
    for ((name, _), mut events) in fleet.iter().zip(events) {
        let mut applied = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), events.next()).await
        {
            if let etcd_config::LiveEvent::Applied { revision, .. } = event {
                applied.push(revision);
            }
        }
        assert_eq!(applied.len(), 1, "{name} applied {applied:?}");
    }
}

/// A member that reports itself unhealthy during the bake aborts the rollout, and every
/// member is back on the base value at once.
#[tokio::test]
async fn an_unhealthy_member_aborts_and_everyone_is_back_on_base() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let fleet = [
        live(&store, "gw-1").await,
        live(&store, "gw-2").await,
        live(&store, "gw-3").await,
    ];
    let rollout = store
        .start_rollout::<Gw>(
            set_pool(32),
            &note(),
            quick([Step::Instances(2), Step::Percent(100)], 60_000),
        )
        .await
        .unwrap();
    let driver = tokio::spawn(rollout.drive());
    let serving = |fleet: &[Live<Gw>; 3]| {
        fleet
            .iter()
            .filter(|l| matches!(l.status().serving, Serving::Candidate { .. }))
            .count()
    };
    wait_until(
        "two members serve the candidate",
        Duration::from_secs(10),
        || serving(&fleet),
        |n| *n == 2,
    )
    .await;
    let member = fleet.iter().find(|l| l.get().pool == 32).expect("a member");
    member.report_health(etcd_config::Health::Unhealthy("5xx rate 12%".into()));
    let outcome = ended(driver, 10).await;
    let RolloutOutcome::Aborted { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        reason.contains("unhealthy") && reason.contains("5xx rate 12%"),
        "{reason}"
    );
    wait_until(
        "no one serves the candidate",
        Duration::from_secs(2),
        || serving(&fleet),
        |n| *n == 0,
    )
    .await;
    assert!(fleet.iter().all(|l| l.get().pool == 8));
    assert_eq!(pool_in_etcd(&etcd), None);
}

/// No instance reports: the preflight fails unless silent instances are allowed; a fleet of
/// one walks every step with its single member.
#[tokio::test]
async fn no_fleet_is_refused_unless_allowed_and_a_fleet_of_one_commits() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let outcome = store
        .start_rollout::<Gw>(set_pool(9), &note(), quick([Step::Percent(100)], 100))
        .await
        .unwrap()
        .drive()
        .await
        .unwrap();
    assert!(
        matches!(&outcome, RolloutOutcome::Aborted { reason } if reason.contains("no instance")),
        "{outcome:?}"
    );
    let allowed = quick([Step::Percent(100)], 100).allow_silent_instances();
    let outcome = store
        .start_rollout::<Gw>(set_pool(9), &note(), allowed)
        .await
        .unwrap()
        .drive()
        .await
        .unwrap();
    assert!(
        matches!(outcome, RolloutOutcome::Committed { .. }),
        "{outcome:?}"
    );
    assert_eq!(pool_in_etcd(&etcd).as_deref(), Some("9"));

    let only = live(&store, "solo").await;
    let outcome = store
        .start_rollout::<Gw>(
            set_pool(10),
            &note(),
            RolloutPlan::new().bake(Duration::from_millis(300)),
        )
        .await
        .unwrap()
        .drive()
        .await
        .unwrap();
    let RolloutOutcome::Committed { revision } = outcome else {
        panic!("{outcome:?}");
    };
    store
        .wait_rollout::<Gw>(revision, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(only.get().pool, 10);
}
