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

use bytes::BufMut;
use prost::encoding::{self, WireType};
use prost::Message as _;
use tokio::sync::oneshot;

use super::answer::{RangeAnswer, TxnAnswer};
use super::{read, Answer, Get, Kv};
use crate::client::namespace::Enter;
use crate::client::rpc::{self, Rpc};
use crate::client::transport::{never_decoded, Conn, Encoded, Retry};
use crate::client::Client;
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::proto::etcdserverpb as pb;
use crate::sync::lock;

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

/// Queued reads on their way in one Txn. The Txn is encoded from the queued requests where
/// they are, each request's size counted once (prost's own Txn would count each nested
/// size three times, and the requests would move into it and back). However the batch ends
/// (answered, failed, its task cancelled), each read it did not answer goes alone
/// ([`Waiting`]'s drop).
#[derive(Debug)]
struct Batch {
    waiting: Vec<Waiting>,
    /// Each request's encoded size.
    sizes: Vec<usize>,
}

impl Batch {
    fn of(waiting: Vec<Waiting>) -> Batch {
        let sizes = waiting.iter().map(|w| w.request.encoded_len()).collect();
        Batch { waiting, sizes }
    }

    /// Each `RequestOp`'s size: its one field, `request_range` (1), around the request.
    fn ops(&self) -> impl Iterator<Item = usize> + '_ {
        self.sizes.iter().map(|&size| field_len(size))
    }
}

/// The size of a length-delimited field of `len` bytes with a one-byte tag.
fn field_len(len: usize) -> usize {
    1 + encoding::encoded_len_varint(len as u64) + len
}

/// A `TxnRequest` whose `success` (field 2) holds a `RequestOp` per queued read; no
/// comparisons, no failure branch. The field numbers are etcd's.
impl prost::Message for Batch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for ((waiting, &size), op) in self.waiting.iter().zip(&self.sizes).zip(self.ops()) {
            encoding::encode_key(2, WireType::LengthDelimited, buf);
            encoding::encode_varint(op as u64, buf);
            encoding::encode_key(1, WireType::LengthDelimited, buf);
            encoding::encode_varint(size as u64, buf);
            waiting.request.encode_raw(buf);
        }
    }

    fn encoded_len(&self) -> usize {
        self.ops().map(field_len).sum()
    }

    never_decoded!();
}

impl Rpc for Batch {
    type Response = pb::TxnResponse;
    const NAME: &'static str = "Txn";
    const PATH: &'static str = "/etcdserverpb.KV/Txn";

    fn retry(&self) -> Retry {
        Retry::Idempotent // reads only
    }

    fn subject(&self) -> String {
        format!("of {} reads sent together", self.waiting.len())
    }

    async fn send(conn: Conn, request: tonic::Request<Encoded>) -> rpc::Reply<pb::TxnResponse> {
        conn.unary(Self::PATH, request).await
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
    let response = match client.call_as::<_, TxnAnswer>(&batch).await {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::{Batch, Waiting};
    use crate::proto::etcdserverpb as pb;

    proptest! {
        /// The Txn encoded from the queue is, byte for byte, the `TxnRequest` prost encodes
        /// with the same Ranges.
        #[test]
        fn the_batch_is_the_txn_prost_would_send(
            reads in prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 0..300),
                    prop::collection::vec(any::<u8>(), 0..3),
                    prop_oneof![Just(0i64), any::<i64>()],
                    any::<bool>(),
                ),
                0..20,
            ),
        ) {
            let requests: Vec<pb::RangeRequest> = reads
                .into_iter()
                .map(|(key, range_end, revision, keys_only)| pb::RangeRequest {
                    key,
                    range_end,
                    revision,
                    keys_only,
                    ..Default::default()
                })
                .collect();
            let txn = pb::TxnRequest {
                success: requests
                    .iter()
                    .map(|request| pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestRange(request.clone())),
                    })
                    .collect(),
                ..Default::default()
            };
            let batch = Batch::of(
                requests
                    .into_iter()
                    .map(|request| Waiting { request, reply: None })
                    .collect(),
            );
            prop_assert_eq!(batch.encoded_len(), txn.encoded_len());
            prop_assert_eq!(batch.encode_to_vec(), txn.encode_to_vec());
        }
    }
}
