//! Typed application settings in etcd v3, on the crate's own etcd client.
//!
//! `#[derive(EtcdConfig)]` maps a settings struct to an etcd key prefix, one key per field, with
//! values people can read and edit with `etcdctl`. A [`Store`] loads the struct with one range
//! read and saves it in one transaction.
//!
//! ```
//! use etcd_config::{from_key_values, to_key_values, EtcdConfig};
//! use std::time::Duration;
//!
//! #[derive(EtcdConfig, Debug, PartialEq)]
//! #[etcd(prefix = "/services/gateway", rename_all = "kebab-case")]
//! struct Gateway {
//!     /// Port to listen on.
//!     #[etcd(default = 8080)]
//!     listen_port: u16,
//!     upstream: String,
//!     request_timeout: Option<Duration>,
//! }
//!
//! // What `etcdctl get --prefix /services/gateway/` would show after a save:
//! let gw = Gateway { listen_port: 9090, upstream: "http://a:80".into(), request_timeout: None };
//! let stored = to_key_values(&gw)?;
//! assert_eq!(stored, [
//!     ("/services/gateway/listen-port".to_owned(), "9090".to_owned()),
//!     ("/services/gateway/upstream".to_owned(), "http://a:80".to_owned()),
//! ]);
//!
//! // What a load makes of keys typed by hand:
//! let loaded: Gateway = from_key_values([
//!     ("/services/gateway/upstream", "http://b:80"),
//!     ("/services/gateway/request-timeout", "1m30s"),
//! ])?;
//! assert_eq!(loaded.listen_port, 8080);
//! assert_eq!(loaded.request_timeout, Some(Duration::from_secs(90)));
//! # Ok::<(), etcd_config::Error>(())
//! ```
//!
//! Against etcd:
//!
//! ```no_run
//! # use etcd_config::EtcdConfig;
//! # #[derive(EtcdConfig, Debug)]
//! # #[etcd(prefix = "/services/gateway")]
//! # struct Gateway { upstream: String }
//! use etcd_config::{Client, ConnectOptions, Store};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> etcd_config::Result<()> {
//! let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::default()).await?;
//! let store = Store::new(client);
//! let v = store.load_versioned::<Gateway>().await?; // one Range, one revision
//! let mut gw = v.value;
//! gw.upstream = "http://c:80".into();
//! store.save_if_unchanged(&gw, v.revision).await?; // one Txn, or Error::Conflict
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - At the root: what a service holds. The [`EtcdConfig`] trait and its derive, the value
//!   [`codec`], the [`Store`] that loads and saves, [`ConfigWatch`] and [`Live`] that follow
//!   changes, the [`Schema`], and [`Access`] for least-privilege roles.
//! - [`client`]: the etcd v3 client. [`Client`] is a cheap `Clone` handle over several
//!   endpoints with failover, timeouts, TLS and an auth token; each etcd service has a handle
//!   ([`client::Kv`], [`client::Lease`], [`client::Auth`], [`client::Cluster`],
//!   [`client::Maintenance`]) and every request and response type sits beside it in
//!   `client::`. On top, as Go's client has them: [`client::Session`], [`client::Mutex`] and
//!   [`client::Election`] (interoperable with `etcdctl lock` and `etcdctl elect`), a
//!   namespaced client ([`Client::namespace`]) and endpoint sync
//!   ([`ConnectOptions::auto_sync`], [`Client::sync_endpoints`]).
//! - [`KeyRange`]: the one place that knows etcd's `(key, range_end)` encoding.
//! - [`Error`]: the one error type; etcd's own refusals are [`Error::Server`] with a
//!   [`ServerErrorKind`].
//! - [`proto`]: the generated wire types, as an escape hatch.
//!
//! # Operating a live config
//!
//! [`Live::status`] tells how a live config stands ([`LiveStatus`]): the revision it serves
//! and since when, when etcd last confirmed it current, whether its follower is following,
//! reconnecting or stopped, the last rejected revision and why, and whether a change waits
//! for the settle window. A readiness check:
//!
//! ```no_run
//! # use etcd_config::{EtcdConfig, Live};
//! # #[derive(EtcdConfig, Debug)] #[etcd(prefix = "/a")] struct Gateway { port: u16 }
//! fn ready(live: &Live<Gateway>) -> bool {
//!     live.status().confirmed_within(std::time::Duration::from_secs(60))
//! }
//! ```
//!
//! [`Live::events`] streams what happens ([`LiveEvent`]); [`Live::select`] wakes only for one
//! part of the config; [`LiveOptions`] opts in to a settle window for hand edits, a start
//! despite an invalid value ([`WhenInvalid`]), a cache file, and a lease-bound fleet record
//! ([`Store::fleet`]). [`Live::fixed`] and [`Live::channel`] are test doubles that need no
//! etcd. With the cargo feature `metrics`, live configs export counters and gauges through
//! the `metrics` facade (names and labels: see docs/OPERATING.md).
//!
//! # Changing a config
//!
//! The people who change settings use the service's own type and `validate`:
//! [`Store::edit`] (load, change in a closure, validate, save with compare-and-swap, retried),
//! [`Store::set`] and [`Store::unset`] by field path with text values, [`Store::history`]
//! (each change back to the last compaction, with the fields it changed and its
//! [`ChangeNote`]), [`Store::load_at`], [`Store::rollback`], [`diff`] (secret fields as changed
//! only) and [`Store::wait_rollout`] (every instance that reports on the config is current
//! for the change, or [`Error::RolloutRejected`] naming the one that refused it, or
//! [`Error::RolloutTimeout`] naming those not current in time). A note, who and why, is
//! written in the same transaction as the change, under `<prefix>.notes/`, and the newest
//! [`KEPT_NOTES`] are kept, so they outlive a compaction.
//!
//! Every change follows the same rules:
//! - it sends only the keys whose stored text changes (and the deletes), under one compare
//!   guarding the prefix; a change that changes nothing writes nothing, note included, and
//!   returns the revision of the config's last write;
//! - defaults stay in code: no write creates the key of a defaulted field at its default
//!   (a key that exists is kept); [`Store::unset`] deletes a defaulted field's key;
//! - `set`, `unset` and `rollback` work over a config that does not load: only the value
//!   they write must be valid;
//! - an instance is *current* for revision R when the value it serves is the config as etcd
//!   holds it at R ([`FleetRecord::current_through`], [`LiveStatus::current_through`]): after
//!   a rejected hand edit is repaired by restoring the old value, it is current again.
//!
//! With the cargo feature `cli`, `cli::Command` is the same as a clap subcommand set that a
//! service embeds in its own binary (`examples/admin.rs`): `show get set unset edit apply
//! diff history rollback rotate schema status watch`, `--json` on each, and `cli::exit_code`
//! telling invalid input (2), a conflict (3), an instance's refusal (4), an unreachable etcd
//! (5), a wait that ran out (6), a config that does not load (7), an aborted rollout (8) and
//! a write refused because a rollout is active (9) apart.
//!
//! # Rolling out a change
//!
//! [`Store::start_rollout`] gives a change to the fleet in steps: every reporting live config
//! checks the candidate with its own `validate` first (preflight), then a stable cohort serves
//! it ([`Step::Instances`], [`Step::Percent`]), each step baked, and [`Rollout::drive`] commits
//! it in one transaction or aborts on a rejection, an unhealthy member
//! ([`Live::report_health`]) or a hand edit. The state lives in etcd under
//! `<prefix>.rollout/`, so another process can take over ([`Store::resume_driving`]) and
//! anyone may pause, resume, promote or abort. The protocol, its keys and transactions:
//! [`Store::start_rollout`] and docs/OPERATING.md.
//!
//! # Secrets
//!
//! A field marked `#[etcd(secret)]`, or of type [`Secret<T>`](Secret), never appears in the
//! crate's errors, logs, schemas or diffs. `Secret<T>` also keeps it out of a `Debug` or
//! `Display` of the struct (they print `***`; [`Secret::expose`] reads it) and zeroes its
//! memory when dropped.
//!
//! With a [`Keyring`] on the store ([`Store::with_keyring`]), secret fields are also
//! encrypted at rest: saved as `enc:v1:<key id>:<base64>` (AES-256-GCM, the field's full key
//! as associated data), decrypted by key id when loaded, watched or followed.
//! [`Store::rotate_secrets`] re-encrypts them with the ring's newest key in one transaction;
//! older keys read until they are removed from the ring. [`Keyring::accept_plain`] lets a
//! config saved in clear load while it is migrated.
//!
//! What this protects against: whoever reads etcd without the key (a user or role allowed to
//! read the prefix, `etcdctl get`, a snapshot, a backup, a disk) sees ciphertext; a value moved
//! to another key or config does not decrypt; an altered value is refused, not misread. What
//! it does not: a process that holds the key ring (the service, the admin tool) reads every
//! secret; the key file is as sensitive as the secrets; a writer of the prefix can still delete
//! a secret or put back an older ciphertext of the same key (etcd's permissions and the change
//! history are the defence there); the cache file ([`LiveOptions::cache_file`], mode 0600)
//! holds the values in clear, like the process memory it mirrors.
//!
//! # API conventions
//!
//! - A request is a builder you `.await` (`kv.get(range).limit(10).await`,
//!   `lease.time_to_live(id).keys().await`, `cluster.member_add(urls).learner().await`);
//!   options are methods, never positional booleans, and answers are named types
//!   ([`client::GetResponse`], [`client::HashKv`], [`client::AlarmMember`]).
//! - A value read together with its revision is a [`Versioned`]
//!   ([`Store::load_versioned`], [`Live::snapshot`], [`ConfigWatch::initial`]).
//! - Option types ([`ConnectOptions`], [`LiveOptions`], [`client::TlsOptions`]) are consuming
//!   builders: a setting is set by a method of its name (`request_timeout`, `cache_file`);
//!   credentials and key material are attached with `with_*` (`with_user`, `with_tls`).
//! - Handles ([`Client`], [`Store`], [`Live`]) are cheap clones taken by `&self`; a derived
//!   handle is a new value and leaves the original as it was ([`Store::namespace`],
//!   [`Store::max_txn_ops`]).
//! - One [`Error`] type, `Clone`, every variant documented; etcd's own refusals are
//!   [`Error::Server`] with a [`ServerErrorKind`].
//!
//! # The derive's attributes
//!
//! On the struct:
//!
//! | attribute | effect |
//! |---|---|
//! | `prefix = "/a/b"` | required; the struct owns every key under `/a/b/` |
//! | `rename_all = "kebab-case"` | serde's case names, applied to field names |
//! | `validate = "path"` | `fn(&Self) -> Result<(), String>`; run on load, watch and before save, also for a struct used as a `nested` field or `each, nested` entry (errors name the field path) |
//! | `deny_unknown_keys` | keys under the prefix that no field reads are an error |
//!
//! On a field:
//!
//! | attribute | effect |
//! |---|---|
//! | (none) | required; a missing key is an error naming it |
//! | `Option<T>` | optional; absent key = `None`, and saving `None` deletes the key |
//! | `default`, `default = expr` | absent key = `Default::default()` / `expr` (a string literal is converted with `From`) |
//! | `rename = "key"` | the key, relative to the prefix; may contain `/` |
//! | `nested` | a struct deriving `EtcdConfig`, stored under `key/` (its own prefix is then unused) |
//! | `each` | a `BTreeMap`/`HashMap<String, V>`: one key per entry, `key/<name>` (a name may contain `/`; an empty name is refused by `save`) |
//! | `each, nested` | a map of `EtcdConfig` structs, each under `key/<name>/` (`save` refuses a name that is empty or contains `/`: it would load back as another entry) |
//! | `secret` | the value never appears in errors, logs or the schema |
//! | `skip` | not stored; `Default::default()` on load |
//! | `with = "module"` | `module::encode(&T) -> Result<String, String>` and `module::decode(&str) -> Result<T, String>` |
//!
//! Values are stored as [`codec`] describes: strings raw, numbers and booleans as text, unit
//! enum variants by name, `Duration` as `1m30s`, anything else as compact JSON. Whatever `save`
//! accepts loads back equal: a value whose plain form would read back as something else (a
//! `serde_json::Value::String("123")`) is stored JSON-quoted, and one no form brings back (a
//! non-finite float) is refused with [`Error::Encode`] before anything is sent.
//!
//! A key under the prefix that is not UTF-8 text belongs to no field: a load or watch reports
//! it as a [`ProblemKind::KeyNotUtf8`] problem (its bytes escaped, `\xff`), never merged
//! with another key; a `save` deletes such keys under an `each` map, as it deletes removed
//! entries.
//!
//! # Choices this crate makes
//!
//! - `save` writes the whole struct in one Txn: puts for stored fields, deletes for `None`
//!   fields. A struct with `each` maps first finds removed entries with a keys-only Range; its
//!   Txn is guarded so it only applies if no key under the prefix changed in between, and
//!   retried otherwise. Keys under the prefix that no field owns are never deleted by `save`.
//! - `save_if_unchanged` compares every key's mod revision with the given revision and every key
//!   that existed then with its create revision, so puts, deletes and new keys all conflict.
//! - Every unary call has a deadline (the request timeout, 10 s by default) covering its retries
//!   on other endpoints and a re-authentication; no call waits forever.
//! - Reads are retried on another endpoint after a transport failure or a transient etcd error
//!   ("no leader"); writes only when they certainly never reached a server, as in etcd's Go
//!   client. Otherwise a write that may have been applied fails with [`Error::Transport`].
//! - With credentials, the client authenticates at connect and again, once, when etcd says the
//!   token expired or the auth store changed; concurrent calls share one re-authentication.
//! - Each endpoint has at most one connection, HTTP/2 driven by the crate itself (with `h2`),
//!   shared by every call and stream to that member. It pings every
//!   [`ConnectOptions::keep_alive`] interval, idle or not, so a frozen or cut-off member is
//!   found even under an idle watch; a connection found closed is replaced before a call uses
//!   it, and a call refused before its request left this process (or refused by etcd with
//!   `REFUSED_STREAM`) counts as never sent.
//! - A client opens at most two long-lived streams, as etcd's Go client does: one Watch stream
//!   for all its watches and one LeaseKeepAlive stream for all its kept-alive leases. Each is
//!   opened on first use, reopened on another endpoint when it breaks or stops answering, and
//!   closed when its last user is dropped.
//! - [`Error::Server`] keeps etcd's message unchanged and adds the request it refused (its
//!   first key), so an error from a `Store` names the config's keys.
//! - A member cut off from its peers still answers its clients. Watch and keep-alive streams
//!   ask etcd to require a leader (as Go's `WithRequireLeader`), so such a member closes them
//!   and they resume on another member from their next revision; with several endpoints, one
//!   attempt of a read gets at most its share of the request timeout before the next member is
//!   asked. A client never goes back in time: a read answered from a store revision older than
//!   one it already saw (a serializable read on a member that is behind) is asked again of the
//!   next member, and fails with [`Error::Behind`] if every member is behind.
//! - A request larger than [`ConnectOptions::max_send_message_size`] is refused before it is
//!   sent ([`Error::RequestTooLarge`], naming the key), so it certainly was not applied.
//! - Watches never depend on the order in which etcd answers creates (etcd's gRPC proxy answers
//!   them out of order): a create asks for a watch id of ours and its answer is matched by it;
//!   where the ids are not honoured (behind the proxy), one create is in flight at a time, as in
//!   Go's client. Through the proxy, the TCP gateway or a member, each watch gets exactly its
//!   own range's events.
//! - With auth on, a watch stream carries a token that was valid when it was opened; before a
//!   create goes out after the token was renewed, the stream is reopened with the new one, and a
//!   create refused for its token (etcd 3.5 says "permission denied" for an expired token, 3.4
//!   "invalid auth token") is retried on a fresh stream with a fresh token; it is final only if
//!   a count-only read of its range is refused too.

mod backoff;
pub mod client;
mod config;
mod error;
mod key_range;
pub mod proto;
mod sync;

// The derive names `::etcd_config`: unit tests derive structs inside the crate.
#[cfg(test)]
extern crate self as etcd_config;

#[cfg(feature = "cli")]
pub mod cli;

#[cfg(feature = "tls")]
pub use client::TlsOptions;
pub use client::{Client, ConnectOptions, ResponseHeader};
pub use error::{Error, GrpcStatus, Problem, ProblemKind, Result, ServerErrorKind};
pub use key_range::{KeyRange, RangeKind};

pub use client::KeyValue;
pub use config::{
    codec, diff, from_key_values, to_key_values, Access, Change, ChangeNote, ConfigWatch, DiffKind,
    EtcdConfig, EtcdFields, FieldDiff, FieldEdits, FleetRecord, FollowerState, Keyring, Live,
    LiveEvent, LiveEvents, LiveOptions, LiveRef, LiveSender, LiveStatus, PlannedEdit, Rejection,
    Schema, SchemaField, Secret, Selected, Store, UnknownKey, Update, Versioned, WhenInvalid,
    KEPT_NOTES,
};
pub use config::{
    Health, InstanceVerdict, Rollout, RolloutOutcome, RolloutPhase, RolloutPlan, RolloutStatus,
    Serving, Step,
};
/// `#[derive(EtcdConfig)]`: see [`EtcdConfig`] and the crate docs for its attributes.
pub use etcd_derive::EtcdConfig;

/// What derived code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::config::codec::duration;
    pub use crate::config::codec::{codec_of, decode, encode, validate_with, Codec};
    pub use crate::config::nest_of;
    pub use crate::config::{decode_range_answer, FollowBench};
    pub use crate::config::{Decoder, Describe, Encoder, EtcdConfig, EtcdFields, FieldInfo, Nest};
    pub use core;
    pub use std::collections::{BTreeMap, HashMap};
    pub use std::string::String;
}
