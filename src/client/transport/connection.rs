//! One HTTP/2 connection to an etcd member, driven with the `h2` crate from the caller's task.
//!
//! tonic's `Channel` puts a `tower` buffer in front of hyper's connection, and hyper in turn
//! hands every request to its connection task and spawns a task to send each request body.
//! On a multi-threaded runtime each of those hand-offs is a wake-up across threads, and
//! profiling showed them as the largest cost of a small request. Here the caller's task opens
//! the stream and queues the request's frames itself; the connection's task only does the I/O.
//! A streaming request (Watch, LeaseKeepAlive) gets a task that forwards its later messages.
//!
//! Reconnecting is the transport's job (see its module docs). What this module owes it is to
//! say which failures happened before the request left this process ([`NotSent`]).

use std::error::Error as StdError;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::tls::Session;
use crate::client::options::ConnectOptions;
use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::Uri;
use http_body::{Body as _, Frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

type Body = tonic::body::Body;
type BoxError = Box<dyn StdError + Send + Sync>;

/// Flow-control windows for what etcd sends: a range answer of several MiB should not wait
/// for a window update every 64 KiB (HTTP/2's default).
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;

/// Where one endpoint is and how to speak to it, worked out once from the endpoint string.
pub(super) struct Target {
    /// `scheme://host:port`, the origin of every request (HTTP/2's `:scheme` and `:authority`).
    pub(super) origin: Uri,
    /// `host:port` as the socket connects to it.
    address: String,
    /// With TLS: its configuration and the name the server's certificate is checked against.
    tls: Option<Session>,
}

impl Target {
    pub(super) fn new(origin: Uri, address: String, tls: Option<Session>) -> Target {
        Target {
            origin,
            address,
            tls,
        }
    }

    /// `host:port` as the socket connects to it.
    #[cfg(test)]
    pub(super) fn address(&self) -> &str {
        &self.address
    }

    /// Opens the TCP connection, the TLS session if any, and the HTTP/2 connection, whose task
    /// is spawned on the current runtime. Errors are described for a person, causes included.
    pub(super) async fn connect(&self, options: &ConnectOptions) -> Result<Http2, String> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|err| format!("cannot connect to {}: {err}", self.address))?;
        tcp.set_nodelay(true)
            .map_err(|err| format!("cannot set TCP_NODELAY: {err}"))?;
        match &self.tls {
            None => handshake(tcp, options).await,
            Some(session) => {
                let tls = session
                    .open(tcp)
                    .await
                    .map_err(|err| format!("TLS handshake: {}", super::source_chain(&err)))?;
                handshake(tls, options).await
            }
        }
    }
}

async fn handshake<T>(io: T, options: &ConnectOptions) -> Result<Http2, String>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|err| format!("HTTP/2 handshake: {}", super::source_chain(&err)))?;
    let closed = Arc::new(AtomicBool::new(false));
    let pings = connection.ping_pong();
    let keep_alive = options.keep_alive;
    let done = closed.clone();
    tokio::spawn(async move {
        let why = match (keep_alive, pings) {
            (Some((interval, timeout)), Some(pings)) => tokio::select! {
                result = &mut connection => result.err().map(|err| super::source_chain(&err)),
                why = keep_alive_until_unanswered(pings, interval, timeout) => Some(why),
            },
            _ => (&mut connection)
                .await
                .err()
                .map(|err| super::source_chain(&err)),
        };
        // Dropping the connection fails every stream still open on it.
        drop(connection);
        done.store(true, Ordering::Release);
        match why {
            Some(why) => tracing::debug!(error = %why, "etcd connection closed"),
            None => tracing::trace!("etcd connection closed"),
        }
    });
    Ok(Http2 { send, closed })
}

/// Pings every `interval`, idle or not, and returns once a ping goes unanswered for `timeout`
/// (a frozen or cut-off member): gRPC's keep-alive, as etcd's Go client configures it.
async fn keep_alive_until_unanswered(
    mut pings: PingPong,
    interval: Duration,
    timeout: Duration,
) -> String {
    loop {
        tokio::time::sleep(interval).await;
        if let Err(err) = pings.send_ping(Ping::opaque()) {
            return format!("keep-alive ping: {err}");
        }
        match tokio::time::timeout(timeout, poll_fn(|cx| pings.poll_pong(cx))).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(err)) => return format!("keep-alive ping: {err}"),
            Err(_) => return format!("keep-alive ping unanswered for {timeout:?}"),
        }
    }
}

/// The sending half of one HTTP/2 connection, as the `tower` service tonic's stubs call.
#[derive(Clone)]
pub(crate) struct Http2 {
    send: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl Http2 {
    /// False once the connection is gone (closed by the server, broken, or its keep-alive
    /// unanswered): it must not be handed out again.
    pub(super) fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }
}

/// A call that failed before its request left this process, or that etcd refused to start
/// (`REFUSED_STREAM`): sending it again elsewhere is always safe (see `calls::Failure`).
#[derive(Debug)]
pub(super) struct NotSent(h2::Error);

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request not sent")
    }
}

impl StdError for NotSent {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

fn not_sent(err: h2::Error) -> BoxError {
    Box::new(NotSent(err))
}

impl tower_service::Service<http::Request<Body>> for Http2 {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    /// Always ready: waiting for a free stream happens in [`call`](Self::call), where an error
    /// keeps its type (tonic turns an error from here into a bare `Unknown` status).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let send = self.send.clone();
        Box::pin(async move {
            let (head, body) = request.into_parts();
            let mut send = send.ready().await.map_err(not_sent)?;
            let (response, stream) = send
                .send_request(http::Request::from_parts(head, ()), false)
                .map_err(not_sent)?;
            send_body(stream, body).await?;
            match response.await {
                Ok(response) => Ok(response.map(ResponseBody::new)),
                Err(err) if err.reason() == Some(Reason::REFUSED_STREAM) => Err(not_sent(err)),
                Err(err) => Err(Box::new(err) as BoxError),
            }
        })
    }
}

/// Sends what the request body has ready now, from the caller's task. A unary request is
/// complete at once and goes out as one DATA frame that ends the stream; a streaming one
/// gets a task forwarding the rest.
async fn send_body(mut stream: SendStream<Bytes>, mut body: Body) -> Result<(), BoxError> {
    // Held back one frame, so the last one carries END_STREAM rather than an empty frame.
    let mut held: Option<Bytes> = None;
    loop {
        let next = poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        match next {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    if let Some(earlier) = held.replace(data) {
                        stream.send_data(earlier, false)?;
                    }
                }
                Err(frame) => {
                    if let Some(earlier) = held.take() {
                        stream.send_data(earlier, false)?;
                    }
                    if let Ok(trailers) = frame.into_trailers() {
                        stream.send_trailers(trailers)?;
                        return Ok(());
                    }
                }
            },
            Poll::Ready(None) => {
                stream.send_data(held.take().unwrap_or_default(), true)?;
                return Ok(());
            }
            Poll::Ready(Some(Err(status))) => {
                stream.send_reset(Reason::CANCEL);
                return Err(Box::new(status));
            }
            Poll::Pending => {
                if let Some(earlier) = held.take() {
                    stream.send_data(earlier, false)?;
                }
                tokio::spawn(forward_body(stream, body));
                return Ok(());
            }
        }
    }
}

/// Forwards a streaming request's later messages until it ends or etcd resets the stream.
async fn forward_body(mut stream: SendStream<Bytes>, mut body: Body) {
    loop {
        let next = poll_fn(|cx| {
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let sent = match next {
            None => return,
            Some(None) => return drop(stream.send_data(Bytes::new(), true)),
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => stream.send_data(data, false),
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => return drop(stream.send_trailers(trailers)),
                    Err(_) => Ok(()),
                },
            },
            Some(Some(Err(_))) => return stream.send_reset(Reason::CANCEL),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// A response body read from its HTTP/2 stream, giving the flow-control window back as data
/// is handed on (a watch that is read keeps receiving).
pub(crate) struct ResponseBody {
    stream: RecvStream,
    data_done: bool,
}

impl ResponseBody {
    fn new(stream: RecvStream) -> ResponseBody {
        ResponseBody {
            stream,
            data_done: false,
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match this.stream.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    // Fails only once the stream is gone, which the next poll reports.
                    let _ = this.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => this.data_done = true,
            }
        }
        this.stream
            .poll_trailers(cx)
            .map(|trailers| trailers.transpose().map(|t| t.map(Frame::trailers)))
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}
