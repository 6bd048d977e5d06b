//! KV and Txn against a real etcd: every option of Range, Put and DeleteRange, Compact, and txn
//! branches with compares over one key and over a range. Results are read back through a second
//! client, and revisions compared with what etcd reports.

mod support;

use etcd_config::client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use etcd_config::client::{Delete, Get, Put, SortOrder, SortTarget};
use etcd_config::{KeyRange, ServerErrorKind};
use support::Etcd;

fn keys(kvs: &[etcd_config::client::KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key_str().unwrap()).collect()
}

/// A put is visible to another client at the revision the put reported.
#[tokio::test]
async fn put_then_get_from_second_client() {
    let etcd = Etcd::single().await;
    let writer = etcd.client().await;
    let reader = etcd.client().await;

    let put = writer.kv().put("/a", "1").await.unwrap();
    let got = reader.kv().get("/a").await.unwrap();
    assert_eq!(got.kvs.len(), 1);
    assert_eq!(got.kvs[0].value, b"1");
    assert_eq!(got.kvs[0].mod_revision, put.header.revision);
    assert_eq!(got.kvs[0].create_revision, put.header.revision);
    assert_eq!(got.kvs[0].version, 1);
    assert_eq!(got.header.revision, put.header.revision);

    // A missing key is an empty answer, not an error.
    let none = reader.kv().get("/missing").await.unwrap();
    assert!(none.kvs.is_empty());
    assert_eq!(none.count, 0);
}

/// Prefix, from-key, plain range and all-keys reads select exactly the keys etcd defines.
#[tokio::test]
async fn range_shapes() {
    let etcd = Etcd::single().await;
    let kv = etcd.client().await.kv();
    for key in ["/p", "/p/1", "/p/2", "/p0", "/q", "a", "b", "c"] {
        kv.put(key, "v").await.unwrap();
    }
    let prefix = kv.get(KeyRange::prefix("/p/")).await.unwrap();
    assert_eq!(keys(&prefix.kvs), ["/p/1", "/p/2"]);
    let range = kv.get(KeyRange::range("/p/2", "/q")).await.unwrap();
    assert_eq!(keys(&range.kvs), ["/p/2", "/p0"]);
    let from = kv.get(KeyRange::from_key("b")).await.unwrap();
    assert_eq!(keys(&from.kvs), ["b", "c"]);
    let all = kv.get(KeyRange::all()).await.unwrap();
    assert_eq!(all.count, 8);
}

/// limit, sort, keys-only, count-only, serializable, revision and the min/max revision
/// filters each change the answer the way etcd documents.
#[tokio::test]
async fn range_options() {
    let etcd = Etcd::single().await;
    let kv = etcd.client().await.kv();
    let r1 = kv.put("/o/a", "3").await.unwrap().header.revision;
    let r2 = kv.put("/o/b", "1").await.unwrap().header.revision;
    let r3 = kv.put("/o/c", "2").await.unwrap().header.revision;
    kv.put("/o/a", "4").await.unwrap();
    let prefix = || KeyRange::prefix("/o/");

    let limited = kv.get(prefix()).limit(2).await.unwrap();
    assert_eq!(keys(&limited.kvs), ["/o/a", "/o/b"]);
    assert!(limited.more);
    assert_eq!(limited.count, 3);

    let by_value = kv
        .get(prefix())
        .sort(SortTarget::Value, SortOrder::Descend)
        .await
        .unwrap();
    assert_eq!(keys(&by_value.kvs), ["/o/a", "/o/c", "/o/b"]);
    let by_create = kv
        .get(prefix())
        .sort(SortTarget::CreateRevision, SortOrder::Descend)
        .await
        .unwrap();
    assert_eq!(keys(&by_create.kvs), ["/o/c", "/o/b", "/o/a"]);
    let by_mod = kv
        .get(prefix())
        .sort(SortTarget::ModRevision, SortOrder::Ascend)
        .await
        .unwrap();
    assert_eq!(keys(&by_mod.kvs), ["/o/b", "/o/c", "/o/a"]);
    let by_version = kv
        .get(prefix())
        .sort(SortTarget::Version, SortOrder::Descend)
        .limit(1)
        .await
        .unwrap();
    assert_eq!(keys(&by_version.kvs), ["/o/a"]);
    let by_key = kv
        .get(prefix())
        .sort(SortTarget::Key, SortOrder::Descend)
        .await
        .unwrap();
    assert_eq!(keys(&by_key.kvs), ["/o/c", "/o/b", "/o/a"]);

    let keys_only = kv.get(prefix()).keys_only().await.unwrap();
    assert_eq!(keys_only.kvs.len(), 3);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));

    let count_only = kv.get(prefix()).count_only().await.unwrap();
    assert!(count_only.kvs.is_empty());
    assert_eq!(count_only.count, 3);

    let serializable = kv.get(prefix()).serializable().await.unwrap();
    assert_eq!(serializable.count, 3);

    let at_r2 = kv.get(prefix()).revision(r2).await.unwrap();
    assert_eq!(keys(&at_r2.kvs), ["/o/a", "/o/b"]);
    assert_eq!(at_r2.kvs[0].value, b"3");

    let min_mod = kv.get(prefix()).min_mod_revision(r3).await.unwrap();
    assert_eq!(keys(&min_mod.kvs), ["/o/a", "/o/c"]);
    let max_mod = kv.get(prefix()).max_mod_revision(r2).await.unwrap();
    assert_eq!(keys(&max_mod.kvs), ["/o/b"]);
    let min_create = kv.get(prefix()).min_create_revision(r2).await.unwrap();
    assert_eq!(keys(&min_create.kvs), ["/o/b", "/o/c"]);
    let max_create = kv.get(prefix()).max_create_revision(r1).await.unwrap();
    assert_eq!(keys(&max_create.kvs), ["/o/a"]);
}

/// prev_kv returns the old value; ignore_value and ignore_lease keep what the key had; a
/// lease attaches the key, and revoking the lease deletes it.
#[tokio::test]
async fn put_options() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let kv = client.kv();

    let first = kv.put("/k", "old").prev_kv().await.unwrap();
    assert!(first.prev_kv.is_none());
    let second = kv.put("/k", "new").prev_kv().await.unwrap();
    assert_eq!(second.prev_kv.unwrap().value, b"old");

    let lease = client.lease().grant(60).await.unwrap();
    kv.put("/leased", "v").lease(lease.id).await.unwrap();
    kv.put("/leased", "w").ignore_lease().await.unwrap();
    let got = kv.get("/leased").await.unwrap();
    assert_eq!(got.kvs[0].lease, lease.id);
    assert_eq!(got.kvs[0].value, b"w");

    let ttl = client.lease().time_to_live(lease.id).keys().await.unwrap();
    assert_eq!(ttl.keys, vec![b"/leased".to_vec()]);
    assert!(ttl.ttl > 0 && ttl.granted_ttl == 60);
    assert!(client.lease().leases().await.unwrap().contains(&lease.id));
    assert!(client.lease().keep_alive_once(lease.id).await.unwrap() > 0);

    // ignore_value keeps the value; without ignore_lease the put also detaches the lease,
    // as etcd defines it.
    kv.put("/leased", "").ignore_value().await.unwrap();
    let got = kv.get("/leased").await.unwrap();
    assert_eq!(
        (got.kvs[0].value.as_slice(), got.kvs[0].lease),
        (&b"w"[..], 0)
    );
    kv.put("/leased", "")
        .ignore_value()
        .lease(lease.id)
        .await
        .unwrap();
    assert_eq!(kv.get("/leased").await.unwrap().kvs[0].lease, lease.id);

    client.lease().revoke(lease.id).await.unwrap();
    assert!(kv.get("/leased").await.unwrap().kvs.is_empty());

    // ignore_value on a key that does not exist is refused by etcd.
    let err = kv.put("/absent", "").ignore_value().await.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::KeyNotFound),
        "{err}"
    );
    // A revoked lease is gone.
    let err = kv.put("/x", "v").lease(lease.id).await.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::LeaseNotFound),
        "{err}"
    );
}

/// Deleting a key, a prefix, and with prev_kv; the count matches what a second client sees.
#[tokio::test]
async fn delete_options() {
    let etcd = Etcd::single().await;
    let kv = etcd.client().await.kv();
    for key in ["/d/1", "/d/2", "/d/3", "/e"] {
        kv.put(key, key).await.unwrap();
    }
    let one = kv.delete("/d/1").await.unwrap();
    assert_eq!(one.deleted, 1);
    assert!(one.prev_kvs.is_empty());
    let rest = kv.delete(KeyRange::prefix("/d/")).prev_kv().await.unwrap();
    assert_eq!(rest.deleted, 2);
    assert_eq!(keys(&rest.prev_kvs), ["/d/2", "/d/3"]);

    let other = etcd.client().await.kv();
    assert_eq!(other.get(KeyRange::all()).await.unwrap().count, 1);
    assert_eq!(other.delete("/nothing").await.unwrap().deleted, 0);
}

/// After a compaction, reading below it is Compacted; reading past the head is FutureRevision.
#[tokio::test]
async fn compaction_and_revision_errors() {
    let etcd = Etcd::single().await;
    let kv = etcd.client().await.kv();
    let r1 = kv.put("/c", "1").await.unwrap().header.revision;
    let r2 = kv.put("/c", "2").await.unwrap().header.revision;
    kv.compact(r2).physical().await.unwrap();

    let err = kv.get("/c").revision(r1).await.unwrap_err();
    assert_eq!(err.server_kind(), Some(ServerErrorKind::Compacted), "{err}");
    assert!(err.to_string().contains("compacted"), "{err}");
    assert!(err.to_string().contains("Range /c"), "{err}");
    assert_eq!(kv.get("/c").revision(r2).await.unwrap().kvs[0].value, b"2");

    let err = kv.get("/c").revision(r2 + 100).await.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::FutureRevision),
        "{err}"
    );

    // Compacting an already compacted revision is itself a Compacted error.
    let err = kv.compact(r1).await.unwrap_err();
    assert_eq!(err.server_kind(), Some(ServerErrorKind::Compacted), "{err}");
}

/// etcd's input checks arrive as typed errors and leave the store unchanged.
#[tokio::test]
async fn typed_input_errors() {
    let etcd = Etcd::single().await;
    let kv = etcd.client().await.kv();
    let before = kv.get(KeyRange::all()).await.unwrap().header.revision;

    let err = kv.put("", "v").await.unwrap_err();
    assert_eq!(err.server_kind(), Some(ServerErrorKind::EmptyKey), "{err}");
    let err = kv.get("").await.unwrap_err();
    assert_eq!(err.server_kind(), Some(ServerErrorKind::EmptyKey), "{err}");

    // etcd's default --max-txn-ops is 128.
    let ops = (0..129).map(|i| TxnOp::put(format!("/many/{i}"), "v"));
    let err = kv.txn().and_then(ops).await.unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::TooManyOps),
        "{err}"
    );

    let err = kv
        .txn()
        .and_then([TxnOp::put("/dup", "1"), TxnOp::put("/dup", "2")])
        .await
        .unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::DuplicateKey),
        "{err}"
    );

    let after = etcd.client().await.kv().get(KeyRange::all()).await.unwrap();
    assert_eq!(
        after.header.revision, before,
        "a refused request changed the store"
    );
    assert_eq!(after.count, 0);
}

/// A txn runs its success branch when every compare holds and its failure branch otherwise,
/// atomically at one revision.
#[tokio::test]
async fn txn_branches_and_compares() {
    let etcd = Etcd::single().await;
    let kv = etcd.client().await.kv();
    let put = kv.put("/t", "v1").await.unwrap();
    let rev = put.header.revision;

    // Every compare target, holding.
    let ok = kv
        .txn()
        .when([
            Compare::value("/t", CompareOp::Equal, "v1"),
            Compare::version("/t", CompareOp::Equal, 1),
            Compare::create_revision("/t", CompareOp::Equal, rev),
            Compare::mod_revision("/t", CompareOp::Less, rev + 1),
            Compare::lease("/t", CompareOp::Equal, 0),
            Compare::value("/t", CompareOp::NotEqual, "zz"),
            Compare::version("/t", CompareOp::Greater, 0),
        ])
        .and_then([
            TxnOp::put("/t", "v2"),
            TxnOp::put("/u", "x"),
            TxnOp::get("/t"),
        ])
        .or_else([TxnOp::put("/failed", "1")])
        .await
        .unwrap();
    assert!(ok.succeeded);
    assert_eq!(ok.responses.len(), 3);
    match &ok.responses[2] {
        TxnOpResponse::Get(got) => assert_eq!(got.kvs[0].value, b"v2"),
        other => panic!("expected a get response, got {other:?}"),
    }
    // Both puts share the txn's single revision.
    let check = etcd.client().await.kv();
    let t = check.get("/t").await.unwrap();
    let u = check.get("/u").await.unwrap();
    assert_eq!(t.kvs[0].mod_revision, ok.header.revision);
    assert_eq!(u.kvs[0].mod_revision, ok.header.revision);
    assert_eq!(ok.header.revision, rev + 1);

    // A compare that fails runs the other branch only.
    let failed = kv
        .txn()
        .when([Compare::value("/t", CompareOp::Equal, "v1")])
        .and_then([TxnOp::put("/t", "never")])
        .or_else([TxnOp::from(Get::new("/t").keys_only()), TxnOp::delete("/u")])
        .await
        .unwrap();
    assert!(!failed.succeeded);
    assert!(matches!(&failed.responses[1], TxnOpResponse::Delete(d) if d.deleted == 1));
    assert_eq!(check.get("/t").await.unwrap().kvs[0].value, b"v2");
    assert!(check.get("/u").await.unwrap().kvs.is_empty());

    // A missing key has create revision 0: create-if-absent.
    let created = kv
        .txn()
        .when([Compare::create_revision("/new", CompareOp::Equal, 0)])
        .and_then([TxnOp::from(Put::new("/new", "1").prev_kv())])
        .await
        .unwrap();
    assert!(created.succeeded);
    let again = kv
        .txn()
        .when([Compare::create_revision("/new", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("/new", "2")])
        .await
        .unwrap();
    assert!(!again.succeeded);
    assert_eq!(check.get("/new").await.unwrap().kvs[0].value, b"1");
}

/// A compare over a range holds only if it holds for every key in the range.
#[tokio::test]
async fn txn_range_compare() {
    let etcd = Etcd::single().await;
    let kv = etcd.client().await.kv();
    let base = kv.put("/r/a", "1").await.unwrap().header.revision;
    kv.put("/r/b", "1").await.unwrap();

    let unchanged_since =
        |rev: i64| Compare::mod_revision(KeyRange::prefix("/r/"), CompareOp::Less, rev + 1);
    let latest = kv
        .get(KeyRange::prefix("/r/"))
        .await
        .unwrap()
        .header
        .revision;
    let ok = kv.txn().when([unchanged_since(latest)]).await.unwrap();
    assert!(ok.succeeded);
    let stale = kv.txn().when([unchanged_since(base)]).await.unwrap();
    assert!(!stale.succeeded, "/r/b changed after {base}");

    let all_one = kv
        .txn()
        .when([Compare::value(
            KeyRange::prefix("/r/"),
            CompareOp::Equal,
            "1",
        )])
        .await
        .unwrap();
    assert!(all_one.succeeded);
    kv.put("/r/c", "2").await.unwrap();
    let not_all = kv
        .txn()
        .when([Compare::value(
            KeyRange::prefix("/r/"),
            CompareOp::Equal,
            "1",
        )])
        .await
        .unwrap();
    assert!(!not_all.succeeded);
}

/// A nested txn runs its own compares inside the outer branch.
#[tokio::test]
async fn nested_txn() {
    let etcd = Etcd::single().await;
    let kv = etcd.client().await.kv();
    kv.put("/n", "1").await.unwrap();
    let inner = Txn::new()
        .when([Compare::value("/n", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("/n/inner", "yes")])
        .or_else([TxnOp::put("/n/inner", "no")]);
    assert_eq!(inner.op_count(), 1);
    let outer = kv
        .txn()
        .and_then([TxnOp::txn(inner), TxnOp::from(Delete::new("/n").prev_kv())])
        .await
        .unwrap();
    assert!(outer.succeeded);
    match &outer.responses[0] {
        TxnOpResponse::Txn(inner) => assert!(inner.succeeded),
        other => panic!("expected a nested txn response, got {other:?}"),
    }
    let check = etcd.client().await.kv();
    assert_eq!(check.get("/n/inner").await.unwrap().kvs[0].value, b"yes");
    assert!(check.get("/n").await.unwrap().kvs.is_empty());
}

/// Reads and writes in flight at once on one client: a read may be answered at a revision older
/// than a write that finished while it was in flight, and that is not "going back in time".
/// None of them fails with `Behind` (it did, before the check compared with what was seen
/// before the read was sent).
#[tokio::test]
async fn concurrent_reads_and_writes_are_not_behind() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let mut calls = Vec::new();
    for i in 0..200 {
        let kv = client.kv();
        calls.push(tokio::spawn(async move {
            if i % 2 == 0 {
                kv.put(format!("/c/{i}"), "v").await.map(drop)
            } else {
                kv.get(KeyRange::prefix("/c/")).await.map(drop)
            }
        }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
}
