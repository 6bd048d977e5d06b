//! `Live::read` lends values from a cache of the reading thread. What a service relies on: a
//! read after an update sees the update, a guard keeps showing the value it was made with,
//! reads of many configs on one thread never mix them up, old values are freed (on the next
//! read, and when the thread exits), and readers on other threads see updates in order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use etcd_config::{EtcdConfig, Live, LiveSender};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number that counts its drops, to see which values the cache keeps alive.
#[derive(Debug, Clone)]
struct Tracked {
    n: u64,
    drops: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

impl Serialize for Tracked {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.n.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Tracked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        Ok(Tracked {
            n,
            drops: Arc::default(),
        })
    }
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/read")]
struct Config {
    value: Tracked,
}

fn config(n: u64, drops: &Arc<AtomicUsize>) -> Config {
    Config {
        value: Tracked {
            n,
            drops: drops.clone(),
        },
    }
}

fn channel(n: u64) -> (LiveSender<Config>, Live<Config>, Arc<AtomicUsize>) {
    let drops = Arc::default();
    let (sender, live) = Live::channel(config(n, &drops));
    (sender, live, drops)
}

/// A read after an update sees it, on a thread that read (and cached) the old value before;
/// a guard made before the update keeps showing the old value, and `get` agrees with `read`.
#[test]
fn reads_see_updates_and_guards_keep_their_value() {
    let (mut sender, live, _) = channel(1);
    assert_eq!(live.read().value.n, 1);
    let before = live.read();
    let drops = before.value.drops.clone();
    sender.send(config(2, &drops)).unwrap();
    assert_eq!(live.read().value.n, 2);
    assert_eq!(
        before.value.n, 1,
        "a guard shows the value it was made with"
    );
    drop(before);
    for n in 3..20 {
        sender.send(config(n, &drops)).unwrap();
        let guard = live.read();
        assert_eq!(guard.value.n, n);
        assert_eq!(live.get().value.n, n);
        assert_eq!(
            live.read().value.n,
            n,
            "a second read while the first is held"
        );
    }
}

/// Twenty configs read in turn on one thread share eight cache entries: every read, also
/// with the other nineteen guards held at once, shows its own config's value.
#[test]
fn many_configs_on_one_thread_never_mix() {
    let handles: Vec<_> = (0..20).map(|n| channel(n * 10)).collect();
    for round in 0..3 {
        for (n, (_, live, _)) in (0..).zip(&handles) {
            assert_eq!(live.read().value.n, n * 10, "round {round}");
        }
        let guards: Vec<_> = handles.iter().map(|(_, live, _)| live.read()).collect();
        for (n, guard) in (0..).zip(&guards) {
            assert_eq!(guard.value.n, n * 10);
        }
    }
    let mut handles = handles;
    for (n, (sender, live, drops)) in (0..).zip(&mut handles) {
        sender.send(config(n * 10 + 1, drops)).unwrap();
        assert_eq!(live.read().value.n, n * 10 + 1);
    }
}

/// An old value is freed once the thread that cached it reads again, and every value a
/// thread cached is freed when the thread exits.
#[test]
fn old_values_are_freed() {
    let (mut sender, live, drops) = channel(0);
    assert_eq!(live.read().value.n, 0);
    sender.send(config(1, &drops)).unwrap();
    assert_eq!(live.read().value.n, 1);
    // The first value: dropped by the sender's copy of nothing, the snapshot and the cache.
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the value replaced is freed"
    );

    let reader = live.clone();
    std::thread::spawn(move || assert_eq!(reader.read().value.n, 1))
        .join()
        .unwrap();
    drop(sender);
    drop(live);
    // Value 1 is still in this thread's cache until it reads that entry again.
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    let (_, other, _) = channel(99);
    let spawned = std::thread::spawn(move || {
        // A thread of its own: it reads only `other`, then exits and frees it.
        assert_eq!(other.read().value.n, 99);
    });
    spawned.join().unwrap();
    std::thread::spawn({
        let drops = drops.clone();
        move || {
            let (mut sender, live) = Live::channel(config(5, &drops));
            assert_eq!(live.read().value.n, 5);
            sender.send(config(6, &drops)).unwrap();
            assert_eq!(live.read().value.n, 6);
        }
    })
    .join()
    .unwrap();
    // Values 5 and 6 lived only on the spawned thread: both freed by its exit.
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

/// Two threads reading one config while it is updated 20,000 times: each sees values only
/// go up, and both see the last one once the updates end.
#[test]
fn readers_on_other_threads_see_updates_in_order() {
    let (mut sender, live, drops) = channel(0);
    let done = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let live = live.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                while done.load(Ordering::SeqCst) == 0 {
                    let n = live.read().value.n;
                    assert!(n >= last, "read {n} after {last}");
                    last = n;
                }
                live.read().value.n
            })
        })
        .collect();
    let last = if cfg!(miri) { 50 } else { 20_000 };
    for n in 1..=last {
        sender.send(config(n, &drops)).unwrap();
    }
    done.store(1, Ordering::SeqCst);
    for reader in readers {
        assert_eq!(reader.join().unwrap(), last);
    }
}
