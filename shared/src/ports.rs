//! The small traits the domain talks through. Adapters implement them for AWS and amoCRM;
//! tests implement them in memory or point the real adapters at moto and the sandbox.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

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
    /// A conditional write lost: another runner holds the item now.
    #[error("held by another runner: {0}")]
    Held(String),
}

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
    async fn find_contact(&self, query: &str) -> Result<Option<i64>, CrmError>;
    /// The amoCRM lead created earlier for our lead id, if any (after a crash mid-delivery).
    /// The amoCRM lead an earlier attempt, which started creating at `create_started_at`, may
    /// have made for `lead` (its name carries our id).
    async fn find_lead_for(
        &self,
        lead: &Lead,
        create_started_at: DateTime<Utc>,
    ) -> Result<Option<CrmLeadRef>, CrmError>;
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

/// Where the amoCRM bearer token comes from (long-lived now, OAuth refresh later).
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token to use now.
    async fn bearer(&self) -> Result<String, CrmError>;
    /// amoCRM answered 401 to `rejected`: return a fresh token to retry once, or the error to report.
    async fn after_unauthorized(&self, rejected: &str) -> Result<String, CrmError>;
}

/// The token as an upkeep look left it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub kind: crate::amocrm::TokenKind,
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
    async fn refresh_expiring(&self, by: DateTime<Utc>) -> Result<TokenState, CrmError>;
    /// The secret the token lives in (named in operator notices).
    fn secret_id(&self) -> &str;
}

/// The connectivity check behind `GET /ingest/test-crm`: creates a clearly marked test lead.
#[async_trait]
pub trait CrmProbe: Send + Sync {
    async fn create_test_lead(&self) -> Result<i64, CrmError>;
}

/// One cheap authenticated call (`GET /api/v4/account`): does amoCRM answer us now? The sync
/// asks before it re-drives work parked because amoCRM refused our address.
#[async_trait]
pub trait CrmReachability: Send + Sync {
    async fn reachable(&self) -> Result<(), CrmError>;
}

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
    async fn deals(&self, ids: &[i64]) -> Result<Vec<CrmDeal>, CrmError>;
    /// A note on a deal (e.g. what is missing to register the equipment).
    async fn note_on_deal(&self, deal_id: i64, text: &str) -> Result<i64, CrmError>;
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

/// One page of a listing and where the next one starts (opaque to callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
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

/// Which deals changed in amoCRM: `filter[updated_at][from|to]`, oldest change first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedLeadsQuery {
    pub updated_from: i64,
    pub updated_to: Option<i64>,
    /// 1-based.
    pub page: u32,
    pub pipelines: Vec<i64>,
    /// Ordered by deal id instead of `updated_at`: a stable order for paging through deals
    /// that share a second.
    pub by_id: bool,
}

/// A page of changed deals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedLeads {
    pub leads: Vec<CrmDeal>,
    /// amoCRM linked a next page.
    pub has_more: bool,
}

/// The maintenance values written to one deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceWrite {
    pub lead_id: i64,
    pub maintenance: crate::passport::Maintenance,
}

/// A reminder task on a deal (`POST /api/v4/tasks`, type «Связаться»).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub lead_id: i64,
    pub responsible_user_id: i64,
    pub text: String,
    /// Unix seconds.
    pub complete_till: i64,
}

/// A task found on a deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmTask {
    pub id: i64,
    pub lead_id: i64,
    pub text: String,
}

/// The amoCRM side of the maintenance sync.
#[async_trait]
pub trait MaintenanceCrm: Send + Sync {
    /// One page (≤ 250 deals) of deals changed in the window; `None` when amoCRM has none (204).
    async fn changed_leads(
        &self,
        query: &ChangedLeadsQuery,
    ) -> Result<Option<ChangedLeads>, CrmError>;
    /// One `PATCH /api/v4/leads` with every write (≤ 250). 5xx answers and timeouts come back at
    /// once (the caller resizes the batch). Returns each deal's new `updated_at` when amoCRM
    /// reports it. A validation error's `request_id` is the index of the refused write.
    async fn write_maintenance(
        &self,
        fields: &crate::maintenance::fields::MaintenanceFieldIds,
        writes: &[MaintenanceWrite],
    ) -> Result<Vec<(i64, Option<i64>)>, CrmError>;
    /// One `POST /api/v4/tasks` (≤ 50 tasks); the new tasks' ids.
    async fn create_tasks(&self, tasks: &[NewTask]) -> Result<Vec<i64>, CrmError>;
    /// Open and closed tasks on these deals.
    async fn tasks_on(&self, lead_ids: &[i64]) -> Result<Vec<CrmTask>, CrmError>;
    /// The two maintenance fields, found by name in the account (never created: that is the
    /// operator's `setup`); `None` while either is missing.
    async fn find_maintenance_fields(
        &self,
    ) -> Result<Option<crate::maintenance::fields::MaintenanceFieldIds>, CrmError> {
        Ok(None)
    }
}

/// Where the maintenance sync keeps its cursor, its run lease and its last report.
#[async_trait]
pub trait SyncStateStore: Send + Sync {
    /// amoCRM `updated_at` up to which every change was applied.
    async fn cursor(&self) -> Result<Option<i64>, StoreError>;
    /// Moves the cursor forward (never back).
    async fn save_cursor(&self, updated_at: i64) -> Result<(), StoreError>;
    /// Takes the run lease for `owner` until `until` unless another owner holds it.
    async fn acquire_lease(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn release_lease(&self, owner: &str) -> Result<(), StoreError>;
    async fn save_last_run(&self, report: &crate::maintenance::RunReport)
    -> Result<(), StoreError>;
    async fn last_run(&self) -> Result<Option<crate::maintenance::RunReport>, StoreError>;
    /// The maintenance field ids `setup` or an earlier run found (`SYNC#fields`).
    async fn field_ids(
        &self,
    ) -> Result<Option<crate::maintenance::fields::MaintenanceFieldIds>, StoreError> {
        Ok(None)
    }
    async fn save_field_ids(
        &self,
        _ids: &crate::maintenance::fields::MaintenanceFieldIds,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}
