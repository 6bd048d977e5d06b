//! Typed configuration: the [`EtcdConfig`] trait, the value [`codec`], and the [`Store`] that
//! loads and saves config structs.
//!
//! A struct owns exactly the keys under `prefix + "/"` (inside the Store's namespace), one key per
//! field. Loading is one Range over that prefix, at one revision; saving is one Txn.

pub mod codec;
mod decode;
mod encode;
mod schema;
mod store;

pub use decode::{Problem, ProblemKind};
pub use schema::{Schema, SchemaField};
pub use store::{Store, Versioned};

#[doc(hidden)]
pub use decode::Decoder;
#[doc(hidden)]
pub use encode::Encoder;
#[doc(hidden)]
pub use schema::{Describe, FieldInfo};

/// A settings struct stored in etcd, one key per field under [`PREFIX`](EtcdConfig::PREFIX).
///
/// Implement it with `#[derive(EtcdConfig)]`; the hidden methods are the derive's business.
pub trait EtcdConfig: Sized + Send + Sync + 'static {
    /// The key prefix, e.g. `/services/gateway`; the struct owns every key under `PREFIX/`.
    const PREFIX: &'static str;

    /// Every key with its type, default, doc comment, and whether it is required or secret.
    fn schema() -> Schema {
        Schema::of::<Self>()
    }

    /// Checks a decoded value (`#[etcd(validate = "path")]`). A value it rejects is never
    /// saved, and is not accepted from etcd.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    #[doc(hidden)]
    fn __describe(out: &mut Describe<'_>);

    #[doc(hidden)]
    fn __encode(&self, out: &mut Encoder<'_>);

    #[doc(hidden)]
    fn __decode(input: &mut Decoder<'_>) -> Option<Self>;
}
