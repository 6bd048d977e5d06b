//! A reporting live config's part in rollouts: it watches its config's rollout state, gives a
//! verdict on each preflight round (its own decode and `validate` of the candidate over what
//! etcd holds), and hands the candidate to its follower while it is a member.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::{LiveEvent, Shared};
use crate::backoff::Backoff;
use crate::client::watch::EventKind;
use crate::config::fleet::Verdict;
use crate::config::follower::Overlay;
use crate::config::keys;
use crate::config::rollout::{last_key, state_key, RolloutPhase, State};
use crate::config::store::decode_entries;
use crate::config::{EtcdConfig, Store};
use crate::error::Result;
use crate::key_range::KeyRange;

/// Starts the participant of a live config that reports as `identity`; the receiver goes to
/// its follower. The task ends with the live config.
pub(super) fn start<T: EtcdConfig>(
    store: Store,
    shared: Weak<Shared<T>>,
    identity: String,
) -> watch::Receiver<Option<Arc<Overlay>>> {
    let (overlays, receiver) = watch::channel(None);
    tokio::spawn(participate::<T>(store, shared, identity, overlays));
    receiver
}

async fn participate<T: EtcdConfig>(
    store: Store,
    shared: Weak<Shared<T>>,
    identity: String,
    overlays: watch::Sender<Option<Arc<Overlay>>>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let part = Part {
        store,
        shared,
        identity,
        overlays,
    };
    loop {
        tokio::select! {
            result = part.follow() => {
                if let Err(err) = result {
                    tracing::debug!(prefix = T::PREFIX, error = %err,
                        "rollout watch failed; retrying");
                }
            }
            () = part.overlays.closed() => return,
        }
        if part.shared.strong_count() == 0 {
            return;
        }
        backoff.wait().await;
    }
}

struct Part<T> {
    store: Store,
    shared: Weak<Shared<T>>,
    identity: String,
    overlays: watch::Sender<Option<Arc<Overlay>>>,
}

impl<T: EtcdConfig> Part<T> {
    /// Reads the state, then follows it from the next revision; returns on a watch error.
    async fn follow(&self) -> Result<()> {
        let key = state_key::<T>();
        let page = self.store.client().kv().get(key.as_str()).await?;
        let first = page.kvs.first().map(|kv| kv.value.clone());
        self.seen(first.as_deref()).await;
        // The whole area: an end moves `state` to `last` in one txn, and `last` says whether
        // it was a commit.
        let mut watch = self
            .store
            .client()
            .watch(KeyRange::prefix(keys::rollout::<T>()))
            .start_revision(page.header.revision + 1)
            .await?;
        let last = last_key::<T>();
        while let Some(response) = watch.next().await {
            let mut state = None;
            let mut ended = None;
            for event in response?.events {
                if event.kv.key == key.as_bytes() {
                    state = Some(match event.kind {
                        EventKind::Put => Some(event.kv.value),
                        EventKind::Delete => None,
                    });
                } else if event.kv.key == last.as_bytes() && event.kind == EventKind::Put {
                    let revision = event.kv.mod_revision;
                    ended = serde_json::from_slice::<State>(&event.kv.value)
                        .ok()
                        .map(|state| (state, revision));
                }
            }
            match state {
                Some(Some(value)) => self.seen(Some(&value)).await,
                Some(None) => self.ended(ended),
                None => {}
            }
        }
        Ok(())
    }

    /// The rollout ended. After a commit a member keeps the candidate until its follower has
    /// the commit's revision (the same value, so it never steps back to the old one); after
    /// an abort (or a hand delete of the state) the overlay goes at once.
    fn ended(&self, ended: Option<(State, i64)>) {
        match ended {
            Some((state, revision)) if state.phase == RolloutPhase::Committed => {
                self.overlays.send_if_modified(|current| match current {
                    Some(overlay) if overlay.rollout == state.id => {
                        *current = Some(Arc::new(Overlay {
                            rollout: overlay.rollout.clone(),
                            changes: overlay.changes.clone(),
                            committed_at: Some(revision),
                        }));
                        true
                    }
                    _ => false,
                });
            }
            _ => {
                self.overlays.send_if_modified(|o| o.take().is_some());
            }
        }
    }

    /// Acts on the rollout state as it is now.
    async fn seen(&self, value: Option<&[u8]>) {
        let state: Option<State> = value.and_then(|v| serde_json::from_slice(v).ok());
        let Some(state) = state.filter(|s| !s.phase.is_terminal()) else {
            self.overlays.send_if_modified(|o| o.take().is_some());
            return;
        };
        let verdict = match self.verdict_given(&state) {
            Some(verdict) => verdict,
            None => {
                let verdict = self.check(&state).await;
                self.report_verdict(&state, &verdict);
                verdict
            }
        };
        let member = verdict.is_ok()
            && state.members.contains(&self.identity)
            && matches!(
                state.phase,
                RolloutPhase::Baking | RolloutPhase::Paused | RolloutPhase::Preflight
            );
        let overlay = member.then(|| {
            Arc::new(Overlay {
                rollout: state.id.clone(),
                changes: state.changes.clone(),
                committed_at: None,
            })
        });
        self.overlays.send_if_modified(|current| {
            let changed = *current != overlay;
            *current = overlay;
            changed
        });
    }

    /// This round's verdict, if this instance gave it already.
    fn verdict_given(&self, state: &State) -> Option<std::result::Result<(), String>> {
        let shared = self.shared.upgrade()?;
        let tracking = crate::sync::lock(&shared.tracking);
        let report = tracking.rare()?.report.as_ref()?;
        let record = report.borrow();
        let verdict = record.verdict.as_ref()?;
        (verdict.rollout == state.id && verdict.round == state.round).then(|| {
            match &verdict.rejected {
                None => Ok(()),
                Some(reason) => Err(reason.clone()),
            }
        })
    }

    /// Decodes what etcd holds with the candidate overlaid, and validates it.
    async fn check(&self, state: &State) -> std::result::Result<(), String> {
        let (revision, keys) = self
            .store
            .load_raw::<T>()
            .await
            .map_err(|err| format!("could not read the config: {err}"))?;
        let overlay = Overlay {
            rollout: state.id.clone(),
            changes: state.changes.clone(),
            committed_at: None,
        };
        let prefix = self.store.prefix_of::<T>();
        decode_entries::<T>(
            &prefix,
            self.store.keyring(),
            revision,
            &overlay.over(&keys),
        )
        .map(drop)
        .map_err(|err| err.to_string())
    }

    fn report_verdict(&self, state: &State, verdict: &std::result::Result<(), String>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        tracing::info!(prefix = T::PREFIX, rollout = %state.id, round = state.round,
            accepted = verdict.is_ok(), "preflight verdict");
        super::metrics::verdict(&shared.prefix, verdict.is_ok());
        if let Some(events) = shared.events.get() {
            let _ = events.send(LiveEvent::Verdict {
                rollout: state.id.clone(),
                rejected: verdict.clone().err(),
            });
        }
        let tracking = crate::sync::lock(&shared.tracking);
        if let Some(report) = tracking.rare().and_then(|r| r.report.as_ref()) {
            report.send_modify(|record| {
                record.verdict = Some(Verdict {
                    rollout: state.id.clone(),
                    round: state.round,
                    rejected: verdict.clone().err(),
                });
            });
        }
    }
}
