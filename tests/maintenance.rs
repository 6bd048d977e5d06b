//! Cluster and Maintenance calls against a real three-member etcd: what they report agrees with
//! what etcd is, and the calls that change things do change them.

mod support;

use std::time::{Duration, Instant};

use etcd_config::client::{Alarm, Downgrade};
use etcd_config::{Client, Error, EtcdConfig, KeyRange, ServerErrorKind, Store};
use support::Etcd;

/// Every member holds the same data: equal HashKV at the same revision.
#[tokio::test]
async fn hash_kv_agrees_across_members() {
    let etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    for i in 0..20 {
        client.kv().put(format!("/h/{i}"), "v").await.unwrap();
    }
    let revision = client.kv().get("/h/0").await.unwrap().header.revision;
    let mut hashes = Vec::new();
    for i in 0..3 {
        let one = Client::connect([etcd.endpoint(i)], etcd.options())
            .await
            .unwrap();
        // A follower may still be applying the last entries; wait until it has the revision.
        let deadline = Instant::now() + Duration::from_secs(10);
        while one
            .kv()
            .get("/h/0")
            .serializable()
            .await
            .unwrap()
            .header
            .revision
            < revision
        {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        hashes.push(one.maintenance().hash_kv(revision).await.unwrap().hash);
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

/// Defragmenting, listing alarms, and taking a snapshot (an etcd bbolt file) all work.
#[tokio::test]
async fn defragment_alarms_snapshot() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    client.kv().put("/s", "v").await.unwrap();
    client.maintenance().defragment().await.unwrap();
    assert!(client.maintenance().alarms().await.unwrap().is_empty());
    let snapshot = client.maintenance().snapshot().await.unwrap();
    let status = client.maintenance().status().await.unwrap();
    assert!(snapshot.len() as i64 >= status.db_size_in_use.min(status.db_size) / 2);
    // bbolt's meta page magic, 0xED0CDAED, little-endian at offset 16 of the first page.
    assert_eq!(&snapshot[16..20], &0xED0C_DAEDu32.to_le_bytes());
}

/// A snapshot streamed to a file is what `etcdctl snapshot save` writes: etcdctl reads it back
/// with the revision and key count etcd had, and restores it into a data directory.
#[tokio::test]
async fn snapshot_to_a_file_restores() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    for i in 0..100 {
        client
            .kv()
            .put(format!("/snap/{i:03}"), "x".repeat(1000))
            .await
            .unwrap();
    }
    let revision = client.kv().get("/snap/000").await.unwrap().header.revision;
    let path = etcd.dir().join("backup.db");
    let mut file = tokio::fs::File::create(&path).await.unwrap();
    let written = client.maintenance().snapshot_to(&mut file).await.unwrap();
    drop(file);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), written);
    assert!(written > 100 * 1000);

    let path = path.to_str().unwrap();
    let status = etcd.etcdctl(&["snapshot", "status", path, "--write-out=json"]);
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["revision"], revision);
    // The 100 keys plus etcd's own bookkeeping keys (versions, members, ...).
    assert!(status["totalKey"].as_i64().unwrap() >= 100, "{status}");

    let restored = etcd.dir().join("restored");
    let restore = etcd.etcdctl(&[
        "snapshot",
        "restore",
        path,
        &format!("--data-dir={}", restored.display()),
    ]);
    assert!(restore.status.success(), "{restore:?}");
    assert!(restored.join("member").is_dir());
}

/// With auth on, a snapshot needs root's token: a lazily made client whose first call is
/// `snapshot_to` authenticates before opening the stream; a client without credentials is
/// refused.
#[tokio::test]
async fn snapshot_needs_and_gets_a_token() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    let put = root.kv().put("/snap/a", "1").await.unwrap();

    let options = etcd.options().with_user("root", support::ROOT_PASSWORD);
    let lazy = Client::connect_lazy(etcd.endpoints(), options).unwrap();
    let mut bytes = Vec::new();
    let written = lazy.maintenance().snapshot_to(&mut bytes).await.unwrap();
    assert_eq!(bytes.len() as u64, written);
    let path = etcd.dir().join("auth.db");
    std::fs::write(&path, &bytes).unwrap();
    let status = etcd.etcdctl(&["snapshot", "status", path.to_str().unwrap(), "-w", "json"]);
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["revision"], put.header.revision);

    let err = etcd
        .client()
        .await
        .maintenance()
        .snapshot_to(&mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.server_kind(), Some(ServerErrorKind::UserEmpty), "{err}");
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/quota/app")]
struct App {
    name: String,
    blob: String,
}

/// A request over `--max-request-bytes` is RequestTooLarge. A full database raises the NOSPACE
/// alarm: writes (a save included) are NoSpace and change nothing, reads still work; after
/// deleting, compacting, defragmenting and disarming, writes work again (etcd's documented
/// recovery).
#[tokio::test]
async fn request_too_large_and_no_space() {
    let etcd = Etcd::builder(1)
        .arg("--max-request-bytes=65536")
        .arg("--quota-backend-bytes=262144")
        .start()
        .await;
    let client = etcd.client().await;
    let kv = client.kv();
    let store = Store::new(client.clone());
    let big = "b".repeat(70_000);
    let err = kv.put("/big", big.as_str()).await.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::RequestTooLarge),
        "{err}"
    );
    assert!(err.to_string().contains("Put /big"), "{err}");

    // etcd compares the quota with the size of its database file, which grows when its
    // batched commit (every 100 ms) runs: fill it at a pace those commits keep up with.
    let chunk = "a".repeat(30_000);
    let mut filled = 0;
    let err = loop {
        match kv.put(format!("/fill/{filled}"), chunk.as_str()).await {
            Ok(_) => filled += 1,
            Err(err) => break err,
        }
        assert!(filled < 200, "the quota never ran out");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(err.server_kind(), Some(ServerErrorKind::NoSpace), "{err}");
    let maintenance = client.maintenance();
    let alarms = maintenance.alarms().await.unwrap();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    let member = alarms[0].member_id;
    assert_eq!(alarms[0].alarm, Alarm::NoSpace);

    // etcd checks the quota twice: before proposing a put (refused, nothing applied) and
    // when applying it (applied, then answered with NoSpace). Either may have refused the last.
    let before = kv.get(KeyRange::all()).await.unwrap();
    assert!(
        before.count == filled || before.count == filled + 1,
        "{} keys after {filled} puts that succeeded",
        before.count
    );
    let filled = before.count;
    let err = store
        .save(&App {
            name: "app".into(),
            blob: "small".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.server_kind(), Some(ServerErrorKind::NoSpace), "{err}");
    assert!(err.to_string().contains("/quota/app/"), "{err}");
    let after = kv.get(KeyRange::all()).await.unwrap();
    assert_eq!(after.header.revision, before.header.revision);

    let deleted = kv.delete(KeyRange::prefix("/fill/")).await.unwrap();
    assert_eq!(deleted.deleted, filled);
    kv.compact(deleted.header.revision)
        .physical()
        .await
        .unwrap();
    maintenance.defragment().await.unwrap();
    maintenance.disarm(member, Alarm::NoSpace).await.unwrap();
    assert!(maintenance.alarms().await.unwrap().is_empty());
    let app = App {
        name: "app".into(),
        blob: "small".into(),
    };
    store.save(&app).await.unwrap();
    assert_eq!(store.load::<App>().await.unwrap(), app);
}

/// The backend hash is stable while nothing is written and changes with a write.
#[tokio::test]
async fn backend_hash() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    client.kv().put("/h", "1").await.unwrap();
    let maintenance = client.maintenance();
    let first = maintenance.hash().await.unwrap().hash;
    let again = maintenance.hash().await.unwrap().hash;
    assert_eq!(first, again);
    client.kv().put("/h", "2").await.unwrap();
    let after = maintenance.hash().await.unwrap().hash;
    assert_ne!(first, after);
}

/// Downgrade (etcd 3.5): validating the minor version below the cluster's succeeds and changes
/// nothing; an older target or a malformed one is refused with a typed error; cancelling when
/// no downgrade runs is NoInflightDowngrade. etcd 3.4 has no Downgrade call: Unsupported.
#[tokio::test]
async fn downgrade() {
    let etcd = Etcd::single().await;
    let maintenance = etcd.client().await.maintenance();
    let version = maintenance.status().await.unwrap().version;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    let target = format!("{major}.{}.0", minor - 1);
    if minor < 5 {
        let err = maintenance
            .downgrade(Downgrade::Validate, &target)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        return;
    }

    let cluster = maintenance
        .downgrade(Downgrade::Validate, &target)
        .await
        .unwrap();
    assert_eq!(cluster, format!("{major}.{minor}.0"));
    for (bad, kind) in [
        (
            format!("{major}.{}.0", minor - 2),
            ServerErrorKind::InvalidDowngradeTargetVersion,
        ),
        (
            "three".to_owned(),
            ServerErrorKind::WrongDowngradeVersionFormat,
        ),
    ] {
        let err = maintenance
            .downgrade(Downgrade::Validate, &bad)
            .await
            .unwrap_err();
        assert_eq!(err.server_kind(), Some(kind), "{err}");
    }

    // etcd 3.5 applies an Enable but does not answer it (etcd-io/etcd#15878: downgrades
    // became usable in 3.6), so only the answers it does give are checked here.
    let err = maintenance
        .downgrade(Downgrade::Cancel, "")
        .await
        .unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::NoInflightDowngrade),
        "{err}"
    );
}

/// The leader hands leadership to another member; asking a follower to do it is refused.
#[tokio::test]
async fn move_leader() {
    let etcd = Etcd::cluster().await;
    let client = etcd.client().await;
    let leader = client.maintenance().status().await.unwrap().leader;
    let members = client.cluster().member_list().await.unwrap().members;
    let target = members.iter().find(|m| m.id != leader).unwrap().id;
    let leader_index = etcd.member_index(leader).await;
    let at_leader = Client::connect([etcd.endpoint(leader_index)], etcd.options())
        .await
        .unwrap();
    at_leader.maintenance().move_leader(target).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.maintenance().status().await.unwrap().leader != target {
        assert!(Instant::now() < deadline, "leadership did not move");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_leader_index = etcd.member_index(target).await;
    let follower_index = (0..3).find(|&i| i != new_leader_index).unwrap();
    let at_follower = Client::connect([etcd.endpoint(follower_index)], etcd.options())
        .await
        .unwrap();
    let err = at_follower
        .maintenance()
        .move_leader(leader)
        .await
        .unwrap_err();
    assert!(
        matches!(err.server_kind(), Some(ServerErrorKind::NotLeader)),
        "{err}"
    );
}
