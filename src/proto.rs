//! etcd v3's wire types, generated from `proto/` into `src/proto/`
//! (checked in; `cargo build --features regenerate-proto` writes them again).
//!
//! An escape hatch: the crate's own API never asks you to touch these types.

/// The generated code, kept private with its lints allowed; re-exported below.
#[allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
mod generated {
    pub mod mvccpb {
        include!("proto/mvccpb.rs");
    }

    pub mod authpb {
        include!("proto/authpb.rs");
    }

    pub mod etcdserverpb {
        include!("proto/etcdserverpb.rs");
    }
}

/// etcd's storage records: `KeyValue` and watch `Event`.
pub use generated::mvccpb;

/// etcd's auth records: `User`, `Role`, `Permission`.
pub use generated::authpb;

/// The messages of etcd's services (KV, Watch, Lease, Cluster, Maintenance, Auth). The client
/// stubs stay inside the crate: [`Client`](crate::Client) drives them.
pub use generated::etcdserverpb;
