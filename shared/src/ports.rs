//! The small traits the domain talks through. Adapters implement them for AWS and amoCRM;
//! tests implement them in memory or point the real adapters at moto and the sandbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::amocrm::CrmError;
use crate::leads::{Delivery, Lead, LeadStatus, StoredLead};

/// Errors of the storage adapters. `Unavailable` is worth a retry, the rest are bugs or config.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
    #[error("store misconfigured: {0}")]
    Config(String),
}

/// The record that makes a repeated submission return the first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// Stable key: derived from the `Idempotency-Key` header or from the body, scoped by source.
    pub key: String,
    pub expires_at: DateTime<Utc>,
}

/// What inserting a new lead did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Created,
    /// The idempotency key was already claimed: the first lead's id.
    Duplicate {
        lead_id: String,
    },
}

#[async_trait]
pub trait LeadStore: Send + Sync {
    /// Writes the lead (status pending) and claims the idempotency key in one atomic step.
    async fn insert(
        &self,
        lead: &Lead,
        claim: &IdempotencyClaim,
    ) -> Result<InsertOutcome, StoreError>;

    /// Strongly consistent read of one lead.
    async fn get(&self, lead_id: &str) -> Result<Option<StoredLead>, StoreError>;

    /// Persists delivery progress and status (a plain overwrite of those attributes).
    async fn save_delivery(
        &self,
        lead_id: &str,
        status: LeadStatus,
        delivery: &Delivery,
    ) -> Result<(), StoreError>;

    /// Leads in a status, oldest first (operators and the re-drive read this).
    async fn list_by_status(
        &self,
        status: LeadStatus,
        limit: usize,
    ) -> Result<Vec<StoredLead>, StoreError>;
}

/// An amoCRM lead found or created for one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrmLeadRef {
    pub lead_id: i64,
    pub contact_id: Option<i64>,
}

/// Who the new amoCRM lead is linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactLink {
    Existing(i64),
    /// Create the contact inside the complex call from the lead's name, phone and e-mail.
    CreateNew,
}

/// The amoCRM operations lead delivery needs.
#[async_trait]
pub trait Crm: Send + Sync {
    /// An existing contact whose phone or e-mail matches `query`.
    async fn find_contact(&self, query: &str) -> Result<Option<i64>, CrmError>;
    /// The amoCRM lead created earlier for our lead id, if any (after a crash mid-delivery).
    async fn find_lead_for(&self, lead: &Lead) -> Result<Option<CrmLeadRef>, CrmError>;
    /// `POST /api/v4/leads/complex` with pipeline, status, user, fields and tags from config.
    async fn create_lead(&self, lead: &Lead, contact: ContactLink) -> Result<CrmLeadRef, CrmError>;
    /// A note created earlier on `amo_lead_id` whose text contains `marker`, if any.
    async fn find_note(&self, amo_lead_id: i64, marker: &str) -> Result<Option<i64>, CrmError>;
    /// `POST /api/v4/leads/notes`; returns the note id.
    async fn add_note(&self, amo_lead_id: i64, text: &str) -> Result<i64, CrmError>;
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailMessage {
    pub to: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
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
    #[serde(default)]
    pub telegram_bot_token: Option<String>,
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

/// Where the amoCRM bearer token comes from (long-lived now, OAuth refresh later).
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token to use now.
    async fn bearer(&self) -> Result<String, CrmError>;
    /// amoCRM answered 401 to `rejected`: return a fresh token to retry once, or the error to report.
    async fn after_unauthorized(&self, rejected: &str) -> Result<String, CrmError>;
}
