//! The sandbox's notion of "now": wall-clock time plus an offset tests can advance, so token
//! expiry, `updated_at` cursors and rate windows can be exercised without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// Unix time in milliseconds.
    pub fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        wall + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Unix time in seconds (what amoCRM puts in `created_at`, `updated_at`, token `exp`).
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves time forward (never backward: cursors and windows assume it only grows).
    pub fn advance_ms(&self, ms: u64) {
        self.offset_ms.fetch_add(ms as i64, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        self.offset_ms.store(0, Ordering::Relaxed);
    }
}
