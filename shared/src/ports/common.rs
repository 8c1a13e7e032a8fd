//! What every domain talks through: storage errors, the CRM's failure, mail, secrets, the
//! token's upkeep and paging. The amoCRM and AWS adapters map their own errors into these.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Errors of the storage adapters. `Unavailable` is worth a retry, the rest are bugs or config.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
    #[error("store misconfigured: {0}")]
    Config(String),
    /// A conditional write lost: another runner holds the item now.
    #[error("held by another runner: {0}")]
    Held(String),
}

/// How a CRM call failed, as the domain decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmErrorKind {
    /// Network error, timeout, 5xx: retry with back-off.
    Transient,
    /// Too many requests: wait (`retry_after` when the CRM said how long) and retry.
    RateLimited,
    /// The token was refused after a refresh was tried: someone must re-authorize or replace it.
    Unauthorized,
    /// A refusal a retry cannot fix: validation, unpaid account, not found, bad config.
    Permanent,
    /// The CRM refuses our address (its API IP whitelist) or has banned us. Not a token
    /// problem: nobody should re-authorize. A retry cannot help until someone acts; work waits
    /// and is re-driven once the CRM answers again.
    Blocked,
}

/// A failed CRM call, in the domain's terms: what kind, what happened and what an operator
/// should do (both safe to store and show: never a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CrmFailure {
    pub kind: CrmErrorKind,
    pub message: String,
    pub hint: String,
    /// How long the CRM asked us to wait, when it said.
    pub retry_after: Option<Duration>,
}

impl CrmFailure {
    pub fn new(kind: CrmErrorKind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        CrmFailure {
            kind,
            message: message.into(),
            hint: hint.into(),
            retry_after: None,
        }
    }

    pub fn transient(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(CrmErrorKind::Transient, message, hint)
    }

    pub fn permanent(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(CrmErrorKind::Permanent, message, hint)
    }

    /// Worth another try by itself (a pause, a back-off), without anyone acting.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            CrmErrorKind::Transient | CrmErrorKind::RateLimited
        )
    }
}

/// Which kind of token a secret holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    LongLived,
    /// Access + refresh pair from the OAuth code flow, refreshed ahead of expiry.
    Oauth,
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailMessage {
    pub to: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// The lead a sales copy belongs to: tagged on the message, so that a bounce or complaint
    /// comes back to it.
    pub lead_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("mail service unavailable: {0}")]
    Unavailable(String),
    #[error("mail rejected: {0}")]
    Rejected(String),
}

impl NotifyError {
    pub fn is_transient(&self) -> bool {
        matches!(self, NotifyError::Unavailable(_))
    }
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn send(&self, mail: &MailMessage) -> Result<(), NotifyError>;
}

/// Secrets the functions read (never logged, never echoed).
#[derive(Clone, Default, serde::Deserialize)]
pub struct AppSecrets {
    #[serde(default)]
    pub admin_key: Option<String>,
    #[serde(default)]
    pub webhook_token: Option<String>,
    /// The webhook token before a rotation, still accepted until `rss-ops setup` has moved
    /// amoCRM's subscription to the new one (then it is removed from the secret).
    #[serde(default)]
    pub webhook_token_previous: Option<String>,
    #[serde(default)]
    pub telegram_bot_token: Option<String>,
    /// The bot's server sends it (`X-Bot-Key`) with `POST /leads` to vouch for the lead's
    /// `telegram_id`, which it has from Telegram itself.
    #[serde(default)]
    pub bot_api_key: Option<String>,
    #[serde(default)]
    pub amocrm_client_secret: Option<String>,
}

impl std::fmt::Debug for AppSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSecrets(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {id} unavailable: {reason}")]
    Unavailable { id: String, reason: String },
    #[error("secret {id} is missing or malformed: {reason}")]
    Invalid { id: String, reason: String },
}

/// Reads and writes JSON secrets.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn read(&self, secret_id: &str) -> Result<String, SecretError>;
    async fn write(&self, secret_id: &str, value: &str) -> Result<(), SecretError>;
}

/// The token as an upkeep look left it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub kind: TokenKind,
    pub expires_at: Option<DateTime<Utc>>,
    /// An OAuth pair was refreshed by this look.
    pub refreshed: bool,
    /// A due refresh failed for a reason that may pass; the current token still works.
    pub postponed: Option<String>,
}

/// Keeping the token alive ahead of use (the scheduled sync does it).
#[async_trait]
pub trait TokenUpkeep: Send + Sync {
    /// Refreshes an OAuth pair that expires before `by`; a long-lived token is only looked at.
    async fn refresh_expiring(&self, by: DateTime<Utc>) -> Result<TokenState, CrmFailure>;
    /// The secret the token lives in (named in operator notices).
    fn secret_id(&self) -> &str;
}

/// The connectivity check behind `GET /ingest/test-crm`: creates a clearly marked test lead.
#[async_trait]
pub trait CrmProbe: Send + Sync {
    async fn create_test_lead(&self) -> Result<i64, CrmFailure>;
}

/// One page of a listing and where the next one starts (opaque to callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// What taking an OAuth state nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateTake {
    /// It existed and was not expired; it is gone now.
    Taken,
    /// It existed but its 20 minutes were over (removed as well).
    Expired,
    /// Never issued, or already used.
    Unknown,
}

/// The token's health as the integration records it (never any token material).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenHealthRecord {
    /// A refresh was refused for good: someone must re-authorize the integration.
    pub reauthorization_required: bool,
    /// What an operator should do (English operator hint).
    pub hint: Option<String>,
    /// When re-authorization became necessary.
    pub since: Option<DateTime<Utc>>,
    pub last_refresh_at: Option<DateTime<Utc>>,
    /// The last successful authorization-code exchange.
    pub last_authorized_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// A short hash of the refresh token that was refused: once the secret holds another one,
    /// the incident is over even if this record was not cleared.
    #[serde(skip)]
    pub refused_refresh_token: Option<String>,
}

/// How the amoCRM token was last shown to work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenWorked {
    /// A refresh-token rotation.
    Refreshed,
    /// An authorization-code exchange at the redirect URI.
    Authorized,
}

/// The state table, behind a trait so the token provider and the OAuth flow run on memory in tests.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Takes lease `name` for `owner` until `until` unless someone else holds an unexpired one.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Gives the lease back if `owner` still holds it.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError>;
    async fn put_oauth_state(
        &self,
        state: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Removes the nonce (single use) and says whether it was valid at `now`.
    async fn take_oauth_state(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<StateTake, StoreError>;
    async fn token_health(&self) -> Result<Option<TokenHealthRecord>, StoreError>;
    /// Overwrites the health record.
    async fn put_token_health(&self, health: &TokenHealthRecord) -> Result<(), StoreError>;
    /// Records that the token works again after `how` at `at`: any re-authorization incident is
    /// over, and the time of the other kind of success is kept.
    async fn record_token_working(
        &self,
        how: TokenWorked,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let previous = self.token_health().await.ok().flatten().unwrap_or_default();
        let health = match how {
            TokenWorked::Refreshed => TokenHealthRecord {
                last_refresh_at: Some(at),
                last_authorized_at: previous.last_authorized_at,
                ..TokenHealthRecord::default()
            },
            TokenWorked::Authorized => TokenHealthRecord {
                last_authorized_at: Some(at),
                last_refresh_at: previous.last_refresh_at,
                ..TokenHealthRecord::default()
            },
        };
        self.put_token_health(&health).await
    }
    /// Writes a `reauthorization_required` record unless one is already there: true when this
    /// call made the transition (so exactly one caller sends the alert).
    async fn mark_reauthorization_required(
        &self,
        health: &TokenHealthRecord,
    ) -> Result<bool, StoreError>;
    /// Records notice `key` as sent, kept until `keep_until`: true when this call recorded it
    /// (so exactly one caller mails it).
    async fn claim_notice(&self, key: &str, keep_until: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Forgets notice `key`: its mail failed, and the next run should send it again.
    async fn release_notice(&self, key: &str) -> Result<(), StoreError>;
}

/// One failed amoCRM call, as safe to show as `CrmError` itself (no token, masked queries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmoFailure {
    pub at: DateTime<Utc>,
    /// What we were doing: `create_lead`, `find_contact`, `deals`, …
    pub operation: String,
    pub kind: CrmErrorKind,
    pub status: Option<u16>,
    pub message: String,
    pub hint: String,
    /// How long amoCRM asked us to stay away (a 429's `retry_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// What the log holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmoCalls {
    pub last_failure: Option<AmoFailure>,
    pub last_success_at: Option<DateTime<Utc>>,
}

impl AmoCalls {
    /// The last failure if no success was recorded after it.
    pub fn unresolved(&self) -> Option<&AmoFailure> {
        self.last_failure
            .as_ref()
            .filter(|f| self.last_success_at.is_none_or(|ok| ok < f.at))
    }
}

/// Where the records live (the state table in AWS).
#[async_trait]
pub trait CallLog: Send + Sync {
    async fn record_failure(&self, failure: &AmoFailure) -> Result<(), StoreError>;
    async fn record_success(&self, at: DateTime<Utc>) -> Result<(), StoreError>;
    async fn calls(&self) -> Result<AmoCalls, StoreError>;
    /// Marks refusal incident `key` as announced: true for the first caller only, so one
    /// incident raises one alert whichever function or instance meets it.
    async fn open_incident(&self, key: &str) -> Result<bool, StoreError>;
}
