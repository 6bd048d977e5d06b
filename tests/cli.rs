//! The admin command line (cargo feature `cli`) against a real etcd, driven through clap as a
//! service's binary would parse it: show hides secrets, set validates and notes who and why,
//! a dry run writes nothing, history and rollback, the fleet status.

mod support;

use clap::Parser;
use etcd_config::{EtcdConfig, Store};
use support::Etcd;

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(
    prefix = "/cli/app",
    rename_all = "kebab-case",
    validate = "App::check"
)]
struct App {
    #[etcd(default = 2)]
    workers: u32,
    #[etcd(default)]
    greeting: String,
    #[etcd(secret, default)]
    token: String,
}

impl App {
    fn check(&self) -> Result<(), String> {
        (self.workers <= 64)
            .then_some(())
            .ok_or_else(|| format!("workers must be at most 64, not {}", self.workers))
    }
}

#[derive(Parser)]
struct Admin {
    #[command(subcommand)]
    command: etcd_config::cli::Command,
}

async fn admin(store: &Store, args: &[&str]) -> Result<String, etcd_config::Error> {
    let parsed = Admin::try_parse_from(std::iter::once("admin").chain(args.iter().copied()))
        .expect("valid arguments");
    let mut out = Vec::new();
    etcd_config::cli::run::<App>(store, parsed.command, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

/// What an operator does in a day, through the command line.
#[tokio::test]
async fn an_operator_session() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);

    // A secret never comes from argv (other users see it): refused, with how to give it.
    let err = admin(&store, &["set", "token=s3cr3t"]).await.unwrap_err();
    assert!(err.to_string().contains("standard input"), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    assert_eq!(etcd_config::cli::exit_code(&err), 2);
    store
        .set::<App>(
            &[("token", "s3cr3t")],
            &etcd_config::ChangeNote::by("setup"),
        )
        .await
        .unwrap();
    let out = admin(
        &store,
        &[
            "set",
            "greeting=hi",
            "--author",
            "alice",
            "--reason",
            "launch",
        ],
    )
    .await
    .unwrap();
    // Its key was absent (the code default served): the set adds it.
    assert!(out.contains("+ greeting: \"hi\""), "{out}");
    let show = admin(&store, &["show"]).await.unwrap();
    assert!(
        show.contains("greeting = hi") && show.contains("token = (secret, set)"),
        "{show}"
    );
    assert!(!show.contains("s3cr3t"), "{show}");
    assert_eq!(admin(&store, &["get", "greeting"]).await.unwrap(), "hi\n");

    // A dry run shows the diff and the operations and writes nothing; a refused value
    // writes nothing either.
    let before = etcd
        .client()
        .await
        .kv()
        .get("/cli/app/workers")
        .await
        .unwrap();
    let dry = admin(&store, &["set", "workers=8", "--dry-run"])
        .await
        .unwrap();
    assert!(
        dry.contains("+ workers: \"8\"") && dry.contains("dry run"),
        "{dry}"
    );
    assert!(dry.contains("would put /cli/app/workers = \"8\""), "{dry}");
    let err = admin(&store, &["set", "workers=1000"]).await.unwrap_err();
    assert!(err.to_string().contains("at most 64"), "{err}");
    assert_eq!(etcd_config::cli::exit_code(&err), 2);
    let after = etcd
        .client()
        .await
        .kv()
        .get("/cli/app/workers")
        .await
        .unwrap();
    assert_eq!(after.header.revision, before.header.revision);

    admin(&store, &["set", "workers=8", "--author", "bob"])
        .await
        .unwrap();
    let history = admin(&store, &["history"]).await.unwrap();
    let lines: Vec<&str> = history.lines().skip(1).collect();
    assert!(
        history.starts_with("REVISION\tAUTHOR"),
        "a header line: {history}"
    );
    assert_eq!(lines.len(), 3, "{history}");
    assert!(
        lines[0].contains("setup") && lines[0].contains("token"),
        "{history}"
    );
    assert!(
        lines[1].contains("alice") && lines[1].contains("launch"),
        "{history}"
    );
    assert!(
        lines[2].contains("bob") && lines[2].contains("workers"),
        "{history}"
    );

    let first: i64 = lines[1].split('\t').next().unwrap().parse().unwrap();
    let rolled = admin(
        &store,
        &["rollback", &first.to_string(), "--author", "carol"],
    )
    .await
    .unwrap();
    // Back to before bob's change: workers had no key then, so the rollback deletes it and
    // the code default serves again.
    assert!(
        rolled.contains("- workers: \"8\" (key removed: the default \"2\" applies)"),
        "{rolled}"
    );
    assert_eq!(store.load::<App>().await.unwrap().workers, 2);
    let gone = etcd
        .client()
        .await
        .kv()
        .get("/cli/app/workers")
        .await
        .unwrap();
    assert!(gone.kvs.is_empty(), "the rollback removed the key");
    let schema = admin(&store, &["schema"]).await.unwrap();
    assert!(schema.contains("/cli/app/workers"), "{schema}");
}

/// `edit` opens `$EDITOR` on TOML without secrets; `apply` makes the config what a file says;
/// `diff FILE` shows what applying it would change.
#[tokio::test]
async fn edit_apply_and_diff_files() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    store
        .set::<App>(
            &[("token", "s3cr3t")],
            &etcd_config::ChangeNote::by("setup"),
        )
        .await
        .unwrap();
    admin(&store, &["set", "greeting=hi"]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.toml");
    std::fs::write(&file, "workers = 9\n").unwrap();
    let preview = admin(&store, &["diff", file.to_str().unwrap()])
        .await
        .unwrap();
    assert!(preview.contains("+ workers: \"9\""), "{preview}");
    assert!(
        preview.contains("- greeting: \"hi\" (key removed: the default \"\" applies)"),
        "{preview}"
    );
    admin(&store, &["apply", file.to_str().unwrap()])
        .await
        .unwrap();
    let app = store.load::<App>().await.unwrap();
    assert_eq!(
        (app.workers, app.greeting.as_str(), app.token.as_str()),
        (9, "", "s3cr3t")
    );

    // An "editor" that rewrites the file it is given; the secret never reaches it.
    let seen = dir.path().join("seen.toml");
    let editor = format!(
        "sh -c 'cp \"$0\" {seen} && printf \"workers = 3\\ngreeting = \\\"yo\\\"\\n\" > \"$0\"'",
        seen = seen.display()
    );
    std::env::set_var("EDITOR", editor);
    admin(&store, &["edit", "--author", "dave"]).await.unwrap();
    let shown = std::fs::read_to_string(&seen).unwrap();
    assert!(
        shown.contains("workers = \"9\"") && !shown.contains("s3cr3t"),
        "{shown}"
    );
    let app = store.load::<App>().await.unwrap();
    assert_eq!(
        (app.workers, app.greeting.as_str(), app.token.as_str()),
        (3, "yo", "s3cr3t")
    );

    // The same editor flow as a rollout (no instance reports here: allowed explicitly).
    std::env::set_var(
        "EDITOR",
        "sh -c 'printf \"workers = 4\\ngreeting = \\\"yo\\\"\\n\" > \"$0\"'",
    );
    let out = admin(
        &store,
        &[
            "rollout",
            "start",
            "edit",
            "--steps",
            "100%",
            "--bake",
            "0s",
            "--allow-silent",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("committed at revision"), "{out}");
    let app = store.load::<App>().await.unwrap();
    assert_eq!((app.workers, app.token.as_str()), (4, "s3cr3t"));
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/cli/vault")]
struct Vault {
    #[etcd(each, secret)]
    keys: std::collections::BTreeMap<String, String>,
}

/// A secret map's entries (names may hold `/`) are hidden like any secret: not shown, not in
/// a diff, not in a dry run, not taken from argv.
#[tokio::test]
async fn secret_map_entries_stay_hidden() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let note = etcd_config::ChangeNote::by("setup");
    store
        .set::<Vault>(&[("keys.a/b", "hunter2")], &note)
        .await
        .unwrap();
    let run = |args: &'static [&'static str]| {
        let store = store.clone();
        async move {
            let parsed =
                Vault2::try_parse_from(std::iter::once("admin").chain(args.iter().copied()))
                    .unwrap();
            let mut out = Vec::new();
            let result = etcd_config::cli::run::<Vault>(&store, parsed.command, &mut out).await;
            (result, String::from_utf8(out).unwrap())
        }
    };
    let (_, show) = run(&["show"]).await;
    assert!(show.contains("keys.a/b = (secret, set)"), "{show}");
    let (err, _) = run(&["set", "keys.a/b=other"]).await;
    assert!(err.unwrap_err().to_string().contains("standard input"));
    let old = store.load::<Vault>().await.unwrap();
    let mut new = old.clone();
    new.keys.insert("a/b".into(), "s3cond".into());
    let text = format!("{:?}", etcd_config::diff(&old, &new));
    assert!(
        !text.contains("hunter2") && !text.contains("s3cond"),
        "{text}"
    );
    assert!(text.contains("secret: true"), "{text}");
    assert!(!show.contains("hunter2"));
}

#[derive(Parser)]
struct Vault2 {
    #[command(subcommand)]
    command: etcd_config::cli::Command,
}

/// `status` tells current, behind and unconfirmed instances apart, from records as etcd holds
/// them (two written by hand, as another build of the service would).
#[tokio::test]
async fn status_shows_who_is_current_behind_or_unconfirmed() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let changed_at = store
        .set::<App>(&[("workers", "4")], &etcd_config::ChangeNote::by("setup"))
        .await
        .unwrap();
    let _live = store
        .live_with::<App>(etcd_config::LiveOptions::new().report_as("a"))
        .await
        .unwrap();
    let record = |revision: i64, unconfirmed: &str| {
        format!(
            r#"{{"revision":{revision},"applied_at_ms":1,"state":"following","since_ms":1,"last_rejected":null{unconfirmed}}}"#
        )
    };
    let kv = etcd.client().await.kv();
    kv.put("/cli/app.fleet/b", record(changed_at - 1, ""))
        .await
        .unwrap();
    let unconfirmed = format!(",\"unconfirmed_since_ms\":{}", now_ms() - 45_000);
    kv.put("/cli/app.fleet/c", record(changed_at, &unconfirmed))
        .await
        .unwrap();
    for _ in 0..50 {
        if store.fleet::<App>().await.unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let status = admin(&store, &["status"]).await.unwrap();
    let line = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("no {name}: {status}"))
            .to_owned()
    };
    assert!(
        status.contains(&format!("last changed at revision {changed_at}")),
        "{status}"
    );
    assert!(line("a").contains("\tcurrent\t"), "{status}");
    assert!(line("b").contains("\tbehind\t"), "{status}");
    assert!(line("c").contains("unconfirmed for 4"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&admin(&store, &["status", "--json"]).await.unwrap()).unwrap();
    assert_eq!(json["changed_at"], changed_at);
    let current: Vec<bool> = json["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["current"].as_bool().unwrap())
        .collect();
    assert_eq!(current, [true, false, false]);
    assert_eq!(
        json["by_revision"][changed_at.to_string()],
        serde_json::json!(["a", "c"])
    );
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    u64::try_from(since.unwrap().as_millis()).unwrap()
}

/// A write that lost a race is a conflict (exit code 3), distinct from a refusal (2).
#[tokio::test]
async fn a_lost_race_is_exit_code_3() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let loaded = store.load_versioned::<App>().await.unwrap();
    admin(&store, &["set", "workers=5"]).await.unwrap();
    let err = store
        .save_if_unchanged(&loaded.value, loaded.revision)
        .await
        .unwrap_err();
    assert!(
        matches!(err, etcd_config::Error::Conflict { .. }),
        "{err:?}"
    );
    assert_eq!(etcd_config::cli::exit_code(&err), 3);
    assert_eq!(store.load::<App>().await.unwrap().workers, 5);
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/cli/limits", rename_all = "kebab-case")]
struct Limits {
    #[etcd(default = 2)]
    workers: u32,
    #[etcd(each)]
    tenant_limits: std::collections::BTreeMap<String, Limit>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Limit {
    rps: u32,
    burst: u32,
}

#[derive(Parser)]
struct LimitsAdmin {
    #[command(subcommand)]
    command: etcd_config::cli::Command,
}

async fn limits_admin(store: &Store, args: &[&str]) -> (Result<(), etcd_config::Error>, String) {
    let parsed = LimitsAdmin::try_parse_from(std::iter::once("admin").chain(args.iter().copied()))
        .expect("valid arguments");
    let mut out = Vec::new();
    let result = etcd_config::cli::run::<Limits>(store, parsed.command, &mut out).await;
    (result, String::from_utf8(out).unwrap())
}

/// A file given to `apply` takes native TOML for map entries (`[tenant_limits] acme = { rps =
/// 3, burst = 1 }`); `get` and `show` on a config that does not load print what etcd holds
/// with the problem by its field and fail with exit code 7; show marks code defaults and
/// names keys no field reads, with a near miss.
#[tokio::test]
async fn native_toml_and_a_broken_config_shown() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.toml");
    std::fs::write(
        &file,
        "[tenant_limits]\nacme = { rps = 3, burst = 1 }\nglobex = { rps = 9, burst = 2 }\n",
    )
    .unwrap();
    let (result, out) = limits_admin(&store, &["apply", file.to_str().unwrap()]).await;
    result.unwrap();
    assert!(
        out.contains("+ tenant_limits.acme: \"{\\\"burst\\\":1,\\\"rps\\\":3}\""),
        "{out}"
    );
    let held = etcd.etcdctl(&[
        "get",
        "/cli/limits/tenant-limits/globex",
        "--print-value-only",
    ]);
    assert_eq!(
        String::from_utf8(held.stdout).unwrap().trim(),
        r#"{"burst":2,"rps":9}"#
    );

    let (result, out) = limits_admin(&store, &["show"]).await;
    result.unwrap();
    assert!(
        out.contains("workers = 2    (default: no key in etcd)"),
        "{out}"
    );
    // The schema shows what a map entry's JSON looks like.
    let (result, out) = limits_admin(&store, &["schema"]).await;
    result.unwrap();
    assert!(out.contains(r#"Limit as {"rps":0,"burst":0}"#), "{out}");

    etcd.etcdctl(&["put", "/cli/limits/workres", "4"]);
    etcd.etcdctl(&[
        "put",
        "/cli/limits/tenant-limits/acme",
        "{\"rps\":\"fast\"}",
    ]);
    let (result, out) = limits_admin(&store, &["show"]).await;
    let err = result.unwrap_err();
    assert_eq!(etcd_config::cli::exit_code(&err), 7, "{err}");
    assert!(out.contains("DOES NOT LOAD"), "{out}");
    assert!(
        out.contains("tenant_limits.acme = {\"rps\":\"fast\"}"),
        "{out}"
    );
    assert!(out.contains("! /cli/limits/tenant-limits/acme"), "{out}");
    assert!(
        out.contains(
            "unknown key /cli/limits/workres: no field reads it (did you mean `workers`?)"
        ),
        "{out}"
    );
    let (result, out) = limits_admin(&store, &["get", "tenant_limits.acme"]).await;
    assert_eq!(etcd_config::cli::exit_code(&result.unwrap_err()), 7);
    assert_eq!(out, "{\"rps\":\"fast\"}\n");
    let (result, _) = limits_admin(&store, &["show", "--json"]).await;
    let mut json_err = Vec::new();
    etcd_config::cli::print_error(&result.unwrap_err(), true, &mut json_err);
    let json_err: serde_json::Value = serde_json::from_slice(&json_err).unwrap();
    assert_eq!(json_err["exit_code"], 7);
}
