//! Not a timed test: decoding and encoding a 20-field config allocates a bounded number of
//! times, counted by a global allocator that counts. A change that made decoding allocate per
//! byte or copy the whole input per field would fail here long before anyone timed it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use etcd_config::{from_key_values, to_key_values};
use etcd_config::{EtcdConfig, Live};

struct Counting;

thread_local! {
    /// This thread's allocations: tests run in parallel, each counts only its own.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/svc", rename_all = "kebab-case")]
struct Service {
    name: String,
    upstream: String,
    region: String,
    owner: String,
    log_level: String,
    port: u16,
    admin_port: u16,
    workers: u32,
    max_conns: u32,
    queue_depth: u32,
    retries: u8,
    ratio: f64,
    enabled: bool,
    tracing: bool,
    read_only: bool,
    timeout: Duration,
    idle: Duration,
    origins: Vec<String>,
    tags: Vec<String>,
    weights: Vec<u32>,
}

fn allocations(work: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    work();
    ALLOCATIONS.with(Cell::get) - before
}

/// Decoding 20 keys costs a few allocations per field (the field's own value, its key path),
/// not more.
#[test]
fn decoding_a_20_field_struct_allocates_a_bounded_number_of_times() {
    let value = Service {
        name: "svc".into(),
        upstream: "http://backend:8080".into(),
        region: "eu-west".into(),
        owner: "platform".into(),
        log_level: "info".into(),
        port: 8080,
        admin_port: 9090,
        workers: 8,
        max_conns: 1024,
        queue_depth: 128,
        retries: 3,
        ratio: 0.25,
        enabled: true,
        tracing: false,
        read_only: false,
        timeout: Duration::from_secs(30),
        idle: Duration::from_millis(1500),
        origins: vec!["https://a.example".into(), "https://b.example".into()],
        tags: vec!["prod".into(), "edge".into()],
        weights: vec![1, 2, 3],
    };
    let stored = to_key_values(&value).unwrap();
    let decoded = allocations(|| {
        let back: Service =
            from_key_values(stored.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, value);
    });
    let encoded = allocations(|| {
        to_key_values(&value).unwrap();
    });
    eprintln!("decode: {decoded} allocations, encode: {encoded}");
    assert!(
        decoded <= 20 * 8,
        "decoding allocated {decoded} times for 20 fields"
    );
    assert!(
        encoded <= 20 * 8,
        "encoding allocated {encoded} times for 20 fields"
    );
}

/// `Live::read` is the hot-path read: a million of them allocate nothing (`get` clones an
/// `Arc`, which does not allocate either, but writes a shared counter).
#[test]
fn reading_a_live_config_allocates_nothing() {
    #[derive(EtcdConfig, Debug, Clone, PartialEq)]
    #[etcd(prefix = "/hot")]
    struct Hot {
        port: u16,
        name: String,
    }
    let live = Live::fixed(Hot {
        port: 8080,
        name: "edge".into(),
    });
    let _ = live.read().port; // the first guard may set up this thread's slot
    let mut sum = 0u64;
    let counted = allocations(|| {
        for _ in 0..1_000_000 {
            let value = live.read();
            sum += u64::from(value.port) + value.name.len() as u64;
        }
    });
    assert_eq!(sum, 1_000_000 * 8084);
    assert_eq!(counted, 0, "Live::read allocated");
    let selected = live.select(|c| c.port);
    let counted = allocations(|| {
        for _ in 0..1000 {
            assert_eq!(*selected.read(), 8080);
        }
    });
    assert_eq!(counted, 0, "Selected::read allocated");
}
