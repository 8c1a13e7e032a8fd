//! What every step of a sync run shares: the time budget it must stop within, how it ended
//! when it did not fail, and how it failed.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::ports::{CrmFailure, NotifyError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Crm(#[from] CrmFailure),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("operator notice not mailed: {0}")]
    Notify(#[from] NotifyError),
}

impl SyncError {
    pub fn hint(&self) -> String {
        match self {
            SyncError::Crm(e) => e.hint.clone(),
            SyncError::Store(_) => {
                "DynamoDB failed; the next run resumes where this one stopped".into()
            }
            SyncError::Notify(_) => "SES did not take the mail; the next run sends it again. \
                 Check that MAIL_FROM is verified in SES and ALERT_MAILBOX is a valid address."
                .into(),
        }
    }
}

/// How a step ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEnd {
    Done,
    /// Stopped before the next request: not enough time left.
    OutOfTime,
    /// Stopped early for a reason the next run may not have (e.g. amoCRM's rate limit).
    Deferred(String),
}

/// How much time the run has left.
#[derive(Clone)]
pub struct Budget {
    remaining: Arc<dyn Fn() -> Duration + Send + Sync>,
    /// What one more request needs: its own timeout plus the time to write the report.
    per_request: Duration,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("remaining", &self.remaining())
            .field("per_request", &self.per_request)
            .finish()
    }
}

impl Budget {
    /// Until `deadline`; a request starts only if `per_request` still fits.
    pub fn until(deadline: Instant, per_request: Duration) -> Self {
        Self {
            remaining: Arc::new(move || deadline.saturating_duration_since(Instant::now())),
            per_request,
        }
    }

    /// Until a Lambda invocation's deadline (unix milliseconds, as the runtime gives it).
    pub fn until_unix_ms(deadline_ms: u64, per_request: Duration) -> Self {
        let now_ms = Utc::now().timestamp_millis().max(0) as u64;
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        Self::until(Instant::now() + left, per_request)
    }

    /// Any measure of time left (tests stop a run at a chosen point with it).
    pub fn from_fn(remaining: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        Self {
            remaining: Arc::new(remaining),
            per_request: Duration::ZERO,
        }
    }

    pub fn remaining(&self) -> Duration {
        (self.remaining)()
    }

    pub fn allows_request(&self) -> bool {
        self.remaining() > self.per_request
    }
}
