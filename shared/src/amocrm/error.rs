//! Every amoCRM failure as one type that says whether a retry can help and what an operator
//! should do about it.

use std::time::Duration;

use serde::Serialize;

/// How a failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmErrorKind {
    /// Network error, timeout, 5xx: retry with back-off.
    Transient,
    /// 429: wait (`retry_after` when amoCRM said how long) and retry.
    RateLimited,
    /// 401 after a token refresh was tried: someone must re-authorize or replace the token.
    Unauthorized,
    /// 4xx that a retry cannot fix: validation, 403 ban/whitelist, 402 unpaid, 404, bad config.
    Permanent,
}

/// One entry of amoCRM's `validation-errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    pub request_id: Option<String>,
    pub code: String,
    pub path: String,
    pub detail: String,
}

#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct CrmError {
    pub kind: CrmErrorKind,
    /// HTTP status when amoCRM answered at all.
    pub status: Option<u16>,
    /// What happened, safe to store and show (never a token).
    pub message: String,
    /// What an operator should do.
    pub hint: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<ValidationError>,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl CrmError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            CrmErrorKind::Transient | CrmErrorKind::RateLimited
        )
    }
}
