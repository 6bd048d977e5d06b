//! What sits between the tests' clients and etcd: nothing, etcd's gRPC proxy
//! (`etcd grpc-proxy start`), or its TCP gateway (`etcd gateway start`).
//!
//! `ETCD_FRONT=grpc-proxy` or `ETCD_FRONT=gateway` puts one in front of every cluster a test
//! starts, so the same test files run through it: `Etcd::client()` then talks to the front,
//! while `etcdctl` and `Etcd::endpoint(i)` still reach the members themselves (the ground truth).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_config::{Client, ConnectOptions};

/// The component in front of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    /// Clients talk to the members.
    Direct,
    /// etcd's gRPC proxy: it terminates gRPC and coalesces watches of the same range.
    GrpcProxy,
    /// etcd's TCP gateway: it forwards connections to the members as they are.
    Gateway,
}

impl Front {
    /// The front `ETCD_FRONT` names (`grpc-proxy`, `gateway`), else `Direct`.
    pub fn from_env() -> Front {
        match std::env::var("ETCD_FRONT").as_deref() {
            Ok("grpc-proxy") => Front::GrpcProxy,
            Ok("gateway") => Front::Gateway,
            Ok("") | Ok("direct") | Err(_) => Front::Direct,
            Ok(other) => panic!("ETCD_FRONT={other}: expected grpc-proxy, gateway or direct"),
        }
    }

    /// The `etcd` subcommand that starts it.
    fn subcommand(self) -> Option<&'static str> {
        match self {
            Front::Direct => None,
            Front::GrpcProxy => Some("grpc-proxy"),
            Front::Gateway => Some("gateway"),
        }
    }
}

/// A running proxy or gateway process.
pub struct FrontProcess {
    pub kind: Front,
    pub port: u16,
    child: Child,
}

impl FrontProcess {
    /// Starts `kind` in front of `members` (client ports) and waits until a read through it
    /// succeeds. `None` for [`Front::Direct`].
    pub async fn start(kind: Front, members: &[u16], dir: &Path) -> Option<FrontProcess> {
        let subcommand = kind.subcommand()?;
        let port = super::free_port();
        let endpoints = members
            .iter()
            .map(|p| match kind {
                Front::GrpcProxy => format!("http://127.0.0.1:{p}"),
                _ => format!("127.0.0.1:{p}"),
            })
            .collect::<Vec<_>>()
            .join(",");
        let log_path = dir.join(format!("{subcommand}.log"));
        let log = fs::File::create(&log_path).expect("front log file");
        let mut command = Command::new(super::etcd_bin());
        command
            .args([subcommand, "start"])
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!("--listen-addr=127.0.0.1:{port}"));
        if kind == Front::GrpcProxy {
            command.arg(format!(
                "--data-dir={}",
                dir.join("grpc-proxy-data").display()
            ));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start etcd's proxy");
        let front = FrontProcess { kind, port, child };
        let options = ConnectOptions::default()
            .dial_timeout(Duration::from_millis(500))
            .request_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(client) = Client::connect([front.endpoint()], options.clone()).await {
                match client.kv().get("/front-probe").await {
                    // With auth on, an anonymous read is refused: the front is up.
                    Ok(_) | Err(etcd_config::Error::Server { .. }) => return Some(front),
                    Err(_) => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "{subcommand} did not start:\n{}",
                fs::read_to_string(&log_path).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FrontProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
