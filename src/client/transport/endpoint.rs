//! Endpoint strings and TLS files turned into connection targets.

use std::sync::Arc;

use http::Uri;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::connection::Target;
use crate::client::options::TlsOptions;
use crate::error::{Error, Result};

/// The TLS settings shared by every endpoint of a client: a rustls configuration and the name
/// to check certificates against when it is not each endpoint's host.
#[derive(Clone)]
pub(super) struct Tls {
    config: Arc<ClientConfig>,
    domain: Option<ServerName<'static>>,
}

/// Turns an endpoint as a user writes it (`127.0.0.1:2379`, `http://h:2379`, `https://h:2379`)
/// into where to connect and how.
pub(super) fn target(name: &str, tls: Option<&Tls>) -> Result<Target> {
    let invalid = |why: &dyn std::fmt::Display| {
        Error::client_options(format!("endpoint `{name}` is not a valid address: {why}"))
    };
    let uri: Uri = if name.contains("://") {
        name.parse()
    } else if tls.is_some() {
        format!("https://{name}").parse()
    } else {
        format!("http://{name}").parse()
    }
    .map_err(|err| invalid(&err))?;
    let secure = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(invalid(&"the scheme must be http or https")),
    };
    let Some(host) = uri.host().filter(|host| !host.is_empty()) else {
        return Err(invalid(&"no host"));
    };
    // What follows the host must be nothing or a port that fits: `http` parses `h:99999` as a
    // host with no port at all, which would mean port 80.
    let after_host = uri
        .authority()
        .and_then(|authority| authority.as_str().strip_prefix(host));
    let port = match (after_host, uri.port_u16()) {
        (Some(""), _) => {
            if secure {
                443
            } else {
                80
            }
        }
        (Some(_), Some(port)) => port,
        _ => return Err(invalid(&"expected host:port with a port from 0 to 65535")),
    };
    let address = format!("{host}:{port}");
    let origin = Uri::builder()
        .scheme(uri.scheme_str().unwrap_or("http"))
        .authority(address.as_str())
        .path_and_query("/")
        .build()
        .map_err(|err| invalid(&err))?;
    let tls = match (secure, tls) {
        (false, _) => None,
        (true, None) => {
            return Err(Error::client_options(format!(
            "endpoint `{name}` uses https but no TLS options were given (ConnectOptions::with_tls)"
        )))
        }
        (true, Some(tls)) => {
            let server = match &tls.domain {
                Some(domain) => domain.clone(),
                None => ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                    .map_err(|err| invalid(&err))?
                    .to_owned(),
            };
            Some((tls.config.clone(), server))
        }
    };
    Ok(Target::new(origin, address, tls))
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

/// An error with its causes, `a: b: c`, so "connection refused" is not hidden behind
/// "transport error".
pub(super) fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(name: &str) -> Result<(String, String)> {
        let target = target(name, None)?;
        Ok((target.origin.to_string(), target.address().to_owned()))
    }

    #[test]
    fn endpoints_as_users_write_them() {
        let cases = [
            ("127.0.0.1:2379", "http://127.0.0.1:2379/", "127.0.0.1:2379"),
            ("http://etcd-0:2379", "http://etcd-0:2379/", "etcd-0:2379"),
            ("[::1]:2379", "http://[::1]:2379/", "[::1]:2379"),
            ("http://etcd-0", "http://etcd-0:80/", "etcd-0:80"),
            (
                "http://etcd-0:2379/ignored",
                "http://etcd-0:2379/",
                "etcd-0:2379",
            ),
        ];
        for (name, origin, socket) in cases {
            let (got_origin, got_socket) = address(name).unwrap();
            assert_eq!(
                (got_origin.as_str(), got_socket.as_str()),
                (origin, socket),
                "{name}"
            );
        }
    }

    #[test]
    fn bad_endpoints_are_refused_by_name() {
        for name in [
            "",
            "unix:///run/etcd.sock",
            "http://",
            "not an address",
            "h:99999",
            "user@h:2379",
            "h:port",
        ] {
            let err = address(name).unwrap_err().to_string();
            assert!(err.contains(&format!("`{name}`")), "{name}: {err}");
        }
        let err = address("https://etcd-0:2379").unwrap_err().to_string();
        assert!(err.contains("no TLS options"), "{err}");
    }
}
