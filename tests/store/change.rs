//! Changing a config safely against a real etcd: typed edits with compare-and-swap and a note
//! in the same transaction (read back with etcdctl), concurrent edits retried, the history with
//! changed paths and notes, loads at a past revision, rollback, diffs without secret values,
//! and waiting for the fleet to take a change (or naming who rejected it).

use crate::support;

use std::time::Duration;

use super::Pool;
use etcd_config::{diff, ChangeNote, EtcdConfig, KeyRange, LiveOptions, Store};
use support::Etcd;

/// An edit is one Txn: the new value and its note share a revision, and etcdctl reads both.
#[tokio::test]
async fn an_edit_writes_its_note_in_the_same_transaction() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let note = ChangeNote::by("alice").reason("raise pool for launch");
    let revision = store
        .edit::<Pool>(
            |pool| {
                pool.size = 16;
                Ok(())
            },
            &note,
        )
        .await
        .unwrap();
    let check = etcd.client().await.kv();
    let size = check.get("/svc/pool/size").await.unwrap();
    assert_eq!(
        (size.kvs[0].value_str().unwrap(), size.kvs[0].mod_revision),
        ("16", revision)
    );
    let notes = check
        .get(etcd_config::KeyRange::prefix("/svc/pool.notes/"))
        .await
        .unwrap();
    assert_eq!(notes.kvs.len(), 1);
    assert_eq!(notes.kvs[0].create_revision, revision);
    let out = etcd.etcdctl(&["get", "--prefix", "/svc/pool.notes/", "--print-value-only"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("alice") && text.contains("raise pool for launch"),
        "{text}"
    );

    // A refused edit changes nothing, and names the rule.
    let err = store
        .edit::<Pool>(
            |pool| {
                pool.size = 0;
                Ok(())
            },
            &note,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("size must be"), "{err}");
    let after = check
        .get(etcd_config::KeyRange::prefix("/svc/"))
        .await
        .unwrap();
    assert_eq!(after.header.revision, revision);
}

/// Edits from many tasks at once each apply exactly once (compare-and-swap, retried).
#[tokio::test]
async fn concurrent_edits_are_each_applied_once() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    store
        .save(&Pool {
            size: 1,
            host: String::new(),
            password: String::new(),
            max_idle: None,
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = Store::new(etcd.client().await);
        tasks.push(tokio::spawn(async move {
            store
                .edit::<Pool>(
                    |pool| {
                        pool.size += 1;
                        Ok(())
                    },
                    &ChangeNote::by(format!("t{i}")),
                )
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.load::<Pool>().await.unwrap().size, 5);
}

/// The history lists each change with its paths and note; a past revision loads; a rollback
/// brings it back with a note saying so; a diff shows a secret only as changed.
#[tokio::test]
async fn history_load_at_rollback_and_diff() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let first = store
        .edit::<Pool>(
            |p| {
                p.host = "db1".into();
                Ok(())
            },
            &ChangeNote::by("alice").reason("first host"),
        )
        .await
        .unwrap();
    // A hand edit, without a note.
    etcd.client()
        .await
        .kv()
        .put("/svc/pool/size", "8")
        .await
        .unwrap();
    let third = store
        .edit::<Pool>(
            |p| {
                p.host = "db2".into();
                p.password = "hunter2".into();
                Ok(())
            },
            &ChangeNote::by("bob"),
        )
        .await
        .unwrap();

    let history = store.history::<Pool>().await.unwrap();
    let summary: Vec<(Vec<String>, Option<String>)> = history
        .iter()
        .map(|c| (c.changed.clone(), c.note.as_ref().map(|n| n.author.clone())))
        .collect();
    assert_eq!(
        summary,
        [
            (vec!["host".to_owned()], Some("alice".to_owned())),
            (vec!["size".to_owned()], None),
            (
                vec!["host".to_owned(), "password".to_owned()],
                Some("bob".to_owned())
            ),
        ]
    );
    assert_eq!((history[0].revision, history[2].revision), (first, third));

    let old: Pool = store.load_at(first).await.unwrap();
    assert_eq!((old.host.as_str(), old.size), ("db1", 4));
    let now = store.load::<Pool>().await.unwrap();
    let changes = diff(&now, &old);
    let text = format!("{changes:?}");
    assert!(!text.contains("hunter2"), "secret in a diff: {text}");
    assert!(changes.iter().any(|d| d.field == "password" && d.secret));

    let back = store
        .rollback::<Pool>(first, &ChangeNote::by("carol").reason("bad host"))
        .await
        .unwrap();
    assert_eq!(store.load::<Pool>().await.unwrap(), old);
    let last = store.history::<Pool>().await.unwrap().pop().unwrap();
    assert_eq!(last.revision, back);
    assert_eq!(
        last.note.unwrap().reason,
        format!("rollback to revision {first}: bad host")
    );
}

/// A rollout is done when every reporting instance serves the revision; one that rejects it
/// is named with its reason.
#[tokio::test]
async fn wait_rollout_sees_the_fleet_take_or_reject_a_change() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let _a = store
        .live_with::<Pool>(LiveOptions::new().report_as("a"))
        .await
        .unwrap();
    let _b = store
        .live_with::<Pool>(LiveOptions::new().report_as("b"))
        .await
        .unwrap();
    let good = store
        .edit::<Pool>(
            |p| {
                p.size = 9;
                Ok(())
            },
            &ChangeNote::by("ops"),
        )
        .await
        .unwrap();
    store
        .wait_rollout::<Pool>(good, Duration::from_secs(10))
        .await
        .unwrap();
    // A hand-typed value the services refuse.
    let bad = etcd
        .client()
        .await
        .kv()
        .put("/svc/pool/size", "500")
        .await
        .unwrap();
    let err = store
        .wait_rollout::<Pool>(bad.header.revision, Duration::from_secs(10))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("rejected revision") && text.contains("size must be"),
        "{text}"
    );
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/svc/gw", rename_all = "kebab-case")]
struct Gw {
    #[etcd(nested)]
    tls: Tls,
    #[etcd(each)]
    weights: std::collections::BTreeMap<String, u32>,
    timeout: Option<Duration>,
}

#[derive(EtcdConfig, Debug, Clone, PartialEq, Default)]
#[etcd(prefix = "/unused", rename_all = "kebab-case")]
struct Tls {
    #[etcd(default)]
    cert_path: String,
}

/// `set` and `unset` take field paths and text values, in one Txn after validation; a path
/// that names no field, or a value that does not parse, changes nothing and says which.
#[tokio::test]
async fn set_and_unset_by_field_path() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let note = ChangeNote::by("ops");
    let revision = store
        .set::<Gw>(
            &[
                ("tls.cert_path", "/etc/new.pem"),
                ("weights.blue", "3"),
                ("timeout", "1m30s"),
            ],
            &note,
        )
        .await
        .unwrap();
    let gw = store.load::<Gw>().await.unwrap();
    assert_eq!(gw.tls.cert_path, "/etc/new.pem");
    assert_eq!(gw.weights.get("blue"), Some(&3));
    assert_eq!(gw.timeout, Some(Duration::from_secs(90)));
    let kv = etcd.client().await.kv();
    let keys = kv
        .get(etcd_config::KeyRange::prefix("/svc/gw/"))
        .await
        .unwrap();
    assert!(keys.kvs.iter().all(|kv| kv.mod_revision == revision));
    // One revision for the three fields and one note, written with them.
    let notes = kv
        .get(etcd_config::KeyRange::prefix("/svc/gw.notes/"))
        .await
        .unwrap();
    let noted: Vec<i64> = notes.kvs.iter().map(|n| n.create_revision).collect();
    assert_eq!(noted, [revision]);

    let err = store
        .set::<Gw>(&[("tls.nope", "x")], &note)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no field `tls.nope`"), "{err}");
    let err = store
        .set::<Gw>(&[("weights.red", "heavy")], &note)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/svc/gw/weights/red"), "{err}");
    let unchanged = kv
        .get(etcd_config::KeyRange::prefix("/svc/"))
        .await
        .unwrap();
    assert_eq!(unchanged.header.revision, revision);

    store
        .unset::<Gw>(&["timeout", "weights.blue"], &note)
        .await
        .unwrap();
    let gw = store.load::<Gw>().await.unwrap();
    assert_eq!((gw.timeout, gw.weights.len()), (None, 0));
}

/// `set` writes only the keys it names: another key, that a hand edit left in another
/// spelling of a valid value, keeps its text and its revision (etcdctl reads it back), and
/// the change's revision holds the named key and the note only.
#[tokio::test]
async fn set_leaves_keys_it_does_not_name_as_they_are() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let out = etcd.etcdctl(&["put", "/svc/gw/weights/green", " 7"]);
    assert!(out.status.success(), "{out:?}");
    let out = etcd.etcdctl(&["put", "/svc/gw/tls/cert-path", "\"/etc/a.pem\""]);
    assert!(out.status.success(), "{out:?}");
    let revision = store
        .set::<Gw>(&[("weights.blue", "3")], &ChangeNote::by("ops"))
        .await
        .unwrap();

    let out = etcd.etcdctl(&["get", "/svc/gw/weights/green", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), " 7\n");
    let out = etcd.etcdctl(&["get", "--prefix", "/svc/gw", "-w", "json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let read: serde_json::Value = serde_json::from_str(&text).unwrap();
    let written: Vec<String> = read["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|kv| kv["mod_revision"].as_i64() == Some(revision))
        .map(|kv| {
            use base64::Engine;
            let key = base64::engine::general_purpose::STANDARD
                .decode(kv["key"].as_str().unwrap())
                .unwrap();
            String::from_utf8(key).unwrap()
        })
        .collect();
    assert_eq!(written.len(), 2, "{written:?}");
    assert!(written[0].starts_with("/svc/gw.notes/"), "{written:?}");
    assert_eq!(written[1], "/svc/gw/weights/blue");
    let gw = store.load::<Gw>().await.unwrap();
    assert_eq!((gw.weights["green"], gw.weights["blue"]), (7, 3));
}

/// A config with more keys than the store's txn limit is guarded by its prefix's revision
/// alone, and its change by field path copies only the keys it names: a set and an unset of
/// one entry each write exactly those keys and the note; every other key keeps its text and
/// revision (read back with etcdctl).
#[tokio::test]
async fn a_change_of_one_entry_of_a_large_config_touches_that_entry_only() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await).max_txn_ops(16);
    let kv = etcd.client().await.kv();
    for i in 0..20 {
        kv.put(format!("/svc/gw/weights/w{i:02}"), format!("{i}"))
            .await
            .unwrap();
    }
    let before = kv.get(KeyRange::prefix("/svc/gw/")).await.unwrap();
    let note = ChangeNote::by("ops");
    let revision = store
        .set::<Gw>(&[("weights.w03", "33")], &note)
        .await
        .unwrap();
    store.unset::<Gw>(&["weights.w07"], &note).await.unwrap();
    let after = kv.get(KeyRange::prefix("/svc/gw/")).await.unwrap();
    assert_eq!(after.kvs.len(), 19);
    for old in &before.kvs {
        let key = String::from_utf8_lossy(&old.key).into_owned();
        let new = after.kvs.iter().find(|kv| kv.key == old.key);
        match key.as_str() {
            "/svc/gw/weights/w03" => {
                let new = new.unwrap();
                assert_eq!((&new.value[..], new.mod_revision), (&b"33"[..], revision));
            }
            "/svc/gw/weights/w07" => assert!(new.is_none(), "{key} was unset"),
            _ => assert_eq!(new, Some(old), "{key} untouched"),
        }
    }
    let out = etcd.etcdctl(&["get", "/svc/gw/weights/w12", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "12\n");
}
