//! Test doubles: a [`Live`] with no etcd behind it, for a service's own unit tests.
//!
//! ```
//! use etcd_config::{EtcdConfig, Live};
//!
//! #[derive(EtcdConfig, Debug, Clone, PartialEq)]
//! #[etcd(prefix = "/services/pool", validate = "Pool::check")]
//! struct Pool { size: u32 }
//!
//! impl Pool {
//!     fn check(&self) -> Result<(), String> {
//!         if self.size == 0 { Err("size must be positive".into()) } else { Ok(()) }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (mut tx, mut live) = Live::channel(Pool { size: 4 });
//! tx.send(Pool { size: 8 }).unwrap();
//! live.changed().await.unwrap();
//! assert_eq!(live.get().size, 8);
//!
//! // Rejected like a bad value in etcd: the last good value stays, and status says why.
//! assert!(tx.send(Pool { size: 0 }).is_err());
//! assert_eq!(live.get().size, 8);
//! assert!(live.status().last_rejected.unwrap().reason.contains("positive"));
//! # }
//! ```

use std::sync::Arc;
use std::time::Instant;

use super::publisher::Publisher;
use super::{Live, Shared, Snapshot};
use crate::config::encode::Encoded;
use crate::config::follower::{changed_fields, stored};
use crate::config::EtcdConfig;

impl<T: EtcdConfig> Live<T> {
    /// A live config that always holds `value`: `get` returns it, `changed` never resolves,
    /// `status` says it is following and confirmed current at the moment it is asked (a
    /// readiness check built on it passes for as long as the test runs). Needs no etcd and no
    /// runtime.
    pub fn fixed(value: T) -> Live<T> {
        let (mut sender, live) = Live::channel(value);
        // Nothing will ever be sent, and the publisher goes without ending the live config:
        // `changed` waits forever instead of failing.
        if let Some(publisher) = sender.publisher.take() {
            publisher.forget();
        }
        live
    }

    /// A live config driven by the test through the returned [`LiveSender`]: each value sent
    /// is validated as one read from etcd would be, and then applied (a new revision,
    /// `changed` resolves, an [`Applied`](super::LiveEvent::Applied) event with the changed
    /// field paths) or rejected (the last good value stays, `status` and events say why).
    /// Dropping the sender stops it, as a watch that ended. Needs no etcd and no runtime.
    ///
    /// The first value is taken as it is, at revision 1.
    pub fn channel(value: T) -> (LiveSender<T>, Live<T>) {
        let prefix = crate::config::keys::fields::<T>();
        let initial = Snapshot {
            value: Arc::new(value),
            revision: 1,
            stale: false,
            applied_at: Instant::now(),
        };
        let shared = Arc::new(Shared::new(initial, prefix.into(), None));
        let publisher = Publisher::new(shared.clone(), None);
        let seen = shared.current.generation();
        let sender = LiveSender {
            publisher: Some(publisher),
            revision: 1,
        };
        let live = Live {
            shared,
            seen,
            handles: None,
        };
        (sender, live)
    }
}

/// Drives a [`Live::channel`] test double.
pub struct LiveSender<T> {
    /// `None` once stopped.
    publisher: Option<Publisher<T>>,
    revision: i64,
}

impl<T: EtcdConfig> LiveSender<T> {
    /// Offers a new value, as if it had been written to etcd at the next revision: validated
    /// (the struct's `validate` and its nested structs'), then applied. Returns the revision.
    ///
    /// # Errors
    ///
    /// What `validate` said: the value was rejected and the last good value stays.
    pub fn send(&mut self, value: T) -> Result<i64, String> {
        self.revision += 1;
        let revision = self.revision;
        let Some(publisher) = &self.publisher else {
            return Err("the live config was stopped".to_owned());
        };
        if let Err(reason) = check(&value) {
            let reason = format!(
                "config under {} at revision {revision} was rejected by its validate function: {reason}",
                publisher.shared.prefix
            );
            publisher.reject(revision, reason.clone());
            return Err(reason);
        }
        let before = publisher.shared.current.load().value.clone();
        let changed = changed_fields(&stored(&*before), &stored(&value));
        publisher.apply(Arc::new(value), revision, changed);
        publisher.confirm(revision);
        Ok(revision)
    }

    /// Reports a revision as rejected with `reason`, as etcd holding a value that does not
    /// decode would. Returns the revision.
    pub fn reject(&mut self, reason: impl Into<String>) -> i64 {
        self.revision += 1;
        if let Some(publisher) = &self.publisher {
            publisher.reject(self.revision, reason.into());
        }
        self.revision
    }

    /// Stops the live config as a watch that ended: `changed` fails with `reason`.
    pub fn stop(&mut self, reason: impl Into<String>) {
        if let Some(publisher) = self.publisher.take() {
            publisher.stop(reason.into());
        }
    }
}

/// Dropping the sender ends the live config as a watch that ended does: state `Stopped`, a
/// `Stopped` event, and `changed` fails.
impl<T> Drop for LiveSender<T> {
    fn drop(&mut self) {
        if let Some(publisher) = self.publisher.take() {
            publisher.stop("the test's LiveSender was dropped".to_owned());
        }
    }
}

impl<T> std::fmt::Debug for LiveSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSender")
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// What a load from etcd would check: the struct's `validate`, and its nested structs'.
fn check<T: EtcdConfig>(value: &T) -> Result<(), String> {
    value.validate()?;
    match Encoded::of(value).rejected.into_iter().next() {
        Some((field, reason)) => Err(format!("field `{field}`: {reason}")),
        None => Ok(()),
    }
}
