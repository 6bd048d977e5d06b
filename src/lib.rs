//! Typed application settings in etcd v3, on the crate's own etcd client.
//!
//! # Layout
//!
//! - [`client`]: the etcd v3 client. [`Client`] is a cheap `Clone` handle over several
//!   endpoints with failover, timeouts, TLS and an auth token; one module per etcd service
//!   ([`client::kv`], [`client::txn`], [`client::lease`], [`client::auth`],
//!   [`client::cluster`], [`client::maintenance`]).
//! - [`KeyRange`]: the one place that knows etcd's `(key, range_end)` encoding.
//! - [`Error`]: the one error type; etcd's own refusals are [`Error::Server`] with a
//!   [`ServerErrorKind`].
//! - [`proto`]: the generated wire types, as an escape hatch.
//!
//! # Example
//!
//! ```no_run
//! use etcd_config::client::txn::{Compare, CompareOp, TxnOp};
//! use etcd_config::{Client, ConnectOptions, KeyRange};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> etcd_config::Result<()> {
//! let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::default()).await?;
//! let kv = client.kv();
//!
//! let written = kv.put("/services/gateway/listen-port", "8080").await?;
//! let page = kv.get(KeyRange::prefix("/services/gateway/")).await?;
//! assert_eq!(page.header.revision, written.header.revision);
//!
//! // Change the port only if nobody else changed it since.
//! let swapped = kv
//!     .txn()
//!     .when([Compare::mod_revision(
//!         "/services/gateway/listen-port",
//!         CompareOp::Equal,
//!         written.header.revision,
//!     )])
//!     .and_then([TxnOp::put("/services/gateway/listen-port", "9090")])
//!     .await?;
//! assert!(swapped.succeeded);
//! # Ok(()) }
//! ```
//!
//! # Choices this crate makes
//!
//! - Every unary call has a deadline (the request timeout, 10 s by default) covering its retries
//!   on other endpoints and a re-authentication; no call waits forever.
//! - Reads are retried on another endpoint after a transport failure or a transient etcd error
//!   ("no leader"); writes only when they certainly never reached a server, as in etcd's Go
//!   client. Otherwise a write that may have been applied fails with [`Error::Transport`].
//! - With credentials, the client authenticates at connect and again, once, when etcd says the
//!   token expired or the auth store changed; concurrent calls share one re-authentication.

pub mod client;
pub mod config;
mod error;
mod key_range;
pub mod proto;

pub use client::{Client, ConnectOptions, ResponseHeader, TlsOptions};
pub use error::{Error, Result, ServerErrorKind};
pub use key_range::{KeyRange, RangeKind};

pub use config::{codec, EtcdConfig, Schema, Store, Versioned};
/// `#[derive(EtcdConfig)]`: see [`EtcdConfig`] and the crate docs for its attributes.
pub use etcd_derive::EtcdConfig;

/// What derived code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::config::codec::duration;
    pub use crate::config::codec::{decode, encode};
    pub use crate::config::{Decoder, Describe, Encoder, EtcdConfig, FieldInfo};
    pub use core;
    pub use std::collections::{BTreeMap, HashMap};
    pub use std::string::String;
}
