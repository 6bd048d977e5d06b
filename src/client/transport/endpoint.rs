//! Endpoint strings turned into connection targets, and the endpoint list replaced.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::Uri;

use super::connection::Target;
use super::tls::Tls;
use super::{Slot, Transport};
use crate::error::{Error, Result};

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
                "endpoint `{name}` uses https but {}",
                super::tls::MISSING
            )))
        }
        (true, Some(tls)) => Some(
            tls.session_for(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|err| invalid(&err))?,
        ),
    };
    Ok(Target::new(origin, address, tls))
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

impl Transport {
    /// Makes `names` the endpoint list, keeping the connections of endpoints it already had
    /// and staying on the current endpoint if it is still listed; false if nothing changed.
    pub(crate) fn set_endpoints(&self, names: &[String]) -> Result<bool> {
        let old = self.slots.load_full();
        let mut wanted: Vec<&String> = names.iter().collect();
        wanted.sort();
        wanted.dedup();
        let mut had: Vec<&String> = old.iter().map(|slot| &slot.name).collect();
        had.sort();
        if wanted.is_empty() || wanted == had {
            return Ok(false);
        }
        let current = old[self.current.load(Ordering::Acquire) % old.len()]
            .name
            .clone();
        let slots = wanted
            .iter()
            .map(|name| match old.iter().find(|slot| slot.name == **name) {
                Some(slot) => Ok(slot.clone()),
                None => Slot::new(name, self.tls.as_ref()),
            })
            .collect::<Result<Vec<_>>>()?;
        let at = slots
            .iter()
            .position(|slot| slot.name == current)
            .unwrap_or(0);
        tracing::debug!(endpoints = ?wanted, "etcd endpoints synced from the member list");
        self.slots.store(Arc::new(slots));
        self.current.store(at, Ordering::Release);
        Ok(true)
    }
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
        // Without TLS options, or in a build without the feature `tls`: refused, saying why.
        let err = address("https://etcd-0:2379").unwrap_err().to_string();
        assert!(err.contains(super::super::tls::MISSING), "{err}");
        #[cfg(not(feature = "tls"))]
        assert!(err.contains("cargo feature `tls`"), "{err}");
    }
}
