//! Three clients, one process each: etcd-config, Go's clientv3 (etcd's own client, built from
//! Debian's etcd source by `scripts/bench`) and etcd-client, doing the same cases against the
//! same etcd, in rounds that rotate which goes first. A process per client lets each be
//! charged its own CPU time (getrusage: user + system, every thread).
//!
//! The Rust clients run once on a current-thread tokio runtime and once on a multi-thread one:
//! on the second, each call hands off between worker threads (the caller, tonic's channel
//! worker, hyper's connection task), and on 2 cores that costs more than the client itself.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use etcd_client::{Txn, TxnOp};
use etcd_config::KeyRange;

/// The cases: name in the table, name on the command line, how many operations (for the
/// throughput case: rounds of 64 × 200 gets).
fn cases(n: usize) -> [(&'static str, &'static str, usize); 4] {
    [
        ("get one key", "get", n),
        ("put one key", "put", n),
        ("txn of 20 puts", "txn", n / 2),
        ("64 concurrent gets (throughput)", "concurrent", 2),
    ]
}

/// What one child measured.
#[derive(Clone, Copy, Default)]
struct Measured {
    /// Median latency (µs), or operations per second for the throughput case.
    value: f64,
    cpu_us_per_op: f64,
}

pub(crate) struct ClientRow {
    name: &'static str,
    throughput: bool,
    /// etcd-config, Go, etcd-client.
    clients: [Measured; 3],
}

const WHO: [&str; 3] = ["etcd-config", "go", "etcd-client"];

/// Runs every case `rounds` times for each client, each in a process of its own, the Rust
/// clients on a tokio runtime of `flavor` (`current-thread` or `multi-thread`).
pub(crate) fn run(
    endpoint: &str,
    go: &Path,
    flavor: &str,
    n: usize,
    rounds: usize,
) -> Vec<ClientRow> {
    let mut rows = Vec::new();
    for (name, case, count) in cases(n) {
        let mut seen: [Vec<Measured>; 3] = Default::default();
        for round in 0..rounds {
            for k in 0..3 {
                let who = (round + k) % 3;
                let output = if WHO[who] == "go" {
                    Command::new(go)
                        .args([endpoint, case, &count.to_string()])
                        .output()
                } else {
                    Command::new(std::env::current_exe().expect("own path"))
                        .args([
                            "client",
                            flavor,
                            WHO[who],
                            endpoint,
                            case,
                            &count.to_string(),
                        ])
                        .output()
                }
                .expect("client process");
                assert!(output.status.success(), "{} {case}: {output:?}", WHO[who]);
                let text = String::from_utf8_lossy(&output.stdout);
                let line = text.lines().last().unwrap_or_default();
                let json: serde_json::Value = serde_json::from_str(line).expect("one JSON line");
                let value = if case == "concurrent" {
                    json["ops_per_s"].as_f64()
                } else {
                    json["median_us"].as_f64()
                };
                seen[who].push(Measured {
                    value: value.unwrap_or(0.0),
                    cpu_us_per_op: json["cpu_us_per_op"].as_f64().unwrap_or(0.0),
                });
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let clients = seen.map(|runs| Measured {
            value: median(runs.iter().map(|m| m.value).collect()),
            cpu_us_per_op: median(runs.iter().map(|m| m.cpu_us_per_op).collect()),
        });
        println!("clients ({flavor}): {name} done");
        rows.push(ClientRow {
            name,
            throughput: case == "concurrent",
            clients,
        });
    }
    rows
}

/// The table of the client-process comparison, the Rust clients on a `flavor` runtime.
pub(crate) fn table(flavor: &str, rows: &[ClientRow]) -> String {
    let mut out = format!(
        "| case (one process per client; Rust on a {flavor} runtime) | etcd-config | Go clientv3 | etcd-client | ours/Go | ours/etcd-client | CPU µs/op: ours | Go | etcd-client |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let [ours, go, theirs] = row.clients;
        let (unit, vs_go, vs_theirs) = if row.throughput {
            ("ops/s", go.value / ours.value, theirs.value / ours.value)
        } else {
            ("µs", ours.value / go.value, ours.value / theirs.value)
        };
        out.push_str(&format!(
            "| {} | {:.0} {unit} | {:.0} {unit} | {:.0} {unit} | {vs_go:.3} | {vs_theirs:.3} | {:.1} | {:.1} | {:.1} |\n",
            row.name,
            ours.value,
            go.value,
            theirs.value,
            ours.cpu_us_per_op,
            go.cpu_us_per_op,
            theirs.cpu_us_per_op
        ));
    }
    out.push_str(
        "\nRatios are of medians over rounds (time per operation for every row, so below 1.0 \
         means etcd-config is faster); CPU is the client process's user + system time per \
         operation.\n",
    );
    out
}

/// The process's user + system CPU time so far, in µs.
pub(crate) fn cpu_us() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage, RUSAGE_SELF.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let micros = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// One client, in the child process.
#[derive(Clone)]
enum Side {
    Ours(etcd_config::Client),
    Theirs(Box<etcd_client::Client>),
}

impl Side {
    /// One operation of `op` (`get`, `put` or `txn`), the `i`-th.
    async fn run(&self, op: &str, i: usize) {
        match self {
            Side::Ours(client) => {
                let kv = client.kv();
                match op {
                    "get" => drop(kv.get(KeyRange::key("/bench/one")).await.unwrap()),
                    "put" => drop(kv.put("/bench/put", i.to_string()).await.unwrap()),
                    _ => {
                        let ops = (0..20).map(|k| {
                            etcd_config::client::TxnOp::put(
                                format!("/bench/txn/{k}"),
                                i.to_string(),
                            )
                        });
                        drop(kv.txn().and_then(ops).await.unwrap());
                    }
                }
            }
            Side::Theirs(client) => {
                let mut t = (**client).clone();
                match op {
                    "get" => drop(t.get("/bench/one", None).await.unwrap()),
                    "put" => drop(t.put("/bench/put", i.to_string(), None).await.unwrap()),
                    _ => {
                        let ops: Vec<TxnOp> = (0..20)
                            .map(|k| TxnOp::put(format!("/bench/txn/{k}"), i.to_string(), None))
                            .collect();
                        drop(t.txn(Txn::new().and_then(ops)).await.unwrap());
                    }
                }
            }
        }
    }
}

/// Child process: one client, one case; prints one JSON line like the Go program's.
pub(crate) async fn child(
    who: &str,
    endpoint: &str,
    case: &str,
    n: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let side = if who == "etcd-config" {
        Side::Ours(
            etcd_config::Client::connect([endpoint], etcd_config::ConnectOptions::default())
                .await?,
        )
    } else {
        Side::Theirs(Box::new(
            etcd_client::Client::connect([endpoint], None).await?,
        ))
    };
    side.run("put", 0).await; // the key the gets read
    if let Side::Ours(client) = &side {
        client.kv().put("/bench/one", "value").await?;
    }
    if case == "concurrent" {
        const TASKS: usize = 64;
        const PER_TASK: usize = 200;
        let round = || async {
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let side = side.clone();
                    tokio::spawn(async move {
                        for i in 0..PER_TASK {
                            side.run("get", i).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        };
        round().await; // warm-up
        let (start, cpu) = (Instant::now(), cpu_us());
        for _ in 0..n {
            round().await;
        }
        let ops = (n * TASKS * PER_TASK) as f64;
        report(
            0.0,
            0.0,
            ops / start.elapsed().as_secs_f64(),
            (cpu_us() - cpu) / ops,
        );
        return Ok(());
    }
    for i in 0..n / 10 + 5 {
        side.run(case, i).await;
    }
    let mut samples = Vec::with_capacity(n);
    let cpu = cpu_us();
    for i in 0..n {
        let t = Instant::now();
        side.run(case, i).await;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let spent = (cpu_us() - cpu) / n as f64;
    let summary = crate::summarize(samples);
    report(summary.median, summary.p99, 0.0, spent);
    Ok(())
}

fn report(median: f64, p99: f64, rate: f64, cpu: f64) {
    println!(
        "{}",
        serde_json::json!({ "median_us": median, "p99_us": p99, "ops_per_s": rate, "cpu_us_per_op": cpu })
    );
}
