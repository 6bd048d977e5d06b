//! Fleet reports: each live config started with
//! [`LiveOptions::report_as`](super::LiveOptions::report_as) keeps a record of what it applied
//! in etcd, bound to a lease so that it goes when the process does; [`Store::fleet`] reads them
//! all. The admin tool shows them and waits on them.
//!
//! The records of config `T` live under `namespace + T::PREFIX + ".fleet/"`, one key per
//! instance: outside the keys `T` owns, so a load, a watch or a save of `T` never sees them.
//! Each is JSON that `etcdctl get` shows as it is:
//! `{"revision":42,"applied_at_ms":…,"state":"following","since_ms":…,"last_rejected":null}`,
//! with `"unconfirmed_since_ms":…` added while etcd has not confirmed the instance's value
//! current for [`FleetRecord::UNCONFIRMED_AFTER`] (its watch is stuck, or it serves the cache file).
//!
//! A record is rewritten when the instance applies or rejects a revision, when its follower
//! stops, when it becomes unconfirmed or confirmed again, and when its lease was lost (a
//! partition longer than the lease's TTL), the last two checked every 5 s. A quiet fleet
//! writes nothing but its lease keep-alives. A stopped instance keeps its record (state
//! `stopped`) until its live config is dropped.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{keys, EtcdConfig, Store};
use crate::backoff::Backoff;
use crate::client::KeepAlive;
use crate::error::{Error, Result, ServerErrorKind};

/// How long a record outlives its process: the TTL of its lease, in seconds.
const RECORD_TTL: i64 = 10;

/// How often the reporter looks at the instance's confirmation.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// One instance's report, from [`Store::fleet`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetRecord {
    /// The name the instance reports as ([`LiveOptions::report_as`](super::LiveOptions::report_as)).
    pub instance: String,
    /// The revision of the value it serves.
    pub revision: i64,
    /// Through which revision the value it serves is the config as etcd holds it: it has
    /// seen every revision of the config up to this one, applied it or found it equal. An
    /// instance is *current* for revision R when this is at least R.
    pub current_through: i64,
    /// When it put that value in place.
    pub applied_at: SystemTime,
    /// `following`, `stale` (serving the cache file), or `stopped`.
    pub state: String,
    /// Since when it has been in that state.
    pub since: SystemTime,
    /// The last revision it did not apply, and why (no secret values).
    pub last_rejected: Option<(i64, String)>,
    /// Since when etcd has not confirmed its value current, once that lasted longer than
    /// [`UNCONFIRMED_AFTER`](Self::UNCONFIRMED_AFTER); `None` while it is confirmed.
    pub unconfirmed_since: Option<SystemTime>,
    /// Its stable identity for rollout cohorts ([`LiveOptions::identity`]; the instance name
    /// unless it gave one).
    ///
    /// [`LiveOptions::identity`]: super::LiveOptions::identity
    pub identity: String,
    /// Its build ([`LiveOptions::build`](super::LiveOptions::build)), if it said.
    pub build: Option<String>,
    /// Why it reports itself unhealthy ([`Live::report_health`](super::Live::report_health)).
    pub unhealthy: Option<String>,
    /// The rollout whose candidate it serves, if it is a member of one.
    pub serving: Option<String>,
    pub(crate) verdict: Option<Verdict>,
}

/// An instance's verdict on a rollout's candidate, as stored in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Verdict {
    pub(crate) rollout: String,
    pub(crate) round: u32,
    /// Why it rejects the candidate; `None`: it accepts it.
    pub(crate) rejected: Option<String>,
}

impl FleetRecord {
    /// Its verdict on round `round` of rollout `id`: `None` until it gave one.
    pub(crate) fn verdict_on(
        &self,
        id: &str,
        round: u32,
    ) -> Option<std::result::Result<(), String>> {
        let verdict = self.verdict.as_ref()?;
        (verdict.rollout == id && verdict.round == round).then(|| match &verdict.rejected {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        })
    }
}

impl FleetRecord {
    /// An instance whose value etcd has not confirmed current for this long says so in its
    /// record (a live config asks etcd for a confirmation every 5 s).
    pub const UNCONFIRMED_AFTER: Duration = Duration::from_secs(30);
}

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) revision: i64,
    /// Through which revision the value is the config as etcd holds it (absent in records
    /// of older versions of this crate: `revision` then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_through: Option<i64>,
    pub(crate) applied_at_ms: u64,
    pub(crate) state: String,
    pub(crate) since_ms: u64,
    pub(crate) last_rejected: Option<(i64, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) unconfirmed_since_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) unhealthy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) serving: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verdict: Option<Verdict>,
}

/// Milliseconds since the Unix epoch, for records.
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Store {
    /// Every instance's record for `T` (one Range), sorted by instance name. Records that are
    /// not this crate's JSON are skipped.
    pub async fn fleet<T: EtcdConfig>(&self) -> Result<Vec<FleetRecord>> {
        let prefix = keys::fleet::<T>();
        let page = self.client().kv().get(self.fleet_range_of::<T>()).await?;
        Ok(page
            .kvs
            .iter()
            .filter_map(|kv| {
                let instance = kv.key_str().ok()?.strip_prefix(&prefix)?.to_owned();
                let record: Record = serde_json::from_slice(&kv.value).ok()?;
                Some(FleetRecord {
                    revision: record.revision,
                    current_through: record.current_through.unwrap_or(record.revision),
                    applied_at: from_unix_ms(record.applied_at_ms),
                    state: record.state,
                    since: from_unix_ms(record.since_ms),
                    last_rejected: record.last_rejected,
                    unconfirmed_since: record.unconfirmed_since_ms.map(from_unix_ms),
                    identity: record.identity.unwrap_or_else(|| instance.clone()),
                    instance,
                    build: record.build,
                    unhealthy: record.unhealthy,
                    serving: record.serving,
                    verdict: record.verdict,
                })
            })
            .collect())
    }
}

impl Store {
    /// Waits until every instance reporting on `T` ([`Store::fleet`]) is current for
    /// `revision`: the value it serves is the config as etcd holds it at `revision` or later
    /// ([`FleetRecord::current_through`]), whether it applied a change or found the value
    /// equal (a bad value restored, a write that changed nothing). Returns how many instances
    /// there are. Polls the records (one Range every 200 ms). With no instance reporting,
    /// there is nothing to wait for: `Ok(0)` at once (a caller that expects a fleet should
    /// say so).
    ///
    /// # Errors
    ///
    /// [`Error::RolloutRejected`] naming an instance that rejected `revision` or a later one
    /// (and is not current since) and its reason; [`Error::RolloutTimeout`] naming the
    /// instances not current after `within`, with the revision each serves.
    pub async fn wait_rollout<T: EtcdConfig>(
        &self,
        revision: i64,
        within: Duration,
    ) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let fleet = self.fleet::<T>().await?;
            if let Some(record) = fleet
                .iter()
                .find(|r| r.rejected_news().is_some_and(|(at, _)| at >= revision))
            {
                let (rejected, reason) = record.rejected_news().unwrap_or_default();
                return Err(Error::RolloutRejected {
                    prefix: self.prefix_of::<T>(),
                    instance: record.instance.clone(),
                    revision: rejected,
                    reason: reason.to_owned(),
                });
            }
            let behind: Vec<(String, i64)> = fleet
                .iter()
                .filter(|r| r.current_through < revision)
                .map(|r| (r.instance.clone(), r.revision))
                .collect();
            if behind.is_empty() {
                return Ok(fleet.len());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::RolloutTimeout {
                    prefix: self.prefix_of::<T>(),
                    revision,
                    behind,
                    after: within,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl FleetRecord {
    /// The instance's last rejection, while it is news: a revision newer than the last one the
    /// instance is current for. Once the config is back to a value it accepts, the old
    /// rejection is history, not its state.
    pub fn rejected_news(&self) -> Option<(i64, &str)> {
        let (revision, reason) = self.last_rejected.as_ref()?;
        (*revision > self.current_through).then_some((*revision, reason.as_str()))
    }
}

/// When etcd last confirmed an instance's value current (`None`: never).
pub(crate) type Confirmed = Box<dyn Fn() -> Option<Instant> + Send + Sync>;

/// Starts the task that keeps one instance's record current; it writes the latest record it
/// is given (never blocking the follower: records in between are skipped), notes when the
/// instance's value goes unconfirmed, and revokes its lease once the sender is dropped.
pub(crate) fn start_reporter(
    store: Store,
    key: String,
    first: Record,
    confirmed: Confirmed,
) -> watch::Sender<Record> {
    let (sender, records) = watch::channel(first);
    tokio::spawn(report(store, key, records, confirmed));
    sender
}

async fn report(
    store: Store,
    key: String,
    mut records: watch::Receiver<Record>,
    confirmed: Confirmed,
) {
    let mut lease: Option<KeepAlive> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unconfirmed_since: Option<u64> = None;
    // Whether etcd holds an older record than the one to write.
    let mut dirty = true;
    loop {
        if dirty {
            let mut record = records.borrow_and_update().clone();
            record.unconfirmed_since_ms = unconfirmed_since;
            match write(&store, &key, &record, &mut lease).await {
                Ok(()) => {
                    backoff.reset();
                    dirty = false;
                }
                Err(err) => {
                    tracing::debug!(%key, error = %err, "cannot write the fleet record; retrying");
                    tokio::select! {
                        () = backoff.wait() => continue,
                        gone = records.changed() => if gone.is_err() { break },
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            gone = records.changed() => {
                if gone.is_err() {
                    break; // the live config is gone
                }
                dirty = true;
            }
            _ = check.tick() => {
                if lease.as_ref().is_some_and(|l| l.ttl().is_none()) {
                    dirty = true; // the lease expired (a long partition): the record is gone
                }
                let last = confirmed();
                let current = last.is_some_and(|at| at.elapsed() < FleetRecord::UNCONFIRMED_AFTER);
                match (current, unconfirmed_since) {
                    (false, None) => {
                        // Unconfirmed since the last confirmation, if there was one.
                        let now = SystemTime::now();
                        let since = last.map_or(now, |at| now - at.elapsed());
                        unconfirmed_since = Some(unix_ms(since));
                        dirty = true;
                    }
                    (true, Some(_)) => {
                        unconfirmed_since = None;
                        dirty = true;
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(lease) = lease {
        let _ = store.client().lease().revoke(lease.id()).await;
    }
}

/// Puts the record under a kept-alive lease, granting a new lease if there is none or it was
/// lost.
async fn write(
    store: &Store,
    key: &str,
    record: &Record,
    lease: &mut Option<KeepAlive>,
) -> Result<()> {
    if lease.as_ref().is_some_and(|l| l.ttl().is_none()) {
        *lease = None;
    }
    let id = match lease {
        Some(kept) => kept.id(),
        None => {
            let granted = store.client().lease().grant(RECORD_TTL).await?;
            let kept = store.client().lease().keep_alive(granted.id).await?;
            let id = kept.id();
            *lease = Some(kept);
            id
        }
    };
    let value = serde_json::to_string(record).unwrap_or_default();
    match store.client().kv().put(key, value).lease(id).await {
        Err(err) if err.server_kind() == Some(ServerErrorKind::LeaseNotFound) => {
            *lease = None;
            Err(err)
        }
        other => other.map(drop),
    }
}
