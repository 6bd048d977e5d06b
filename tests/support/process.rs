//! The etcd processes of a test cluster: started on their data and ports, waited for until they
//! answer, killed and restarted, and killed (thawed first) when the cluster is dropped; and
//! `etcdctl` against the cluster.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_config::Client;

use super::{etcd_bin, Etcd};

impl Etcd {
    pub(super) fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let child = Command::new(etcd_bin())
            .args(&m.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}` (set ETCD_BIN): {e}", etcd_bin()));
        m.child = Some(child);
    }

    /// Waits until member `i` answers with a leader known, or panics with its log.
    pub(super) async fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoint = self.endpoint(i);
        let options = self.options().dial_timeout(Duration::from_millis(500));
        loop {
            if let Some(status) = self.members[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "etcd {} exited with {status}:\n{}",
                    self.members[i].name,
                    self.log(i)
                );
            }
            if let Ok(client) = Client::connect([&endpoint], options.clone()).await {
                match client.maintenance().status().await {
                    Ok(status) if status.leader != 0 => return,
                    // A member with auth on may refuse an anonymous status: it is up.
                    Err(etcd_config::Error::Server { .. }) => return,
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd {} did not become ready:\n{}",
                    self.members[i].name,
                    self.log(i)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills member `i` (SIGKILL: no goodbye to its peers) and waits for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data and ports, and waits until it answers.
    pub async fn restart(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// The member's log so far, for failure messages.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// Runs `etcdctl` (the one next to the etcd binary, else on PATH) against this cluster.
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        let command = self.etcdctl_command();
        Command::new(&command[0])
            .env("ETCDCTL_API", "3")
            .args(&command[1..])
            .args(args)
            .output()
            .expect("run etcdctl")
    }

    /// `etcdctl` (the one next to the etcd binary, else on PATH) and `--endpoints` of every
    /// member, for a command to spawn.
    pub fn etcdctl_command(&self) -> Vec<String> {
        let bin = Path::new(&etcd_bin())
            .parent()
            .map(|dir| dir.join("etcdctl"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("etcdctl"));
        vec![
            bin.display().to_string(),
            format!("--endpoints={}", self.endpoints().join(",")),
        ]
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // A paused member ignores SIGKILL until thawed on some kernels; thaw it first.
            if self.members[i].child.is_some() {
                let _ = Command::new("kill")
                    .args([
                        "-CONT",
                        &self.members[i].child.as_ref().unwrap().id().to_string(),
                    ])
                    .status();
            }
            self.stop(i);
        }
    }
}
