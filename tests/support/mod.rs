//! A real etcd for the tests: started on free loopback ports in a temporary directory, checked
//! until it answers, and killed when the handle is dropped (also when a test panics).
//!
//! The binary is `$ETCD_BIN`, else `etcd` on `PATH`. No mocks, no docker.

#![allow(dead_code, unreachable_pub)]

mod certs;
mod freeze;
mod front;
mod metrics;
mod netfault;

pub use front::{Front, FrontProcess};
pub use netfault::PeerNet;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_config::{Client, ConnectOptions, TlsOptions};

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

/// A loopback port nobody listens on now, and that no other test in this process is given.
///
/// Asking the kernel for port 0 is not enough: the port comes from the ephemeral range, so
/// between our probe and etcd's `bind`, any outgoing connection (etcd's own peers included) can
/// take it, and a stopped member's port can be taken before it restarts. Ports here come from
/// below (or above) the kernel's ephemeral range instead, handed out once per process from an
/// offset that depends on the process id, and probed before use.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);

    let (low, high) = outside_ephemeral_range();
    let span = u32::from(high - low);
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + ((offset + step) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// The widest port range outside `net.ipv4.ip_local_port_range` (Linux default 32768-60999),
/// never below 10000.
fn outside_ephemeral_range() -> (u16, u16) {
    let (first, last) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .unwrap_or((32768, 60999));
    let below = (10000, first.max(10000));
    let above = (last.saturating_add(1).max(10000), u16::MAX);
    let best = if below.1 - below.0 >= above.1 - above.0 {
        below
    } else {
        above
    };
    // With an ephemeral range covering nearly everything, probing is all that is left.
    if best.1 - best.0 < 1000 {
        (20000, 30000)
    } else {
        best
    }
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

    fn spawn(&mut self, i: usize) {
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
    async fn wait_ready(&mut self, i: usize) {
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

    /// Member index by etcd member id, from the member list (names are `m<index>`).
    pub async fn member_ids(&self) -> std::collections::HashMap<u64, usize> {
        let client = Client::connect(self.endpoints(), self.options())
            .await
            .expect("connect for the member list");
        let members = client.cluster().member_list().await.expect("member list");
        members
            .members
            .iter()
            .filter_map(|m| Some((m.id, m.name.strip_prefix('m')?.parse().ok()?)))
            .collect()
    }

    /// The index of the member that is leader now, as member `asked` sees it.
    pub async fn leader(&self, asked: usize) -> Option<usize> {
        let options = self
            .options()
            .dial_timeout(Duration::from_millis(300))
            .request_timeout(Duration::from_secs(1));
        let one = Client::connect([self.endpoint(asked)], options)
            .await
            .ok()?;
        let status = one.maintenance().status().await.ok()?;
        (status.leader != 0).then_some(())?;
        self.member_ids().await.get(&status.leader).copied()
    }

    /// Cuts member `i` off from its peers (both ways) while its clients still reach it.
    pub fn isolate(&self, i: usize) {
        self.net
            .as_ref()
            .expect("built with peer_faults()")
            .isolate(i);
    }

    /// Ends every cut between members.
    pub fn heal(&self) {
        self.net.as_ref().expect("built with peer_faults()").heal();
    }

    /// Which member (index into `members`) has etcd member ID `member_id`; members that are
    /// stopped or frozen are skipped.
    pub async fn member_index(&self, member_id: u64) -> usize {
        let options = self
            .options()
            .dial_timeout(Duration::from_millis(300))
            .request_timeout(Duration::from_secs(1));
        for i in 0..self.members.len() {
            let Ok(one) = Client::connect([self.endpoint(i)], options.clone()).await else {
                continue;
            };
            if let Ok(status) = one.maintenance().status().await {
                if status.header.member_id == member_id {
                    return i;
                }
            }
        }
        panic!("no running member has id {member_id:x}");
    }

    /// The member `client` is talking to now, from the header of a read.
    pub async fn member_in_use(&self, client: &Client) -> usize {
        let header = client
            .kv()
            .get("/probe")
            .serializable()
            .await
            .unwrap()
            .header;
        self.member_index(header.member_id).await
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

    pub fn dir(&self) -> &Path {
        self.dir.path()
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
