//! What the lead use cases (accept, deliver) talk through: the lead store and the CRM.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{CrmFailure, StoreError};
use crate::leads::{Delivery, Lead, LeadStatus, StoredLead};

/// A runner's hold on one lead's delivery while it saves progress (`LeadStore::claim_delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'a> {
    pub runner: &'a str,
    /// The hold is renewed to this by the save (a runner saves after every step).
    pub until: DateTime<Utc>,
    /// This save ends the hold (the attempt is over: delivered, parked or to be retried).
    pub release: bool,
}

/// What `LeadStore::claim_delivery` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The runner holds the lead now.
    Claimed,
    /// Another runner holds it until then.
    HeldUntil(DateTime<Utc>),
    /// Delivered, parked, or gone: nothing to run.
    NotPending,
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

    /// Gives `runner` the lead's delivery until `until`, unless another runner holds it and its
    /// hold has not lapsed, or the lead is no longer pending.
    async fn claim_delivery(
        &self,
        lead_id: &str,
        runner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;

    /// Persists delivery progress and status. With `held`, only while that runner still holds
    /// the lead (`StoreError::Held` otherwise); without, a plain overwrite (operators, tests).
    async fn save_delivery(
        &self,
        lead_id: &str,
        status: LeadStatus,
        delivery: &Delivery,
        held: Option<Held<'_>>,
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
    async fn find_contact(&self, query: &str) -> Result<Option<i64>, CrmFailure>;
    /// The amoCRM lead created earlier for our lead id, if any (after a crash mid-delivery).
    /// The amoCRM lead an earlier attempt, which started creating at `create_started_at`, may
    /// have made for `lead` (its name carries our id).
    async fn find_lead_for(
        &self,
        lead: &Lead,
        create_started_at: DateTime<Utc>,
    ) -> Result<Option<CrmLeadRef>, CrmFailure>;
    /// `POST /api/v4/leads/complex` with pipeline, status, user, fields and tags from config.
    async fn create_lead(
        &self,
        lead: &Lead,
        contact: ContactLink,
    ) -> Result<CrmLeadRef, CrmFailure>;
    /// A note created earlier on `amo_lead_id` whose text contains `marker`, if any.
    async fn find_note(&self, amo_lead_id: i64, marker: &str) -> Result<Option<i64>, CrmFailure>;
    /// `POST /api/v4/leads/notes`; returns the note id.
    async fn add_note(&self, amo_lead_id: i64, text: &str) -> Result<i64, CrmFailure>;
}
