//! Faults a test injects into a member's process: freezing and thawing it, stopping it
//! gracefully.

use std::process::Command;
use std::time::{Duration, Instant};

use super::Etcd;

impl Etcd {
    /// Stops member `i` with SIGTERM (etcd shuts down cleanly) and waits for it to exit.
    pub fn stop_gracefully(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.wait();
        }
    }

    /// Freezes member `i` (SIGSTOP): its ports stay open but it answers nothing.
    ///
    /// Returns once every thread of etcd is stopped. The kernel stops a process's threads one
    /// by one as they get scheduled, so on a busy machine etcd could otherwise still read and
    /// apply a request sent just after the signal.
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
        let pid = self.members[i].child.as_ref().expect("member running").id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(Instant::now() < deadline, "etcd member {i} did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Thaws a paused member (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self.members[i].child.as_ref().expect("member running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

/// True when every thread of process `pid` is in the stopped state (`T` in
/// `/proc/<pid>/task/<tid>/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            // The state follows the command name, which is in parentheses.
            .map(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
            .unwrap_or(true) // the thread exited meanwhile
    })
}
