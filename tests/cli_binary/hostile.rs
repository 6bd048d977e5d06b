//! The command line given what an operator gets wrong: secrets piped in from a key file or an
//! unset variable, revisions that are not there (0, compacted, not reached yet), an edit in
//! `$EDITOR` of a config that does not load, and a refused one. Each is refused with exit code
//! 2, naming the field or the revisions etcd keeps, and etcd's revision stays where it was;
//! what is accepted reads back whole, and a refused edit is kept for the operator.

use std::time::Duration;

use etcd_config::{Keyring, Store};

use super::settings::Settings;
use super::setup;
use super::support::Etcd;
use super::{admin_command, admin_with_input, etcd_revision, etcdctl_get, run_admin, text};

#[tokio::test]
async fn what_an_operator_gets_wrong() {
    let (etcd, endpoint, dir, keys) = setup().await;
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

    // A value too large for etcd: refused, naming the field, the diff line cut short.
    let big = dir.path().join("big.toml");
    std::fs::write(&big, format!("greeting = \"{}\"\n", "x".repeat(2_000_000))).unwrap();
    let out = admin(&["apply", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("`greeting`, 2000000 bytes"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).len() < 1000,
        "the diff printed the whole value"
    );
    assert_eq!(etcd_revision(&etcd), before);

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

/// `$EDITOR` as a script: `sed` expressions on the file, after copying what it was shown to
/// `seen`.
fn editor(dir: &std::path::Path, seen: &std::path::Path, sed: &str) -> std::path::PathBuf {
    let script = dir.join(format!("editor-{}.sh", sed.len()));
    let body = format!(
        "#!/bin/sh\ncp \"$1\" {}\nsed -i '{sed}' \"$1\"\n",
        seen.display()
    );
    std::fs::write(&script, body).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&script, mode).unwrap();
    script
}

#[tokio::test]
async fn edit_repairs_a_config_that_does_not_load() {
    let (etcd, endpoint, dir, keys) = setup().await;
    let edit = |script: &std::path::Path| {
        let out = admin_command(&endpoint, &keys, &["edit", "--author", "ops"])
            .env("EDITOR", script)
            .output()
            .unwrap();
        eprintln!("$ admin edit\n{}{}", text(&out.stdout), text(&out.stderr));
        out
    };
    assert!(run_admin(&endpoint, &keys, &["set", "greeting=hi"])
        .status
        .success());
    // The bad hand edit of the incident drill, and what it changed.
    let good = etcd_revision(&etcd);
    assert!(etcd
        .etcdctl(&["put", "/services/demo/workers", "1000"])
        .status
        .success());
    let bad = etcd_revision(&etcd);
    let out = run_admin(&endpoint, &keys, &["diff", "--from", &good.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("# revision {bad} does not load")),
        "{said}"
    );
    assert!(said.contains("+ workers: \"1000\""), "{said}");
    let seen = dir.path().join("seen.toml");

    // The operator is shown what etcd holds and what is wrong, and fixes it there.
    let out = edit(&editor(
        dir.path(),
        &seen,
        "s/^workers = .*/workers = \"4\"/",
    ));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let shown = std::fs::read_to_string(&seen).unwrap();
    assert!(shown.contains("DOES NOT LOAD"), "{shown}");
    assert!(
        shown.contains("workers must be between 1 and 64, not 1000"),
        "{shown}"
    );
    assert!(shown.contains("workers = \"1000\""), "{shown}");
    assert_eq!(etcdctl_get(&etcd, "/services/demo/workers").0, "4");

    // A refused edit changes nothing and is kept, where the command says, to fix and apply.
    let before = etcd_revision(&etcd);
    let out = edit(&editor(
        dir.path(),
        &seen,
        "s/^workers = .*/workers = \"0\"/",
    ));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(etcd_revision(&etcd), before);
    let said = text(&out.stdout);
    let kept = said
        .lines()
        .find_map(|line| line.strip_prefix("# your edit is kept in "))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no kept file named: {said}"))
        .to_owned();
    let file = std::fs::read_to_string(&kept).unwrap();
    assert!(file.contains("workers = \"0\""), "{file}");
    std::fs::write(&kept, file.replace("workers = \"0\"", "workers = \"5\"")).unwrap();
    assert!(run_admin(&endpoint, &keys, &["apply", &kept])
        .status
        .success());
    assert_eq!(etcdctl_get(&etcd, "/services/demo/workers").0, "5");
    std::fs::remove_file(&kept).unwrap();
}

/// `admin watch --json` as a script reads it: a change, a revision refused and the revision
/// that makes the config valid again, and etcd gone and back (said, not silence).
#[tokio::test]
async fn watch_says_what_happens_and_when_etcd_is_gone() {
    use std::io::BufRead;

    let (mut etcd, endpoint, _dir, keys) = setup().await;
    assert!(run_admin(&endpoint, &keys, &["set", "greeting=hi"])
        .status
        .success());
    let mut child = admin_command(&endpoint, &keys, &["watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = lines.send(serde_json::from_str(&line).unwrap());
        }
    });
    let next = || {
        let line = seen
            .recv_timeout(Duration::from_secs(20))
            .expect("a line within 20 s");
        eprintln!("watch: {line}");
        line
    };
    assert_eq!(next()["revision"], etcd_revision(&etcd));

    let put = |etcd: &Etcd, value: &str| {
        assert!(etcd
            .etcdctl(&["put", "/services/demo/workers", value])
            .status
            .success());
        etcd_revision(etcd)
    };
    let changed = put(&etcd, "3");
    assert_eq!(
        next(),
        serde_json::json!({ "revision": changed, "changed": ["workers"] })
    );
    let bad = put(&etcd, "1000");
    let line = next();
    assert_eq!(line["revision"], bad);
    assert!(
        line["rejected"].as_str().unwrap().contains("not 1000"),
        "{line}"
    );
    let fixed = put(&etcd, "3");
    assert_eq!(
        next(),
        serde_json::json!({ "revision": fixed, "current": true })
    );

    etcd.stop(0);
    assert!(next().get("reconnecting").is_some());
    etcd.restart(0).await;
    assert_eq!(next(), serde_json::json!({ "reconnected": true }));
    let after = put(&etcd, "4");
    assert_eq!(
        next(),
        serde_json::json!({ "revision": after, "changed": ["workers"] })
    );
    child.kill().unwrap();
    let _ = child.wait();
}
