//! The robustness suite, in the spirit of etcd's own: writers and readers run against a three
//! member cluster with auth on and a 2 s token TTL while a nemesis kills, freezes, partitions
//! and demotes members and compacts near the head; a ground-truth recorder (etcdctl) notes what
//! etcd did, and a checker compares every reader's and writer's history with it.
//!
//! `ROBUST_SECS` sets how long the faults go on (45 s by default; `bash scripts/robustness`
//! runs 10 minutes). One summary line per run says what happened and every violation count.

#[path = "../support/mod.rs"]
mod support;

mod checker;
mod nemesis;
mod recorder;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::{Fields, LiveHistory, Seen, Truth, WatchHistory, Write};
use etcd_config::{Client, EtcdConfig, Store};
use futures_util::StreamExt;
use support::{Etcd, ROOT_PASSWORD};

/// Every field carries the same generation: a value whose fields differ is torn.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/robust/cfg")]
struct Generation {
    a: u64,
    b: u64,
    c: u64,
    d: u64,
}

const PREFIX: &str = "/robust/cfg/";

impl Generation {
    fn of(g: u64) -> Self {
        Generation {
            a: g,
            b: g,
            c: g,
            d: g,
        }
    }

    fn fields(&self) -> Fields {
        [self.a, self.b, self.c, self.d]
    }
}

/// A client as root on every member, the endpoints rotated by `turn` so that clients start on
/// different members.
async fn client(etcd: &Etcd, turn: usize) -> Client {
    let mut endpoints = etcd.endpoints();
    let count = endpoints.len();
    endpoints.rotate_left(turn % count);
    let options = etcd
        .options()
        .dial_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(5))
        .with_user("root", ROOT_PASSWORD);
    Client::connect_lazy(endpoints, options).unwrap()
}

#[derive(Default)]
struct Counts {
    crate_saves: AtomicU64,
    etcdctl_saves: AtomicU64,
    failed_saves: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robustness() {
    if support::skip_behind_front("robustness") {
        return;
    }
    let secs: u64 = std::env::var("ROBUST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    let mut etcd = Etcd::builder(3)
        .peer_faults()
        .arg("--auth-token-ttl=2")
        .start()
        .await;
    let root = etcd.enable_auth().await;
    let version = root.maintenance().status().await.unwrap().version;
    let seed_revision = Store::new(root.clone())
        .save(&Generation::of(0))
        .await
        .unwrap();
    let mut etcdctl = etcd.etcdctl_command();
    etcdctl.extend([
        format!("--user=root:{ROOT_PASSWORD}"),
        "--command-timeout=3s".to_owned(),
        "--dial-timeout=1s".to_owned(),
    ]);
    let recorder = recorder::Recorder::start(etcdctl.clone(), PREFIX, seed_revision);

    let stop = Arc::new(AtomicBool::new(false));
    let next_generation = Arc::new(AtomicU64::new(1));
    let counts = Arc::new(Counts::default());
    let writes = Arc::new(Mutex::new(Vec::<Write>::new()));

    // Readers: typed watches (every other one slow) and Live handles, on clients starting on
    // different members.
    // The revision each reader has reached, to wait for them all at the end.
    let progress: Vec<Arc<AtomicI64>> = (0..7).map(|_| Arc::new(AtomicI64::new(0))).collect();
    let mut watch_tasks = Vec::new();
    for (i, reached) in progress[..4].iter().cloned().enumerate() {
        // Every write must reach these readers, and a slow one falls behind all run long: on
        // a machine that writes fast, farther than the default catch-up limit (10,000
        // revisions), past which a reconnecting watch loads the head instead of replaying
        // (tests/partition.rs tests that). Here it replays, as the check needs.
        let store = Store::new(client(&etcd, i).await).catch_up_limit(i64::MAX);
        let stop = stop.clone();
        watch_tasks.push(tokio::spawn(async move {
            let slow = i % 2 == 1;
            let mut history = WatchHistory {
                name: format!("watch-{i}{}", if slow { " (slow)" } else { "" }),
                ..WatchHistory::default()
            };
            let mut watch = loop {
                match store.watch::<Generation>().await {
                    Ok(watch) => break watch,
                    Err(_) if !stop.load(Ordering::Acquire) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Err(err) => {
                        history.errors.push(format!("could not start: {err}"));
                        return history;
                    }
                }
            };
            let initial = watch.initial();
            history.initial = (initial.revision, initial.value.fields());
            loop {
                let item = tokio::select! {
                    item = watch.next() => item,
                    () = wait_for(&stop) => return history,
                };
                match item {
                    Some(Ok(update)) => {
                        reached.store(update.revision, Ordering::Release);
                        history.updates.push(Seen {
                            revision: update.revision,
                            fields: update.config.fields(),
                            previous: update.previous.fields(),
                            changed: update.changed,
                        });
                    }
                    Some(Err(err)) => history.errors.push(err.to_string()),
                    None => {
                        history.errors.push("the watch ended".to_owned());
                        return history;
                    }
                }
                if slow {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
        }));
    }
    let mut live_tasks = Vec::new();
    for (i, reached) in progress[4..].iter().cloned().enumerate() {
        let mut store = Store::new(client(&etcd, i + 1).await);
        // The last one rides a watch of its parent (`Store::share_watch`) instead of its own.
        let shared = i == 2;
        if shared {
            store = store.share_watch("/robust/");
        }
        let stop = stop.clone();
        live_tasks.push(tokio::spawn(async move {
            let mut history = LiveHistory {
                name: format!("live-{i}{}", if shared { " (shared watch)" } else { "" }),
                ..LiveHistory::default()
            };
            let live = loop {
                match store.live::<Generation>().await {
                    Ok(live) => break live,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            while !stop.load(Ordering::Acquire) {
                // One consistent snapshot: value and revision together.
                let now = live.snapshot();
                reached.store(now.revision, Ordering::Release);
                history.samples.push((now.revision, now.value.fields()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let last = live.snapshot();
            history.samples.push((last.revision, last.value.fields()));
            history
        }));
    }

    // Writers: three through the crate, one through etcdctl txn.
    let writing = Arc::new(AtomicBool::new(true));
    let mut writer_tasks = Vec::new();
    for i in 0..3 {
        let store = Store::new(client(&etcd, i).await);
        let (writing, next, counts, writes) = (
            writing.clone(),
            next_generation.clone(),
            counts.clone(),
            writes.clone(),
        );
        writer_tasks.push(tokio::spawn(async move {
            while writing.load(Ordering::Acquire) {
                let generation = next.fetch_add(1, Ordering::AcqRel);
                let result = store.save(&Generation::of(generation)).await;
                let acknowledged = result.as_ref().ok().copied();
                match result {
                    Ok(_) => counts.crate_saves.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counts.failed_saves.fetch_add(1, Ordering::Relaxed),
                };
                writes.lock().unwrap().push(Write {
                    by: "crate",
                    generation,
                    acknowledged,
                });
                if acknowledged.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    {
        let (writing, next, counts, writes) = (
            writing.clone(),
            next_generation.clone(),
            counts.clone(),
            writes.clone(),
        );
        let etcdctl = etcdctl.clone();
        writer_tasks.push(tokio::task::spawn_blocking(move || {
            while writing.load(Ordering::Acquire) {
                let generation = next.fetch_add(1, Ordering::AcqRel);
                let acknowledged = nemesis::etcdctl_txn(&etcdctl, PREFIX, generation);
                match acknowledged {
                    Some(_) => counts.etcdctl_saves.fetch_add(1, Ordering::Relaxed),
                    None => counts.failed_saves.fetch_add(1, Ordering::Relaxed),
                };
                writes.lock().unwrap().push(Write {
                    by: "etcdctl",
                    generation,
                    acknowledged,
                });
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }

    // The nemesis, until the time is up.
    let started = Instant::now();
    let mut faults = nemesis::Nemesis::new(&root, &version);
    while started.elapsed() < Duration::from_secs(secs) {
        faults.next_fault(&mut etcd, &recorder).await;
    }
    etcd.heal();

    // Quiesce: stop writing, then wait until etcd's last write reached every reader.
    writing.store(false, Ordering::Release);
    for task in writer_tasks {
        task.await.unwrap();
    }
    let loaded = Store::new(root.clone())
        .load_versioned::<Generation>()
        .await
        .unwrap();
    let (final_value, final_revision) = (loaded.value, loaded.revision);
    assert!(
        recorder.wait_for(final_revision, Duration::from_secs(30)),
        "the recorder did not reach revision {final_revision}"
    );
    // The slow readers fall far behind by design (compactions resync them); give every
    // reader time to reach etcd's last write.
    let deadline = Instant::now() + Duration::from_secs(180);
    while progress
        .iter()
        .any(|p| p.load(Ordering::Acquire) < final_revision)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Release);
    let mut watches = Vec::new();
    for task in watch_tasks {
        watches.push(task.await.unwrap());
    }
    let mut lives = Vec::new();
    for task in live_tasks {
        lives.push(task.await.unwrap());
    }

    let diverged = members_diverged(&etcd, final_revision).await;
    let truth = Truth {
        writes: recorder.finish(),
        compactions: faults.compactions.clone(),
        last: (final_revision, final_value.a),
    };
    let writes = writes.lock().unwrap().clone();
    let mut violations = checker::check(&truth, &watches, &lives, &writes);
    if let Some(hashes) = diverged {
        violations.etcd_diverged += 1;
        violations.details.insert(
            0,
            format!("etcd's members disagree at {final_revision}: {hashes:?}"),
        );
    }
    let updates: usize = watches.iter().map(|w| w.updates.len()).sum();
    for watch in &watches {
        println!("{}: {} updates", watch.name, watch.updates.len());
    }
    let samples: usize = lives.iter().map(|l| l.samples.len()).sum();
    println!(
        "robustness: etcd {version}, {} s: saves {} (crate {}, etcdctl {}, failed {}), \
         updates {updates} in {} watches, live samples {samples} in {} handles, \
         resyncs after compaction {}, faults {} ({}), violations {}: {}",
        started.elapsed().as_secs(),
        counts.crate_saves.load(Ordering::Relaxed) + counts.etcdctl_saves.load(Ordering::Relaxed),
        counts.crate_saves.load(Ordering::Relaxed),
        counts.etcdctl_saves.load(Ordering::Relaxed),
        counts.failed_saves.load(Ordering::Relaxed),
        watches.len(),
        lives.len(),
        violations.resyncs,
        faults.summary(),
        if faults.hard_kill() {
            "SIGKILL"
        } else {
            "SIGTERM"
        },
        violations.total(),
        violations.summary(),
    );
    assert_eq!(
        violations.total(),
        0,
        "violations:\n{}",
        violations.details.join("\n")
    );
}

/// The KV hash of every member at `revision`, if they are not all the same: etcd's own data
/// diverged, and no client can be right.
async fn members_diverged(etcd: &Etcd, revision: i64) -> Option<Vec<u32>> {
    let mut hashes = Vec::new();
    for i in 0..etcd.members.len() {
        let options = etcd
            .options()
            .request_timeout(Duration::from_secs(10))
            .with_user("root", ROOT_PASSWORD);
        let one = Client::connect([etcd.endpoint(i)], options).await.ok()?;
        hashes.push(one.maintenance().hash_kv(revision).await.ok()?.hash);
    }
    hashes.windows(2).any(|w| w[0] != w[1]).then_some(hashes)
}

/// Resolves once `stop` is set.
async fn wait_for(stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
