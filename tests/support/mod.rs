//! A real etcd for the tests: started on free loopback ports in a temporary directory, checked
//! until it answers, and killed when the handle is dropped (also when a test panics).
//!
//! The binary is `$ETCD_BIN`, else `etcd` on `PATH`. No mocks, no docker.

#![allow(dead_code, unreachable_pub)]

mod certs;
mod freeze;
mod front;
mod members;
mod metrics;
mod netfault;
mod ports;
mod process;

pub use front::{Front, FrontProcess};
pub use netfault::PeerNet;
pub use ports::free_port;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

#[cfg(feature = "tls")]
use etcd_config::TlsOptions;
use etcd_config::{Client, ConnectOptions};

/// The password the harness gives etcd's `root` user.
pub const ROOT_PASSWORD: &str = "root-password";

/// One etcd process.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// The peer port the other members dial: `peer_port`, or its fault proxy's.
    pub advertised_peer_port: u16,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

/// Certificates for a TLS cluster, written to the cluster's directory.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Whether etcd demands a client certificate (`--client-cert-auth`).
    pub client_cert_auth: bool,
}

/// A running etcd cluster of one or more members.
pub struct Etcd {
    pub members: Vec<Member>,
    pub tls: Option<TlsFiles>,
    /// The proxy or gateway in front of the members, if any (see [`Front`]).
    pub front: Option<FrontProcess>,
    /// The fault-injecting proxies between the members, with `Builder::peer_faults`.
    pub net: Option<PeerNet>,
    dir: tempfile::TempDir,
}

/// How to start a cluster.
#[derive(Default)]
pub struct Builder {
    members: usize,
    args: Vec<String>,
    tls: Option<bool>,
    front: Option<Front>,
    peer_faults: bool,
}

/// For a test that needs its clients to reach the members themselves (it kills one, or reads
/// a member's own counters): true, after saying so, when `ETCD_FRONT` puts a front in the way.
pub fn skip_behind_front(test: &str) -> bool {
    let front = Front::from_env();
    if front != Front::Direct {
        eprintln!("{test}: skipped behind {front:?} (needs direct members)");
    }
    front != Front::Direct
}

/// Waits until `done` holds, for at most `within`; panics with `what` and the last value seen.
pub async fn wait_until<T: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let seen = probe();
        if done(&seen) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn etcd_bin() -> String {
    std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".to_owned())
}

impl Builder {
    /// Extra command-line flags for every member, e.g. `--auth-token-ttl=1`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Route the members' peer traffic through fault-injecting proxies (see [`PeerNet`]).
    pub fn peer_faults(mut self) -> Self {
        self.peer_faults = true;
        self
    }

    /// Put `front` between clients and the members instead of what `ETCD_FRONT` says.
    pub fn front(mut self, front: Front) -> Self {
        self.front = Some(front);
        self
    }

    /// Serve clients over TLS; with `client_cert_auth`, require client certificates (mTLS).
    pub fn tls(mut self, client_cert_auth: bool) -> Self {
        self.tls = Some(client_cert_auth);
        self
    }

    pub async fn start(self) -> Etcd {
        // Data on tmpfs where there is one: etcd fsyncs every write, and the tests do not
        // measure the disk.
        let base = Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::Builder::new()
                .prefix("etcd-test-")
                .tempdir_in(base)
        } else {
            tempfile::Builder::new().prefix("etcd-test-").tempdir()
        }
        .expect("temporary directory");

        let tls = self
            .tls
            .map(|client_cert_auth| certs::make_certs(dir.path(), client_cert_auth));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut members: Vec<Member> = (0..self.members.max(1))
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                advertised_peer_port: 0,
                args: Vec::new(),
                child: None,
                log: dir.path().join(format!("m{i}.log")),
            })
            .collect();
        for m in &mut members {
            m.advertised_peer_port = if self.peer_faults {
                free_port()
            } else {
                m.peer_port
            };
        }
        let net = if self.peer_faults {
            let listen: Vec<u16> = members.iter().map(|m| m.advertised_peer_port).collect();
            let forward: Vec<u16> = members.iter().map(|m| m.peer_port).collect();
            Some(PeerNet::start(&listen, &forward).await)
        } else {
            None
        };
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.advertised_peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("cluster-{}", free_port());
        for m in &mut members {
            let client_url = format!("{scheme}://127.0.0.1:{}", m.client_port);
            let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
            let advertised_peer_url = format!("http://127.0.0.1:{}", m.advertised_peer_port);
            m.args = vec![
                format!("--name={}", m.name),
                format!("--data-dir={}", dir.path().join(&m.name).display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={advertised_peer_url}"),
                format!("--initial-cluster={initial_cluster}"),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".to_owned(),
                "--logger=zap".to_owned(),
                "--log-level=warn".to_owned(),
            ];
            if let Some(tls) = &tls {
                m.args
                    .push(format!("--cert-file={}", tls.server_cert.display()));
                m.args
                    .push(format!("--key-file={}", tls.server_key.display()));
                // etcd demands client certificates whenever it is given a trusted CA file.
                if tls.client_cert_auth {
                    m.args
                        .push(format!("--trusted-ca-file={}", tls.ca.display()));
                    m.args.push("--client-cert-auth".to_owned());
                }
            }
            m.args.extend(self.args.iter().cloned());
        }
        let front = match &tls {
            Some(_) => Front::Direct, // the fronts are started without TLS here
            None => self.front.unwrap_or_else(Front::from_env),
        };
        let mut etcd = Etcd {
            members,
            tls,
            front: None,
            net,
            dir,
        };
        for i in 0..etcd.members.len() {
            etcd.spawn(i);
        }
        for i in 0..etcd.members.len() {
            etcd.wait_ready(i).await;
        }
        if let Some(net) = &etcd.net {
            net.learn_ids(etcd.member_ids().await);
        }
        let ports: Vec<u16> = etcd.members.iter().map(|m| m.client_port).collect();
        etcd.front = FrontProcess::start(front, &ports, etcd.dir.path()).await;
        etcd
    }
}

impl Etcd {
    pub fn builder(members: usize) -> Builder {
        Builder {
            members,
            ..Builder::default()
        }
    }

    /// One member, plain HTTP, default flags.
    pub async fn single() -> Etcd {
        Etcd::builder(1).start().await
    }

    /// Three members, plain HTTP.
    pub async fn cluster() -> Etcd {
        Etcd::builder(3).start().await
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Options that reach this cluster (TLS files included) without credentials.
    pub fn options(&self) -> ConnectOptions {
        let options = ConnectOptions::default()
            .dial_timeout(Duration::from_secs(3))
            .request_timeout(Duration::from_secs(10));
        match &self.tls {
            #[cfg(not(feature = "tls"))]
            Some(_) => panic!("a cluster with TLS needs the cargo feature `tls`"),
            #[cfg(feature = "tls")]
            Some(tls) => options.with_tls(
                TlsOptions::new()
                    .ca_file(&tls.ca)
                    .client_identity(&tls.client_cert, &tls.client_key),
            ),
            None => options,
        }
    }

    /// Where clients of the tests connect: the front if there is one, else every member.
    pub fn client_endpoints(&self) -> Vec<String> {
        match &self.front {
            Some(front) => vec![front.endpoint()],
            None => self.endpoints(),
        }
    }

    /// Which front the clients go through.
    pub fn front_kind(&self) -> Front {
        self.front.as_ref().map_or(Front::Direct, |f| f.kind)
    }

    /// A client for every member (or the front), without credentials.
    pub async fn client(&self) -> Client {
        Client::connect(self.client_endpoints(), self.options())
            .await
            .expect("connect to test etcd")
    }

    /// A client for every member, authenticated as `user`.
    pub async fn client_as(&self, user: &str, password: &str) -> Client {
        Client::connect(
            self.client_endpoints(),
            self.options().with_user(user, password),
        )
        .await
        .expect("connect to test etcd as user")
    }

    /// Creates `root` (role `root`) and enables auth; returns a client logged in as root.
    pub async fn enable_auth(&self) -> Client {
        let client = self.client().await;
        let auth = client.auth();
        auth.user_add("root", ROOT_PASSWORD)
            .await
            .expect("add root");
        auth.role_add("root").await.ok(); // etcd 3.4 creates it with the user; 3.5 does not
        auth.user_grant_role("root", "root")
            .await
            .expect("grant root");
        auth.auth_enable().await.expect("enable auth");
        self.client_as("root", ROOT_PASSWORD).await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
