//! A config's history checked against what etcdctl shows: every revision that changed a field
//! is in it with the fields it changed, nothing else is, and notes outlive a compaction (the
//! newest 100 of them).

use crate::support;

use std::collections::BTreeMap;

use super::Pool;
use etcd_config::{ChangeNote, Store, KEPT_NOTES};
use support::Etcd;

/// etcd's current revision, from the header of a read.
async fn head_revision(store: &Store) -> i64 {
    let read = store.client().kv().get("/none").await.unwrap();
    read.header.revision
}

/// The keys under the config's prefix at `revision`, as `etcdctl get --rev` prints them.
fn keys_at(etcd: &Etcd, revision: i64) -> BTreeMap<String, String> {
    let out = etcd.etcdctl(&[
        "get",
        "--prefix",
        "/svc/pool/",
        "--rev",
        &revision.to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|pair| {
            let field = pair[0].strip_prefix("/svc/pool/").unwrap().to_owned();
            (field, pair[1].to_owned())
        })
        .collect()
}

/// Writes made every way a config is changed (through the crate with notes, etcdctl puts, a
/// two-key txn, a delete, a rewrite of the same value, an invalid value, a key outside the
/// prefix) give a history whose revisions and changed fields are exactly where etcdctl's view
/// of the prefix changed.
#[tokio::test]
async fn history_matches_etcdctl_revision_by_revision() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let start = head_revision(&store).await;
    let noted = store
        .set::<Pool>(&[("size", "8"), ("host", "db1")], &ChangeNote::by("alice"))
        .await
        .unwrap();
    let ctl = |args: &[&str]| {
        let out = etcd.etcdctl(args);
        assert!(out.status.success(), "{out:?}");
    };
    ctl(&["put", "/svc/pool/max-idle", "3"]);
    ctl(&["put", "/elsewhere", "x"]);
    ctl(&["put", "/svc/pool/host", "db1"]); // the same value again: no field changes
    let out = std::process::Command::new(&etcd.etcdctl_command()[0])
        .env("ETCDCTL_API", "3")
        .arg(&etcd.etcdctl_command()[1])
        .args(["txn"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"\nput /svc/pool/size 16\nput /svc/pool/host db2\n\n\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    ctl(&["put", "/svc/pool/size", "many"]); // does not decode
    ctl(&["put", "/svc/pool/size", "12"]);
    ctl(&["del", "/svc/pool/max-idle"]);
    let head = head_revision(&store).await;

    let history = store.history::<Pool>().await.unwrap();
    let in_history: BTreeMap<i64, &etcd_config::Change> =
        history.iter().map(|c| (c.revision, c)).collect();
    let mut expected = Vec::new();
    // Changed fields are exactly etcdctl's revision-to-revision difference, invalid values
    // included.
    for revision in start + 1..=head {
        let (before, after) = (keys_at(&etcd, revision - 1), keys_at(&etcd, revision));
        if before == after {
            assert!(
                !in_history.contains_key(&revision),
                "revision {revision} changed nothing under the prefix: {history:?}"
            );
            continue;
        }
        let changed: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .chain(before.keys().filter(|k| !after.contains_key(*k)).cloned())
            .collect();
        // Field paths are the Rust names; the keys are kebab-case.
        let mut changed: Vec<String> = changed.iter().map(|k| k.replace('-', "_")).collect();
        changed.sort();
        expected.push(revision);
        let change = in_history
            .get(&revision)
            .unwrap_or_else(|| panic!("revision {revision} changed {changed:?}: {history:?}"));
        let valid = after
            .get("size")
            .is_none_or(|size| size.parse::<u32>().is_ok());
        assert_eq!(change.valid, valid, "revision {revision}: {change:?}");
        let mut fields = change.changed.clone();
        fields.sort();
        assert_eq!(fields, changed, "revision {revision}");
    }
    let seen: Vec<i64> = history
        .iter()
        .map(|c| c.revision)
        .filter(|r| *r > start)
        .collect();
    assert_eq!(seen, expected, "{history:?}");
    // The hand-edited ("same value") rewrite and the write elsewhere are not changes; the
    // crate's write carries its note, etcdctl's carry none.
    assert_eq!(expected.len(), 6, "{history:?}");
    assert_eq!(in_history[&noted].note.as_ref().unwrap().author, "alice");
    assert!(history
        .iter()
        .filter(|c| c.revision != noted)
        .all(|c| c.note.is_none()));
}

/// After a compaction, older changes are still listed from their notes (without changed
/// fields), and only the newest `KEPT_NOTES` notes are kept.
#[tokio::test]
async fn notes_outlive_a_compaction() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let mut revisions = Vec::new();
    for i in 0..KEPT_NOTES + 3 {
        let size = (i % 50 + 1).to_string();
        let note = ChangeNote::by(format!("author-{i}")).reason(format!("change {i}"));
        revisions.push(store.set::<Pool>(&[("size", &size)], &note).await.unwrap());
    }
    let notes = store
        .client()
        .kv()
        .get(etcd_config::KeyRange::prefix(
            store.notes_prefix_of::<Pool>(),
        ))
        .count_only()
        .await
        .unwrap();
    assert_eq!(notes.count, i64::try_from(KEPT_NOTES).unwrap());

    let head = *revisions.last().unwrap();
    store.client().kv().compact(head).await.unwrap();
    let out = etcd.etcdctl(&["get", "/svc/pool/size", "--rev", &revisions[5].to_string()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("compacted"),
        "{out:?}"
    );

    let history = store.history::<Pool>().await.unwrap();
    let listed: Vec<i64> = history.iter().map(|c| c.revision).collect();
    // The three oldest notes were dropped; every other change is listed, by its note.
    assert_eq!(listed, revisions[3..].to_vec());
    for (change, i) in history.iter().zip(3..) {
        let note = change.note.as_ref().expect("a note");
        assert_eq!(
            (note.author.as_str(), note.reason.as_str()),
            (
                format!("author-{i}").as_str(),
                format!("change {i}").as_str()
            )
        );
        assert!(change.changed.is_empty(), "{change:?}");
    }
}
