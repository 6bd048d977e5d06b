//! Case 6, fan-out: many watched configs on one client. Each side runs in a child process of
//! its own so that its memory is measured alone.

use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::WatchOptions;
use etcd_config::{EtcdConfig, Store};
use futures_util::{stream, StreamExt};

use crate::measure::{
    created_then_updates, exit_after_register, measured, write_all, Measured, Memory, Started,
};

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
    /// The client process's CPU time while registering (etcd's is its own).
    pub(crate) register_cpu: Duration,
    pub(crate) before: Memory,
    pub(crate) after: Memory,
    /// After every watched value changed once: what the handles hold once they hold values.
    pub(crate) updated: Memory,
    pub(crate) one_update: Duration,
    pub(crate) all_received: String,
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
        register_cpu: Duration::from_secs_f64(v["register_cpu_s"].as_f64().unwrap_or(0.0)),
        before: serde_json::from_value(v["before"].clone())?,
        after: serde_json::from_value(v["after"].clone())?,
        updated: serde_json::from_value(v["updated"].clone())?,
        one_update: Duration::from_secs_f64(v["one_update_s"].as_f64().unwrap_or(0.0)),
        all_received: v["all_received"].as_str().unwrap_or("?").to_owned(),
    })
}

pub(crate) async fn child(
    who: &str,
    endpoint: &str,
    n: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let before = Memory::now();
    let (register, after, one_update, all_received, updated) = match who {
        "etcd-config" => ours(endpoint, n, false).await?,
        "etcd-config-shared" => ours(endpoint, n, true).await?,
        "etcd-config-watch" => ours_raw(endpoint, n).await?,
        "etcd-client-by-hand" => crate::by_hand::fan_out(endpoint, n).await?,
        _ => theirs(endpoint, n).await?,
    };
    println!(
        "{}",
        serde_json::json!({
            "register_s": register.wall.as_secs_f64(),
            "register_cpu_s": register.cpu.as_secs_f64(),
            "before": before,
            "after": after,
            "updated": updated,
            "one_update_s": one_update.as_secs_f64(),
            "all_received": all_received,
        })
    );
    Ok(())
}

/// Live configs, each watching its prefix, or (`shared`) all riding one watch of their parent.
async fn ours(
    endpoint: &str,
    n: usize,
    shared: bool,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let client =
        etcd_config::Client::connect([endpoint], etcd_config::ConnectOptions::default()).await?;
    let mut store = Store::new(client);
    if shared {
        store = store.share_watch("/fan-ours/");
    }
    let started = Started::now();
    let mut lives: Vec<(usize, etcd_config::Live<Small>)> = stream::iter(0..n)
        .map(|i| {
            let store = store.namespace(&format!("/fan-ours/{i}"));
            async move { (i, store.live::<Small>().await.expect("live")) }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let register = started.stop();
    lives.sort_by_key(|(i, _)| *i);
    let after = Memory::now();
    exit_after_register(register);

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
    if std::env::var_os("FANOUT_EXIT_AFTER_UPDATES").is_some() {
        // For a heap profile of what the handles hold once every value changed.
        std::process::exit(0);
    }
    Ok(measured(register, after, one_update, received, n))
}

/// The same watches as etcd-client's, with this crate's client and no `Live`: what the watch
/// layer costs, apart from the load, decode and state of a live config.
async fn ours_raw(endpoint: &str, n: usize) -> Result<Measured, Box<dyn std::error::Error>> {
    let client =
        etcd_config::Client::connect([endpoint], etcd_config::ConnectOptions::default()).await?;
    let key = |i: usize| format!("/fan-raw/{i}/cfg/");
    let started = Started::now();
    let mut watches: Vec<(usize, etcd_config::client::WatchStream)> = stream::iter(0..n)
        .map(|i| {
            let watch = client.watch(etcd_config::KeyRange::prefix(key(i)));
            async move { (i, watch.await.expect("watch")) }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let register = started.stop();
    watches.sort_by_key(|(i, _)| *i);
    let after = Memory::now();
    exit_after_register(register);

    let start = Instant::now();
    client
        .kv()
        .put(format!("/fan-raw/{}/cfg/value", n / 2), "1")
        .await?;
    let target = &mut watches[n / 2].1;
    tokio::time::timeout(Duration::from_secs(10), target.next())
        .await?
        .ok_or("watch ended")??;
    let one_update = start.elapsed();

    write_all(endpoint, "/fan-raw", n, 2).await?;
    let received = stream::iter(watches.iter_mut())
        .map(|(_, watch)| async move {
            matches!(
                tokio::time::timeout(Duration::from_secs(30), watch.next()).await,
                Ok(Some(Ok(_)))
            )
        })
        .buffer_unordered(256)
        .filter(|got| std::future::ready(*got))
        .count()
        .await;
    Ok(measured(register, after, one_update, received, n))
}

async fn theirs(endpoint: &str, n: usize) -> Result<Measured, Box<dyn std::error::Error>> {
    let mut client = etcd_client::Client::connect([endpoint], None).await?;
    let key = |i: usize| format!("/fan-theirs/{i}/cfg/");
    let started = Started::now();
    // A careful user puts every watch on one stream and waits for each to be created.
    let mut watch = client
        .watch(key(0), Some(WatchOptions::new().with_prefix()))
        .await?;
    for i in 1..n {
        watch
            .watch(key(i), Some(WatchOptions::new().with_prefix()))
            .await?;
    }
    created_then_updates(watch, started, endpoint, "/fan-theirs", n).await
}
