//! Typed configuration: the [`EtcdConfig`] trait, the value [`codec`], and the [`Store`] that
//! loads and saves config structs.
//!
//! A struct owns exactly the keys under `prefix + "/"` (inside the Store's namespace), one key per
//! field. Loading is one Range over that prefix, at one revision; saving is one Txn.

mod access;
mod cache_file;
mod change;
mod change_set;
pub mod codec;
mod decode;
mod diff;
mod edits;
mod encode;
mod fleet;
mod follower;
mod history;
mod keyring;
pub(crate) mod keys;
mod live;
mod notes;
mod paths;
mod raw_keys;
mod rollout;
mod sample;
mod save;
mod schema;
#[cfg(test)]
mod scope_tests;
mod secret;
mod shared_watch;
mod store;
mod update;
mod watch;

pub use access::Access;
pub use change::PlannedEdit;
#[cfg(feature = "cli")]
pub(crate) use change_set::{ChangeSet, Committed, Current};
pub use diff::{diff, DiffKind, FieldDiff};
#[cfg(feature = "cli")]
pub(crate) use diff::{diff_of_change, diff_of_stored};
pub use edits::FieldEdits;
#[cfg(feature = "cli")]
pub(crate) use fleet::unix_ms;
pub use fleet::FleetRecord;
pub use history::Change;
pub use keyring::Keyring;
pub use live::{
    FollowerState, Live, LiveEvent, LiveEvents, LiveOptions, LiveRef, LiveSender, LiveStatus,
    Rejection, Selected, WhenInvalid,
};
pub use notes::{ChangeNote, KEPT_NOTES};
#[cfg(feature = "cli")]
pub(crate) use paths::{field_of_key, is_required, is_secret, path_of_key};
#[cfg(feature = "cli")]
pub(crate) use paths::{key_of, unknown_keys};
pub use rollout::{
    Health, InstanceVerdict, Rollout, RolloutOutcome, RolloutPhase, RolloutPlan, RolloutStatus,
    Serving, Step,
};
pub use schema::{Schema, SchemaField};
pub use secret::Secret;
#[cfg(feature = "cli")]
pub(crate) use store::decode_entries;
pub use store::{Store, Versioned};
pub use update::{UnknownKey, Update};
pub use watch::ConfigWatch;

#[doc(hidden)]
pub use decode::Decoder;
#[doc(hidden)]
pub use follower::FollowBench;

use crate::error::{Error, Result};
#[doc(hidden)]
pub use encode::Encoder;
#[doc(hidden)]
pub use schema::{Describe, FieldInfo};

/// The fields of a config struct, as keys: what `#[derive(EtcdConfig)]` implements for every
/// struct, with a prefix or without. A struct without `#[etcd(prefix = "...")]` has only this:
/// it can be `#[etcd(nested)]` in another (its keys under the field's key there), but not
/// loaded, saved or watched on its own. The methods are the derive's business.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must derive EtcdConfig to be nested",
    label = "`{Self}` does not derive EtcdConfig",
    note = "add `#[derive(EtcdConfig)]` to `{Self}` (it needs no prefix of its own to be nested)"
)]
pub trait EtcdFields: Sized + Send + Sync + 'static {
    #[doc(hidden)]
    fn __validate(&self) -> Result<(), String> {
        Ok(())
    }

    #[doc(hidden)]
    fn __describe(out: &mut Describe<'_>);

    #[doc(hidden)]
    fn __encode(&self, out: &mut Encoder<'_>);

    #[doc(hidden)]
    fn __decode(input: &mut Decoder<'_>) -> Option<Self>;
}

/// What the derive needs of a nested struct's type, looked up once per field: the one place
/// that requires `EtcdFields`, so a type that does not derive `EtcdConfig` is one error, under
/// the field's type, not one per generated method.
#[doc(hidden)]
pub struct Nest<T> {
    describe: fn(&mut Describe<'_>),
    encode: fn(&T, &mut Encoder<'_>),
    decode: fn(&mut Decoder<'_>) -> Option<T>,
    validate: fn(&T) -> Result<(), String>,
}

/// `T`'s methods, for a nested field of type `T`.
#[doc(hidden)]
pub const fn nest_of<T: EtcdFields>() -> Nest<T> {
    Nest {
        describe: T::__describe,
        encode: T::__encode,
        decode: T::__decode,
        validate: T::__validate,
    }
}

/// A settings struct stored in etcd, one key per field under [`PREFIX`](EtcdConfig::PREFIX).
///
/// Implement it with `#[derive(EtcdConfig)]` and `#[etcd(prefix = "...")]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a config with a prefix of its own",
    label = "`{Self}` has no `#[etcd(prefix = \"...\")]`",
    note = "add `#[derive(EtcdConfig)]` and `#[etcd(prefix = \"/...\")]` to `{Self}` to load, save or watch it on its own; without a prefix it can only be `#[etcd(nested)]` in another config"
)]
pub trait EtcdConfig: EtcdFields {
    /// The key prefix, e.g. `/services/gateway`; the struct owns every key under `PREFIX/`.
    const PREFIX: &'static str;

    /// Every key with its type, default, doc comment, and whether it is required or secret.
    fn schema() -> Schema {
        Schema::of::<Self>()
    }

    /// Checks a decoded value (`#[etcd(validate = "path")]`). A value it rejects is never
    /// saved, and is not accepted from etcd.
    fn validate(&self) -> Result<(), String> {
        self.__validate()
    }
}

/// Decodes `T` from keys and values as etcd holds them, without etcd: what
/// [`Store::load`] does with the result of its Range. Keys are full keys; those outside
/// `T::PREFIX/` are ignored. Every problem is reported at once ([`Error::Decode`]).
///
/// ```
/// use etcd_config::{from_key_values, EtcdConfig};
///
/// #[derive(EtcdConfig, Debug, PartialEq)]
/// #[etcd(prefix = "/app", rename_all = "kebab-case")]
/// struct App {
///     max_conns: u32,
///     name: Option<String>,
/// }
///
/// let app: App = from_key_values([("/app/max-conns", "10"), ("/app/name", "web")])?;
/// assert_eq!(app, App { max_conns: 10, name: Some("web".into()) });
/// # Ok::<(), etcd_config::Error>(())
/// ```
pub fn from_key_values<T, K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<T>
where
    T: EtcdConfig,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let pairs = pairs
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_vec(), v.as_ref().to_vec()));
    store::decode_kvs(0, pairs)
}

/// Decodes `T` from etcd's encoded answer to a Range over its prefix, as a load does (not
/// public: for the instruction counts, `benches/icount`).
#[doc(hidden)]
pub fn decode_range_answer<T: EtcdConfig>(encoded: impl bytes::Buf) -> Result<T> {
    use prost::Message;
    let answer =
        crate::client::kv::answer::RangeAnswer::decode(encoded).map_err(|err| Error::Stopped {
            what: "decoding a range answer".to_owned(),
            reason: err.to_string(),
        })?;
    let revision = answer.header.map_or(0, |header| header.revision);
    let keys = decode::RawKeys::from_answer::<T>(answer.pairs);
    store::decode_entries(&keys::fields::<T>(), None, revision, &keys)
}

/// Encodes `value` into the full keys and values a [`Store::save`] puts, in field order
/// (`None` fields have no key). Does not run `validate`.
pub fn to_key_values<T: EtcdConfig>(value: &T) -> Result<Vec<(String, String)>> {
    let encoded = encode::Encoded::of(value);
    let prefix = keys::fields::<T>();
    if let Some((field, key, reason)) = encoded.errors.into_iter().next() {
        return Err(Error::Encode {
            key: format!("{prefix}{key}"),
            field,
            reason,
        });
    }
    Ok(encoded
        .entries
        .into_iter()
        .filter_map(|e| Some((format!("{prefix}{}", e.key), e.value?)))
        .collect())
}
