//! What the fan-out's rows share: the clock and CPU time of registering, the process's
//! memory, the writes that change every config, and following etcd-client's one stream.

use std::time::{Duration, Instant};

use etcd_client::{Txn, TxnOp};

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

/// Registration time, memory after it, one update's latency, how many updates arrived, and
/// memory once they all did.
pub(crate) type Measured = (Registered, Memory, Duration, String, Memory);

/// How long registering took, and the CPU time the client process spent on it.
#[derive(Clone, Copy)]
pub(crate) struct Registered {
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
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

/// What a fan-out row reports once `received` of `n` updates arrived.
pub(crate) fn measured(
    register: Registered,
    after: Memory,
    one_update: Duration,
    received: usize,
    n: usize,
) -> Measured {
    (
        register,
        after,
        one_update,
        format!("{received}/{n}"),
        Memory::now(),
    )
}

/// The end of registering `n` watches on etcd-client's one stream: waits until etcd created
/// them all, stops the clock, then measures one update and every update on the stream.
pub(crate) async fn created_then_updates(
    mut watch: etcd_client::WatchStream,
    started: Started,
    endpoint: &str,
    root: &str,
    n: usize,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let mut created = 0;
    while created < n {
        let response = watch.message().await?.ok_or("watch stream ended")?;
        if response.created() {
            created += 1;
        }
    }
    let register = started.stop();
    let after = Memory::now();
    exit_after_register(register);

    let (one_update, received) = updates_on_one_stream(&mut watch, endpoint, root, n).await?;
    Ok(measured(register, after, one_update, received, n))
}
