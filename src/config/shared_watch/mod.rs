//! One watch for many live configs: a store made with [`Store::share_watch`] follows the live
//! configs under a parent prefix through one watch of the parent, which this module splits
//! by config prefix, instead of creating a watch for each.
//!
//! A live config rides the parent's watch from the revision after its load. It can only if
//! the watch has not delivered a revision after that load yet, and started no later than
//! right after it: every revision the config has not seen then still comes. Otherwise (or when
//! etcd refuses the parent's watch, or its prefix is not under the parent) it watches its own
//! prefix, as without sharing. After a refusal, live configs started in the next minute
//! watch alone without asking again. The parent's watch is created with the first rider, at the
//! revision after that rider's load, and cancelled with the last.
//!
//! [`Store::share_watch`]: super::Store::share_watch

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::client::namespace::events_out;
use crate::client::watch::{Driving, Event, Sink, WatchResponse};
use crate::client::Client;
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::sync::lock;

/// The parent a store's live configs share a watch of.
pub(crate) struct SharedWatch {
    /// The parent's keys as etcd names them (the namespace of the store that named it
    /// included).
    whole: Vec<u8>,
    /// The parent as `client` names it.
    parent: String,
    client: Client,
    /// The parent's watch while anyone rides it.
    carrier: Mutex<Slot>,
}

/// How long after etcd refused the parent's watch new live configs watch alone without asking
/// again (a refusal costs a few round trips on the client's watch stream).
const REFUSED_FOR: Duration = Duration::from_secs(60);

struct Slot {
    carrier: Weak<Carrier>,
    /// etcd refused the parent's watch; until then, nobody asks again.
    refused_until: Option<Instant>,
}

impl std::fmt::Debug for SharedWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWatch")
            .field("parent", &String::from_utf8_lossy(&self.whole))
            .finish_non_exhaustive()
    }
}

/// The parent's watch and who rides it.
struct Carrier {
    riders: Arc<Mutex<Riders>>,
    /// Whether etcd confirmed the parent's watch; `None` while its create is on its way.
    created: tokio::sync::watch::Receiver<Option<bool>>,
    /// Dropped with the last rider: cancels the parent's watch.
    driving: Driving,
    /// The first revision the parent's watch delivers.
    start: i64,
    /// How far behind the head the parent's watch may resume: the first rider's store's
    /// [`catch_up_limit`](super::Store::catch_up_limit).
    catch_up_limit: i64,
}

#[derive(Default)]
struct Riders {
    /// The revision of the last events the parent's watch delivered.
    seen: i64,
    /// The parent's watch ended (or was refused): no one may join it any more.
    ended: bool,
    next_id: u64,
    by_id: HashMap<u64, Rider>,
    /// Riders by their config's prefix (as etcd names it, ending in `/`).
    by_prefix: HashMap<Vec<u8>, Vec<u64>>,
}

struct Rider {
    prefix: Vec<u8>,
    /// The first revision this rider has not seen.
    next_revision: i64,
    sink: Box<dyn Sink>,
}

/// A live config riding the parent's watch: dropping it leaves (and the last rider to leave
/// cancels the parent's watch).
pub(crate) struct Riding {
    carrier: Arc<Carrier>,
    id: u64,
}

impl SharedWatch {
    /// Shares watches of `parent` (as `client` names it, a `/` added at its end if missing)
    /// among live configs under it.
    pub(crate) fn new(client: &Client, parent: &str) -> SharedWatch {
        let mut parent = parent.to_owned();
        if !parent.ends_with('/') {
            parent.push('/');
        }
        let whole = [client.namespace_prefix(), parent.as_bytes()].concat();
        SharedWatch {
            whole,
            parent,
            client: client.clone(),
            carrier: Mutex::new(Slot {
                carrier: Weak::new(),
                refused_until: None,
            }),
        }
    }

    /// Rides the parent's watch with `sink`, for the keys under `prefix` (as etcd names them,
    /// ending in `/`) from the revision after `loaded` on (a new parent watch resumes at most
    /// `catch_up_limit` revisions behind). Returns once etcd confirmed the
    /// parent's watch. Gives `sink` back when it cannot ride (see the module's docs): the
    /// caller then watches alone.
    pub(crate) async fn ride(
        self: &Arc<Self>,
        prefix: Vec<u8>,
        loaded: i64,
        catch_up_limit: i64,
        sink: Box<dyn Sink>,
    ) -> std::result::Result<Riding, Box<dyn Sink>> {
        if !prefix.starts_with(&self.whole) {
            return Err(sink);
        }
        let Some(carrier) = self.carrier(loaded, catch_up_limit) else {
            return Err(sink);
        };
        let id = {
            let mut riders = lock(&carrier.riders);
            if !riders.admits(loaded, carrier.start) {
                return Err(sink);
            }
            riders.join(Rider {
                prefix,
                next_revision: loaded + 1,
                sink,
            })
        };
        // From here the rider leaves if this future is dropped.
        let riding = Riding { carrier, id };
        let mut created = riding.carrier.created.clone();
        let created = created
            .wait_for(Option::is_some)
            .await
            .is_ok_and(|created| *created == Some(true));
        if created {
            return Ok(riding);
        }
        let rider = lock(&riding.carrier.riders).leave(id);
        // Nothing is delivered on a watch etcd refused, and only a delivery or the handle
        // removes a rider.
        Err(rider
            .expect("a rider of a refused watch is still there")
            .sink)
    }

    /// The parent's watch to ride: the one under way, or a new one starting after `loaded`;
    /// none while a refusal stands.
    fn carrier(self: &Arc<Self>, loaded: i64, catch_up_limit: i64) -> Option<Arc<Carrier>> {
        let mut slot = lock(&self.carrier);
        if let Some(carrier) = slot.carrier.upgrade() {
            if !lock(&carrier.riders).ended {
                return Some(carrier);
            }
        }
        if slot
            .refused_until
            .is_some_and(|until| Instant::now() < until)
        {
            return None;
        }
        let (created, created_rx) = tokio::sync::watch::channel(None);
        let carrier = Arc::new(Carrier {
            riders: Arc::new(Mutex::new(Riders {
                seen: loaded,
                ..Riders::default()
            })),
            created: created_rx,
            driving: Driving::new(&self.client),
            start: loaded + 1,
            catch_up_limit,
        });
        slot.carrier = Arc::downgrade(&carrier);
        // A task of its own: a rider that stops waiting must not cancel the create halfway
        // (the watch task would still create it, under a handle no one holds).
        let (shared, task_carrier) = (self.clone(), carrier.clone());
        tokio::spawn(async move {
            let ok = shared.create(&task_carrier).await;
            let _ = created.send(Some(ok));
        });
        Some(carrier)
    }

    /// Creates the parent's watch; whether etcd confirmed it.
    async fn create(&self, carrier: &Carrier) -> bool {
        let created: Result<()> = self
            .client
            .watch(KeyRange::prefix(self.parent.as_str()))
            .start_revision(carrier.start)
            .catch_up_limit(carrier.catch_up_limit)
            .confirmed()
            .drive(
                &carrier.driving,
                Box::new(Parent {
                    riders: carrier.riders.clone(),
                }),
            )
            .await;
        if let Err(err) = &created {
            tracing::debug!(
                parent = %String::from_utf8_lossy(&self.whole),
                error = %err,
                "the shared watch was not created; each live config watches its own prefix"
            );
            lock(&carrier.riders).ended = true;
            // etcd said no (not: etcd could not be reached): do not ask again for a while.
            if err.server_kind().is_some() {
                lock(&self.carrier).refused_until = Some(Instant::now() + REFUSED_FOR);
            }
        }
        created.is_ok()
    }
}

impl Drop for Riding {
    fn drop(&mut self) {
        // Dropped outside the lock: the sink may hold the last reference to anything.
        let rider = lock(&self.carrier.riders).leave(self.id);
        drop(rider);
    }
}

impl Riders {
    /// Whether a config loaded at `loaded` may ride a watch that started at `start`: not if
    /// a revision after the load already went by, or the watch starts after it.
    fn admits(&self, loaded: i64, start: i64) -> bool {
        !self.ended && loaded >= self.seen && loaded + 1 >= start
    }

    fn join(&mut self, rider: Rider) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_prefix
            .entry(rider.prefix.clone())
            .or_default()
            .push(id);
        self.by_id.insert(id, rider);
        id
    }

    fn leave(&mut self, id: u64) -> Option<Rider> {
        let rider = self.by_id.remove(&id)?;
        if let Some(ids) = self.by_prefix.get_mut(&rider.prefix) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                self.by_prefix.remove(&rider.prefix);
            }
        }
        Some(rider)
    }

    /// The riders whose prefix holds `key`.
    fn of_key<'a>(&'a self, key: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
        key.iter()
            .enumerate()
            .filter(|&(_, &byte)| byte == b'/')
            .filter_map(|(at, _)| self.by_prefix.get(&key[..=at]))
            .flatten()
            .copied()
    }

    /// Hands `response` to rider `id`, without its namespace; a rider that is gone leaves.
    fn hand(&mut self, id: u64, mut response: Result<WatchResponse>) {
        let Some(rider) = self.by_id.get_mut(&id) else {
            return;
        };
        if let Ok(response) = &mut response {
            events_out(rider.sink.namespace(), &mut response.events);
            if let Some(last) = response.events.last() {
                rider.next_revision = last.kv.mod_revision + 1;
            }
        }
        if !rider.sink.deliver(response) {
            self.leave(id);
        }
    }
}

/// The parent watch's consumer: splits each answer among the riders.
struct Parent {
    riders: Arc<Mutex<Riders>>,
}

impl Sink for Parent {
    fn deliver(&mut self, answer: Result<WatchResponse>) -> bool {
        let mut riders = lock(&self.riders);
        let response = match answer {
            Ok(response) => response,
            Err(err) => {
                // Compacted or fallen behind: each reloads and rides a new one; else each ends
                // as its own watch would have.
                riders.ended = true;
                let ids: Vec<u64> = riders.by_id.keys().copied().collect();
                for id in ids {
                    riders.hand(id, Err(err.clone()));
                }
                return false;
            }
        };
        let header = response.header;
        let Some(last) = response.events.last() else {
            // Progress: every rider is current through it.
            let ids: Vec<u64> = riders.by_id.keys().copied().collect();
            for id in ids {
                riders.hand(id, Ok(progress(header)));
            }
            return true;
        };
        riders.seen = last.kv.mod_revision;
        let mut each: HashMap<u64, Vec<Event>> = HashMap::new();
        for event in response.events {
            let revision = event.kv.mod_revision;
            let ids: Vec<u64> = riders.of_key(&event.kv.key).collect();
            for id in ids {
                let wants = riders
                    .by_id
                    .get(&id)
                    .is_some_and(|rider| revision >= rider.next_revision);
                if wants {
                    each.entry(id).or_default().push(event.clone());
                }
            }
        }
        for (id, events) in each {
            riders.hand(id, Ok(WatchResponse { header, events }));
        }
        true
    }
}

fn progress(header: crate::client::ResponseHeader) -> WatchResponse {
    WatchResponse {
        header,
        events: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
