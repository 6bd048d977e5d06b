//! [`Mutex`]: a lock over a session, as Go's `concurrency.Mutex` (and `etcdctl lock`) take it.

use super::{contender_key, wait_deletes, Session};
use crate::client::{
    Compare, CompareOp, Get, Put, ResponseHeader, SortOrder, SortTarget, TxnOp, TxnOpResponse,
};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

/// A distributed lock named by a key prefix, held through a [`Session`]. Waiters are served in
/// the order they asked. It interoperates with Go's `concurrency.Mutex` and `etcdctl lock`:
/// the same name is the same lock.
///
/// ```no_run
/// # async fn demo(client: etcd_config::Client) -> etcd_config::Result<()> {
/// use etcd_config::client::Mutex;
/// let session = client.session(std::time::Duration::from_secs(10)).await?;
/// let mut lock = Mutex::new(&session, "/locks/db");
/// lock.lock().await?;
/// // Writes that must only happen under the lock carry its compare:
/// client.kv().txn().when([lock.is_owner()]).and_then([/* ... */]).await?;
/// lock.unlock().await?;
/// # Ok(()) }
/// ```
///
/// A `lock` whose future is dropped while waiting leaves its place in the queue (its key)
/// until [`unlock`](Self::unlock) or the end of the session.
#[derive(Debug)]
pub struct Mutex {
    session: Session,
    /// The name and `/`.
    prefix: String,
    key: String,
    /// The create revision of our key: the fencing token; -1 while not queued.
    revision: i64,
    header: Option<ResponseHeader>,
}

impl Mutex {
    /// The lock `name` (a key prefix such as `/locks/db`), taken through `session`.
    pub fn new(session: &Session, name: &str) -> Mutex {
        let prefix = format!("{name}/");
        Mutex {
            key: contender_key(&prefix, session.lease()),
            session: session.clone(),
            prefix,
            revision: -1,
            header: None,
        }
    }

    /// Takes the lock, waiting for the holders and waiters ahead.
    ///
    /// # Errors
    ///
    /// [`Error::SessionLost`] if the session's lease is lost before or while waiting (then
    /// nothing is held); etcd's and the transport's errors (the place in the queue is given
    /// up).
    pub async fn lock(&mut self) -> Result<()> {
        if self.enqueue().await? {
            return Ok(());
        }
        let waited = wait_deletes(&self.session, &self.prefix, self.revision - 1).await;
        let header = match waited {
            Ok(header) => header,
            Err(err) => {
                let _ = self.unlock().await;
                return Err(err);
            }
        };
        // Our key is gone if the session was lost meanwhile: then nothing is held.
        let mine = self.session.client().kv().get(self.key.as_str()).await?;
        if mine.kvs.is_empty() {
            self.revision = -1;
            return Err(Error::SessionLost {
                lease: self.session.lease(),
            });
        }
        self.header = Some(header);
        Ok(())
    }

    /// Takes the lock if nobody holds it or waits for it; `false` (and no place in the queue)
    /// otherwise.
    ///
    /// # Errors
    ///
    /// etcd's and the transport's.
    pub async fn try_lock(&mut self) -> Result<bool> {
        if self.enqueue().await? {
            return Ok(true);
        }
        self.unlock().await?;
        Ok(false)
    }

    /// Releases the lock, or gives up the place in the queue.
    ///
    /// # Errors
    ///
    /// etcd's and the transport's (the key then expires with the session).
    pub async fn unlock(&mut self) -> Result<()> {
        self.session.client().kv().delete(self.key.as_str()).await?;
        self.revision = -1;
        self.header = None;
        Ok(())
    }

    /// This contender's key, `name/<lease in hex>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The create revision of this contender's key: rises with every new holder, so it can
    /// serve as a fencing token. -1 while not queued.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The header of the answer that granted the lock.
    pub fn header(&self) -> Option<&ResponseHeader> {
        self.header.as_ref()
    }

    /// A compare that holds only while this contender holds the lock: its key exists with the
    /// create revision it got. Put it in the txn of every write the lock guards.
    pub fn is_owner(&self) -> Compare {
        Compare::create_revision(self.key.as_str(), CompareOp::Equal, self.revision)
    }

    /// The session the lock is held through.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Puts our key in the queue (or finds it there, if this session queued before); true if
    /// it is first, i.e. we hold the lock.
    async fn enqueue(&mut self) -> Result<bool> {
        let first = || -> TxnOp {
            Get::new(KeyRange::prefix(self.prefix.as_str()))
                .sort(SortTarget::CreateRevision, SortOrder::Ascend)
                .limit(1)
                .into()
        };
        let answer = self
            .session
            .client()
            .kv()
            .txn()
            .when([Compare::create_revision(
                self.key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then([
                Put::new(self.key.as_str(), "")
                    .lease(self.session.lease())
                    .into(),
                first(),
            ])
            .or_else([TxnOp::get(self.key.as_str()), first()])
            .await?;
        let ranges: Vec<_> = answer
            .responses
            .iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(page) => Some(page),
                _ => None,
            })
            .collect();
        self.revision = match (answer.succeeded, ranges.first()) {
            (true, _) => answer.header.revision,
            (false, Some(mine)) => mine.kvs.first().map_or(-1, |kv| kv.create_revision),
            (false, None) => -1,
        };
        let owner = ranges.last().and_then(|page| page.kvs.first());
        let held = owner.is_none_or(|kv| kv.create_revision == self.revision);
        if held {
            self.header = Some(answer.header);
        }
        Ok(held)
    }
}
