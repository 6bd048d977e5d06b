//! etcd's Cluster service: membership.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use super::transport::Transport;
use super::BoxFuture;
use super::{Client, ResponseHeader};
use crate::error::Result;
use crate::proto::etcdserverpb as pb;

/// Handle to the Cluster service of a [`Client`].
#[derive(Clone, Debug)]
pub struct Cluster {
    client: Client,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The member ID.
    pub id: u64,
    /// The member's name (empty until a newly added member starts).
    pub name: String,
    /// URLs the other members reach it on.
    pub peer_urls: Vec<String>,
    /// URLs clients reach it on.
    pub client_urls: Vec<String>,
    /// True for a learner (a non-voting member).
    pub is_learner: bool,
}

impl From<pb::Member> for Member {
    fn from(m: pb::Member) -> Self {
        Member {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        }
    }
}

/// The members after a membership call, and who answered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Members {
    /// Who answered.
    pub header: ResponseHeader,
    /// The member added, for `member_add`.
    pub added: Option<Member>,
    /// Every member.
    pub members: Vec<Member>,
}

fn members(
    header: Option<pb::ResponseHeader>,
    added: Option<pb::Member>,
    list: Vec<pb::Member>,
) -> Members {
    Members {
        header: header.into(),
        added: added.map(Member::from),
        members: list.into_iter().map(Member::from).collect(),
    }
}

impl Cluster {
    pub(crate) fn new(client: Client) -> Self {
        Cluster { client }
    }

    /// Lists the members (linearizable: confirmed by a quorum).
    pub async fn member_list(&self) -> Result<Members> {
        let r = self
            .client
            .call(pb::MemberListRequest { linearizable: true })
            .await?;
        Ok(members(r.header, None, r.members))
    }

    /// Adds a voting member that will join on `peer_urls` (one MemberAdd round trip); add
    /// `.learner()` for a non-voting one. Then `.await`.
    pub fn member_add(&self, peer_urls: impl IntoIterator<Item = impl Into<String>>) -> MemberAdd {
        MemberAdd {
            client: self.client.clone(),
            request: pb::MemberAddRequest {
                peer_urls: peer_urls.into_iter().map(Into::into).collect(),
                is_learner: false,
            },
        }
    }

    /// Removes a member.
    pub async fn member_remove(&self, id: u64) -> Result<Members> {
        let r = self.client.call(pb::MemberRemoveRequest { id }).await?;
        Ok(members(r.header, None, r.members))
    }

    /// Changes a member's peer URLs.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Members> {
        let peer_urls = peer_urls.into_iter().map(Into::into).collect();
        let r = self
            .client
            .call(pb::MemberUpdateRequest { id, peer_urls })
            .await?;
        Ok(members(r.header, None, r.members))
    }

    /// Promotes a learner that has caught up to a voting member.
    pub async fn member_promote(&self, id: u64) -> Result<Members> {
        let r = self.client.call(pb::MemberPromoteRequest { id }).await?;
        Ok(members(r.header, None, r.members))
    }
}

/// A member to add. Await it.
#[derive(Debug, Clone)]
#[must_use = "a MemberAdd does nothing until awaited"]
pub struct MemberAdd {
    client: Client,
    request: pb::MemberAddRequest,
}

impl MemberAdd {
    /// Add the member as a learner: it receives the log but does not vote until promoted
    /// ([`Cluster::member_promote`]).
    pub fn learner(mut self) -> Self {
        self.request.is_learner = true;
        self
    }
}

impl IntoFuture for MemberAdd {
    type Output = Result<Members>;
    type IntoFuture = BoxFuture<Members>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let r = self.client.call(self.request).await?;
            Ok(members(r.header, r.member, r.members))
        })
    }
}

impl Client {
    /// Makes the client URLs of the cluster's voting members its endpoint list (one
    /// MemberList), keeping the current endpoint if it is still a member's; returns the list.
    /// [`ConnectOptions::auto_sync`](super::ConnectOptions::auto_sync) does this periodically.
    ///
    /// # Errors
    ///
    /// The MemberList call's; an endpoint URL that cannot be used.
    pub async fn sync_endpoints(&self) -> Result<Vec<String>> {
        sync(self.transport()).await?;
        Ok(self.endpoints())
    }
}

/// One endpoint sync on `transport`.
async fn sync(transport: &Transport) -> Result<()> {
    let answer = transport
        .call(&pb::MemberListRequest {
            linearizable: false,
        })
        .await?;
    let urls: Vec<String> = answer
        .members
        .into_iter()
        .filter(|m| !m.is_learner)
        .flat_map(|m| m.client_urls)
        .collect();
    transport.set_endpoints(&urls)?;
    Ok(())
}

/// Syncs the endpoints of `transport` every `interval`, for as long as a client holds it.
pub(crate) fn start_auto_sync(transport: &Arc<Transport>, interval: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return; // a lazily made client outside a runtime: `sync_endpoints` by hand
    };
    let transport = Arc::downgrade(transport);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(transport) = transport.upgrade() else {
                return; // every client is gone
            };
            if let Err(err) = sync(&transport).await {
                tracing::debug!(error = %err, "endpoint sync failed; trying again later");
            }
        }
    });
}
