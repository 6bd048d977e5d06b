//! etcd's Lease service: time-limited ownership of keys.

use std::future::IntoFuture;

use tokio::sync::watch;

use super::keep_alive::Renewal;
use super::namespace::Leave as _;
use super::BoxFuture;
use super::{Client, ResponseHeader};
use crate::error::{Error, Result};
use crate::proto::etcdserverpb as pb;

/// Handle to the Lease service of a [`Client`].
#[derive(Clone, Debug)]
pub struct Lease {
    client: Client,
}

/// A lease as etcd granted or reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// Who answered.
    pub header: ResponseHeader,
    /// The lease ID.
    pub id: i64,
    /// Seconds left (-1 if the lease has expired or does not exist).
    pub ttl: i64,
    /// The TTL it was granted with (from `time_to_live`; 0 elsewhere).
    pub granted_ttl: i64,
    /// The keys attached to it (from `time_to_live` with `keys`).
    pub keys: Vec<Vec<u8>>,
}

impl Lease {
    pub(crate) fn new(client: Client) -> Self {
        Lease { client }
    }

    /// Grants a lease of `ttl` seconds with an ID chosen by etcd (one LeaseGrant round trip).
    pub async fn grant(&self, ttl: i64) -> Result<LeaseInfo> {
        self.grant_request(ttl, 0).await
    }

    /// Grants a lease of `ttl` seconds with the ID `id` (one LeaseGrant round trip).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for `id` 0, which is etcd's "choose one for me": call
    /// [`grant`](Self::grant) for that. etcd's `DuplicateKey`-like refusal if the ID is taken.
    pub async fn grant_with_id(&self, ttl: i64, id: i64) -> Result<LeaseInfo> {
        if id == 0 {
            return Err(Error::invalid(
                "lease id 0 means \"etcd chooses\": call Lease::grant(ttl) for that",
            ));
        }
        self.grant_request(ttl, id).await
    }

    async fn grant_request(&self, ttl: i64, id: i64) -> Result<LeaseInfo> {
        let response = self.client.call(pb::LeaseGrantRequest { ttl, id }).await?;
        if !response.error.is_empty() {
            return Err(Error::Server {
                kind: crate::error::ServerErrorKind::from_message(&response.error),
                message: response.error,
                request: format!("LeaseGrant ttl={ttl}"),
            });
        }
        Ok(LeaseInfo {
            header: response.header.into(),
            id: response.id,
            ttl: response.ttl,
            granted_ttl: response.ttl,
            keys: Vec::new(),
        })
    }

    /// Revokes a lease, deleting every key attached to it (one LeaseRevoke round trip).
    pub async fn revoke(&self, id: i64) -> Result<ResponseHeader> {
        let response = self.client.call(pb::LeaseRevokeRequest { id }).await?;
        Ok(response.header.into())
    }

    /// Reports a lease's remaining TTL (one LeaseTimeToLive round trip); add `.keys()` to
    /// list the keys attached to it too. Then `.await`.
    pub fn time_to_live(&self, id: i64) -> TimeToLive {
        TimeToLive {
            client: self.client.clone(),
            request: pb::LeaseTimeToLiveRequest { id, keys: false },
        }
    }

    /// Lists the IDs of every live lease.
    pub async fn leases(&self) -> Result<Vec<i64>> {
        let response = self.client.call(pb::LeaseLeasesRequest {}).await?;
        Ok(response.leases.into_iter().map(|l| l.id).collect())
    }

    /// Keeps a lease alive until the returned handle is dropped: renews it now (so a lease that
    /// does not exist is an error at once), then every third of the TTL etcd grants.
    ///
    /// All leases of a client are renewed over one LeaseKeepAlive stream, as etcd's Go client
    /// does. That stream fails over like a watch: when it breaks, or a renewal goes unanswered
    /// for a whole interval (a frozen member), it is reopened on another endpoint and every
    /// lease renewed at once. If a lease is lost (it expired while etcd was unreachable for
    /// longer than its TTL, or was revoked), renewing it stops and [`KeepAlive::lost`]
    /// resolves. The handle keeps the client's connections open.
    ///
    /// # Errors
    ///
    /// [`ServerErrorKind::LeaseNotFound`](crate::error::ServerErrorKind::LeaseNotFound) for a lease
    /// that does not exist; [`Error::Connect`] or [`Error::Timeout`] if etcd does not answer
    /// the first renewal within the request timeout.
    pub async fn keep_alive(&self, id: i64) -> Result<KeepAlive> {
        let mut state = self.client.keeper().keep(id);
        let after = self.client.transport().options.request_timeout;
        let failed = {
            let first = tokio::time::timeout(
                after,
                state.wait_for(|renewal| !matches!(renewal, Renewal::Pending)),
            )
            .await;
            match first {
                Err(_elapsed) => Some(Error::Timeout {
                    operation: format!("LeaseKeepAlive {id:x}"),
                    after,
                    endpoint: None,
                }),
                Ok(Err(_closed)) => Some(renewals_ended(id)),
                Ok(Ok(renewal)) => match &*renewal {
                    Renewal::Failed(err) => Some(err.clone()),
                    Renewal::Pending | Renewal::Alive(_) => None,
                },
            }
        };
        match failed {
            Some(err) => Err(err),
            None => Ok(KeepAlive {
                id,
                state,
                _client: self.client.clone(),
            }),
        }
    }

    /// Renews a lease once, returning its new TTL (one message on a LeaseKeepAlive stream).
    ///
    /// A lease that has expired or does not exist gives
    /// [`ServerErrorKind::LeaseNotFound`](crate::error::ServerErrorKind::LeaseNotFound).
    pub async fn keep_alive_once(&self, id: i64) -> Result<i64> {
        let response = self.client.call(pb::LeaseKeepAliveRequest { id }).await?;
        if response.ttl <= 0 {
            return Err(Error::lease_not_found(id));
        }
        Ok(response.ttl)
    }
}

/// A lease being kept alive by [`Lease::keep_alive`]. Dropping it stops the renewals (the lease
/// then expires after its TTL, deleting its keys).
#[derive(Debug)]
pub struct KeepAlive {
    id: i64,
    state: watch::Receiver<Renewal>,
    _client: Client,
}

impl KeepAlive {
    /// The lease ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL etcd granted at the last renewal, in seconds; `None` once the lease is lost.
    pub fn ttl(&self) -> Option<i64> {
        match *self.state.borrow() {
            Renewal::Alive(ttl) => Some(ttl),
            Renewal::Pending | Renewal::Failed(_) => None,
        }
    }

    /// Another view of the renewals, for a handle that waits for the loss by itself.
    pub(crate) fn renewals(&self) -> watch::Receiver<Renewal> {
        self.state.clone()
    }

    /// Resolves when the lease is gone (expired or revoked), with the reason.
    pub async fn lost(&mut self) -> Error {
        match self
            .state
            .wait_for(|renewal| matches!(renewal, Renewal::Failed(_)))
            .await
        {
            Ok(renewal) => match &*renewal {
                Renewal::Failed(err) => err.clone(),
                Renewal::Pending | Renewal::Alive(_) => renewals_ended(self.id),
            },
            Err(_closed) => renewals_ended(self.id),
        }
    }
}

fn renewals_ended(id: i64) -> Error {
    Error::Stopped {
        what: format!("keep-alive of lease {id:x}"),
        reason: "the renewal task ended".to_owned(),
    }
}

/// A question about one lease. Await it.
#[derive(Debug, Clone)]
#[must_use = "a TimeToLive does nothing until awaited"]
pub struct TimeToLive {
    client: Client,
    request: pb::LeaseTimeToLiveRequest,
}

impl TimeToLive {
    /// Also list the keys attached to the lease.
    pub fn keys(mut self) -> Self {
        self.request.keys = true;
        self
    }
}

impl IntoFuture for TimeToLive {
    type Output = Result<LeaseInfo>;
    type IntoFuture = BoxFuture<LeaseInfo>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut response = self.client.call(self.request).await?;
            response.leave(&self.client.namespace);
            Ok(LeaseInfo {
                header: response.header.into(),
                id: response.id,
                ttl: response.ttl,
                granted_ttl: response.granted_ttl,
                keys: response.keys,
            })
        })
    }
}
