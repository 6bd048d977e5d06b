//! The background task of a live config that needs one: it reaches etcd (after a start from
//! the cache file), then follows the watch, applying each valid revision (after the settle
//! window, if one is set), noting rejections, confirmations and reconnections, until every
//! handle is gone. A live config with no settle window, cache file or rollout report has no
//! task: the client's watch task drives it (`driven`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::options::Settle;
use super::publisher::{Confirming, Publisher};
use super::status::LiveEvent;
use super::Handles;
use crate::backoff::Backoff;
use crate::config::follower::{changed_fields, stored, Followed, Follower, Overlay, Started};
use crate::config::{EtcdConfig, Store, Update};

/// The settle window of a live config that has one, and the change waiting for it. Boxed by
/// the follower: most live configs have none.
pub(super) struct Settling<T> {
    settle: Settle,
    waiting: Option<Waiting<T>>,
}

/// A change waiting for the settle window.
struct Waiting<T> {
    update: Update<T>,
    first_seen: Instant,
    last_seen: Instant,
}

impl<T> Settling<T> {
    /// When the waiting change is applied: once the prefix was quiet long enough, or it
    /// waited the longest.
    fn due(&self) -> Option<Instant> {
        let waiting = self.waiting.as_ref()?;
        Some((waiting.last_seen + self.settle.quiet).min(waiting.first_seen + self.settle.at_most))
    }
}

/// Starts the background task of a live config: following `started`, or, after a start from
/// the cache file (`None`), reaching etcd first. Returns what its handles hold.
pub(super) fn spawn<T: EtcdConfig>(
    store: &Store,
    started: Option<Started<T>>,
    publisher: Publisher<T>,
    settle: Option<Settle>,
    overlays: Option<watch::Receiver<Option<Arc<Overlay>>>>,
) -> Arc<Handles> {
    let settling = settle.map(|settle| {
        Box::new(Settling {
            settle,
            waiting: None,
        })
    });
    // The handles hold the sender: the task ends when the last handle is gone.
    let (handles, gone) = oneshot::channel();
    match started {
        // The follower is made here, not in the task: what an async fn takes stays in its
        // state for as long as it runs, and thousands of these may run.
        Some(started) => {
            let mut follower = started.into_follower(store.clone());
            if let Some(overlays) = overlays {
                follower = follower.with_overlays(overlays);
            }
            tokio::spawn(follow(
                follower,
                Confirming::start(store),
                publisher,
                settling,
                gone,
            ));
        }
        None => {
            tokio::spawn(reach_then_follow(
                store.clone(),
                publisher,
                settling,
                overlays,
                gone,
            ));
        }
    }
    Arc::new(Handles::Task(handles))
}

/// After a start from the cache file: retries the first load until etcd answers, puts its
/// value in place, then follows.
async fn reach_then_follow<T: EtcdConfig>(
    store: Store,
    publisher: Publisher<T>,
    settling: Option<Box<Settling<T>>>,
    overlays: Option<watch::Receiver<Option<Arc<Overlay>>>>,
    mut gone: oneshot::Receiver<()>,
) {
    let Some(started) = reconnect::<T>(&store, &publisher, &mut gone).await else {
        return;
    };
    let (value, revision) = started.initial();
    let cached = publisher.shared.current.load().value.clone();
    let changed = changed_fields(&stored(&*cached), &stored(&*value));
    publisher.apply(value, revision, changed);
    publisher.confirm(revision);
    let confirming = Confirming::start(&store);
    let mut follower = started.into_follower(store);
    if let Some(overlays) = overlays {
        follower = follower.with_overlays(overlays);
    }
    Box::pin(follow(follower, confirming, publisher, settling, gone)).await;
}

/// The background task. One per live config: it waits on the watch, the settle timer and the
/// handles, nothing else (outages and metrics reach the live config without it).
async fn follow<T: EtcdConfig>(
    mut follower: Follower<T>,
    _confirming: Confirming,
    publisher: Publisher<T>,
    mut settling: Option<Box<Settling<T>>>,
    mut gone: oneshot::Receiver<()>,
) {
    // What the first load found: keys no field reads are reported from the start.
    publisher.unknown(follower.unknown_keys());
    loop {
        let sleep = settling.as_ref().and_then(|s| s.due()).map(|due| {
            Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                due,
            )))
        });
        let settled = async move {
            match sleep {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = follower.next() => {
                let Some(item) = item else { return };
                publisher.unknown(follower.unknown_keys());
                if !publish(&publisher, item, settling.as_mut()) {
                    return;
                }
            }
            () = settled => {
                if let Some(done) = settling.as_mut().and_then(|s| s.waiting.take()) {
                    let update = done.update;
                    publisher.apply(update.config, update.revision, update.changed);
                }
            }
            _ = &mut gone => return, // every handle is gone
        }
    }
}

/// Passes on what following produced: applied at once, or kept for the settle window.
/// Returns false once the follower ended.
pub(super) fn publish<T: EtcdConfig>(
    publisher: &Publisher<T>,
    item: Followed<T>,
    settling: Option<&mut Box<Settling<T>>>,
) -> bool {
    match item {
        Followed::Updated(update) => match settling {
            None => publisher.apply(update.config, update.revision, update.changed),
            Some(settling) => {
                crate::sync::lock(&publisher.shared.tracking).set_pending(Some(update.revision));
                settling.waiting = Some(merge(settling.waiting.take(), update));
            }
        },
        Followed::Rejected(err) => {
            // An edit that ends invalid is not applied halfway.
            if let Some(settling) = settling {
                settling.waiting = None;
            }
            publisher.reject(err.rejected_revision().unwrap_or(0), err.to_string());
        }
        Followed::Confirmed(revision) => publisher.confirm(revision),
        Followed::Current(revision) => publisher.current(revision),
        Followed::Serving(rollout) => publisher.serving(rollout),
        Followed::Committed(revision) => publisher.committed(revision),
        Followed::Resynced(revision) => publisher.event(LiveEvent::Resynced { revision }),
        Followed::Ended(err) => {
            publisher.stop(err.to_string());
            return false;
        }
    }
    true
}

/// A waiting change followed by another: the newer value, against the value before the first.
fn merge<T>(waiting: Option<Waiting<T>>, update: Update<T>) -> Waiting<T> {
    let now = Instant::now();
    match waiting {
        None => Waiting {
            update,
            first_seen: now,
            last_seen: now,
        },
        Some(mut earlier) => {
            let mut changed = std::mem::take(&mut earlier.update.changed);
            changed.extend(update.changed);
            changed.sort();
            changed.dedup();
            Waiting {
                update: Update {
                    revision: update.revision,
                    config: update.config,
                    previous: earlier.update.previous,
                    changed,
                    resynced: earlier.update.resynced || update.resynced,
                },
                first_seen: earlier.first_seen,
                last_seen: now,
            }
        }
    }
}

/// Retries the first load and watch with backoff; `None` if every handle is dropped first.
async fn reconnect<T: EtcdConfig>(
    store: &Store,
    publisher: &Publisher<T>,
    gone: &mut oneshot::Receiver<()>,
) -> Option<Started<T>> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::select! {
            () = backoff.wait() => {}
            _ = &mut *gone => return None,
        }
        match Started::<T>::start(store).await {
            Ok(started) => return Some(started),
            Err(err) => {
                tracing::debug!(error = %err, "etcd still unreachable");
                let mut tracking = crate::sync::lock(&publisher.shared.tracking);
                let rare = tracking.rare_mut();
                if rare.unreachable.is_none() {
                    rare.unreachable = Some((Instant::now(), err.to_string()));
                }
            }
        }
    }
}
