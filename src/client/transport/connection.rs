//! One HTTP/2 connection to an etcd member, driven by hyper with no queue in between.
//!
//! tonic's `Channel` puts a `tower` buffer in front of each connection: every call is handed
//! to the buffer's worker task, which hands it on to hyper's connection task. On a
//! multi-threaded runtime those are two more wake-ups across threads per call, and profiling
//! showed them as the largest cost of a small request. Here a call goes from the caller's task
//! straight to the connection's. Reconnecting is the transport's job (see its module docs), so
//! nothing else of `Channel` is needed.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::client::options::ConnectOptions;

type Body = tonic::body::Body;
type BoxError = Box<dyn StdError + Send + Sync>;

/// Where one endpoint is and how to speak to it, worked out once from the endpoint string.
pub(super) struct Target {
    /// `scheme://host:port`, the origin of every request (HTTP/2's `:scheme` and `:authority`).
    pub(super) origin: Uri,
    /// `host:port` as the socket connects to it.
    address: String,
    /// The name the server's certificate is checked against, with TLS.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl Target {
    pub(super) fn new(
        origin: Uri,
        address: String,
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    ) -> Target {
        Target {
            origin,
            address,
            tls,
        }
    }

    /// Opens the TCP connection, the TLS session if any, and the HTTP/2 connection, whose task
    /// is spawned on the current runtime. Errors are described for a person, causes included.
    pub(super) async fn connect(&self, options: &ConnectOptions) -> Result<Http2, String> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|err| format!("cannot connect to {}: {err}", self.address))?;
        tcp.set_nodelay(true)
            .map_err(|err| format!("cannot set TCP_NODELAY: {err}"))?;
        let send = match &self.tls {
            None => handshake(tcp, options).await?,
            Some((config, name)) => {
                let tls = TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|err| format!("TLS handshake: {}", super::source_chain(&err)))?;
                handshake(tls, options).await?
            }
        };
        Ok(Http2 { send })
    }
}

async fn handshake<T>(io: T, options: &ConnectOptions) -> Result<SendRequest<Body>, String>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    if let Some((interval, timeout)) = options.keep_alive {
        builder
            .keep_alive_interval(interval)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
    }
    let (send, connection) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|err| format!("HTTP/2 handshake: {}", super::source_chain(&err)))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %super::source_chain(&err), "etcd connection closed");
        }
    });
    Ok(send)
}

/// The sending half of one HTTP/2 connection, as the `tower` service tonic's stubs call.
#[derive(Clone)]
pub(crate) struct Http2 {
    send: SendRequest<Body>,
}

impl Http2 {
    /// False once the connection is gone (closed by the server, broken, or its keep-alive
    /// unanswered): it must not be handed out again.
    pub(super) fn is_open(&self) -> bool {
        !self.send.is_closed()
    }
}

/// A call refused because its connection had already closed: the request never left this
/// process, so sending it again elsewhere is always safe (see `calls::Failure`).
#[derive(Debug)]
pub(super) struct NotSent(hyper::Error);

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection closed before the request was sent")
    }
}

impl StdError for NotSent {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

impl tower_service::Service<http::Request<Body>> for Http2 {
    type Response = http::Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, BoxError>> + Send>>;

    /// Always ready: a closed connection shows in [`call`](Self::call), where the error keeps
    /// its type (tonic turns an error from here into a bare `Unknown` status).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let sent = self.send.try_send_request(request);
        Box::pin(async move {
            sent.await.map_err(|mut err| -> BoxError {
                if err.take_message().is_some() {
                    Box::new(NotSent(err.into_error()))
                } else {
                    Box::new(err.into_error())
                }
            })
        })
    }
}
