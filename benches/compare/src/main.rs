//! etcd-config against the etcd-client crate, side by side in one process against one etcd.
//!
//! Each case runs the same work both ways, interleaved (ours, theirs, theirs, ours, ...) so
//! that drift in the machine or in etcd affects both alike, and reports the median and p99 of
//! each and the ratio of medians (ours / theirs: below 1.0 means etcd-config is faster). The
//! fan-out cases run in child processes of their own so each measures its own memory.
//!
//! `bash scripts/bench` builds and runs it; the table goes to stdout and to `BENCH_OUT`
//! (default `target/bench-results.md`).

mod by_hand;
mod clients;
mod fanout;
mod large;
mod measure;
mod peak;
mod server;
mod work;

use std::fmt::Write as _;
use std::future::Future;
use std::time::Instant;

/// Timings of one case.
struct Row {
    name: String,
    ours: Summary,
    theirs: Summary,
    /// For throughput rows, the unit of the summaries is operations per second.
    throughput: bool,
}

#[derive(Clone, Copy)]
struct Summary {
    median: f64,
    p99: f64,
}

fn summarize(mut samples: Vec<f64>) -> Summary {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Summary {
        median: at(0.5),
        p99: at(0.99),
    }
}

/// Runs `ours` and `theirs` `n` times each, interleaved, after a warm-up; durations in µs.
async fn compare<A, FA, B, FB>(n: usize, mut ours: A, mut theirs: B) -> (Summary, Summary)
where
    A: FnMut(usize) -> FA,
    FA: Future<Output = ()>,
    B: FnMut(usize) -> FB,
    FB: Future<Output = ()>,
{
    for i in 0..n / 10 + 5 {
        ours(i).await;
        theirs(i).await;
    }
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let time = |start: Instant| start.elapsed().as_secs_f64() * 1e6;
        if i % 2 == 0 {
            let t = Instant::now();
            ours(i).await;
            a.push(time(t));
            let t = Instant::now();
            theirs(i).await;
            b.push(time(t));
        } else {
            let t = Instant::now();
            theirs(i).await;
            b.push(time(t));
            let t = Instant::now();
            ours(i).await;
            a.push(time(t));
        }
    }
    (summarize(a), summarize(b))
}

fn table(rows: &[Row], fanout: &[fanout::Report], machine: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {machine}\n");
    let _ = writeln!(
        out,
        "| case | etcd-config median | p99 | etcd-client median | p99 | ratio (ours/theirs) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let (unit, ratio) = if row.throughput {
            ("ops/s", row.theirs.median / row.ours.median)
        } else {
            ("µs", row.ours.median / row.theirs.median)
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} {unit} | {:.0} | {:.0} {unit} | {:.0} | {ratio:.3} |",
            row.name, row.ours.median, row.ours.p99, row.theirs.median, row.theirs.p99
        );
    }
    let _ = writeln!(
        out,
        "\nThroughput rows compare time per operation, so below 1.0 is still faster.\n"
    );
    let _ = writeln!(out, "| fan-out | watches | register all | client CPU to register | RSS before | RSS after | per watch (anonymous RSS) | the same, every value updated | heap per watch | one update's latency | all received |");
    let per_watch = |bytes: u64, r: &fanout::Report| bytes as f64 / 1024.0 / r.watches as f64;
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in fanout {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} s | {:.2} s | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.1} KiB | {:.2} KiB | {:.0} µs | {} |",
            r.who,
            r.watches,
            r.register.as_secs_f64(),
            r.register_cpu.as_secs_f64(),
            r.before.rss as f64 / 1048576.0,
            r.after.rss as f64 / 1048576.0,
            per_watch(r.after.anon.saturating_sub(r.before.anon), r),
            per_watch(r.updated.anon.saturating_sub(r.before.anon), r),
            per_watch(r.after.heap.saturating_sub(r.before.heap), r),
            r.one_update.as_secs_f64() * 1e6,
            r.all_received,
        );
    }
    let _ = writeln!(
        out,
        "\nPer watch: the growth of resident memory not backed by a file (heap, stacks), over \
         the watches: the code that registering pages in counts once, not per watch. Heap: \
         what glibc's allocator handed out and did not get back, chunk overhead included."
    );
    out
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpu}, {cores} cores")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("fanout") {
        // Child process: one fan-out measurement, printed as one JSON line.
        return fanout::child(&args[2], &args[3], args[4].parse()?).await;
    }
    if args.get(1).map(String::as_str) == Some("peak") {
        // Child process: the peak memory of one 5,000-entry config case, in bytes.
        return peak::child(&args[2], &args[3], &args[4]).await;
    }
    if args.get(1).map(String::as_str) == Some("client") {
        // Child process: one client doing one case on the runtime flavor asked for, printed
        // as one JSON line.
        let (who, endpoint, case) = (args[3].clone(), args[4].clone(), args[5].clone());
        let n: usize = args[6].parse()?;
        if args[2] == "current-thread" {
            return std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime
                    .block_on(clients::child(&who, &endpoint, &case, n))
                    .map_err(|e| e.to_string())
            })
            .join()
            .map_err(|_| "the client thread panicked")?
            .map_err(Into::into);
        }
        // On the multi-thread runtime the client runs in a spawned task, as a service's
        // handlers do: the body of `main` is the one future that runs outside the workers.
        return tokio::spawn(async move {
            clients::child(&who, &endpoint, &case, n)
                .await
                .map_err(|e| e.to_string())
        })
        .await?
        .map_err(Into::into);
    }

    let etcd = server::Etcd::start()?;
    let endpoint = etcd.endpoint();
    println!("etcd {} on {endpoint}", etcd.version());
    let ours =
        etcd_config::Client::connect([&endpoint], etcd_config::ConnectOptions::default()).await?;
    let theirs = etcd_client::Client::connect([&endpoint], None).await?;
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let n = if quick { 200 } else { 2000 };

    // BENCH_ONLY=large: the 5,000-entry config rows alone.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("large") {
        let rows = large::large(&ours, &theirs, if quick { 20 } else { 200 }).await;
        println!(
            "\n{}\n{}",
            table(&rows, &[], &machine()),
            peak::table(&endpoint)?
        );
        return Ok(());
    }
    let mut rows = Vec::new();
    rows.extend(work::raw(&ours, &theirs, n).await);
    rows.extend(work::typed(&ours, &theirs, n).await);
    rows.push(work::update_latency(&ours, &theirs, &endpoint, n / 4).await?);
    rows.push(work::concurrent_gets(&ours, &theirs, if quick { 3 } else { 7 }).await);
    rows.extend(large::large(&ours, &theirs, if quick { 20 } else { 200 }).await);

    let watches: usize = std::env::var("BENCH_WATCHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut reports = Vec::new();
    // etcd-config-shared: live configs sharing one watch of their parent (`Store::share_watch`);
    // etcd-config-watch: this crate's client with plain watches, no `Live`; etcd-client-by-hand:
    // etcd-client reading each config and watching it from the read's revision, a `Live`'s job.
    for who in [
        "etcd-config",
        "etcd-config-shared",
        "etcd-client",
        "etcd-config-watch",
        "etcd-client-by-hand",
    ] {
        reports.push(fanout::run_child(who, &endpoint, watches)?);
    }

    let mut text = table(&rows, &reports, &machine());
    text.push('\n');
    text.push_str(&peak::table(&endpoint)?);
    // With Go's clientv3 built (scripts/bench does), the three clients in processes of
    // their own: latency, throughput and CPU per operation.
    if let Some(go) = std::env::var_os("BENCH_GO") {
        let rounds = if quick { 3 } else { 7 };
        for flavor in ["current-thread", "multi-thread"] {
            let rows = clients::run(&endpoint, std::path::Path::new(&go), flavor, n, rounds);
            text.push('\n');
            text.push_str(&clients::table(flavor, &rows));
        }
    }
    println!("\n{text}");
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench-results.md".into());
    std::fs::write(&out, &text)?;
    println!("written to {out}");
    Ok(())
}
