//! Sessions, locks and elections against a real etcd, and against Go's implementation of the
//! same: `etcdctl lock` and `etcdctl elect` contend with this crate for the same names, both
//! ways. A lost session is reported and fences its holder's writes.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_config::client::{Election, Mutex, TxnOp};
use etcd_config::{Error, KeyRange};
use futures_util::StreamExt;
use support::Etcd;

fn etcdctl(etcd: &Etcd, args: &[&str]) -> Child {
    let command = etcd.etcdctl_command();
    Command::new(&command[0])
        .env("ETCDCTL_API", "3")
        .args(&command[1..])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `prefix` holds `count` keys (the contenders of a lock or an election).
async fn contenders(etcd: &Etcd, prefix: &str, count: i64) {
    let kv = etcd.client().await.kv();
    for _ in 0..200 {
        let page = kv.get(KeyRange::prefix(prefix)).count_only().await.unwrap();
        if page.count == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{prefix} never had {count} contenders");
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A lock `etcdctl lock` holds blocks ours until it lets go, and the reverse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_interoperate_with_etcdctl_lock() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let session = client.session(Duration::from_secs(10)).await.unwrap();

    let mut theirs = etcdctl(&etcd, &["lock", "/locks/a", "sleep", "2"]);
    contenders(&etcd, "/locks/a/", 1).await;
    let started = Instant::now();
    let mut ours = Mutex::new(&session, "/locks/a");
    ours.lock().await.unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(1000),
        "took the lock etcdctl held after {:?}",
        started.elapsed()
    );
    let page = client
        .kv()
        .get(KeyRange::prefix("/locks/a/"))
        .await
        .unwrap();
    let keys: Vec<&str> = page.kvs.iter().map(|kv| kv.key_str().unwrap()).collect();
    assert_eq!(keys, [ours.key()], "etcdctl's key is gone, ours holds");
    assert!(theirs.wait().unwrap().success());

    // The reverse: etcdctl waits for ours.
    let mut held = Mutex::new(&session, "/locks/b");
    held.lock().await.unwrap();
    let mut waiting = etcdctl(&etcd, &["lock", "/locks/b", "echo", "got it"]);
    contenders(&etcd, "/locks/b/", 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "etcdctl took a held lock"
    );
    held.unlock().await.unwrap();
    let out = tokio::task::spawn_blocking(move || waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("got it"));
    ours.unlock().await.unwrap();
}

/// A leader elected with `etcdctl elect` is seen by ours; ours campaigns behind it, leads once
/// it resigns, and `etcdctl elect -l` sees ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elections_interoperate_with_etcdctl_elect() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let session = client.session(Duration::from_secs(10)).await.unwrap();
    let election = Election::new(&session, "/elections/e");

    let mut theirs = etcdctl(&etcd, &["elect", "/elections/e", "proposal-a"]);
    contenders(&etcd, "/elections/e/", 1).await;
    let leader = election.leader().await.unwrap().unwrap();
    assert_eq!(leader.value, b"proposal-a");
    let mut observed = Box::pin(election.observe());
    let first = tokio::time::timeout(Duration::from_secs(5), observed.next()).await;
    assert_eq!(first.unwrap().unwrap().unwrap().value, b"proposal-a");

    let campaign = tokio::spawn(async move {
        election.campaign("ours").await.unwrap();
        election
    });
    contenders(&etcd, "/elections/e/", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!campaign.is_finished(), "ours leads while etcdctl does");
    interrupt(&theirs);
    let election = tokio::time::timeout(Duration::from_secs(10), campaign)
        .await
        .expect("ours leads once etcdctl resigned")
        .unwrap();
    let _ = theirs.wait();
    let next = tokio::time::timeout(Duration::from_secs(5), observed.next()).await;
    assert_eq!(next.unwrap().unwrap().unwrap().value, b"ours");

    let mut listener = etcdctl(&etcd, &["elect", "-l", "/elections/e"]);
    let stdout = listener.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line == "ours")
    });
    let seen = tokio::time::timeout(Duration::from_secs(10), seen).await;
    assert_eq!(seen.unwrap().unwrap().as_deref(), Some("ours"));
    listener.kill().unwrap();
    let _ = listener.wait();
    election.resign().await.unwrap();
}

/// Waiters are served in order, try_lock does not queue, and the create revision fences.
#[tokio::test]
async fn waiters_in_order_and_try_lock() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let sessions = [
        client.session(Duration::from_secs(10)).await.unwrap(),
        client.session(Duration::from_secs(10)).await.unwrap(),
        client.session(Duration::from_secs(10)).await.unwrap(),
    ];
    let mut first = Mutex::new(&sessions[0], "/locks/q");
    first.lock().await.unwrap();
    let mut tried = Mutex::new(&sessions[1], "/locks/q");
    assert!(!tried.try_lock().await.unwrap());
    contenders(&etcd, "/locks/q/", 1).await;

    let (order, mut done) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for (i, session) in sessions[1..].iter().enumerate() {
        let mut lock = Mutex::new(session, "/locks/q");
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            lock.lock().await.unwrap();
            order.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let revision = lock.revision();
            lock.unlock().await.unwrap();
            revision
        }));
        contenders(&etcd, "/locks/q/", 2 + i64::try_from(i).unwrap()).await;
    }
    first.unlock().await.unwrap();
    assert_eq!(done.recv().await, Some(0));
    assert_eq!(done.recv().await, Some(1));
    let second = waiters.remove(0).await.unwrap();
    let third = waiters.remove(0).await.unwrap();
    assert!(first.revision() == -1 && second < third, "{second} {third}");
}

/// A holder whose lease is lost (revoked here; expired alike) learns it, its guarded writes
/// are refused, and the next contender takes the lock at once.
#[tokio::test]
async fn a_lost_session_loses_its_lock() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let session = client.session(Duration::from_secs(5)).await.unwrap();
    let mut lock = Mutex::new(&session, "/locks/lost");
    lock.lock().await.unwrap();
    let guarded = |lock: &Mutex| {
        client
            .kv()
            .txn()
            .when([lock.is_owner()])
            .and_then([TxnOp::put("/guarded", "x")])
    };
    assert!(guarded(&lock).await.unwrap().succeeded);

    let other = etcd.client().await;
    other.lease().revoke(session.lease()).await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(10), session.lost())
        .await
        .expect("the loss is reported");
    assert!(matches!(lost, Error::SessionLost { .. }), "{lost:?}");
    assert!(!session.is_alive());
    assert!(!guarded(&lock).await.unwrap().succeeded);

    let next_session = other.session(Duration::from_secs(5)).await.unwrap();
    let mut next = Mutex::new(&next_session, "/locks/lost");
    tokio::time::timeout(Duration::from_secs(3), next.lock())
        .await
        .expect("the lock is free at once")
        .unwrap();

    // A lost session cannot lock again.
    let mut again = Mutex::new(&session, "/locks/other");
    assert!(again.lock().await.is_err());
}

/// Proclaim changes the leader's value, resign steps down, and a non-leader is told so.
#[tokio::test]
async fn proclaim_resign_and_observe() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let a = client.session(Duration::from_secs(10)).await.unwrap();
    let b = client.session(Duration::from_secs(10)).await.unwrap();
    let first = Election::new(&a, "/elections/p");
    let second = Election::new(&b, "/elections/p");
    let mut seen = Box::pin(first.observe());
    first.campaign("a1").await.unwrap();
    first.proclaim("a2").await.unwrap();
    assert!(matches!(
        second.proclaim("b").await,
        Err(Error::NotHeld { .. })
    ));
    let waiting = tokio::spawn(async move {
        second.campaign("b1").await.unwrap();
        second
    });
    contenders(&etcd, "/elections/p/", 2).await;
    first.resign().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    let mut values = Vec::new();
    while values.last().map(Vec::as_slice) != Some(b"b1".as_slice()) {
        let next = tokio::time::timeout(Duration::from_secs(5), seen.next()).await;
        values.push(next.unwrap().unwrap().unwrap().value);
    }
    assert_eq!(values, [b"a1".to_vec(), b"a2".to_vec(), b"b1".to_vec()]);
    assert_eq!(second.leader().await.unwrap().unwrap().lease, b.lease());
}

/// A holder that freezes (here `etcdctl lock`, stopped with SIGSTOP) loses the lock once its
/// lease expires, and ours takes it then, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_holder_loses_the_lock_when_its_lease_expires() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let mut frozen = etcdctl(&etcd, &["lock", "--ttl", "3", "/locks/frozen"]);
    contenders(&etcd, "/locks/frozen/", 1).await;
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([name, &frozen.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let stopped = Instant::now();
    let session = client.session(Duration::from_secs(10)).await.unwrap();
    let mut ours = Mutex::new(&session, "/locks/frozen");
    tokio::time::timeout(Duration::from_secs(15), ours.lock())
        .await
        .expect("the frozen holder's lease expires")
        .unwrap();
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "taken {:?} after the holder froze, before its lease could expire",
        stopped.elapsed()
    );
    signal("-CONT");
    signal("-KILL");
    let _ = frozen.wait();
    ours.unlock().await.unwrap();
}
