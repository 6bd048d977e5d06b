//! [`Selected`]: a handle on one part of a live config, which wakes only when that part changes.

use std::sync::Arc;

use super::Live;
use crate::config::EtcdConfig;
use crate::error::Result;

/// One part of a [`Live`] config, from [`Live::select`]: its `changed` resolves only when
/// that part changes, so a connection pool is rebuilt only when its own settings do.
pub struct Selected<T, U> {
    live: Live<T>,
    select: Arc<dyn Fn(&T) -> U + Send + Sync>,
    /// The part as this handle last saw it.
    seen: Arc<U>,
}

impl<T: EtcdConfig> Live<T> {
    /// A handle on the part of the config that `select` picks (e.g. `|c| c.tls.clone()`).
    /// Its [`changed`](Selected::changed) resolves when a new value's part differs (`!=`)
    /// from the one the handle last saw; updates that change only other fields pass it by.
    pub fn select<U, F>(&self, select: F) -> Selected<T, U>
    where
        U: PartialEq + Send + Sync + 'static,
        F: Fn(&T) -> U + Send + Sync + 'static,
    {
        let mut live = self.clone();
        // Changes before this call are in `seen` already.
        live.seen = live.shared.current.generation();
        let seen = Arc::new(select(&live.get()));
        Selected {
            live,
            select: Arc::new(select),
            seen,
        }
    }
}

impl<T: EtcdConfig, U: PartialEq> Selected<T, U> {
    /// The part as it was when this handle last saw it change (or was made).
    pub fn get(&self) -> Arc<U> {
        self.seen.clone()
    }

    /// The same part, borrowed: no reference count written, for a hot path.
    pub fn read(&self) -> &U {
        &self.seen
    }

    /// Resolves when a new value is in place whose part differs from the one last seen; then
    /// [`get`](Self::get) returns the new part.
    ///
    /// # Errors
    ///
    /// As [`Live::changed`]: the background watch ended.
    pub async fn changed(&mut self) -> Result<()> {
        loop {
            self.live.changed().await?;
            let part = (self.select)(&self.live.get());
            if part != *self.seen {
                self.seen = Arc::new(part);
                return Ok(());
            }
        }
    }
}

impl<T, U> Clone for Selected<T, U> {
    fn clone(&self) -> Self {
        Selected {
            live: self.live.clone(),
            select: self.select.clone(),
            seen: self.seen.clone(),
        }
    }
}

impl<T: EtcdConfig, U: std::fmt::Debug> std::fmt::Debug for Selected<T, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selected")
            .field("live", &self.live)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}
