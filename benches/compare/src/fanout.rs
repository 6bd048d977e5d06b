//! Case 6, fan-out: many watched configs on one client. Each side runs in a child process of
//! its own so that its memory is measured alone.

use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{Txn, TxnOp, WatchOptions};
use etcd_config::{EtcdConfig, Store};
use futures_util::{stream, StreamExt};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/cfg")]
struct Small {
    #[etcd(default)]
    value: u64,
}

pub(crate) struct Report {
    pub(crate) who: String,
    pub(crate) watches: usize,
    pub(crate) register: Duration,
    pub(crate) rss_before: u64,
    pub(crate) rss_after: u64,
    /// After every watched value changed once: what the handles hold once they hold values.
    pub(crate) rss_updated: u64,
    pub(crate) one_update: Duration,
    pub(crate) all_received: String,
}

/// Resident memory of this process, in bytes.
pub(crate) fn rss() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// A line of `/proc/self/status` in KiB (`VmRSS:`, or `VmHWM:` for the peak).
pub(crate) fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0)
}

pub(crate) fn run_child(
    who: &str,
    endpoint: &str,
    watches: usize,
) -> Result<Report, Box<dyn std::error::Error>> {
    println!("fan-out: {watches} watches with {who} ...");
    let out = Command::new(std::env::current_exe()?)
        .args(["fanout", who, endpoint, &watches.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "fan-out child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text.lines().last().ok_or("fan-out child printed nothing")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    Ok(Report {
        who: who.to_owned(),
        watches,
        register: Duration::from_secs_f64(v["register_s"].as_f64().unwrap_or(0.0)),
        rss_before: v["rss_before"].as_u64().unwrap_or(0),
        rss_after: v["rss_after"].as_u64().unwrap_or(0),
        rss_updated: v["rss_updated"].as_u64().unwrap_or(0),
        one_update: Duration::from_secs_f64(v["one_update_s"].as_f64().unwrap_or(0.0)),
        all_received: v["all_received"].as_str().unwrap_or("?").to_owned(),
    })
}

pub(crate) async fn child(
    who: &str,
    endpoint: &str,
    n: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let rss_before = rss();
    let (register, rss_after, one_update, all_received, rss_updated) = match who {
        "etcd-config" => ours(endpoint, n).await?,
        _ => theirs(endpoint, n).await?,
    };
    println!(
        "{}",
        serde_json::json!({
            "register_s": register.as_secs_f64(),
            "rss_before": rss_before,
            "rss_after": rss_after,
            "rss_updated": rss_updated,
            "one_update_s": one_update.as_secs_f64(),
            "all_received": all_received,
        })
    );
    Ok(())
}

/// Registration time, RSS after it, one update's latency, how many updates arrived, and RSS
/// once they all did.
type Measured = (Duration, u64, Duration, String, u64);

/// Sets every config's value in txns of 100 puts; returns the last revision.
async fn write_all(
    endpoint: &str,
    root: &str,
    n: usize,
    value: u64,
) -> Result<i64, Box<dyn std::error::Error>> {
    let mut writer = etcd_client::Client::connect([endpoint], None).await?;
    let mut revision = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|i| TxnOp::put(format!("{root}/{i}/cfg/value"), value.to_string(), None))
            .collect();
        revision = writer
            .txn(Txn::new().and_then(ops))
            .await?
            .header()
            .map_or(0, |h| h.revision());
    }
    Ok(revision)
}

async fn ours(endpoint: &str, n: usize) -> Result<Measured, Box<dyn std::error::Error>> {
    let client =
        etcd_config::Client::connect([endpoint], etcd_config::ConnectOptions::default()).await?;
    let store = Store::new(client);
    let start = Instant::now();
    let mut lives: Vec<(usize, etcd_config::Live<Small>)> = stream::iter(0..n)
        .map(|i| {
            let store = store.namespace(&format!("/fan-ours/{i}"));
            async move { (i, store.live::<Small>().await.expect("live")) }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let register = start.elapsed();
    lives.sort_by_key(|(i, _)| *i);
    let rss_after = rss();
    if std::env::var_os("FANOUT_EXIT_AFTER_REGISTER").is_some() {
        std::process::exit(0);
    }

    let writer =
        etcd_config::Client::connect([endpoint], etcd_config::ConnectOptions::default()).await?;
    let target = &mut lives[n / 2].1;
    let start = Instant::now();
    writer
        .kv()
        .put(format!("/fan-ours/{}/cfg/value", n / 2), "1")
        .await?;
    tokio::time::timeout(Duration::from_secs(10), target.changed()).await??;
    let one_update = start.elapsed();

    write_all(endpoint, "/fan-ours", n, 2).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = 0;
    while Instant::now() < deadline {
        received = lives
            .iter()
            .filter(|(_, live)| live.get().value == 2)
            .count();
        if received == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((
        register,
        rss_after,
        one_update,
        format!("{received}/{n}"),
        rss(),
    ))
}

async fn theirs(endpoint: &str, n: usize) -> Result<Measured, Box<dyn std::error::Error>> {
    let mut client = etcd_client::Client::connect([endpoint], None).await?;
    let key = |i: usize| format!("/fan-theirs/{i}/cfg/");
    let start = Instant::now();
    // A careful user puts every watch on one stream and waits for each to be created.
    let mut watch = client
        .watch(key(0), Some(WatchOptions::new().with_prefix()))
        .await?;
    for i in 1..n {
        watch
            .watch(key(i), Some(WatchOptions::new().with_prefix()))
            .await?;
    }
    let mut created = 1;
    while created < n {
        let response = watch.message().await?.ok_or("watch stream ended")?;
        if response.created() {
            created += 1;
        }
    }
    let register = start.elapsed();
    let rss_after = rss();

    let mut writer = etcd_client::Client::connect([endpoint], None).await?;
    let target = format!("/fan-theirs/{}/cfg/value", n / 2);
    let start = Instant::now();
    writer.put(target.as_str(), "1", None).await?;
    loop {
        let response = watch.message().await?.ok_or("watch stream ended")?;
        if response
            .events()
            .iter()
            .any(|e| e.kv().is_some_and(|kv| kv.key() == target.as_bytes()))
        {
            break;
        }
    }
    let one_update = start.elapsed();

    write_all(endpoint, "/fan-theirs", n, 2).await?;
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < n && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), watch.message()).await {
            Ok(Ok(Some(response))) => received += response.events().len(),
            _ => break,
        }
    }
    Ok((
        register,
        rss_after,
        one_update,
        format!("{received}/{n}"),
        rss(),
    ))
}
