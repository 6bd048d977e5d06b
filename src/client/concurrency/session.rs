//! [`Session`]: a lease kept alive, for locks and elections.

use std::sync::Arc;
use std::time::Duration;

use crate::client::keep_alive::Renewal;
use crate::client::{Client, KeepAlive};
use crate::error::{Error, Result};

/// A lease kept alive for as long as the session lives, that locks and elections attach their
/// keys to. Cheap to clone; the lease is revoked (releasing every lock and leadership taken
/// through it at once) when the last clone is dropped or [`close`](Self::close) is called.
///
/// If renewals fail for the lease's TTL (a frozen process, a partition), etcd expires the
/// lease: the session is lost, [`lost`](Self::lost) resolves, and a new session is needed.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    keep: KeepAlive,
    ttl: i64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Revoke rather than wait a TTL for the expiry: the next waiter goes at once.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let lease = self.client.lease();
            let id = self.keep.id();
            runtime.spawn(async move {
                let _ = lease.revoke(id).await;
            });
        }
    }
}

impl Client {
    /// A new [`Session`]: a lease of `ttl` (whole seconds, at least one) kept alive.
    ///
    /// # Errors
    ///
    /// The lease grant's and the first renewal's.
    pub async fn session(&self, ttl: Duration) -> Result<Session> {
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let granted = self.lease().grant(seconds).await?;
        let keep = self.lease().keep_alive(granted.id).await?;
        Ok(Session {
            inner: Arc::new(Inner {
                client: self.clone(),
                keep,
                ttl: granted.ttl,
            }),
        })
    }
}

impl Session {
    /// The session's lease.
    pub fn lease(&self) -> i64 {
        self.inner.keep.id()
    }

    /// The TTL etcd granted, in seconds.
    pub fn ttl(&self) -> i64 {
        self.inner.ttl
    }

    /// The client the session was made with.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// False once the lease is known lost (expired or revoked).
    pub fn is_alive(&self) -> bool {
        self.inner.keep.ttl().is_some()
    }

    /// Resolves when the lease is lost, with [`Error::SessionLost`].
    pub async fn lost(&self) -> Error {
        let mut renewals = self.inner.keep.renewals();
        let _ = renewals
            .wait_for(|renewal| matches!(renewal, Renewal::Failed(_)))
            .await;
        Error::SessionLost {
            lease: self.lease(),
        }
    }

    /// Revokes the lease now (for every clone of this session).
    ///
    /// # Errors
    ///
    /// The revoke's (a lease already gone is not an error).
    pub async fn close(self) -> Result<()> {
        match self.inner.client.lease().revoke(self.lease()).await {
            Ok(_) => Ok(()),
            Err(err) if err.server_kind() == Some(crate::error::ServerErrorKind::LeaseNotFound) => {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }
}
