//! The admin command line as a user runs it: the built `examples/admin` binary (the demo
//! service's settings), its output, its JSON and its exit codes, checked against etcdctl, a
//! fleet with a stricter build of the service, and an etcd that is not there.
//!
//! `scripts/test` builds the binary first (`cargo build --features cli --example admin`).

#[path = "../support/mod.rs"]
mod support;

mod hostile;
mod rollout;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use etcd_config::{EtcdConfig, Keyring, LiveOptions, Store};
use support::Etcd;

#[allow(dead_code)]
#[path = "../../examples/shared/settings.rs"]
mod settings;

/// The demo service's settings as a stricter build of the service checks them.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(
    prefix = "/services/demo",
    rename_all = "kebab-case",
    validate = "Strict::check"
)]
struct Strict {
    greeting: String,
    #[etcd(default = 2)]
    workers: u32,
    #[etcd(default = Duration::from_secs(1))]
    interval: Duration,
}

impl Strict {
    fn check(&self) -> Result<(), String> {
        (self.workers <= 16)
            .then_some(())
            .ok_or_else(|| format!("this build runs at most 16 workers, not {}", self.workers))
    }
}

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let admin = dir.join("examples").join("admin");
    assert!(
        admin.is_file(),
        "{} is missing: build it with `cargo build --features cli --example admin`",
        admin.display()
    );
    admin
}

/// A fresh etcd, its endpoint, and a key file (`keys`: key `k1`) in the test's directory.
async fn setup() -> (Etcd, String, tempfile::TempDir, PathBuf) {
    let etcd = Etcd::single().await;
    let endpoint = etcd.client_endpoints()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("k1 {}\n", "1f".repeat(32))).unwrap();
    (etcd, endpoint, dir, keys)
}

/// Runs the admin binary against `endpoint` as user `tester`, with the key file `keys`.
fn run_admin(endpoint: &str, keys: &Path, args: &[&str]) -> Output {
    admin_with_input(endpoint, keys, args, "")
}

/// The admin binary against `endpoint` as user `tester`, with the key file `keys`.
fn admin_command(endpoint: &str, keys: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .env("ETCD_ENDPOINTS", endpoint)
        .env("ETCD_CONFIG_KEYS", keys)
        .env("USER", "tester")
        .args(args);
    command
}

/// [`run_admin`] with `input` on standard input.
fn admin_with_input(endpoint: &str, keys: &Path, args: &[&str], input: &str) -> Output {
    let mut child = admin_command(endpoint, keys, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "$ admin {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `etcdctl get KEY -w fields`: the value and its mod revision (`""` and 0 if absent).
fn etcdctl_get(etcd: &Etcd, key: &str) -> (String, i64) {
    let out = etcd.etcdctl(&["get", key, "-w", "fields"]);
    let fields = text(&out.stdout);
    let field = |name: &str| {
        fields
            .lines()
            .find_map(|line| line.strip_prefix(&format!("\"{name}\" : ")))
            .map(str::to_owned)
    };
    let value = field("Value").map_or(String::new(), |quoted| {
        serde_json::from_str(&quoted).unwrap()
    });
    let revision = field("ModRevision").map_or(0, |r| r.parse().unwrap());
    (value, revision)
}

/// Waits (up to 10 s) until `instances` report on the demo config.
async fn fleet_of(store: &Store, instances: usize) {
    for _ in 0..100 {
        if store.fleet::<Strict>().await.unwrap().len() == instances {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{instances} instance(s) did not report within 10 s");
}

/// The store's revision as etcdctl reports it.
fn etcd_revision(etcd: &Etcd) -> i64 {
    let out = etcd.etcdctl(&["get", "/", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["header"]["revision"].as_i64().unwrap()
}

// Several threads: the binary runs blocking while this process's live configs follow etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_command_line_as_a_user_runs_it() {
    let (etcd, endpoint, _dir, keys) = setup().await;
    let admin = |args: &[&str]| run_admin(&endpoint, &keys, args);

    // Nothing in etcd yet: the required greeting is missing, and the error says so.
    let out = admin(&["show"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the config in etcd does not load: {out:?}"
    );
    assert!(text(&out.stderr).contains("greeting"), "{out:?}");

    let out = admin(&[
        "set",
        "greeting=hello",
        "--author",
        "alice",
        "--reason",
        "launch",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (value, revision) = etcdctl_get(&etcd, "/services/demo/greeting");
    assert_eq!(value, "hello");
    assert!(
        text(&out.stdout).contains("+ greeting: \"hello\""),
        "{out:?}"
    );
    assert!(
        text(&out.stdout).contains(&format!("saved at revision {revision}")),
        "{out:?}"
    );

    // What validate refuses: exit code 2, the rule in the message, nothing written.
    let out = admin(&["set", "workers=1000"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("between 1 and 64"), "{out:?}");
    assert_eq!(
        etcdctl_get(&etcd, "/services/demo/workers"),
        (String::new(), 0),
        "defaults stay in code: no key for workers; the refused set wrote nothing"
    );
    assert_eq!(
        etcd_revision(&etcd),
        revision,
        "nothing written since the first set"
    );
    let out = admin(&["set", "no_such_field=1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("no_such_field"), "{out:?}");

    // JSON, as a script reads it, agrees with etcdctl.
    let out = admin(&["set", "workers=8", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let written: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (value, revision) = etcdctl_get(&etcd, "/services/demo/workers");
    assert_eq!(value, "8");
    assert_eq!(written["revision"], revision);
    assert_eq!(
        written["diff"],
        serde_json::json!([{
            "path": "workers", "secret": false, "before": null, "after": "8", "change": "added"
        }])
    );
    let out = admin(&["show", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["fields"]["workers"], "8");
    assert_eq!(shown["fields"]["greeting"], "hello");
    let out = admin(&["history", "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = &history.as_array().unwrap().last().unwrap();
    assert_eq!(last["revision"], revision);
    assert_eq!(last["author"], "tester"); // from $USER
    assert_eq!(last["changed"], serde_json::json!(["workers"]));
    assert_eq!(text(&admin(&["get", "workers"]).stdout), "8\n");

    // A fleet running a stricter build: --wait names the instance that refused, exit code 4.
    let store = Store::new(etcd.client().await).with_keyring(Keyring::from_file(&keys).unwrap());
    let _strict = store
        .live_with::<Strict>(LiveOptions::new().report_as("strict-1"))
        .await
        .unwrap();
    let _normal = store
        .live_with::<settings::Settings>(LiveOptions::new().report_as("normal-1"))
        .await
        .unwrap();
    fleet_of(&store, 2).await;
    let out = admin(&["set", "workers=12", "--wait", "10"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stdout).contains("every reporting instance (2) is current"),
        "{out:?}"
    );
    let out = admin(&["set", "workers=32", "--wait", "10"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        text(&out.stderr).contains("strict-1") && text(&out.stderr).contains("at most 16"),
        "{out:?}"
    );
    let out = admin(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, changed_at) = etcdctl_get(&etcd, "/services/demo/workers");
    assert_eq!(status["changed_at"], changed_at);
    let instances = status["instances"].as_array().unwrap();
    let by_name = |name: &str| instances.iter().find(|i| i["instance"] == name).unwrap();
    assert_eq!(by_name("normal-1")["current"], true);
    assert_eq!(by_name("strict-1")["current"], false);
    assert_eq!(by_name("strict-1")["last_rejected"]["revision"], changed_at);

    // A secret: from standard input only, encrypted in etcd, shown as set, rotated.
    let out = admin(&["set", "api_token=tok-8c1f"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!text(&out.stderr).contains("tok-8c1f"), "{out:?}");
    let out = admin_with_input(&endpoint, &keys, &["set", "api_token=-"], "tok-8c1f\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Its first set is an addition: the empty default had no key.
    assert!(
        text(&out.stdout).contains("+ api_token (secret, set)"),
        "{out:?}"
    );
    let (stored, _) = etcdctl_get(&etcd, "/services/demo/api-token");
    assert!(stored.starts_with("enc:v1:k1:"), "{stored}");
    assert_eq!(
        store
            .load::<settings::Settings>()
            .await
            .unwrap()
            .api_token
            .expose(),
        "tok-8c1f"
    );
    let out = admin(&["show"]);
    assert!(
        text(&out.stdout).contains("api_token = (secret, set)"),
        "{out:?}"
    );
    let out = admin(&["get", "api_token", "--json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!({ "path": "api_token", "secret": true })
    );
    std::fs::write(
        &keys,
        format!("k1 {}\nk2 {}\n", "1f".repeat(32), "2e".repeat(32)),
    )
    .unwrap();
    let out = admin(&["rotate", "--author", "ops"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (stored, rotated_at) = etcdctl_get(&etcd, "/services/demo/api-token");
    assert!(stored.starts_with("enc:v1:k2:"), "{stored}");
    let out = admin(&["history", "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["revision"], rotated_at);
    assert_eq!(last["author"], "ops");
    assert!(!text(&out.stdout).contains("tok-8c1f"));

    // No etcd there: exit code 5, the endpoint named.
    let closed = format!("127.0.0.1:{}", support::free_port());
    let out = run_admin(&closed, &keys, &["show"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(text(&out.stderr).contains(&closed), "{out:?}");
}

/// The incident drill with the built binary, as an on-call engineer runs it: a `set` that
/// changes nothing writes nothing and `--wait` succeeds at once; a bad hand edit is rejected
/// by the running instance (`status` says behind, `show` prints what etcd holds, exit 7);
/// `set` restores the value with `--wait` (exit 0) and the instance is current again;
/// `history` lists both changes with their fields; a wait that runs out is exit 6; a secret
/// in a file given to `apply` is refused and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_drill() {
    let (etcd, endpoint, dir, keys) = setup().await;
    let admin = |args: &[&str]| run_admin(&endpoint, &keys, args);
    let out = admin(&["set", "greeting=hello", "workers=4"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let store = Store::new(etcd.client().await).with_keyring(Keyring::from_file(&keys).unwrap());
    let live = store
        .live_with::<settings::Settings>(LiveOptions::new().report_as("demo-1"))
        .await
        .unwrap();
    fleet_of(&store, 1).await;

    // Setting what is there: "no change", nothing written, the wait returns at once.
    let before = etcd_revision(&etcd);
    let out = admin(&[
        "set",
        "greeting=hello",
        "--reason",
        "just checking",
        "--wait",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("no change"), "{out:?}");
    assert!(!text(&out.stdout).contains("saved at"), "{out:?}");
    assert_eq!(etcd_revision(&etcd), before, "a no-op wrote a revision");

    // A bad hand edit: the instance keeps 4 and says why; status says behind, on one line.
    etcd.etcdctl(&["put", "/services/demo/workers", "400"]);
    for _ in 0..100 {
        if live.status().is_behind() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live.get().workers, 4);
    let out = admin(&["status"]);
    let status = text(&out.stdout);
    let row = status.lines().find(|l| l.starts_with("demo-1")).unwrap();
    assert!(
        row.contains("behind") && row.contains("between 1 and 64"),
        "{status}"
    );
    let out = admin(&["show"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(text(&out.stdout).contains("workers = 400"), "{out:?}");
    assert!(text(&out.stdout).contains("DOES NOT LOAD"), "{out:?}");

    // The fix: set restores the value; every instance is current for it.
    let out = admin(&[
        "set",
        "workers=4",
        "--author",
        "oncall",
        "--reason",
        "revert",
        "--wait",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stdout).contains("~ workers: \"400\" -> \"4\""),
        "{out:?}"
    );
    assert!(
        text(&out.stdout).contains("every reporting instance (1) is current"),
        "{out:?}"
    );
    let out = admin(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["instances"][0]["current"], true, "{status}");
    let out = admin(&["status"]);
    let row = text(&out.stdout)
        .lines()
        .find(|l| l.starts_with("demo-1"))
        .unwrap()
        .to_owned();
    assert!(
        row.ends_with("current\t-"),
        "the old rejection is not news: {row}"
    );
    let out = admin(&["history", "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let history = history.as_array().unwrap();
    let (hand, fix) = (&history[history.len() - 2], &history[history.len() - 1]);
    assert_eq!(hand["changed"], serde_json::json!(["workers"]));
    assert_eq!(
        (&hand["valid"], &hand["noted"], &hand["author"]),
        (&false.into(), &false.into(), &"".into())
    );
    assert_eq!(fix["changed"], serde_json::json!(["workers"]));
    assert_eq!(
        (&fix["valid"], &fix["author"]),
        (&true.into(), &"oncall".into())
    );

    // A wait that runs out: its own exit code, naming the instance not current yet.
    let _slow = store
        .live_with::<settings::Settings>(
            LiveOptions::new()
                .report_as("slow-1")
                .settle(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    fleet_of(&store, 2).await;
    let out = admin(&["set", "workers=5", "--wait", "2"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(text(&out.stderr).contains("slow-1"), "{out:?}");

    // A secret in a file is refused by name; etcd is unchanged.
    let seed = dir.path().join("seed.toml");
    std::fs::write(&seed, "greeting = \"x\"\napi_token = \"-\"\n").unwrap();
    let before = etcd_revision(&etcd);
    let out = admin(&["apply", seed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("set api_token=-"), "{out:?}");
    assert_eq!(etcd_revision(&etcd), before);

    // A file that leaves out a required field: apply would make the config invalid; it says
    // which field, and writes nothing.
    std::fs::write(&seed, "workers = 3\n").unwrap();
    let out = admin(&["apply", seed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("leaves out `greeting`"),
        "{out:?}"
    );
    assert_eq!(etcd_revision(&etcd), before);
}
