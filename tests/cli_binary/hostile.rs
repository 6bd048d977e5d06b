//! The command line given what an operator gets wrong: secrets piped in from a key file or an
//! unset variable, revisions that are not there (0, compacted, not reached yet). Each is
//! refused with exit code 2, naming the field or the revisions etcd keeps, and etcd's revision
//! stays where it was; what is accepted reads back whole.

use etcd_config::{Keyring, Store};

use super::settings::Settings;
use super::support::Etcd;
use super::{admin_with_input, etcd_revision, run_admin, text};

#[tokio::test]
async fn what_an_operator_gets_wrong() {
    let etcd = Etcd::single().await;
    let endpoint = etcd.client_endpoints()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("k1 {}\n", "1f".repeat(32))).unwrap();
    let admin = |args: &[&str]| run_admin(&endpoint, &keys, args);
    let piped = |args: &[&str], input: &str| admin_with_input(&endpoint, &keys, args, input);
    let store = Store::new(etcd.client().await).with_keyring(Keyring::from_file(&keys).unwrap());
    assert!(admin(&["set", "greeting=hi"]).status.success());

    // A key file's every line, not its first (its last line end dropped).
    let pem = "-----BEGIN KEY-----\nc2VjcmV0\n-----END KEY-----\n";
    assert!(piped(&["set", "api_token=-"], pem).status.success());
    let loaded = store.load::<Settings>().await.unwrap();
    assert_eq!(loaded.api_token.expose(), pem.trim_end());

    // Nothing piped in (`echo "$UNSET" | admin set api_token=-`), or two secrets from one
    // input: refused, the field named, nothing written.
    let before = etcd_revision(&etcd);
    for input in ["", "\n", "\r\n"] {
        let out = piped(&["set", "api_token=-"], input);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(text(&out.stderr).contains("`api_token`"), "{out:?}");
    }
    let out = piped(&["set", "api_token=-", "api_token=-"], "a\nb\n");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(etcd_revision(&etcd), before);
    let loaded = store.load::<Settings>().await.unwrap();
    assert_eq!(loaded.api_token.expose(), pem.trim_end());

    // Revisions that are not there: 0 and below (etcd would read its newest), one not reached.
    for args in [
        &["rollback", "0"][..],
        &["rollback", "--", "-3"],
        &["diff", "--from", "0"],
    ] {
        let out = admin(args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            text(&out.stderr).contains("revisions start at 1"),
            "{out:?}"
        );
    }
    let out = admin(&["rollback", &(before + 100).to_string()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = format!("etcd's newest revision is {before}");
    assert!(text(&out.stderr).contains(&said), "{out:?}");
    assert_eq!(etcd_revision(&etcd), before);

    // Changes older than a compaction: listed as compacted, refused as rollback targets.
    let seeded = before - 1;
    assert!(admin(&["set", "workers=3", "--author", "ops"])
        .status
        .success());
    let compacted_at = etcd_revision(&etcd);
    assert!(admin(&["set", "workers=4", "--author", "ops"])
        .status
        .success());
    assert!(etcd
        .etcdctl(&["compact", &compacted_at.to_string()])
        .status
        .success());
    let now = etcd_revision(&etcd);
    let out = admin(&["history", "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let history = history.as_array().unwrap();
    for change in history {
        // At the compaction point too: the state before it is gone.
        let old = change["revision"].as_i64().unwrap() <= compacted_at;
        assert_eq!(change["compacted"], old, "{change}");
    }
    assert_eq!(
        history.last().unwrap()["changed"],
        serde_json::json!(["workers"])
    );
    let out = admin(&["history"]);
    assert!(text(&out.stdout).contains("(compacted)"), "{out:?}");
    let out = admin(&["rollback", &seeded.to_string(), "--author", "ops"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = format!("etcd keeps revisions {compacted_at} to {now}");
    assert!(text(&out.stderr).contains(&said), "{out:?}");
    assert_eq!(etcd_revision(&etcd), now);
    assert_eq!(store.load::<Settings>().await.unwrap().workers, 4);
    // The compaction point itself can still be read and rolled back to.
    assert!(admin(&["rollback", &compacted_at.to_string()])
        .status
        .success());
    assert_eq!(store.load::<Settings>().await.unwrap().workers, 3);
}
