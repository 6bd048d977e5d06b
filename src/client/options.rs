//! [`ConnectOptions`]: how a [`Client`](super::Client) dials, authenticates and times out.

use std::fmt;
#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::time::Duration;

/// How to connect to etcd. A consuming builder; every setting has a default.
///
/// ```
/// use std::time::Duration;
/// use etcd_config::ConnectOptions;
///
/// let options = ConnectOptions::default()
///     .with_user("service", "s3cret")
///     .dial_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_secs(5));
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) dial_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) keep_alive: Option<(Duration, Duration)>,
    pub(crate) credentials: Option<(String, String)>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsOptions>,
    pub(crate) max_send_message_size: usize,
    pub(crate) max_receive_message_size: usize,
    pub(crate) auto_sync: Option<Duration>,
}

impl Default for ConnectOptions {
    /// Dial timeout 5 s, request timeout 10 s, HTTP/2 keep-alive every 30 s (10 s to answer),
    /// no credentials, no TLS, messages up to 2 MiB sent and 64 MiB received.
    fn default() -> Self {
        ConnectOptions {
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            keep_alive: Some((Duration::from_secs(30), Duration::from_secs(10))),
            credentials: None,
            #[cfg(feature = "tls")]
            tls: None,
            // etcd's own default request limit (--max-request-bytes) is 1.5 MiB plus gRPC
            // overhead; a larger message would be refused by the server anyway.
            max_send_message_size: 2 * 1024 * 1024,
            max_receive_message_size: 64 * 1024 * 1024,
            auto_sync: None,
        }
    }
}

impl ConnectOptions {
    /// Options with every default; see [`Default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// How long [`Client::connect`](super::Client::connect), and a later reconnect to an
    /// endpoint, may take to open a connection.
    #[must_use]
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// The deadline of each unary call, including its retries on other endpoints and a
    /// re-authentication. Streams (watch, keep-alive, snapshot) are not bound by it, except
    /// that awaiting a new watch waits at most this long for etcd to confirm it (up to one
    /// dial timeout more while its stream is being opened on a member that does not answer).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Send an HTTP/2 ping every `interval` and drop the connection if no answer comes within
    /// `timeout`, so a dead peer is noticed even when no call is in flight.
    #[must_use]
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((interval, timeout));
        self
    }

    /// Turn HTTP/2 keep-alive pings off.
    #[must_use]
    pub fn without_keep_alive(mut self) -> Self {
        self.keep_alive = None;
        self
    }

    /// Authenticate as `user` at connect and whenever the token expires.
    #[must_use]
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Connect with TLS (cargo feature `tls`). Endpoints without a scheme then use `https://`.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The largest message the client sends (default 2 MiB).
    #[must_use]
    pub fn max_send_message_size(mut self, bytes: usize) -> Self {
        self.max_send_message_size = bytes;
        self
    }

    /// The largest message the client accepts (default 64 MiB).
    #[must_use]
    pub fn max_receive_message_size(mut self, bytes: usize) -> Self {
        self.max_receive_message_size = bytes;
        self
    }

    /// Refresh the endpoint list from the cluster's member list every `interval` (Go's
    /// `AutoSyncInterval`), so that a client whose configured endpoints were all replaced by
    /// new members keeps working. Off by default: the endpoints stay as given.
    /// [`Client::sync_endpoints`](super::Client::sync_endpoints) does it once.
    pub fn auto_sync(mut self, interval: Duration) -> Self {
        self.auto_sync = Some(interval);
        self
    }
}

impl fmt::Debug for ConnectOptions {
    // Written by hand so the password never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ConnectOptions");
        debug
            .field("dial_timeout", &self.dial_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user));
        #[cfg(feature = "tls")]
        debug.field("tls", &self.tls);
        debug
            .field("max_send_message_size", &self.max_send_message_size)
            .field("max_receive_message_size", &self.max_receive_message_size)
            .field("auto_sync", &self.auto_sync)
            .finish()
    }
}

/// TLS settings (rustls): the CA that signed the servers' certificates, and for mutual TLS a
/// client certificate and key. Files are PEM.
///
/// A CA file is required: the servers' certificates must chain to the CA given here, and
/// connecting without one is refused with [`Error::ClientOptions`](crate::Error::ClientOptions)
/// (the crate does not read the system trust store: etcd clusters normally use a private CA).
///
/// With the cargo feature `tls` only: without it the client speaks plain HTTP/2 and refuses an
/// `https://` endpoint.
#[cfg(feature = "tls")]
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
    pub(crate) domain: Option<String>,
}

#[cfg(feature = "tls")]
impl TlsOptions {
    /// TLS with nothing configured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust servers whose certificates chain to the CA in this PEM file.
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Present this certificate and key (PEM files) to the server, for `--client-cert-auth`.
    #[must_use]
    pub fn client_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Check the servers' certificates against this name instead of each endpoint's host.
    #[must_use]
    pub fn domain_name(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }
}
