//! Without the cargo feature `tls`: no TLS type has a value, so every endpoint is plain HTTP/2
//! and an `https` one is refused when the client is built, saying which feature to enable.

use tokio::net::TcpStream;

/// Why an `https` endpoint cannot be reached in this build.
pub(super) const MISSING: &str =
    "etcd-config was built without TLS: enable its cargo feature `tls`";

/// No TLS settings exist in this build.
#[derive(Clone)]
pub(super) enum Tls {}

/// No TLS session exists in this build.
pub(super) enum Session {}

impl Tls {
    pub(super) fn session_for(&self, _host: &str) -> Result<Session, String> {
        match *self {}
    }
}

impl Session {
    pub(super) async fn open(&self, _tcp: TcpStream) -> std::io::Result<TcpStream> {
        match *self {}
    }
}
