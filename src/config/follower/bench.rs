//! The follower's work on one watch response, for the instruction counts (`benches/icount`).

use std::sync::Arc;

use super::{apply, Followed, Tracked};
use crate::client::watch::{Event, WatchResponse};
use crate::config::decode::RawKeys;
use crate::config::keys;
use crate::config::store::decode_entries;
use crate::config::EtcdConfig;
use crate::error::Result;

/// The follower's work on one watch response of protobuf events, for the instruction-count
/// benchmark (`benches/icount`): not part of the API.
#[doc(hidden)]
pub struct FollowBench<T> {
    tracked: Tracked<T>,
    prefix: String,
}

impl<T: EtcdConfig> FollowBench<T> {
    /// A follower at `revision` over `kvs` (keys as the client addresses them).
    ///
    /// # Errors
    ///
    /// If `kvs` does not decode.
    pub fn new(kvs: Vec<(Vec<u8>, Vec<u8>)>, revision: i64) -> Result<Self> {
        let keys = RawKeys::from_kvs::<T>(kvs);
        let prefix = keys::fields::<T>();
        let good = Arc::new(decode_entries::<T>(&prefix, None, revision, &keys)?);
        Ok(FollowBench {
            tracked: Tracked::new(keys, revision, good),
            prefix,
        })
    }

    /// Turns one response's events into typed updates; returns how many values changed.
    pub fn apply(&mut self, revision: i64, events: Vec<crate::proto::mvccpb::Event>) -> usize {
        let response = WatchResponse {
            header: crate::client::ResponseHeader {
                revision,
                ..Default::default()
            },
            events: events.into_iter().map(Event::from).collect(),
        };
        apply(&self.prefix, None, &mut self.tracked, response)
            .iter()
            .filter(|f| matches!(f, Followed::Updated(_)))
            .count()
    }
}
