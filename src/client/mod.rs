//! The etcd v3 client: a cheap `Clone` handle over one set of endpoints.
//!
//! Each etcd service has a handle reached from the [`Client`]: [`Kv`] (Range, Put,
//! DeleteRange, Compact, and [`Txn`]), watches ([`Client::watch`], [`WatchStream`]), [`Lease`],
//! [`Auth`], [`Cluster`] and [`Maintenance`]. Requests are builders you `.await`; every request,
//! response and option type sits here beside its handle.
//!
//! Inside, one file per service; `transport` holds the endpoints, the failover and retry
//! policy, `rpc` describes each unary call once, `stream` supervises the long-lived Watch and
//! LeaseKeepAlive streams, and `token` keeps the auth token.

mod auth;
mod cluster;
mod concurrency;
mod keep_alive;
mod key_value;
pub(crate) mod kv;
mod lease;
mod maintenance;
pub(crate) mod namespace;
mod options;
pub(crate) mod rpc;
mod stream;
mod token;
pub(crate) mod transport;
mod txn;
pub(crate) mod watch;

use std::fmt;
use std::sync::{Arc, OnceLock};

pub use auth::{Auth, AuthStatus, Permission, PermissionKind};
pub use cluster::{Cluster, Member, MemberAdd, Members};
pub use concurrency::{Election, Leader, Mutex, Session};
pub use key_value::{KeyValue, SortOrder, SortTarget};
pub use kv::{Compact, Delete, DeleteResponse, Get, GetResponse, Kv, Put, PutResponse};
pub use lease::{KeepAlive, Lease, LeaseInfo, TimeToLive};
pub use maintenance::{Alarm, AlarmMember, Downgrade, Hash, HashKv, Maintenance, MemberStatus};
pub use options::ConnectOptions;
#[cfg(feature = "tls")]
pub use options::TlsOptions;
pub(crate) use stream::{OutageListener, StreamHealth};
use token::Credentials;
use transport::Transport;
pub use txn::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse, TxnResponse};
pub use watch::{Event, EventKind, WatchBuilder, WatchResponse, WatchStream};

use crate::error::Result;
use crate::proto::etcdserverpb as pb;

/// What awaiting a builder gives: one call to etcd, boxed so that the builder types stay
/// nameable.
pub(crate) type BoxFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'static>>;

/// A connection to an etcd cluster.
///
/// Cloning is cheap and every clone shares the same connections, token and failover state, so
/// hand clones to tasks freely. Each service is reached through a small handle:
/// [`kv`](Client::kv), [`lease`](Client::lease), [`auth`](Client::auth),
/// [`cluster`](Client::cluster), [`maintenance`](Client::maintenance).
#[derive(Clone)]
pub struct Client {
    /// What every clone shares, behind one pointer: a store or live config holds a client,
    /// and thousands of those may live in one process.
    shared: Arc<Shared>,
    /// Every key this client names is under it ([`Client::namespace`]); empty for none.
    namespace: Arc<[u8]>,
}

/// What the clones of a client share.
struct Shared {
    transport: Arc<Transport>,
    /// The task that owns the client's one Watch stream, started by the first watch.
    watch_hub: OnceLock<watch::hub::WatchHub>,
    keeper: OnceLock<keep_alive::Keeper>,
    /// Config loads waiting to go to etcd together.
    together: kv::Together,
}

impl Client {
    /// Connects to etcd.
    ///
    /// Dials every endpoint at once and keeps the first that answers; calls then go to that
    /// endpoint and fail over to the others when it fails. With
    /// [`ConnectOptions::with_user`], authenticates before returning.
    ///
    /// Endpoints are `host:port` (http, or https when TLS options are set) or full URLs
    /// (`http://…`, `https://…`).
    ///
    /// # Errors
    ///
    /// [`Error::Connect`](crate::Error::Connect), naming every endpoint, when none answers
    /// within the dial timeout; [`Error::ClientOptions`](crate::Error::ClientOptions) for an endpoint or TLS
    /// file that cannot be used; the server's error (e.g. `AuthFailed`) if authentication fails.
    pub async fn connect<E, S>(endpoints: E, options: ConnectOptions) -> Result<Client>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let transport = prepare(endpoints, options)?;
        transport.dial().await?;
        transport.renew_token(0).await?;
        Ok(Client::from_transport(transport))
    }

    /// Makes a client without dialing: every endpoint is connected on first use, and with
    /// credentials the first call authenticates. For services that must start while etcd is
    /// unreachable (see [`LiveOptions::cache_file`](crate::LiveOptions::cache_file));
    /// calls fail with [`Error::Connect`](crate::Error::Connect) until an endpoint answers.
    ///
    /// # Errors
    ///
    /// Only for endpoints or TLS files that cannot be used.
    pub fn connect_lazy<E, S>(endpoints: E, options: ConnectOptions) -> Result<Client>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Client::from_transport(prepare(endpoints, options)?))
    }

    fn from_transport(transport: Transport) -> Client {
        let transport = Arc::new(transport);
        if let Some(interval) = transport.options.auto_sync {
            cluster::start_auto_sync(&transport, interval);
        }
        Client {
            shared: Arc::new(Shared {
                transport,
                watch_hub: OnceLock::new(),
                keeper: OnceLock::new(),
                together: kv::Together::default(),
            }),
            namespace: Arc::from(Vec::new()),
        }
    }

    pub(crate) fn keeper(&self) -> &keep_alive::Keeper {
        let transport = &self.shared.transport;
        self.shared
            .keeper
            .get_or_init(|| keep_alive::Keeper::start(Arc::downgrade(transport)))
    }

    pub(crate) fn watch_hub(&self) -> &watch::hub::WatchHub {
        let transport = &self.shared.transport;
        self.shared
            .watch_hub
            .get_or_init(|| watch::hub::WatchHub::start(Arc::downgrade(transport)))
    }

    /// Key-value operations: get, put, delete, txn, compact.
    pub fn kv(&self) -> Kv {
        Kv::new(self.clone())
    }

    /// Leases: grant, revoke, keep-alive, time-to-live, list.
    pub fn lease(&self) -> Lease {
        Lease::new(self.clone())
    }

    /// Users, roles and permissions over key ranges.
    pub fn auth(&self) -> Auth {
        Auth::new(self.clone())
    }

    /// Cluster membership.
    pub fn cluster(&self) -> Cluster {
        Cluster::new(self.clone())
    }

    /// Status, alarms, defragmentation, hashes, snapshots, leader moves.
    pub fn maintenance(&self) -> Maintenance {
        Maintenance::new(self.clone())
    }

    /// The endpoints this client was given, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared.transport.endpoint_names()
    }

    /// The user this client authenticates as, if any.
    pub fn user(&self) -> Option<&str> {
        self.shared
            .transport
            .credentials
            .as_ref()
            .map(Credentials::user)
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.shared.transport
    }

    /// The loads of this client (and its namespaced clones) waiting to go together.
    pub(crate) fn together(&self) -> &kv::Together {
        &self.shared.together
    }

    /// Sends one unary call (see `rpc`): failover, retries, token and request timeout.
    pub(crate) async fn call<R: rpc::Rpc>(&self, request: R) -> Result<R::Response> {
        self.shared.transport.call(&request).await
    }

    /// [`call`](Self::call), keeping the request (it is encoded, not copied, to be sent), and
    /// etcd's answer read as `A` (see [`Transport::call_as`]).
    pub(crate) async fn call_as<R, A>(&self, request: &R) -> Result<A>
    where
        R: rpc::Rpc,
        A: prost::Message + Default + Send + 'static,
    {
        self.shared.transport.call_as(request).await
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints())
            .field("user", &self.user())
            .finish_non_exhaustive()
    }
}

/// The endpoint list and credentials of a new client, not yet connected.
fn prepare<E, S>(endpoints: E, options: ConnectOptions) -> Result<Transport>
where
    E: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let endpoints = endpoints
        .into_iter()
        .map(|e| e.as_ref().trim().to_owned())
        .collect();
    let credentials = options
        .credentials
        .clone()
        .map(|(user, password)| Credentials::new(user, password));
    Transport::new(endpoints, options, credentials)
}

/// The header etcd puts on every response: who answered, and the store revision at that time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseHeader {
    /// The cluster that answered.
    pub cluster_id: u64,
    /// The member that answered.
    pub member_id: u64,
    /// The store's revision when the request was applied (or read).
    pub revision: i64,
    /// The raft term when the request was applied.
    pub raft_term: u64,
}

impl From<Option<pb::ResponseHeader>> for ResponseHeader {
    fn from(header: Option<pb::ResponseHeader>) -> Self {
        let header = header.unwrap_or_default();
        ResponseHeader {
            cluster_id: header.cluster_id,
            member_id: header.member_id,
            revision: header.revision,
            raft_term: header.raft_term,
        }
    }
}
