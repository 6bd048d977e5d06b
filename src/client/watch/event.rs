//! What a watch delivers: events and responses. A leaf: the handles and the task both use
//! these.

use std::sync::atomic::{AtomicBool, AtomicI64};

use crate::client::key_value::KeyValue;
use crate::client::ResponseHeader;
use crate::error::Error;
use crate::proto::mvccpb;

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or changed.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change; for a delete, the key with the delete's revision as
    /// `mod_revision` and no value.
    pub kv: KeyValue,
    /// The key before the change, if the watch asked for [`prev_kv`](super::WatchBuilder::prev_kv).
    pub prev_kv: Option<KeyValue>,
}

impl From<mvccpb::Event> for Event {
    fn from(event: mvccpb::Event) -> Self {
        let kind = match mvccpb::event::EventType::try_from(event.r#type) {
            Ok(mvccpb::event::EventType::Delete) => EventKind::Delete,
            _ => EventKind::Put,
        };
        Event {
            kind,
            kv: event.kv.map(KeyValue::from).unwrap_or_default(),
            prev_kv: event.prev_kv.map(KeyValue::from),
        }
    }
}

/// A batch of events from one watch, or a progress notification (no events).
///
/// All events of one revision (one txn) arrive in the same response.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchResponse {
    /// Who answered; `header.revision` is the store revision when it was sent.
    pub header: ResponseHeader,
    /// The events, in revision order. Empty for a progress notification: the watch has seen
    /// everything up to `header.revision`.
    pub events: Vec<Event>,
}

/// State a stream shares with the task.
#[derive(Default)]
pub(crate) struct Shared {
    /// Set by the task when it paused the watch because the buffer was full.
    pub(crate) paused: AtomicBool,
    /// The compact revision, if the watch ended because its start revision was compacted.
    pub(crate) compact_revision: AtomicI64,
    /// The error the watch ended with, when the consumer's buffer was full at that moment: it
    /// is handed out after the buffered responses, so a watch never ends without saying why.
    /// Boxed: rare, and every watch holds the slot.
    pub(crate) ended_with: std::sync::Mutex<Option<Box<Error>>>,
}
