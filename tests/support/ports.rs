//! Loopback ports for test members, handed out once per process.

use std::fs;
use std::net::TcpListener;

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
