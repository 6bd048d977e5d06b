//! [`LiveOptions`]: how a live config starts and applies changes.

use std::path::PathBuf;
use std::time::Duration;

/// Options for [`Store::live_with`](crate::Store::live_with).
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    pub(super) cache_file: Option<PathBuf>,
    pub(super) settle: Option<Settle>,
    pub(super) report_as: Option<String>,
    pub(super) identity: Option<String>,
    pub(super) build: Option<String>,
    pub(super) when_invalid: WhenInvalid,
}

/// What a new live config does when the value in etcd is invalid at start-up (keys that do not
/// decode, or a value `validate` refuses), from
/// [`LiveOptions::when_invalid`](LiveOptions::when_invalid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenInvalid {
    /// Fail: [`Store::live_with`](crate::Store::live_with) returns the error. The default.
    #[default]
    Fail,
    /// Start from the cache file ([`LiveOptions::cache_file`]) if it can be read; else fail.
    CacheFile,
    /// Start from the newest revision in etcd's history that was valid (back to the last
    /// compaction); else fail.
    LastValid,
}

/// The settle window: wait for hand edits to finish before applying them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settle {
    /// Apply once no newer revision touched the prefix for this long.
    pub(super) quiet: Duration,
    /// ... but never later than this after the first waiting revision.
    pub(super) at_most: Duration,
}

impl LiveOptions {
    /// No cache file, changes applied as they come.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep a copy of the config in `path`, and start from it when etcd cannot be reached at
    /// start-up.
    ///
    /// The file is rewritten after every applied update, atomically (a temporary file renamed
    /// over it) and readable by its owner only (mode 0600 on Unix): it holds secret fields
    /// too. It is only read when the first load fails because no endpoint answers; the `Live`
    /// then reports [`is_stale`](super::Live::is_stale) until etcd answers and the fresh value
    /// replaces it.
    #[must_use]
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// Coalesce edits made one key at a time: apply a change only once no newer revision has
    /// touched the config's prefix for `quiet`, and at the latest 10 × `quiet` after the first
    /// waiting revision (see [`settle_at_most`](Self::settle_at_most)).
    ///
    /// Each `etcdctl put` is a revision of its own, so a hand edit of three keys would
    /// otherwise show two intermediate configs. While a change waits,
    /// [`LiveStatus::pending`](super::LiveStatus::pending) names its revision. A waiting change
    /// followed by a revision that is rejected is dropped: the last applied value stays (an
    /// edit that ends invalid is not applied halfway). Changes saved in one transaction (as
    /// [`Store::save`](crate::Store::save) does) need no window; it only adds delay to them.
    #[must_use]
    pub fn settle(mut self, quiet: Duration) -> Self {
        self.settle = Some(Settle {
            quiet,
            at_most: quiet * 10,
        });
        self
    }

    /// Keep a record of this instance in etcd under `instance`: the revision it serves and
    /// since when, its state, and the last revision it rejected with the reason. The record
    /// is bound to a lease (10 s TTL, kept alive), so it goes away when the process does;
    /// [`Store::fleet`](crate::Store::fleet) reads every instance's record, and
    /// [`Access::ReadAndReport`](crate::Access::ReadAndReport) grants a service what it needs
    /// to write it. Records are written in the background and never delay an update; each
    /// applied or rejected revision costs one Put per reporting instance.
    #[must_use]
    pub fn report_as(mut self, instance: impl Into<String>) -> Self {
        self.report_as = Some(instance.into());
        self
    }

    /// The stable identity rollouts rank this instance by (a StatefulSet pod name, a host):
    /// an instance that restarts under the same identity keeps its place in a rollout's
    /// cohorts. Defaults to the [`report_as`](Self::report_as) name.
    #[must_use]
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// This instance's build (a version, a commit), shown with its preflight verdicts and in
    /// [`Store::fleet`](crate::Store::fleet).
    #[must_use]
    pub fn build(mut self, build: impl Into<String>) -> Self {
        self.build = Some(build.into());
        self
    }

    /// What to do when the value in etcd is invalid at start-up. By default a new instance
    /// fails to start ([`WhenInvalid::Fail`]), while instances already running keep their last
    /// good value. With [`WhenInvalid::CacheFile`] or [`WhenInvalid::LastValid`] it starts
    /// from that value instead, reports it as [`stale`](super::LiveStatus::stale) with the
    /// invalid revision in [`last_rejected`](super::LiveStatus::last_rejected), and follows
    /// etcd from there: the first valid revision replaces it.
    #[must_use]
    pub fn when_invalid(mut self, when_invalid: WhenInvalid) -> Self {
        self.when_invalid = when_invalid;
        self
    }

    /// The longest a change may wait in the settle window, however often the prefix keeps
    /// changing (default 10 × the window). Without [`settle`](Self::settle) this does nothing.
    #[must_use]
    pub fn settle_at_most(mut self, at_most: Duration) -> Self {
        if let Some(settle) = &mut self.settle {
            settle.at_most = at_most.max(settle.quiet);
        }
        self
    }
}
