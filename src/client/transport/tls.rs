//! TLS with rustls (cargo feature `tls`): a client's TLS files read once into a
//! configuration, and a session opened on each connection.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName,
};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::client::options::TlsOptions;
use crate::error::{Error, Result};

/// Why an `https` endpoint cannot be reached with the options given.
pub(super) const MISSING: &str = "no TLS options were given (ConnectOptions::with_tls)";

/// The TLS settings shared by every endpoint of a client: a rustls configuration and the name
/// to check certificates against when it is not each endpoint's host.
#[derive(Clone)]
pub(super) struct Tls {
    config: Arc<ClientConfig>,
    domain: Option<ServerName<'static>>,
}

/// How to open TLS to one endpoint: the configuration, and the name its certificate must carry.
pub(super) struct Session {
    config: Arc<ClientConfig>,
    server: ServerName<'static>,
}

impl Tls {
    /// The session settings for an endpoint on `host`.
    pub(super) fn session_for(
        &self,
        host: &str,
    ) -> std::result::Result<Session, InvalidDnsNameError> {
        let server = match &self.domain {
            Some(domain) => domain.clone(),
            None => ServerName::try_from(host)?.to_owned(),
        };
        Ok(Session {
            config: self.config.clone(),
            server,
        })
    }
}

impl Session {
    /// The TLS handshake on a connected socket.
    pub(super) async fn open(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        TlsConnector::from(self.config.clone())
            .connect(self.server.clone(), tcp)
            .await
    }
}

/// Reads the TLS files into a rustls configuration (ring, TLS 1.2 and 1.3, ALPN `h2`).
pub(super) fn tls_config(options: &TlsOptions) -> Result<Tls> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|err| {
            Error::client_options(format!("cannot read TLS file {}: {err}", path.display()))
        })
    };
    let bad = |path: &std::path::Path, why: &dyn std::fmt::Display| {
        Error::client_options(format!("TLS file {}: {why}", path.display()))
    };
    let certificates = |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>> {
        let pem = read(path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|err| bad(path, &err))?;
        if certs.is_empty() {
            return Err(bad(path, &"no PEM certificate in it"));
        }
        Ok(certs)
    };
    // Never an empty trust store: it would refuse every server with a puzzling handshake
    // error. The crate trusts exactly the CA a user names.
    let Some(ca) = &options.ca_file else {
        return Err(Error::client_options(
            "TLS needs a CA file (TlsOptions::ca_file): this client trusts exactly the CA that \
             signed the etcd servers' certificates, never the system's trust store",
        ));
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|err| bad(ca, &err))?;
    }
    // ring, not aws-lc-rs: no C toolchain beyond a compiler, and a lighter build. rustls
    // 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; etcd's
    // clusters are reached over TLS 1.2/1.3 with classic groups, so it stays the choice.
    #[allow(deprecated)]
    let provider = ring::default_provider();
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::client_options(format!("TLS: {err}")))?
        .with_root_certificates(roots);
    let mut config = match &options.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let key_pem = read(key)?;
            // The key's own text never goes into the error: only which file failed.
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|_| bad(key, &"no PEM private key in it"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|err| bad(key, &err))?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let domain =
        match &options.domain {
            Some(domain) => Some(ServerName::try_from(domain.clone()).map_err(|err| {
                Error::client_options(format!("TLS domain name `{domain}`: {err}"))
            })?),
            None => None,
        };
    Ok(Tls {
        config: Arc::new(config),
        domain,
    })
}
