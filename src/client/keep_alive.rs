//! One LeaseKeepAlive stream per client, shared by every lease the client keeps alive, as
//! etcd's Go client does: each lease is renewed by one message on that stream every third of
//! its TTL, and etcd answers each with the TTL it granted.
//!
//! A background task owns the stream. It opens it when the first lease arrives, moves to
//! another endpoint when the stream breaks or stops answering (one renewal interval with an
//! unanswered renewal), renews the auth token when etcd asks, and closes the stream when the
//! last lease is dropped. Each lease reports to its [`KeepAlive`](super::lease::KeepAlive)
//! handle through a `watch` channel.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::stream::{fails_waiting, Reopen, Supervised};
use super::transport::Transport;
use crate::error::{Error, Result, ServerErrorKind};
use crate::proto::etcdserverpb as pb;

/// Where a kept-alive lease stands.
#[derive(Debug)]
pub(crate) enum Renewal {
    /// Registered; etcd has not answered the first renewal yet.
    Pending,
    /// Renewed; etcd granted this many seconds.
    Alive(i64),
    /// Renewing stopped: the lease is gone, or the first renewal could not be sent.
    Failed(Error),
}

/// The handle a client keeps to its keep-alive task.
pub(crate) struct Keeper {
    leases: mpsc::UnboundedSender<(i64, watch::Sender<Renewal>)>,
}

impl Keeper {
    /// Starts the task. Like the watch task it holds the transport weakly, and ends when the
    /// client (the only sender) is gone and no lease is left.
    pub(crate) fn start(transport: Weak<Transport>) -> Keeper {
        let (leases, added) = mpsc::unbounded_channel();
        tokio::spawn(
            Task {
                added,
                leases: HashMap::new(),
                stream: Supervised::new(transport, "LeaseKeepAlive"),
            }
            .run(),
        );
        Keeper { leases }
    }

    /// Starts renewing lease `id`; renewals stop when every receiver is dropped.
    pub(crate) fn keep(&self, id: i64) -> watch::Receiver<Renewal> {
        let (report, state) = watch::channel(Renewal::Pending);
        let _ = self.leases.send((id, report));
        state
    }
}

/// How long to wait for a lease's turn when none is due (nothing to renew soon).
const IDLE: Duration = Duration::from_secs(2);

struct Kept {
    report: watch::Sender<Renewal>,
    /// When to send the next renewal.
    due: Instant,
    /// Whether a renewal was sent and not answered yet.
    awaiting: bool,
}

struct Task {
    added: mpsc::UnboundedReceiver<(i64, watch::Sender<Renewal>)>,
    leases: HashMap<i64, Kept>,
    stream: Supervised<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse>,
}

impl Task {
    async fn run(mut self) {
        loop {
            self.leases.retain(|_, kept| !kept.report.is_closed());
            if self.leases.is_empty() {
                self.stream.close(); // nothing to renew: close the gRPC stream
                match self.added.recv().await {
                    Some((id, report)) => self.add(id, report),
                    None => return,
                }
                continue;
            }
            if !self.stream.is_open() {
                if let Err(err) = self.open().await {
                    tracing::debug!(error = %err, "lease keep-alive stream could not be opened");
                    if fails_waiting(&err) {
                        self.fail_pending(&err);
                    }
                    match self.stream.wait_to_reopen(&mut self.added).await {
                        Reopen::Now => {}
                        Reopen::Command((id, report)) => self.add(id, report),
                        Reopen::Closed if self.leases.is_empty() => return,
                        Reopen::Closed => {}
                    }
                    continue;
                }
            }
            let due = self.leases.values().map(|kept| kept.due).min();
            let due = due.unwrap_or_else(|| Instant::now() + IDLE);
            tokio::select! {
                added = self.added.recv() => match added {
                    Some((id, report)) => self.add(id, report),
                    // Handles hold the client, so the client is gone only once the last
                    // handle is: the next turn finds no lease left and ends.
                    None if self.leases.is_empty() => return,
                    None => {}
                },
                answer = self.stream.message() => match answer {
                    Ok(Some(response)) => self.answered(&response),
                    Ok(None) => self.broken("the server closed the keep-alive stream"),
                    Err(status) => self.failed(status).await,
                },
                () = tokio::time::sleep_until(due) => self.renew_due(),
            }
        }
    }

    fn add(&mut self, id: i64, report: watch::Sender<Renewal>) {
        let kept = Kept {
            report,
            due: Instant::now(),
            awaiting: false,
        };
        self.leases.insert(id, kept);
    }

    /// Sends the renewals that are due. A lease whose last renewal is still unanswered means
    /// the stream stalled (a frozen member): it is dropped and reopened elsewhere.
    fn renew_due(&mut self) {
        let now = Instant::now();
        let stalled = self
            .leases
            .values()
            .any(|kept| kept.due <= now && kept.awaiting);
        if stalled {
            self.broken("a renewal went unanswered for a whole interval");
            return;
        }
        if !self.stream.is_open() {
            return;
        }
        for (&id, kept) in &mut self.leases {
            if kept.due <= now {
                self.stream.send(pb::LeaseKeepAliveRequest { id });
                kept.awaiting = true;
                kept.due = now + interval(&kept.report.borrow());
            }
        }
    }

    fn answered(&mut self, response: &pb::LeaseKeepAliveResponse) {
        let Some(kept) = self.leases.get_mut(&response.id) else {
            return; // dropped meanwhile
        };
        if response.ttl <= 0 {
            // Expired or revoked: etcd answers a renewal of an unknown lease with TTL 0.
            let lost = Error::lease_not_found(response.id);
            kept.report.send_replace(Renewal::Failed(lost));
            self.leases.remove(&response.id);
            return;
        }
        kept.awaiting = false;
        kept.report.send_replace(Renewal::Alive(response.ttl));
        kept.due = Instant::now() + interval(&Renewal::Alive(response.ttl));
    }

    async fn open(&mut self) -> Result<()> {
        // Every lease is renewed at once on the new stream.
        let now = Instant::now();
        let leases = &mut self.leases;
        let queue = |outbound: &mpsc::UnboundedSender<pb::LeaseKeepAliveRequest>| {
            for (&id, kept) in leases.iter_mut() {
                let _ = outbound.send(pb::LeaseKeepAliveRequest { id });
                kept.awaiting = true;
                kept.due = now + interval(&kept.report.borrow());
            }
        };
        self.stream
            .open(queue, |conn, request| async move {
                conn.streaming("/etcdserverpb.Lease/LeaseKeepAlive", request)
                    .await
            })
            .await
    }

    /// The stream ended with an error: renew the token if etcd asks for it (and reopen on the
    /// same endpoint), else move on to the next endpoint.
    async fn failed(&mut self, status: tonic::Status) {
        if ServerErrorKind::from_message(status.message()).needs_new_token() {
            self.stream.renew_token().await;
            self.restart();
        } else {
            self.broken(status.message());
        }
    }

    /// Drops the stream; the next turn of the loop reopens it (on another endpoint) and sends
    /// every lease's renewal at once.
    fn broken(&mut self, why: &str) {
        self.stream.broken(why);
        self.restart();
    }

    /// No renewal is awaited on a stream that is gone.
    fn restart(&mut self) {
        for kept in self.leases.values_mut() {
            kept.awaiting = false;
        }
    }

    /// A lease whose first renewal could not be sent fails (its `keep_alive` call returns the
    /// error); leases already renewed keep waiting for etcd to come back.
    fn fail_pending(&mut self, err: &Error) {
        self.leases.retain(|_, kept| {
            let pending = matches!(*kept.report.borrow(), Renewal::Pending);
            if pending {
                kept.report.send_replace(Renewal::Failed(err.clone()));
            }
            !pending
        });
    }
}

/// How long to wait before renewing: a third of the TTL etcd last granted (as Go does), at
/// least a second; a second before the first answer.
fn interval(renewal: &Renewal) -> Duration {
    match renewal {
        Renewal::Alive(ttl) => Duration::from_secs(u64::try_from(*ttl / 3).unwrap_or(0).max(1)),
        Renewal::Pending | Renewal::Failed(_) => Duration::from_secs(1),
    }
}
