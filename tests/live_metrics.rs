//! Live configs' metrics (cargo feature `metrics`) against a real etcd: a recorder installed
//! as the global one sees the applied and rejected counts, the revision, the confirmation age
//! and reconnections, per prefix.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_config::{ChangeNote, EtcdConfig, LiveOptions, RolloutOutcome, RolloutPlan, Step, Store};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use support::{wait_until, Etcd};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/metered", validate = "Metered::check")]
struct Metered {
    #[etcd(default = 1)]
    size: u32,
}

impl Metered {
    fn check(&self) -> Result<(), String> {
        (self.size > 0)
            .then_some(())
            .ok_or_else(|| "size must be positive".to_owned())
    }
}

/// Every counter's and gauge's last value by `name{prefix}`.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>);

impl Seen {
    fn handle(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(name).or_default().clone()
    }

    fn get(&self, name: &str) -> u64 {
        let name = format!("{name}{{prefix=/metered/}}");
        self.0
            .lock()
            .unwrap()
            .get(&name)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }
}

struct Cell(Arc<AtomicU64>);

impl metrics::CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl metrics::GaugeFn for Cell {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn set(&self, value: f64) {
        self.0.store(value as u64, Ordering::Relaxed);
    }
}

impl Recorder for Seen {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(self.handle(key))))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(self.handle(key))))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Applied and rejected revisions are counted, the revision gauge follows the value, the
/// confirmation age is published, and a reconnection is counted.
#[tokio::test]
async fn applied_and_rejected_are_counted_per_prefix() {
    let seen = Seen::default();
    metrics::set_global_recorder(seen.clone()).expect("the only recorder in this test binary");
    let mut etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let kv = etcd.client().await.kv();
    let before = kv.put("/metered/other", "x").await.unwrap().header.revision;
    let live = store.live::<Metered>().await.unwrap();
    // The revision gauge is set at the start, before any change.
    wait_until(
        "the revision gauge at the start",
        Duration::from_secs(10),
        || seen.get("etcd_config_live_revision"),
        |&revision| revision == u64::try_from(before).unwrap(),
    )
    .await;
    let good = kv.put("/metered/size", "3").await.unwrap().header.revision;
    kv.put("/metered/size", "0").await.unwrap();
    wait_until(
        "an applied and a rejected revision counted",
        Duration::from_secs(10),
        || {
            (
                seen.get("etcd_config_live_applied_total"),
                seen.get("etcd_config_live_rejected_total"),
                seen.get("etcd_config_live_revision"),
            )
        },
        |&(applied, rejected, revision)| {
            applied == 1 && rejected == 1 && revision == u64::try_from(good).unwrap()
        },
    )
    .await;
    assert_eq!(live.get().size, 3);

    // The confirmation age is refreshed every second and stays small while etcd answers.
    let age = "etcd_config_live_confirmed_age_seconds";
    let registered = |seen: &Seen| {
        seen.0
            .lock()
            .unwrap()
            .contains_key(&format!("{age}{{prefix=/metered/}}"))
    };
    wait_until(
        "the confirmation age published",
        Duration::from_secs(10),
        || registered(&seen),
        |&yes| yes,
    )
    .await;
    assert!(seen.get(age) <= 6, "age {}", seen.get(age));

    // A reconnection is counted once the member is back.
    etcd.stop(0);
    wait_until(
        "a reconnection counted",
        Duration::from_secs(15),
        || seen.get("etcd_config_live_reconnects_total"),
        |&n| n >= 1,
    )
    .await;
    etcd.restart(0).await;
    wait_until(
        "confirmed again after the restart",
        Duration::from_secs(20),
        || live.status().confirmed_within(Duration::from_secs(3)),
        |&yes| yes,
    )
    .await;
    assert!(seen.get(age) <= 6, "age {}", seen.get(age));

    // A rollout: the reporting instance's verdict and its serving gauge, and the driver's
    // outcome, are counted.
    store
        .set::<Metered>(&[("size", "2")], &ChangeNote::by("metrics"))
        .await
        .unwrap();
    let _reporting = store
        .live_with::<Metered>(LiveOptions::new().report_as("m-1"))
        .await
        .unwrap();
    let plan = RolloutPlan::new()
        .steps([Step::Percent(100)])
        .bake(Duration::from_millis(200));
    let rollout = store
        .start_rollout::<Metered>(
            |m| {
                m.size = 5;
                Ok(())
            },
            &ChangeNote::by("metrics"),
            plan,
        )
        .await
        .unwrap();
    let outcome = rollout.drive().await.unwrap();
    assert!(
        matches!(outcome, RolloutOutcome::Committed { .. }),
        "{outcome:?}"
    );
    let value = |name: &str| {
        seen.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    };
    assert_eq!(
        value("etcd_config_live_rollout_verdicts_total{prefix=/metered/,verdict=accepted}"),
        1
    );
    assert_eq!(
        value("etcd_config_rollouts_total{prefix=/metered,outcome=committed}"),
        1
    );
    wait_until(
        "the serving gauge back at 0 after the commit",
        Duration::from_secs(5),
        || value("etcd_config_live_serving_candidate{prefix=/metered/}"),
        |&v| v == 0,
    )
    .await;
    assert!(seen
        .0
        .lock()
        .unwrap()
        .contains_key("etcd_config_live_serving_candidate{prefix=/metered/}"));
}
