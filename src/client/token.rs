//! The auth token: obtained at connect, attached to every call and stream, renewed on demand.
//!
//! etcd answers "invalid auth token" when a simple token expired (`--auth-token-ttl`) and
//! "revision of auth store is old" when users or roles changed after the token was issued. In
//! both cases a fresh token makes the same request succeed. When many calls fail at once, only
//! the first re-authenticates: each call remembers the *generation* of the token it sent, and a
//! call that finds a newer generation already in place simply retries with it.
//!
//! The transport holds the credentials and attaches the token to every call. Renewing the
//! token is itself a call (`Authenticate`), which the transport hands in as a function: it
//! sends it without a token, so that it never recurses into a renewal.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use tonic::metadata::AsciiMetadataValue;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{AuthenticateRequest, AuthenticateResponse};

/// The metadata key etcd reads the token from.
const TOKEN_KEY: &str = "token";

/// A user name, its password, and the token etcd issued for them.
pub(crate) struct Credentials {
    user: String,
    password: String,
    token: RwLock<(u64, Option<AsciiMetadataValue>)>,
    /// Held while authenticating, so concurrent renewals collapse into one.
    renewing: tokio::sync::Mutex<()>,
    /// How many times this client authenticated, for the debug log.
    authentications: AtomicU64,
}

impl Credentials {
    pub(crate) fn new(user: String, password: String) -> Self {
        Credentials {
            user,
            password,
            token: RwLock::new((0, None)),
            renewing: tokio::sync::Mutex::new(()),
            authentications: AtomicU64::new(0),
        }
    }

    pub(crate) fn user(&self) -> &str {
        &self.user
    }

    /// Adds the current token to `request`; returns the token's generation.
    pub(crate) fn attach<T>(&self, request: &mut tonic::Request<T>) -> u64 {
        let guard = crate::sync::read(&self.token);
        if let Some(token) = &guard.1 {
            request.metadata_mut().insert(TOKEN_KEY, token.clone());
        }
        guard.0
    }

    /// The generation of the current token; 0 before the first authentication.
    pub(crate) fn generation(&self) -> u64 {
        crate::sync::read(&self.token).0
    }

    /// Gets a new token from `authenticate` unless one newer than generation `seen` is already
    /// in place.
    pub(crate) async fn refresh<F>(
        &self,
        seen: u64,
        authenticate: impl FnOnce(AuthenticateRequest) -> F,
    ) -> Result<()>
    where
        F: Future<Output = Result<AuthenticateResponse>>,
    {
        let _renewing = self.renewing.lock().await;
        if crate::sync::read(&self.token).0 != seen {
            return Ok(()); // another call renewed it while this one waited
        }
        let request = AuthenticateRequest {
            name: self.user.clone(),
            password: self.password.clone(),
        };
        let response = authenticate(request).await?;
        let token =
            AsciiMetadataValue::try_from(response.token.as_str()).map_err(|_| Error::Protocol {
                reason: format!(
                    "etcd issued user {} a token that is not valid gRPC metadata",
                    self.user
                ),
            })?;
        let count = self.authentications.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(user = %self.user, count, "authenticated with etcd");
        let mut guard = crate::sync::write(&self.token);
        *guard = (seen + 1, Some(token));
        Ok(())
    }
}
