//! What the passport use cases talk through: deals read back from the CRM, the passport
//! store, and the inbox of received webhooks.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{CrmFailure, Page, StoreError};

/// A deal as read from amoCRM (`GET /api/v4/leads?filter[id][]=…&with=contacts`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrmDeal {
    pub id: i64,
    pub name: String,
    pub status_id: i64,
    pub pipeline_id: i64,
    pub responsible_user_id: i64,
    pub closed_at: Option<i64>,
    pub updated_at: i64,
    pub main_contact_id: Option<i64>,
    /// Custom field id → its values as text (select values: the enum id in `enum_id`).
    pub fields: Vec<CrmFieldValue>,
    /// The names of its tags (`_embedded.tags`).
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrmFieldValue {
    pub field_id: i64,
    pub value: Option<String>,
    pub enum_id: Option<i64>,
    /// The value read as unix seconds (a date field), as the CRM spells dates where it came from.
    pub unix: Option<i64>,
}

impl CrmDeal {
    /// The first value of a custom field, as text (trimmed; empty means absent).
    pub fn field_text(&self, field_id: i64) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.field_id == field_id)
            .and_then(|f| f.value.as_deref())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

/// Reading deals back from amoCRM (won deals → passport; later the maintenance sync).
#[async_trait]
pub trait CrmDeals: Send + Sync {
    /// The deals with these ids, in one list request (amoCRM caps it at 250 ids).
    async fn deals(&self, ids: &[i64]) -> Result<Vec<CrmDeal>, CrmFailure>;
    /// A note on a deal (e.g. what is missing to register the equipment).
    async fn note_on_deal(&self, deal_id: i64, text: &str) -> Result<i64, CrmFailure>;
}

/// What registering equipment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    Registered,
    /// Same serial, same deal: a replay or retry; nothing changed.
    AlreadyRegistered,
    /// It was revoked (deal reopened) and is won again.
    Reactivated,
}

#[async_trait]
pub trait PassportStore: Send + Sync {
    /// Registers equipment exactly once per (owner, serial).
    async fn register(
        &self,
        equipment: &crate::passport::Equipment,
    ) -> Result<RegisterOutcome, StoreError>;
    /// An owner's equipment, active and revoked.
    async fn for_owner(
        &self,
        telegram_id: i64,
    ) -> Result<Vec<crate::passport::Equipment>, StoreError>;
    /// Equipment registered from one deal.
    async fn by_deal(
        &self,
        amo_lead_id: i64,
    ) -> Result<Vec<crate::passport::Equipment>, StoreError>;
    async fn set_state(
        &self,
        telegram_id: i64,
        serial: &str,
        state: crate::passport::EquipmentState,
    ) -> Result<(), StoreError>;
    /// Records that a won deal waits for data (e.g. its serial); true when newly recorded.
    async fn mark_waiting(&self, amo_lead_id: i64, missing: &str) -> Result<bool, StoreError>;
    async fn clear_waiting(&self, amo_lead_id: i64) -> Result<(), StoreError>;
    /// One machine by its key (strongly consistent).
    async fn get(
        &self,
        telegram_id: i64,
        serial: &str,
    ) -> Result<Option<crate::passport::Equipment>, StoreError>;
    /// Machines by key, in any order; unknown keys are left out.
    async fn get_many(
        &self,
        keys: &[(i64, String)],
    ) -> Result<Vec<crate::passport::Equipment>, StoreError>;
    /// Writes what differs between `current` (as read) and `next` — state, maintenance, sync
    /// marks — if the stored version is still `current.sync.version` (it becomes version + 1);
    /// false when another writer came first.
    async fn update(
        &self,
        current: &crate::passport::Equipment,
        next: &crate::passport::Equipment,
    ) -> Result<bool, StoreError>;
    /// `update` for many machines at once (each pair on its own machine): for each pair,
    /// whether it was written. The default writes them one by one; an adapter may group them.
    async fn update_many(
        &self,
        pairs: &[(crate::passport::Equipment, crate::passport::Equipment)],
    ) -> Result<Vec<bool>, StoreError> {
        let mut written = Vec::with_capacity(pairs.len());
        for (current, next) in pairs {
            written.push(self.update(current, next).await?);
        }
        Ok(written)
    }
    /// Machines whose values wait to be written to amoCRM (`Equipment::needs_push`).
    async fn pending_push(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<Page<crate::passport::Equipment>, StoreError>;
    /// Machines watching their due date (`Equipment::watches_due_date`) due on or before
    /// `last_day`, earliest first.
    async fn due_by(
        &self,
        last_day: NaiveDate,
        limit: usize,
        after: Option<String>,
    ) -> Result<Page<crate::passport::Equipment>, StoreError>;
}

/// Where a received webhook is on its way through crm-worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxStatus {
    Pending,
    Done,
    /// Waits for an operator or for later data (e.g. a won deal without a serial).
    Parked,
}

impl InboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Pending => "pending",
            InboxStatus::Done => "done",
            InboxStatus::Parked => "parked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(InboxStatus::Pending),
            "done" => Some(InboxStatus::Done),
            "parked" => Some(InboxStatus::Parked),
            _ => None,
        }
    }
}

/// A webhook as received, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEvent {
    /// The dedup key (`rid:<X-Amocrm-Requestid>` or `sha256:<body hash>`).
    pub id: String,
    pub body: String,
    pub received_at: DateTime<Utc>,
    pub status: InboxStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub hint: Option<String>,
}

#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Stores the event unless one with the same id exists; true when newly stored.
    async fn insert_new(
        &self,
        id: &str,
        body: &str,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<InboxEvent>, StoreError>;
    async fn set_status(
        &self,
        id: &str,
        status: InboxStatus,
        attempts: u32,
        error: Option<&str>,
        hint: Option<&str>,
        // Parked because amoCRM refuses our address: the sync re-drives it by itself.
        blocked: bool,
    ) -> Result<(), StoreError>;
    /// Ids of events still pending whose last update is older than `before`, oldest first.
    async fn pending_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
}

/// One page of won deals, oldest id first.
#[derive(Debug, Clone, Default)]
pub struct WonPage {
    pub deals: Vec<CrmDeal>,
    pub has_more: bool,
}

/// amoCRM's won deals, page by page (`page` from 1; `None` when amoCRM has none: 204).
#[async_trait]
pub trait WonDeals: Send + Sync {
    async fn won_deals(
        &self,
        pipelines: &[i64],
        closed_since: Option<i64>,
        page: u32,
    ) -> Result<Option<WonPage>, CrmFailure>;
}

/// How a webhook says a deal changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DealChangeKind {
    Added,
    Updated,
    StatusChanged,
    Restored,
    /// Deleted, reassigned, a note: nothing the passport or the maintenance sync reads.
    Other,
}

impl DealChangeKind {
    /// The change may carry a new status or new field values.
    pub fn carries_state(self) -> bool {
        !matches!(self, DealChangeKind::Other)
    }
}

/// One deal change a CRM webhook reported, read into the domain's deal. `deal.status_id` is 0
/// when the webhook did not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealChange {
    pub kind: DealChangeKind,
    pub deal: CrmDeal,
    pub old_status_id: Option<i64>,
}

/// Reads a stored webhook body (the inbox keeps it verbatim) into its deal changes.
pub trait WebhookReader: Send + Sync {
    fn deal_changes(&self, body: &str) -> Result<Vec<DealChange>, String>;
}
