//! Endpoint strings and TLS files turned into tonic endpoints.

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::client::options::{ConnectOptions, TlsOptions};
use crate::error::{Error, Result};

/// Turns an endpoint as a user writes it (`127.0.0.1:2379`, `http://h:2379`, `https://h:2379`)
/// into a tonic endpoint with the connection options applied.
pub(super) fn endpoint(
    name: &str,
    options: &ConnectOptions,
    tls: Option<ClientTlsConfig>,
) -> Result<Endpoint> {
    let uri = if name.contains("://") {
        name.to_owned()
    } else if tls.is_some() {
        format!("https://{name}")
    } else {
        format!("http://{name}")
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|err| Error::config(format!("endpoint `{name}` is not a valid address: {err}")))?
        .connect_timeout(options.dial_timeout)
        .tcp_nodelay(true);
    if let Some((interval, timeout)) = options.keep_alive {
        endpoint = endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
    }
    if name.starts_with("https://") || (tls.is_some() && !name.starts_with("http://")) {
        let tls = tls.ok_or_else(|| {
            Error::config(format!(
                "endpoint `{name}` uses https but no TLS options were given (ConnectOptions::with_tls)"
            ))
        })?;
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|err| Error::config(format!("TLS for endpoint `{name}`: {err}")))?;
    }
    Ok(endpoint)
}

pub(super) fn tls_config(options: &TlsOptions) -> Result<ClientTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|err| Error::config(format!("cannot read TLS file {}: {err}", path.display())))
    };
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = &options.ca_file {
        config = config.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = &options.identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(domain) = &options.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
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
