//! Reads whose answers go into one buffer ([`RangeAnswer`]): a Range, or a read-only Txn of
//! Ranges answered at one revision. For config code, which takes the keys apart and would
//! only copy them out of prost's messages.

use super::answer::{RangeAnswer, TxnAnswer};
use super::{read, Answer, Get, Kv};
use crate::client::namespace::Enter;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb as pb;

impl Kv {
    /// One Range with `get`'s options (a revision, keys only), its answer in one buffer, its
    /// keys out of the namespace.
    pub(crate) async fn read_pairs(&self, get: Get<()>) -> Result<RangeAnswer> {
        let client = &self.client;
        let mut request = get.request;
        if !client.namespace.is_empty() {
            request.enter(&client.namespace);
        }
        let mut answer: RangeAnswer = read(client, &request).await?;
        if !client.namespace.is_empty() {
            answer.pairs.leave(&client.namespace);
        }
        Ok(answer)
    }

    /// The Ranges of `gets` in one read-only Txn, so at one revision: that revision, and each
    /// Range's answer in one buffer, keys out of the namespace.
    pub(crate) async fn read_pairs_at_once(
        &self,
        gets: Vec<Get<()>>,
    ) -> Result<(i64, Vec<RangeAnswer>)> {
        let client = &self.client;
        let asked = gets.len();
        let success = gets
            .into_iter()
            .map(|get| {
                let mut request = get.request;
                if !client.namespace.is_empty() {
                    request.enter(&client.namespace);
                }
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestRange(request)),
                }
            })
            .collect();
        let txn = pb::TxnRequest {
            success,
            ..Default::default()
        };
        let answer: TxnAnswer = read(client, &txn).await?;
        let revision = answer.revision();
        let ranges: Option<Vec<RangeAnswer>> =
            answer.responses.into_iter().map(|op| op.range).collect();
        let mut ranges = ranges
            .filter(|ranges| ranges.len() == asked)
            .ok_or_else(|| Error::Protocol {
                reason: format!("a Txn of {asked} Ranges was not answered with {asked} Ranges"),
            })?;
        if !client.namespace.is_empty() {
            for range in &mut ranges {
                range.pairs.leave(&client.namespace);
            }
        }
        Ok((revision, ranges))
    }
}
