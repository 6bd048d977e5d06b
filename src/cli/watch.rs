//! `watch`: what happens to the config as it happens, one line each: a change with its fields,
//! a revision services refuse and the one that makes the config valid again, and the
//! connection to etcd lost and back. It follows the config as a service does (a
//! [`Live`](crate::Live)), so a watch that prints nothing means nothing happened, not that
//! etcd went away.

use std::io::Write;

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::display::{io, print_json};
use super::Output;
use crate::config::{EtcdConfig, Live, LiveEvent, LiveOptions, Store, WhenInvalid};
use crate::error::{Error, Result};

pub(super) async fn watch<T: EtcdConfig>(
    store: &Store,
    output: Output,
    out: &mut impl Write,
) -> Result<()> {
    let live = follow::<T>(store, output, out).await?;
    let mut events = live.events();
    let mut refused = live.status().last_rejected.is_some();
    while let Some(event) = events.next().await {
        let (text, json) = match event {
            LiveEvent::Applied { revision, changed } => {
                refused = false;
                let text = format!("revision {revision}: {}", changed.join(", "));
                (text, json!({ "revision": revision, "changed": changed }))
            }
            LiveEvent::Current { revision } => {
                let what = if refused {
                    "valid again"
                } else {
                    "value unchanged"
                };
                refused = false;
                let text = format!("revision {revision}: {what}");
                (text, json!({ "revision": revision, "current": true }))
            }
            LiveEvent::Rejected { revision, reason } => {
                refused = true;
                rejected(revision, &reason)
            }
            LiveEvent::Resynced { revision } => (
                format!(
                    "revision {revision}: loaded again at the head (the revisions before it \
                     were not replayed)"
                ),
                json!({ "revision": revision, "resynced": true }),
            ),
            LiveEvent::Reconnecting { reason } => (
                format!("# connection to etcd lost ({reason}); reconnecting"),
                json!({ "reconnecting": reason }),
            ),
            LiveEvent::Reconnected => (
                "# reconnected: following again".to_owned(),
                json!({ "reconnected": true }),
            ),
            LiveEvent::Lagged { missed } => (
                format!("# {missed} events missed (this terminal read too slowly)"),
                json!({ "missed": missed }),
            ),
            LiveEvent::Stopped { reason } => {
                return Err(Error::Stopped {
                    what: format!("watching {}", store.prefix_of::<T>()),
                    reason,
                })
            }
            _ => continue,
        };
        line(out, output, &text, &json)?;
    }
    Ok(())
}

/// A live config of `T`, from the newest value that loads. While none in etcd's history
/// does, what is wrong is printed, and each write under the prefix is a new try.
async fn follow<T: EtcdConfig>(
    store: &Store,
    output: Output,
    out: &mut impl Write,
) -> Result<Live<T>> {
    let options = LiveOptions::new().when_invalid(WhenInvalid::LastValid);
    loop {
        let err = match store.live_with::<T>(options.clone()).await {
            Ok(live) => {
                let status = live.status();
                let revision = status.revision;
                line(
                    out,
                    output,
                    &format!("revision {revision}"),
                    &json!({ "revision": revision, "changed": [] }),
                )?;
                if let Some(rejection) = &status.last_rejected {
                    let (text, json) = rejected(rejection.revision, &rejection.reason);
                    line(out, output, &text, &json)?;
                }
                return Ok(live);
            }
            Err(err) => err,
        };
        let Some(revision) = err.rejected_revision() else {
            return Err(err);
        };
        let (text, json) = rejected(revision, &err.to_string());
        line(out, output, &text, &json)?;
        let mut writes = store
            .client()
            .watch(store.range_of::<T>())
            .start_revision(revision + 1)
            .await?;
        writes.next().await.transpose()?;
    }
}

fn rejected(revision: i64, reason: &str) -> (String, Value) {
    (
        format!("rejected: {reason}"),
        json!({ "revision": revision, "rejected": reason }),
    )
}

fn line(out: &mut impl Write, output: Output, text: &str, json: &Value) -> Result<()> {
    if output.json {
        print_json(out, json)?;
    } else {
        writeln!(out, "{text}").map_err(io)?;
    }
    out.flush().map_err(io)
}
