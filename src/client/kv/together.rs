//! Range reads that arrive while another is on its way go together, in one read-only Txn.
//!
//! A service that starts ten thousand live configs at once would otherwise send ten thousand
//! Range calls, each a quorum read on the leader and a gRPC call on the client. Here a read
//! that finds none in flight goes alone and at once, so a lone load waits no longer than
//! before. Reads that arrive meanwhile queue; when the read in flight is answered, a task
//! sends the queue as Txns of at most a cap of Ranges, then whatever queued during
//! those, until the queue is empty. etcd serves a Txn that only reads as it serves a Range (a
//! linearizable read, no raft entry), and answers all of its reads at one revision.
//!
//! A batch that fails for any reason (a read this user may not do, a Txn above the server's
//! `--max-txn-ops`, an answer above the message limit, a member behind) sends each of its reads
//! alone, so each gets its own answer or its own error. A failed batch also halves the cap;
//! each batch answered raises it by one again, up to [`MOST`].

use std::sync::Mutex;

use tokio::sync::oneshot;

use super::answer::{RangeAnswer, TxnAnswer};
use super::{read, Answer, Get, Kv};
use crate::client::namespace::Enter;
use crate::client::Client;
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::proto::etcdserverpb as pb;
use crate::sync::lock;
use pb::request_op::Request;

/// The most Ranges in one Txn: etcd's default `--max-txn-ops`.
const MOST: usize = 128;

/// The reads of one client (and its namespaced clones) waiting to go together.
#[derive(Debug)]
pub(crate) struct Together {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// A read is in flight: new reads queue.
    busy: bool,
    queue: Vec<Waiting>,
    /// How many reads the next Txn may carry.
    cap: usize,
}

/// A queued read, keys already in its namespace. However it leaves the queue, its reader hears:
/// etcd's answer, or its request back to go alone with (dropped unanswered, it sends that).
#[derive(Debug)]
struct Waiting {
    request: pb::RangeRequest,
    reply: Option<oneshot::Sender<Reply>>,
}

/// What a queued reader hears.
#[derive(Debug)]
enum Reply {
    Answered(RangeAnswer),
    /// The batch failed, or never went: the reader sends its read alone.
    Alone(pb::RangeRequest),
}

impl Waiting {
    fn answer(&mut self, response: RangeAnswer) {
        if let Some(reply) = self.reply.take() {
            // A reader that went away meanwhile needs no answer.
            let _ = reply.send(Reply::Answered(response));
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Reply::Alone(std::mem::take(&mut self.request)));
        }
    }
}

impl Default for Together {
    fn default() -> Self {
        Together {
            state: Mutex::new(State {
                busy: false,
                queue: Vec::new(),
                cap: MOST,
            }),
        }
    }
}

impl Kv {
    /// Reads every key of `range`, in one Txn with other reads of this client that arrive
    /// while one is in flight. The keys and values [`Kv::get`] without options reads, all in
    /// one buffer (see [`RangeAnswer`]): a caller that takes them apart saves a copy of each
    /// into its own allocations.
    pub(crate) async fn get_together(&self, keys: impl Into<KeyRange>) -> Result<RangeAnswer> {
        let client = &self.client;
        let mut request = Get::new(keys).request;
        if !client.namespace.is_empty() {
            request.enter(&client.namespace);
        }
        let queued = {
            let mut state = lock(&client.together().state);
            if state.busy {
                let (reply, answer) = oneshot::channel();
                state.queue.push(Waiting {
                    request,
                    reply: Some(reply),
                });
                Err(answer)
            } else {
                state.busy = true;
                Ok(request)
            }
        };
        let (request, first) = match queued {
            Ok(request) => (request, true),
            Err(answer) => match answer.await {
                Ok(Reply::Answered(response)) => return Ok(out_of_namespace(client, response)),
                Ok(Reply::Alone(request)) => (request, false),
                Err(_) => return Err(batch_lost()),
            },
        };
        // Alone: either first, so the queue waits for this read (`Turn` hands it on however
        // this future ends), or told to by the batch.
        let _turn = first.then(|| Turn(client.clone()));
        // Boxed: the call is most of this future, and a load that waits in the queue should
        // not carry its room.
        let response = Box::pin(read(client, &request)).await?;
        Ok(out_of_namespace(client, response))
    }
}

/// `response`'s keys as `client` addresses them.
fn out_of_namespace(client: &Client, mut response: RangeAnswer) -> RangeAnswer {
    if !client.namespace.is_empty() {
        response.pairs.leave(&client.namespace);
    }
    response
}

/// A queued read's answer was dropped unsent, which [`Waiting`]'s `Drop` rules out.
fn batch_lost() -> crate::Error {
    crate::Error::Stopped {
        what: "a read sent together with others".to_owned(),
        reason: "its batch ended without an answer".to_owned(),
    }
}

/// The read in flight that went alone; when it ends, the queue is sent.
struct Turn(Client);

impl Drop for Turn {
    fn drop(&mut self) {
        let together = self.0.together();
        let batch = {
            let mut state = lock(&together.state);
            let cap = state.cap;
            next_batch(&mut state, cap)
        };
        if batch.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(drain(self.0.clone(), batch))),
            // No runtime to send from: every queued read goes alone.
            Err(_) => {
                let mut state = lock(&together.state);
                state.queue.clear();
                state.busy = false;
            }
        }
    }
}

/// Takes up to `cap` queued reads; with none queued, marks the client idle.
fn next_batch(state: &mut State, cap: usize) -> Vec<Waiting> {
    if state.queue.is_empty() {
        state.busy = false;
        return Vec::new();
    }
    let take = state.queue.len().min(cap.max(1));
    state.queue.drain(..take).collect()
}

/// Sends batches until the queue is empty.
async fn drain(client: Client, mut batch: Vec<Waiting>) {
    let together = client.together();
    while !batch.is_empty() {
        let sent = batch.len();
        let answered = send(&client, batch).await;
        let mut state = lock(&together.state);
        state.cap = match answered {
            true => (state.cap + 1).min(MOST),
            false if sent > 1 => (sent / 2).max(1),
            false => state.cap,
        };
        let cap = state.cap;
        batch = next_batch(&mut state, cap);
    }
}

/// Queued reads on their way in one Txn, their requests moved into it. However the batch
/// ends (answered, failed, its task cancelled), each read it did not answer gets its request
/// back and goes alone.
struct Batch {
    waiting: Vec<Waiting>,
    txn: pb::TxnRequest,
}

impl Batch {
    fn of(mut waiting: Vec<Waiting>) -> Batch {
        let success = waiting
            .iter_mut()
            .map(|waiting| pb::RequestOp {
                request: Some(Request::RequestRange(std::mem::take(&mut waiting.request))),
            })
            .collect();
        let txn = pb::TxnRequest {
            success,
            ..Default::default()
        };
        Batch { waiting, txn }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Each request back with its reader: `Waiting`'s drop sends it to the unanswered.
        for (waiting, op) in self.waiting.iter_mut().zip(&mut self.txn.success) {
            if let Some(Request::RequestRange(request)) = op.request.take() {
                waiting.request = request;
            }
        }
    }
}

/// Sends one batch; false if it failed, its readers then going alone.
async fn send(client: &Client, waiting: Vec<Waiting>) -> bool {
    if waiting.len() == 1 {
        // Nothing to share: the reader goes alone, as a plain Range.
        return true;
    }
    let seen = client.transport().seen_revision();
    let mut batch = Batch::of(waiting);
    let response = match client.call_as::<_, TxnAnswer>(&batch.txn).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(reads = batch.waiting.len(), error = %err, "reads sent together failed; each goes alone");
            return false;
        }
    };
    let revision = response.revision();
    client.transport().saw_revision(revision);
    if revision < seen || response.responses.len() != batch.waiting.len() {
        return false;
    }
    for (waiting, answer) in batch.waiting.iter_mut().zip(response.responses) {
        if let Some(mut range) = answer.range {
            range.header = response.header;
            waiting.answer(range);
        }
    }
    true
}
