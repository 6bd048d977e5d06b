//! Operating a live config against a real etcd: status and events for rejected revisions (no
//! secret in them), confirmation that a quiet config is current and its loss when the member
//! freezes, reconnecting after the member dies, selective handles, the settle window for hand
//! edits; and the test doubles, with no etcd at all.

mod support;

use std::time::{Duration, Instant};

use etcd_config::{EtcdConfig, FollowerState, Live, LiveEvent, LiveEvents, LiveOptions, Store};
use futures_util::StreamExt;
use support::{wait_until, Etcd};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/ops", rename_all = "kebab-case", validate = "Ops::check")]
struct Ops {
    #[etcd(default = 1)]
    pool_size: u32,
    #[etcd(default)]
    log_level: String,
    #[etcd(secret, default)]
    token: String,
}

impl Ops {
    fn check(&self) -> Result<(), String> {
        if self.pool_size == 0 {
            return Err("pool-size must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// The next event that is not a progress of the stream, within 10 s.
async fn next_event(events: &mut LiveEvents) -> LiveEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no event within 10 s")
        .expect("events ended")
}

/// A rejected revision shows in `status` and as an event with its revision and the reason,
/// naming the key; a secret's value appears in neither. The last good value stays.
#[tokio::test]
async fn rejections_show_in_status_and_events_without_secrets() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let live = store.live::<Ops>().await.unwrap();
    let mut events = live.events();
    let kv = etcd.client().await.kv();

    let bad = kv.put("/ops/pool-size", "0").await.unwrap().header.revision;
    let event = next_event(&mut events).await;
    let LiveEvent::Rejected { revision, reason } = event else {
        panic!("expected a rejection, got {event:?}");
    };
    assert_eq!(revision, bad);
    assert!(reason.contains("pool-size must be at least 1"), "{reason}");
    let status = live.status();
    let rejected = status.last_rejected.expect("a rejection in status");
    assert_eq!(rejected.revision, bad);
    assert_eq!(status.revision, live.revision());
    assert_eq!(live.get().pool_size, 1);

    // A secret that does not parse is named by key, its value never shown.
    let secret = "hunter2-\u{0}";
    let bad = kv.put("/ops/token", secret).await.unwrap().header.revision;
    let fixed = kv.put("/ops/pool-size", "3").await.unwrap().header.revision;
    // Whatever etcd's two revisions made of it, nothing in status or events holds the secret.
    let mut seen = Vec::new();
    while !matches!(seen.last(), Some(LiveEvent::Applied { revision, .. }) if *revision == fixed) {
        seen.push(next_event(&mut events).await);
    }
    let text = format!("{seen:?} {:?}", live.status());
    assert!(!text.contains("hunter2"), "secret leaked: {text}");
    assert!(bad < fixed);
    assert_eq!(live.get().pool_size, 3);
    let LiveEvent::Applied { changed, .. } = seen.last().unwrap() else {
        unreachable!()
    };
    assert!(changed.contains(&"pool_size".to_owned()), "{changed:?}");
}

/// A quiet config is confirmed current again and again (progress notifications); when its
/// member freezes, the confirmation ages and a health check can see it; when the member dies,
/// the follower says it is reconnecting, and follows again once etcd is back.
#[tokio::test]
async fn status_tells_current_frozen_and_reconnecting() {
    if support::skip_behind_front("status_tells_current_frozen_and_reconnecting") {
        return;
    }
    let mut etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let live = store.live::<Ops>().await.unwrap();
    let first = live
        .status()
        .confirmed_current_at
        .expect("the load confirms");
    wait_until(
        "a later confirmation",
        Duration::from_secs(10),
        || live.status().confirmed_current_at,
        |at| at.is_some_and(|at| at > first),
    )
    .await;
    assert_eq!(live.status().state, FollowerState::Following);

    etcd.pause(0);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let frozen = live.status();
    assert!(
        !frozen.confirmed_within(Duration::from_secs(4)),
        "a frozen member cannot confirm anything: {frozen:?}"
    );
    etcd.resume(0);
    wait_until(
        "confirmed again after the member thawed",
        Duration::from_secs(15),
        || live.status(),
        |status| status.confirmed_within(Duration::from_secs(3)),
    )
    .await;

    let mut events = live.events();
    etcd.stop(0);
    wait_until(
        "reconnecting",
        Duration::from_secs(10),
        || live.status().state,
        |state| matches!(state, FollowerState::Reconnecting { .. }),
    )
    .await;
    let event = next_event(&mut events).await;
    assert!(matches!(event, LiveEvent::Reconnecting { .. }), "{event:?}");
    etcd.restart(0).await;
    let revision = etcd
        .client()
        .await
        .kv()
        .put("/ops/log-level", "debug")
        .await
        .unwrap()
        .header
        .revision;
    wait_until(
        "following again, with the new value",
        Duration::from_secs(20),
        || (live.status().state, live.revision()),
        |(state, seen)| *state == FollowerState::Following && *seen == revision,
    )
    .await;
}

/// A selected part wakes only when it changes, not for other fields.
#[tokio::test]
async fn selected_parts_wake_only_for_their_own_changes() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let mut live = store.live::<Ops>().await.unwrap();
    let mut pool = live.select(|ops| ops.pool_size);
    let kv = etcd.client().await.kv();

    kv.put("/ops/log-level", "warn").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), live.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), pool.changed())
            .await
            .is_err(),
        "the pool woke for a log level change"
    );
    kv.put("/ops/pool-size", "7").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), pool.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*pool.get(), 7);
}

/// With a settle window, three keys edited one `put` at a time are applied once, at the last
/// revision, and `status` shows the change waiting meanwhile.
#[tokio::test]
async fn a_settle_window_applies_a_hand_edit_once() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let options = LiveOptions::new().settle(Duration::from_millis(800));
    let live = store.live_with::<Ops>(options).await.unwrap();
    let mut events = live.events();
    let before = live.revision();

    let mut last = 0;
    for (key, value) in [
        ("/ops/pool-size", "4"),
        ("/ops/log-level", "info"),
        ("/ops/token", "t0ken"),
    ] {
        let put = etcd.etcdctl(&["put", key, value]);
        assert!(put.status.success(), "{put:?}");
        last = etcd.client().await.kv().get(key).await.unwrap().kvs[0].mod_revision;
    }
    wait_until(
        "a change waiting in the window",
        Duration::from_secs(5),
        || live.status().pending,
        |pending| pending.is_some() || live.revision() != before,
    )
    .await;
    let started = Instant::now();
    let event = next_event(&mut events).await;
    let LiveEvent::Applied { revision, changed } = event else {
        panic!("expected the edit applied, got {event:?}");
    };
    assert_eq!(revision, last, "applied at the edit's last revision");
    assert_eq!(changed, ["log_level", "pool_size", "token"]);
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(live.revision(), last);
    assert_eq!(live.status().pending, None);
    // Nothing else was applied in between.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), events.next())
            .await
            .is_err()
    );
}

/// The test doubles need no etcd: `fixed` never changes and says it is current; `channel`
/// applies valid values, rejects invalid ones like etcd's would be, and stops when the sender
/// goes.
#[tokio::test(flavor = "current_thread")]
async fn test_doubles_behave_like_live_configs() {
    let value = Ops {
        pool_size: 2,
        log_level: "info".into(),
        token: "s".into(),
    };
    let mut fixed = Live::fixed(value.clone());
    assert_eq!(*fixed.get(), value);
    assert_eq!(fixed.status().state, FollowerState::Following);
    // Current whenever asked, not only in its first minute.
    let confirmed = fixed.status().confirmed_current_at.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(fixed.status().confirmed_current_at.unwrap() > confirmed);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), fixed.changed())
            .await
            .is_err(),
        "a fixed config never changes"
    );

    let (mut tx, mut live) = Live::channel(value.clone());
    let mut events = live.events();
    let revision = tx
        .send(Ops {
            pool_size: 5,
            ..value.clone()
        })
        .unwrap();
    live.changed().await.unwrap();
    assert_eq!((live.get().pool_size, live.revision()), (5, revision));
    assert_eq!(
        events.next().await,
        Some(LiveEvent::Applied {
            revision,
            changed: vec!["pool_size".to_owned()]
        })
    );
    let err = tx
        .send(Ops {
            pool_size: 0,
            ..value.clone()
        })
        .unwrap_err();
    assert!(err.contains("at least 1"), "{err}");
    assert_eq!(live.get().pool_size, 5);
    assert!(matches!(
        events.next().await,
        Some(LiveEvent::Rejected { .. })
    ));
    assert_eq!(live.status().last_rejected.unwrap().revision, revision + 1);

    drop(tx);
    let err = live.changed().await.unwrap_err();
    assert!(err.to_string().contains("LiveSender was dropped"), "{err}");
}

/// A new instance meets an invalid value in etcd: by default it fails to start; with
/// `WhenInvalid::LastValid` it starts from the newest valid revision in etcd's history,
/// reports the invalid one as rejected and itself as stale, and takes the first valid revision
/// that comes; with `WhenInvalid::CacheFile` it starts from the cache file.
#[tokio::test]
async fn a_new_instance_starts_despite_an_invalid_value() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let kv = etcd.client().await.kv();
    let good = kv.put("/ops/pool-size", "6").await.unwrap().header.revision;
    let cache = tempfile::tempdir().unwrap();
    let cache_file = cache.path().join("ops.json");
    // A running instance writes the cache.
    let running = store
        .live_with::<Ops>(LiveOptions::new().cache_file(&cache_file))
        .await
        .unwrap();
    kv.put("/ops/log-level", "info").await.unwrap();
    let bad = kv.put("/ops/pool-size", "0").await.unwrap().header.revision;

    let err = store.live::<Ops>().await.unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");

    let live = store
        .live_with::<Ops>(LiveOptions::new().when_invalid(etcd_config::WhenInvalid::LastValid))
        .await
        .unwrap();
    let status = live.status();
    assert!(status.stale, "{status:?}");
    assert_eq!(status.last_rejected.as_ref().map(|r| r.revision), Some(bad));
    assert_eq!(live.get().pool_size, 6);
    assert_eq!(live.get().log_level, "info");
    assert_eq!(live.revision(), bad - 1);

    let cached = store
        .live_with::<Ops>(
            LiveOptions::new()
                .cache_file(&cache_file)
                .when_invalid(etcd_config::WhenInvalid::CacheFile),
        )
        .await
        .unwrap();
    assert_eq!(cached.get().pool_size, 6);
    assert!(cached.status().stale);
    assert!(good < bad);
    drop(running);

    let fixed = kv.put("/ops/pool-size", "9").await.unwrap().header.revision;
    for handle in [&live, &cached] {
        wait_until(
            "the first valid revision applied",
            Duration::from_secs(10),
            || (handle.revision(), handle.status().stale),
            |&(revision, stale)| revision == fixed && !stale,
        )
        .await;
        assert_eq!(handle.get().pool_size, 9);
    }
}

/// `WhenInvalid::LastValid` looks back no further than the last compaction: the value at the
/// compaction point counts, older ones are gone; with nothing valid since, it fails.
#[tokio::test]
async fn the_last_valid_value_is_found_after_a_compaction() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let kv = etcd.client().await.kv();
    kv.put("/ops/pool-size", "2").await.unwrap();
    kv.put("/ops/log-level", "warn").await.unwrap();
    let compacted = kv.put("/other", "x").await.unwrap().header.revision;
    kv.compact(compacted).await.unwrap();
    kv.put("/ops/pool-size", "0").await.unwrap();
    let options = || LiveOptions::new().when_invalid(etcd_config::WhenInvalid::LastValid);
    let live = store.live_with::<Ops>(options()).await.unwrap();
    assert_eq!(
        (live.get().pool_size, live.get().log_level.as_str()),
        (2, "warn")
    );
    assert_eq!(live.revision(), compacted);

    // Invalid at the compaction point and ever since: nothing to start from.
    kv.put("/ops/log-level", "error").await.unwrap();
    let head = kv.put("/other", "y").await.unwrap().header.revision;
    kv.compact(head).await.unwrap();
    let err = store.live_with::<Ops>(options()).await.unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");
}
