//! [`Election`]: a leader elected over a session, as Go's `concurrency.Election` (and `etcdctl
//! elect`) elect one.

use std::sync::Mutex as StdMutex;

use futures_core::Stream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{contender_key, wait_deletes, Session};
use crate::client::{
    Client, Compare, CompareOp, EventKind, KeyValue, Put, SortOrder, SortTarget, TxnOp,
    TxnOpResponse,
};
use crate::error::ServerErrorKind;
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

/// An election named by a key prefix: contenders campaign with a value, the first in line
/// leads and can change its value (proclaim) or step down (resign); anyone can read or observe
/// the leader. It interoperates with Go's `concurrency.Election` and `etcdctl elect`.
///
/// ```no_run
/// # async fn demo(client: etcd_config::Client) -> etcd_config::Result<()> {
/// use etcd_config::client::Election;
/// let session = client.session(std::time::Duration::from_secs(10)).await?;
/// let election = Election::new(&session, "/elections/gateway");
/// election.campaign("gw-7").await?; // waits until this contender leads
/// election.proclaim("gw-7, draining").await?;
/// election.resign().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Election {
    session: Session,
    /// The name and `/`.
    prefix: String,
    /// Our key and its create revision, while campaigning or leading.
    mine: StdMutex<Option<(String, i64)>>,
}

/// The leader of an election, from [`Election::leader`] and [`Election::observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The leader's key, `name/<lease in hex>`.
    pub key: String,
    /// The value it campaigned with or last proclaimed.
    pub value: Vec<u8>,
    /// The create revision of its key: rises with every new leader.
    pub revision: i64,
    /// Its session's lease.
    pub lease: i64,
}

impl From<&KeyValue> for Leader {
    fn from(kv: &KeyValue) -> Self {
        Leader {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            value: kv.value.clone(),
            revision: kv.create_revision,
            lease: kv.lease,
        }
    }
}

impl Election {
    /// The election `name` (a key prefix such as `/elections/gateway`), joined through
    /// `session`.
    pub fn new(session: &Session, name: &str) -> Election {
        Election {
            session: session.clone(),
            prefix: format!("{name}/"),
            mine: StdMutex::new(None),
        }
    }

    /// Campaigns with `value` and waits until this contender leads.
    ///
    /// # Errors
    ///
    /// [`Error::SessionLost`] if the session's lease is lost meanwhile; etcd's and the
    /// transport's (the campaign is then withdrawn).
    pub async fn campaign(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        let value = value.into();
        let key = contender_key(&self.prefix, self.session.lease());
        let client = self.session.client();
        let answer = client
            .kv()
            .txn()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([Put::new(key.as_str(), value.clone())
                .lease(self.session.lease())
                .into()])
            .or_else([TxnOp::get(key.as_str())])
            .await?;
        let revision = if answer.succeeded {
            answer.header.revision
        } else {
            let existing = match answer.responses.first() {
                Some(TxnOpResponse::Get(page)) => page.kvs.first().cloned(),
                _ => None,
            };
            let existing = existing.ok_or_else(|| Error::SessionLost {
                lease: self.session.lease(),
            })?;
            *crate::sync::lock(&self.mine) = Some((key.clone(), existing.create_revision));
            if existing.value != value {
                self.proclaim(value).await?;
            }
            existing.create_revision
        };
        *crate::sync::lock(&self.mine) = Some((key.clone(), revision));
        if let Err(err) = wait_deletes(&self.session, &self.prefix, revision - 1).await {
            let _ = self.resign().await;
            return Err(err);
        }
        let still = client.kv().get(key.as_str()).await?;
        if still.kvs.is_empty() {
            *crate::sync::lock(&self.mine) = None;
            return Err(Error::SessionLost {
                lease: self.session.lease(),
            });
        }
        Ok(())
    }

    /// Changes the leader's value, if this contender still leads.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] if it does not (never campaigned, resigned, or lost its session).
    pub async fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        let (key, revision) = self.mine()?;
        let answer = self
            .session
            .client()
            .kv()
            .txn()
            .when([held(&key, revision)])
            .and_then([Put::new(key.as_str(), value.into())
                .lease(self.session.lease())
                .into()])
            .await?;
        if !answer.succeeded {
            *crate::sync::lock(&self.mine) = None;
            return Err(self.not_held());
        }
        Ok(())
    }

    /// Steps down (or withdraws the campaign). Nothing happens if this contender does not
    /// lead.
    ///
    /// # Errors
    ///
    /// etcd's and the transport's.
    pub async fn resign(&self) -> Result<()> {
        let Some((key, revision)) = crate::sync::lock(&self.mine).take() else {
            return Ok(());
        };
        self.session
            .client()
            .kv()
            .txn()
            .when([held(&key, revision)])
            .and_then([TxnOp::delete(key.as_str())])
            .await?;
        Ok(())
    }

    /// The current leader, if there is one (one Range).
    ///
    /// # Errors
    ///
    /// etcd's and the transport's.
    pub async fn leader(&self) -> Result<Option<Leader>> {
        first_in_line(self.session.client(), &self.prefix)
            .await
            .map(|(leader, _)| leader)
    }

    /// A compare that holds only while this contender leads, for writes only the leader may
    /// make.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] if it is not campaigning or leading.
    pub fn is_leader(&self) -> Result<Compare> {
        let (key, revision) = self.mine()?;
        Ok(held(&key, revision))
    }

    /// The leader now and at each change (a new leader, or a proclaimed value), as a stream;
    /// it waits while there is none. It ends when dropped; an error item ends it too.
    pub fn observe(&self) -> impl Stream<Item = Result<Leader>> + Send + 'static {
        let (sender, receiver) = mpsc::channel(16);
        let client = self.session.client().clone();
        let prefix = self.prefix.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = observe(&client, &prefix, &sender) => {}
                () = sender.closed() => {}
            }
        });
        ReceiverStream::new(receiver)
    }

    fn mine(&self) -> Result<(String, i64)> {
        crate::sync::lock(&self.mine)
            .clone()
            .ok_or_else(|| self.not_held())
    }

    fn not_held(&self) -> Error {
        Error::NotHeld {
            what: format!("leadership of {}", self.prefix),
        }
    }
}

/// Holds while `key` is the one created at `revision`: the same contender, still in line.
fn held(key: &str, revision: i64) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, revision)
}

/// The first contender of `prefix`, and the revision of the read.
async fn first_in_line(client: &Client, prefix: &str) -> Result<(Option<Leader>, i64)> {
    let page = client
        .kv()
        .get(KeyRange::prefix(prefix))
        .sort(SortTarget::CreateRevision, SortOrder::Ascend)
        .limit(1)
        .await?;
    Ok((page.kvs.first().map(Leader::from), page.header.revision))
}

/// Sends the leader of `prefix` at each change until sending fails or an error is sent.
async fn observe(client: &Client, prefix: &str, sender: &mpsc::Sender<Result<Leader>>) {
    loop {
        match follow_leader(client, prefix, sender).await {
            Ok(()) => {}
            // The revisions to follow from were compacted: look again.
            Err(err) if err.server_kind() == Some(ServerErrorKind::Compacted) => {}
            Err(err) => {
                let _ = sender.send(Err(err)).await;
                return;
            }
        }
        if sender.is_closed() {
            return;
        }
    }
}

/// Finds the leader (waiting for one), sends it, and follows its key until it is deleted.
async fn follow_leader(
    client: &Client,
    prefix: &str,
    sender: &mpsc::Sender<Result<Leader>>,
) -> Result<()> {
    let (leader, revision) = first_in_line(client, prefix).await?;
    let leader = match leader {
        Some(leader) => leader,
        None => {
            let mut watch = client
                .watch(KeyRange::prefix(prefix))
                .start_revision(revision + 1)
                .await?;
            loop {
                let Some(response) = watch.next().await else {
                    return Ok(());
                };
                let put = response?
                    .events
                    .into_iter()
                    .find(|e| e.kind == EventKind::Put);
                if let Some(put) = put {
                    break Leader::from(&put.kv);
                }
            }
        }
    };
    let key = leader.key.clone();
    let mut watch = client
        .watch(KeyRange::key(key.as_str()))
        .start_revision(revision.max(leader.revision) + 1)
        .await?;
    if sender.send(Ok(leader)).await.is_err() {
        return Ok(());
    }
    while let Some(response) = watch.next().await {
        for event in response?.events {
            match event.kind {
                EventKind::Delete => return Ok(()),
                EventKind::Put => {
                    if sender.send(Ok(Leader::from(&event.kv))).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}
