//! The ground truth: `etcdctl watch` (etcd's own Go client) on the config's prefix, from a
//! revision on, restarted from the next revision whenever it exits. It runs apart from the
//! crate under test, so what it records is what etcd did.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::checker::Fields;

/// Revision → (field index → value) of every write under the prefix.
pub(crate) type Recorded = BTreeMap<i64, BTreeMap<usize, u64>>;

pub(crate) struct Recorder {
    pub(crate) recorded: Arc<Mutex<Recorded>>,
    /// The last revision recorded.
    pub(crate) last: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Starts recording keys `prefix` + `a`..`d` from revision `from`.
    pub(crate) fn start(etcdctl: Vec<String>, prefix: &str, from: i64) -> Recorder {
        let recorded = Arc::new(Mutex::new(Recorded::new()));
        let last = Arc::new(AtomicI64::new(from - 1));
        let stop = Arc::new(AtomicBool::new(false));
        let child = Arc::new(Mutex::new(None));
        let thread = {
            let (recorded, last, stop, child) =
                (recorded.clone(), last.clone(), stop.clone(), child.clone());
            let prefix = prefix.to_owned();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let next = last.load(Ordering::Acquire) + 1;
                    let spawned = Command::new(&etcdctl[0])
                        .args(&etcdctl[1..])
                        .args(["watch", "--prefix", &prefix, "-w", "json"])
                        .arg(format!("--rev={next}"))
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn();
                    let Ok(mut process) = spawned else {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    };
                    let stdout = process.stdout.take().expect("piped");
                    *child.lock().unwrap() = Some(process);
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        record(&line, &prefix, &recorded, &last);
                    }
                    if let Some(mut process) = child.lock().unwrap().take() {
                        let _ = process.kill();
                        let _ = process.wait();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Recorder {
            recorded,
            last,
            stop,
            child,
            thread: Some(thread),
        }
    }

    /// Waits until revision `revision` is recorded (at most `within`); true if it was.
    pub(crate) fn wait_for(&self, revision: i64, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while self.last.load(Ordering::Acquire) < revision {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops recording; returns the writes, each as its four fields.
    pub(crate) fn finish(mut self) -> BTreeMap<i64, Fields> {
        self.stop.store(true, Ordering::Release);
        if let Some(mut process) = self.child.lock().unwrap().take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let recorded = self.recorded.lock().unwrap();
        recorded
            .iter()
            .map(|(&revision, fields)| {
                // A field a write did not touch would show as u64::MAX: torn.
                let mut whole = [u64::MAX; 4];
                for (&i, &value) in fields {
                    whole[i] = value;
                }
                (revision, whole)
            })
            .collect()
    }
}

/// Records one line of `etcdctl watch -w json` output.
fn record(line: &str, prefix: &str, recorded: &Mutex<Recorded>, last: &AtomicI64) {
    let Ok(response) = serde_json::from_str::<serde_json::Value>(line) else {
        return;
    };
    let Some(events) = response["Events"].as_array() else {
        return;
    };
    let mut recorded = recorded.lock().unwrap();
    for event in events {
        let kv = &event["kv"];
        let revision = kv["mod_revision"].as_i64().unwrap_or(0);
        let key = kv["key"].as_str().map(base64).unwrap_or_default();
        let value = kv["value"].as_str().map(base64).unwrap_or_default();
        let field = String::from_utf8_lossy(&key)
            .strip_prefix(prefix)
            .and_then(|name| ["a", "b", "c", "d"].iter().position(|f| *f == name));
        let number = String::from_utf8_lossy(&value).parse::<u64>().ok();
        if let (Some(field), Some(number)) = (field, number) {
            recorded.entry(revision).or_default().insert(field, number);
        }
        last.fetch_max(revision, Ordering::AcqRel);
    }
}

/// Standard base64, as etcdctl prints bytes in JSON.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.bytes().filter_map(value).collect();
    sextets
        .chunks(4)
        .flat_map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &s)| acc | (u32::from(s) << (18 - 6 * i)));
            let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
            bytes.into_iter().take(chunk.len().saturating_sub(1))
        })
        .collect()
}

#[test]
fn base64_decodes() {
    assert_eq!(base64("L3IvYQ=="), b"/r/a");
    assert_eq!(base64("MTIz"), b"123");
    assert_eq!(base64("MQ=="), b"1");
}
