//! Peak memory and CPU of the 5,000-entry config cases: each side loads the config, or changes
//! one entry, 20 times in a process of its own. Memory is the process's peak resident size
//! (`VmHWM`) less its resident size once connected, before the first operation; CPU is the
//! client process's time per operation, which the side-by-side timings mix with etcd's.

use std::process::Command;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use etcd_config::{ChangeNote, Store};

use crate::large::{parse_by_hand, route, Large, PREFIX};
use crate::measure::status_kib;

/// Operations per child process.
const ROUNDS: usize = 20;

/// Child process: `etcd-config-bench peak WHO OP ENDPOINT`; prints the peak growth in bytes and
/// the process's CPU time per operation in µs (user + system, every thread: the client's own
/// work, with etcd's in a process of its own).
pub(crate) async fn child(
    who: &str,
    op: &str,
    endpoint: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let ours =
        etcd_config::Client::connect([endpoint], etcd_config::ConnectOptions::default()).await?;
    let mut theirs = etcd_client::Client::connect([endpoint], None).await?;
    let store = Store::new(ours);
    let before = status_kib("VmRSS:");
    let cpu = crate::clients::cpu_us();
    for i in 0..ROUNDS {
        match (who, op) {
            ("etcd-config", "load") => {
                let large: Large = store.load().await?;
                std::hint::black_box(large);
            }
            ("etcd-config", _) => {
                let value = serde_json::to_string(&route(i, 50))?;
                let path = format!("routes.r{i:05}");
                store
                    .set::<Large>(&[(path.as_str(), value.as_str())], &ChangeNote::by("bench"))
                    .await?;
            }
            (_, "load") => {
                let r = theirs
                    .get(PREFIX, Some(GetOptions::new().with_prefix()))
                    .await?;
                std::hint::black_box(parse_by_hand(r.kvs()));
            }
            _ => {
                let r = theirs
                    .get(PREFIX, Some(GetOptions::new().with_prefix()))
                    .await?;
                let revision = r.header().map_or(0, |h| h.revision());
                let mut routes = parse_by_hand(r.kvs());
                let name = format!("r{i:05}");
                routes.insert(name.clone(), route(i, 60));
                let value = serde_json::to_string(&routes[&name])?;
                let guard =
                    Compare::mod_revision(PREFIX, CompareOp::Less, revision + 1).with_prefix();
                let put = TxnOp::put(format!("{PREFIX}{name}"), value, None);
                theirs.txn(Txn::new().when([guard]).and_then([put])).await?;
            }
        }
    }
    let cpu = (crate::clients::cpu_us() - cpu) / ROUNDS as f64;
    let peak = status_kib("VmHWM:").saturating_sub(before);
    println!("{} {cpu:.0}", peak * 1024);
    Ok(())
}

/// The peak-memory and CPU rows, as a table: each case run in fresh processes, three times per
/// side, alternating; medians.
pub(crate) fn table(endpoint: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut text = String::from(
        "| 5,000-entry config (process peak less its size before; client CPU per operation) | etcd-config | etcd-client | ratio | etcd-config CPU | etcd-client CPU | ratio |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (op, name) in [("load", "load"), ("change", "change 1 of 5,000 entries")] {
        let mut peaks: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        let mut cpus: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (side, who) in ["etcd-config", "etcd-client"].into_iter().enumerate() {
                let out = Command::new(std::env::current_exe()?)
                    .args(["peak", who, op, endpoint])
                    .output()?;
                if !out.status.success() {
                    return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
                }
                let text = String::from_utf8(out.stdout)?;
                let mut fields = text.split_whitespace();
                let mut next = || fields.next().ok_or("peak child printed too little");
                peaks[side].push(next()?.parse()?);
                cpus[side].push(next()?.parse()?);
            }
        }
        let median = |v: &mut Vec<u64>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let [ours, theirs] = peaks.each_mut().map(median);
        let [our_cpu, their_cpu] = cpus.each_mut().map(median);
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        text.push_str(&format!(
            "| {name} | {:.1} MiB | {:.1} MiB | {:.2} | {our_cpu} µs | {their_cpu} µs | {:.2} |\n",
            mib(ours),
            mib(theirs),
            ratio(ours, theirs),
            ratio(our_cpu, their_cpu),
        ));
    }
    Ok(text)
}
