//! Network faults between etcd members, on loopback only.
//!
//! With `Builder::peer_faults()`, every member advertises a peer address that is a small TCP
//! proxy in front of its real peer port. etcd names the sending member in every peer request
//! (the `X-Server-From` header, its member id in hex), so the proxy knows who is talking to
//! whom and can cut a member off from its peers in both directions while its clients still
//! reach it, or slow all peer traffic down.
//!
//! A cut closes the connections that cross it; new ones are accepted and then left unanswered
//! until the cut heals, as a dropped network would leave them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Default, Clone)]
struct Faults {
    /// Member index by etcd member id.
    ids: HashMap<u64, usize>,
    /// Members cut off from every peer.
    isolated: HashSet<usize>,
    /// Added before every chunk of peer traffic is passed on.
    delay: Duration,
}

impl Faults {
    /// Whether traffic between the dialing member (by member id) and member `to` is cut. The
    /// id is looked up now: connections opened before the ids were known are cut too.
    fn cut(&self, from: Option<u64>, to: usize) -> bool {
        let from = from.and_then(|id| self.ids.get(&id).copied());
        self.isolated.contains(&to) || from.is_some_and(|f| f != to && self.isolated.contains(&f))
    }
}

/// The peer proxies of one cluster. Dropping it stops them.
pub struct PeerNet {
    faults: watch::Sender<Faults>,
    listeners: Vec<JoinHandle<()>>,
    /// How many peer connections were cut or held, for the robustness summary.
    pub cuts: Arc<Mutex<u64>>,
}

impl PeerNet {
    /// Starts one proxy per member: listening on `listen[i]`, forwarding to `forward[i]`.
    pub async fn start(listen: &[u16], forward: &[u16]) -> PeerNet {
        let (faults, _) = watch::channel(Faults::default());
        let cuts = Arc::new(Mutex::new(0));
        let mut listeners = Vec::new();
        for (to, (&port, &target)) in listen.iter().zip(forward).enumerate() {
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind peer proxy");
            let faults = faults.subscribe();
            let cuts = cuts.clone();
            listeners.push(tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(relay(conn, target, to, faults.clone(), cuts.clone()));
                }
            }));
        }
        PeerNet {
            faults,
            listeners,
            cuts,
        }
    }

    /// Tells the proxies which member id is which member.
    pub fn learn_ids(&self, ids: HashMap<u64, usize>) {
        self.faults.send_modify(|f| f.ids = ids);
    }

    /// Cuts member `i` off from every peer, both ways; its clients still reach it.
    pub fn isolate(&self, i: usize) {
        self.faults.send_modify(|f| {
            f.isolated.insert(i);
        });
    }

    /// Ends every cut.
    pub fn heal(&self) {
        self.faults.send_modify(|f| f.isolated.clear());
    }

    /// Delays every chunk of peer traffic by `delay` (zero to stop).
    pub fn delay(&self, delay: Duration) {
        self.faults.send_modify(|f| f.delay = delay);
    }
}

impl Drop for PeerNet {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// The member id in `X-Server-From` of the request head in `head`, if any.
fn sender(head: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(head);
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-server-from")
            .then(|| u64::from_str_radix(value.trim(), 16).ok())?
    })
}

/// Passes one peer connection on to member `to`, unless (or until) a fault cuts it.
async fn relay(
    mut inbound: TcpStream,
    target: u16,
    to: usize,
    mut faults: watch::Receiver<Faults>,
    cuts: Arc<Mutex<u64>>,
) {
    // The request head names the sender.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match inbound.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let from = sender(&head);
    if faults.borrow().cut(from, to) {
        *cuts.lock().unwrap() += 1;
        // Unanswered until the cut heals, then dropped.
        while faults.borrow_and_update().cut(from, to) {
            if faults.changed().await.is_err() {
                return;
            }
        }
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    if outbound.write_all(&head).await.is_err() {
        return;
    }
    let (mut in_read, mut in_write) = inbound.into_split();
    let (mut out_read, mut out_write) = outbound.into_split();
    let delays = faults.clone();
    let delay = || delays.borrow().delay;
    let forward = pump(&mut in_read, &mut out_write, delay);
    let backward = pump(&mut out_read, &mut in_write, delay);
    let cut = async {
        loop {
            if faults.changed().await.is_err() {
                return std::future::pending().await;
            }
            if faults.borrow_and_update().cut(from, to) {
                *cuts.lock().unwrap() += 1;
                return;
            }
        }
    };
    tokio::select! {
        () = forward => {}
        () = backward => {}
        () = cut => {}
    }
}

async fn pump(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    delay: impl Fn() -> Duration,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let pause = delay();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
