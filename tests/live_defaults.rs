//! A live config whose fields are all at their defaults (etcd holds no key under its prefix)
//! builds its stored form only at its first change: that change, and the ones after it, still
//! name exactly the fields that changed, a value equal to the default changes nothing, and a
//! key no field reads is reported, all against a real etcd. A field changed while the config
//! was rejected is named when it applies again.

mod support;

use std::time::Duration;

use etcd_config::{EtcdConfig, Live, LiveEvent, LiveEvents, Store};
use futures_util::StreamExt;
use support::Etcd;

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/defaults", rename_all = "kebab-case")]
struct Tuning {
    #[etcd(default = 1)]
    pool_size: u32,
    #[etcd(default)]
    log_level: String,
}

/// The next event that is not about the stream, within 10 s.
async fn next_event(events: &mut LiveEvents) -> LiveEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("no event within 10 s")
            .expect("events ended");
        if matches!(
            event,
            LiveEvent::Applied { .. } | LiveEvent::Current { .. } | LiveEvent::Rejected { .. }
        ) {
            return event;
        }
    }
}

/// What a put or delete of `revision` should give: the value applied, `field` changed.
fn applied(revision: i64, field: &str) -> LiveEvent {
    LiveEvent::Applied {
        revision,
        changed: vec![field.to_owned()],
    }
}

/// The keys no field reads, as `status` lists them.
fn unknown_keys(live: &Live<Tuning>) -> Vec<String> {
    live.status()
        .unknown_keys
        .into_iter()
        .map(|k| k.key)
        .collect()
}

#[tokio::test]
async fn a_config_at_its_defaults_names_each_change() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let live = store.live::<Tuning>().await.unwrap();
    assert_eq!(live.get().pool_size, 1);
    let mut events = live.events();
    let kv = etcd.client().await.kv();

    // The default, written out: the value is the same, so nothing is applied.
    let same = kv.put("/defaults/pool-size", "1").await.unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(
        event,
        LiveEvent::Current {
            revision: same.header.revision
        }
    );

    let set = kv.put("/defaults/log-level", "debug").await.unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(event, applied(set.header.revision, "log_level"));
    assert_eq!(live.get().log_level, "debug");

    // A typo: no field reads it, and the status says so.
    let typo = kv.put("/defaults/pool_size", "9").await.unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(
        event,
        LiveEvent::Current {
            revision: typo.header.revision
        }
    );
    assert_eq!(unknown_keys(&live), ["/defaults/pool_size"]);

    // Deleting every key the fields read brings back the defaults.
    let deleted = kv.delete("/defaults/log-level").await.unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(event, applied(deleted.header.revision, "log_level"));
    let expected = Tuning {
        pool_size: 1,
        log_level: String::new(),
    };
    assert_eq!(*live.get(), expected);
    assert_eq!(live.revision(), deleted.header.revision);
}

/// A live config started when a key no field reads is all etcd holds: the key is reported
/// from the start, and the first real change names its field.
#[tokio::test]
async fn an_unknown_key_alone_is_reported_from_the_start() {
    let etcd = Etcd::single().await;
    let kv = etcd.client().await.kv();
    kv.put("/defaults/pool_size", "9").await.unwrap();
    let store = Store::new(etcd.client().await);
    let live = store.live::<Tuning>().await.unwrap();
    assert_eq!(unknown_keys(&live), ["/defaults/pool_size"]);
    let mut events = live.events();
    let set = kv.put("/defaults/pool-size", "4").await.unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(event, applied(set.header.revision, "pool_size"));
}

/// Edits by hand with etcdctl: a bad value, another field changed while it is still bad, then
/// the bad value fixed. The revision that applies names both fields, as etcd holds them
/// against the value the service had; an identical put after it changes nothing.
#[tokio::test]
async fn a_field_changed_while_rejected_is_named_when_the_config_applies() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let live = store.live::<Tuning>().await.unwrap();
    let mut events = live.events();
    let kv = etcd.client().await.kv();
    let put = |key: &str, value: &str| {
        let out = etcd.etcdctl(&["put", key, value]);
        assert!(out.status.success(), "{out:?}");
    };
    let revision = || async { kv.get("/defaults/pool-size").await.unwrap().header.revision };

    put("/defaults/pool-size", "many");
    assert!(matches!(
        next_event(&mut events).await,
        LiveEvent::Rejected { .. }
    ));
    put("/defaults/log-level", "debug");
    assert!(matches!(
        next_event(&mut events).await,
        LiveEvent::Rejected { .. }
    ));
    assert_eq!(live.get().log_level, "", "the last good value stands");

    put("/defaults/pool-size", "3");
    let fixed = revision().await;
    let event = next_event(&mut events).await;
    assert_eq!(
        event,
        LiveEvent::Applied {
            revision: fixed,
            changed: vec!["log_level".to_owned(), "pool_size".to_owned()],
        }
    );
    let expected = Tuning {
        pool_size: 3,
        log_level: "debug".to_owned(),
    };
    assert_eq!(*live.get(), expected);
    assert_eq!(live.revision(), fixed);

    put("/defaults/log-level", "debug");
    let same = revision().await;
    assert_eq!(
        next_event(&mut events).await,
        LiveEvent::Current { revision: same }
    );
}
