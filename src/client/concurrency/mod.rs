//! Go's `clientv3/concurrency` on this client: a [`Session`] (a lease kept alive), a
//! [`Mutex`] and an [`Election`], built on KV, Lease and Watch exactly as Go builds them, so
//! that they contend correctly with Go programs and with `etcdctl lock` and `etcdctl elect`.
//!
//! The layout, shared with Go: a lock or election named `N` keeps one key per contender,
//! `N/<lease id in hex>`, attached to the contender's session lease. The contender whose key
//! was created first holds the lock (or leads); each other one waits for the deletion of the
//! key created just before its own, so waiters are served in order and nobody polls.
//!
//! A session ends when its lease is lost: revoked, or expired because the process could not
//! renew it (frozen, partitioned) for its TTL. Its locks and leadership end with it. A holder
//! learns it from [`Session::lost`]; a write that must only happen while the lock is held
//! carries [`Mutex::is_owner`] (or [`Election::is_leader`]) as a compare, so etcd refuses it
//! once someone else holds the lock.

mod election;
mod mutex;
mod session;

pub use election::{Election, Leader};
pub use mutex::Mutex;
pub use session::Session;

use super::{Client, EventKind, ResponseHeader, SortOrder, SortTarget};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

/// Waits until no key under `prefix` created at or before `max_create_revision` is left (the
/// contenders ahead), one deletion at a time, newest first; the header of the last read.
async fn wait_deletes(
    session: &Session,
    prefix: &str,
    max_create_revision: i64,
) -> Result<ResponseHeader> {
    let client = session.client();
    loop {
        let ahead = client
            .kv()
            .get(KeyRange::prefix(prefix))
            .sort(SortTarget::CreateRevision, SortOrder::Descend)
            .limit(1)
            .max_create_revision(max_create_revision)
            .await?;
        let Some(last) = ahead.kvs.first() else {
            return Ok(ahead.header);
        };
        tokio::select! {
            deleted = wait_delete(client, &last.key, ahead.header.revision) => deleted?,
            lost = session.lost() => return Err(lost),
        }
    }
}

/// Waits for the deletion of `key`, watching from `revision`.
async fn wait_delete(client: &Client, key: &[u8], revision: i64) -> Result<()> {
    let mut watch = client
        .watch(KeyRange::key(key.to_vec()))
        .start_revision(revision)
        .await?;
    while let Some(response) = futures_util::StreamExt::next(&mut watch).await {
        if response?.events.iter().any(|e| e.kind == EventKind::Delete) {
            return Ok(());
        }
    }
    Err(Error::Stopped {
        what: format!("the watch of {}", String::from_utf8_lossy(key)),
        reason: "it ended".to_owned(),
    })
}

/// A contender's key: `prefix` (ending in `/`) and the lease in hex, as Go writes it.
fn contender_key(prefix: &str, lease: i64) -> String {
    format!("{prefix}{lease:x}")
}
