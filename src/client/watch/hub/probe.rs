//! The watch stream's liveness probe.

use std::time::Duration;

use tokio::time::Instant;

/// The progress requests that confirm live configs are a liveness probe too: once the open
/// stream has answered one (etcd's gRPC proxy never does: there, `stand_in` reads), a request
/// that gets no message at all within the request timeout means the member is frozen or cut
/// off, and the stream moves to another endpoint. Keep-alive pings find the same, but only
/// after their own, longer timeout.
#[derive(Default)]
pub(super) struct Probe {
    /// The stream has answered a progress request.
    armed: bool,
    /// When a progress request went out with nothing received since.
    asked: Option<tokio::time::Instant>,
    /// Progress requests sent on this stream since the last one answered (saturating).
    unanswered: u8,
}

impl Probe {
    /// The stream answered a progress request: from now on it is probed.
    pub(super) fn arm(&mut self) {
        self.armed = true;
        self.unanswered = 0;
    }

    /// A progress request went out (the first one unanswered counts).
    pub(super) fn asked(&mut self) {
        self.asked.get_or_insert_with(Instant::now);
        self.unanswered = self.unanswered.saturating_add(1);
    }

    /// Whether the stream lets progress requests go unanswered: the one before the last
    /// got no answer either (one period is time enough for any answer).
    pub(super) fn unanswered(&self) -> bool {
        self.unanswered > 1
    }

    /// A message came on the stream: it is alive.
    pub(super) fn heard(&mut self) {
        self.asked = None;
    }

    /// Since when an answer is awaited, once the probe is armed.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        self.asked.filter(|_| self.armed)
    }
}

/// Resolves `timeout` after `since`; never if either is unknown.
pub(super) async fn until(since: Option<Instant>, timeout: Option<Duration>) {
    match (since, timeout) {
        (Some(since), Some(timeout)) => tokio::time::sleep_until(since + timeout).await,
        _ => std::future::pending().await,
    }
}
