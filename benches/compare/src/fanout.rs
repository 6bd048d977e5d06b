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
    /// The client process's CPU time while registering (etcd's is its own).
    pub(crate) register_cpu: Duration,
    pub(crate) before: Memory,
    pub(crate) after: Memory,
    /// After every watched value changed once: what the handles hold once they hold values.
    pub(crate) updated: Memory,
    pub(crate) one_update: Duration,
    pub(crate) all_received: String,
}

/// The process's memory at one moment, in bytes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Memory {
    /// Resident, all of it (`VmRSS`).
    pub(crate) rss: u64,
    /// Resident and not backed by a file (`RssAnon`): the heap, stacks and anonymous maps,
    /// without the program's code. Registering pages in about 3 MiB of code once, which
    /// divided by 10,000 handles would pass for 0.3 KiB each.
    pub(crate) anon: u64,
    /// What glibc's allocator has handed out and not had back (in its arenas and in mmap'd
    /// blocks), chunk overhead included: without the allocator's free lists.
    pub(crate) heap: u64,
}

impl Memory {
    pub(crate) fn now() -> Memory {
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let info = unsafe { libc::mallinfo2() };
        Memory {
            rss: status_kib("VmRSS:") * 1024,
            anon: status_kib("RssAnon:") * 1024,
            heap: (info.uordblks + info.hblkhd) as u64,
        }
    }
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
        "etcd-config" => ours(endpoint, n).await?,
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

/// Registration time, memory after it, one update's latency, how many updates arrived, and
/// memory once they all did.
pub(crate) type Measured = (Registered, Memory, Duration, String, Memory);

/// How long registering took, and the CPU time the client process spent on it.
#[derive(Clone, Copy)]
pub(crate) struct Registered {
    wall: Duration,
    cpu: Duration,
}

/// The start of registering: a clock and the process's CPU time so far.
pub(crate) struct Started(Instant, f64);

impl Started {
    pub(crate) fn now() -> Started {
        Started(Instant::now(), crate::clients::cpu_us())
    }

    pub(crate) fn stop(&self) -> Registered {
        let cpu = (crate::clients::cpu_us() - self.1).max(0.0) / 1e6;
        Registered {
            wall: self.0.elapsed(),
            cpu: Duration::from_secs_f64(cpu),
        }
    }
}

/// Sets every config's value in txns of 100 puts; returns the last revision.
pub(crate) async fn write_all(
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

/// With `FANOUT_EXIT_AFTER_REGISTER` set (`FANOUT_EXIT_AFTER_UPDATES`: once every value
/// changed, for etcd-config), prints the registration time to stderr and exits: a
/// heap profiler or a CPU count then covers registering alone.
pub(crate) fn exit_after_register(register: Registered) {
    if std::env::var_os("FANOUT_EXIT_AFTER_REGISTER").is_some() {
        eprintln!(
            "register_s {:.3} register_cpu_s {:.3}",
            register.wall.as_secs_f64(),
            register.cpu.as_secs_f64()
        );
        std::process::exit(0);
    }
}

async fn ours(endpoint: &str, n: usize) -> Result<Measured, Box<dyn std::error::Error>> {
    let client =
        etcd_config::Client::connect([endpoint], etcd_config::ConnectOptions::default()).await?;
    let store = Store::new(client);
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
    Ok((
        register,
        after,
        one_update,
        format!("{received}/{n}"),
        Memory::now(),
    ))
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
    Ok((
        register,
        after,
        one_update,
        format!("{received}/{n}"),
        Memory::now(),
    ))
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
    let mut created = 1;
    while created < n {
        let response = watch.message().await?.ok_or("watch stream ended")?;
        if response.created() {
            created += 1;
        }
    }
    let register = started.stop();
    let after = Memory::now();
    exit_after_register(register);

    let (one_update, received) =
        updates_on_one_stream(&mut watch, endpoint, "/fan-theirs", n).await?;
    Ok((
        register,
        after,
        one_update,
        format!("{received}/{n}"),
        Memory::now(),
    ))
}

/// On etcd-client's one watch stream of `n` configs under `root`: one update's latency, then
/// how many events arrive once every config's value changed.
pub(crate) async fn updates_on_one_stream(
    watch: &mut etcd_client::WatchStream,
    endpoint: &str,
    root: &str,
    n: usize,
) -> Result<(Duration, usize), Box<dyn std::error::Error>> {
    let mut writer = etcd_client::Client::connect([endpoint], None).await?;
    let target = format!("{root}/{}/cfg/value", n / 2);
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

    write_all(endpoint, root, n, 2).await?;
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < n && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), watch.message()).await {
            Ok(Ok(Some(response))) => received += response.events().len(),
            _ => break,
        }
    }
    Ok((one_update, received))
}
