//! The faults, one after another: kill a member and bring it back, kill the leader, freeze a
//! member (SIGSTOP), cut a member off from its peers, move the leadership, compact near the
//! head. Each is undone before the next.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use etcd_config::Client;

use super::recorder::Recorder;
use super::support::{Etcd, ROOT_PASSWORD};

const KINDS: [&str; 6] = [
    "kill",
    "kill-leader",
    "freeze",
    "partition",
    "move-leader",
    "compact",
];

pub(crate) struct Nemesis {
    root: Client,
    /// SIGKILL members; else SIGTERM (see `kill`).
    hard_kill: bool,
    turn: usize,
    injected: BTreeMap<&'static str, u64>,
    /// Revisions compacted at.
    pub(crate) compactions: Vec<i64>,
}

impl Nemesis {
    /// `version` is etcd's: on 3.5.0 to 3.5.2, members are stopped with SIGTERM, because a
    /// SIGKILL under load hits etcd's own data-inconsistency bug there (fixed in 3.5.3; the
    /// suite found it: a restarted member applies a txn again, and its revisions run ahead of
    /// the others').
    pub(crate) fn new(root: &Client, version: &str) -> Nemesis {
        let affected = ["3.5.0", "3.5.1", "3.5.2"].contains(&version);
        Nemesis {
            root: root.clone(),
            hard_kill: !affected,
            turn: 0,
            injected: BTreeMap::new(),
            compactions: Vec::new(),
        }
    }

    /// `kill=3 kill-leader=2 ...`
    pub(crate) fn summary(&self) -> String {
        KINDS
            .iter()
            .map(|k| format!("{k}={}", self.injected.get(k).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Injects the next fault, waits, undoes it, and lets the cluster settle.
    pub(crate) async fn next_fault(&mut self, etcd: &mut Etcd, recorder: &Recorder) {
        let kind = KINDS[self.turn % KINDS.len()];
        let member = (self.turn / KINDS.len()) % etcd.members.len();
        self.turn += 1;
        let done = match kind {
            "kill" => {
                self.kill(etcd, member);
                tokio::time::sleep(Duration::from_secs(2)).await;
                etcd.restart(member).await;
                true
            }
            "kill-leader" => match leader(etcd).await {
                Some(leader) => {
                    self.kill(etcd, leader);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    etcd.restart(leader).await;
                    true
                }
                None => false,
            },
            "freeze" => {
                etcd.pause(member);
                tokio::time::sleep(Duration::from_secs(3)).await;
                etcd.resume(member);
                true
            }
            "partition" => {
                etcd.isolate(member);
                tokio::time::sleep(Duration::from_secs(4)).await;
                etcd.heal();
                true
            }
            "move-leader" => self.move_leader(etcd).await,
            "compact" => {
                // Near the head, where the slow readers are still behind.
                let head = recorder.last.load(std::sync::atomic::Ordering::Acquire);
                match self.root.kv().compact(head).await {
                    Ok(_) => {
                        self.compactions.push(head);
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => unreachable!(),
        };
        if done {
            *self.injected.entry(kind).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    fn kill(&self, etcd: &mut Etcd, member: usize) {
        if self.hard_kill {
            etcd.stop(member);
        } else {
            etcd.stop_gracefully(member);
        }
    }

    /// Whether members are killed with SIGKILL.
    pub(crate) fn hard_kill(&self) -> bool {
        self.hard_kill
    }

    /// Asks the leader to hand leadership to another member.
    async fn move_leader(&self, etcd: &Etcd) -> bool {
        let Some(leader) = leader(etcd).await else {
            return false;
        };
        let ids = etcd.member_ids().await;
        let Some((&target, _)) = ids.iter().find(|(_, &i)| i != leader) else {
            return false;
        };
        let options = etcd
            .options()
            .request_timeout(Duration::from_secs(5))
            .with_user("root", ROOT_PASSWORD);
        let Ok(at_leader) = Client::connect([etcd.endpoint(leader)], options).await else {
            return false;
        };
        at_leader.maintenance().move_leader(target).await.is_ok()
    }
}

/// The leader, as the first member that answers sees it.
async fn leader(etcd: &Etcd) -> Option<usize> {
    for i in 0..etcd.members.len() {
        if let Some(leader) = etcd.leader(i).await {
            return Some(leader);
        }
    }
    None
}

/// One txn through `etcdctl txn` setting all four fields to `generation`; the revision etcd
/// acknowledged, or `None` if etcdctl failed (the write may or may not have been applied).
pub(crate) fn etcdctl_txn(etcdctl: &[String], prefix: &str, generation: u64) -> Option<i64> {
    use std::io::Write as _;
    let mut child = Command::new(&etcdctl[0])
        .args(&etcdctl[1..])
        .args(["txn", "-w", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let ops: String = ["a", "b", "c", "d"]
        .iter()
        .map(|f| format!("put {prefix}{f} {generation}\n"))
        .collect();
    // No compares, the puts, no failure ops.
    let script = format!("\n{ops}\n\n");
    child.stdin.take()?.write_all(script.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    (out.status.success() && response["succeeded"] == true)
        .then(|| response["header"]["revision"].as_i64())
        .flatten()
}
