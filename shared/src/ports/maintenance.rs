//! What the maintenance sync talks through: the CRM's side of the sync, its state, the
//! reachability check before re-driving, and the queues of parked work.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{CrmDeal, CrmFailure, StoreError};
use crate::maintenance::RunOutcome;

/// One cheap authenticated call (`GET /api/v4/account`): does amoCRM answer us now? The sync
/// asks before it re-drives work parked because amoCRM refused our address.
#[async_trait]
pub trait CrmReachability: Send + Sync {
    async fn reachable(&self) -> Result<(), CrmFailure>;
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

/// What a batch write of maintenance values came to, when the CRM answered at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Every write was taken: each deal with its new `updated_at` when the CRM reported it.
    Written(Vec<(i64, Option<i64>)>),
    /// The CRM timed out or gave up on the batch: a smaller one may pass.
    TooHeavy(CrmFailure),
    /// The batch was refused only because these of its deals (indexes into the batch) no
    /// longer exist; the others may be sent again.
    DealsGone {
        items: Vec<usize>,
        failure: CrmFailure,
    },
}

/// The amoCRM side of the maintenance sync.
#[async_trait]
pub trait MaintenanceCrm: Send + Sync {
    /// One page (≤ 250 deals) of deals changed in the window; `None` when amoCRM has none (204).
    async fn changed_leads(
        &self,
        query: &ChangedLeadsQuery,
    ) -> Result<Option<ChangedLeads>, CrmFailure>;
    /// One batch write of every value (≤ 250 deals). A batch the CRM cannot finish in time
    /// comes back at once as `TooHeavy` (the caller resizes it), not retried here.
    async fn write_maintenance(
        &self,
        fields: &crate::maintenance::model::MaintenanceFieldIds,
        writes: &[MaintenanceWrite],
    ) -> Result<WriteOutcome, CrmFailure>;
    /// One `POST /api/v4/tasks` (≤ 50 tasks); the new tasks' ids.
    async fn create_tasks(&self, tasks: &[NewTask]) -> Result<Vec<i64>, CrmFailure>;
    /// Open and closed tasks on these deals.
    async fn tasks_on(&self, lead_ids: &[i64]) -> Result<Vec<CrmTask>, CrmFailure>;
    /// The two maintenance fields, found by name in the account (never created: that is the
    /// operator's `setup`); `None` while either is missing.
    async fn find_maintenance_fields(
        &self,
    ) -> Result<Option<crate::maintenance::model::MaintenanceFieldIds>, CrmFailure> {
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
    ) -> Result<Option<crate::maintenance::model::MaintenanceFieldIds>, StoreError> {
        Ok(None)
    }
    async fn save_field_ids(
        &self,
        _ids: &crate::maintenance::model::MaintenanceFieldIds,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Which table an item lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    Lead,
    Event,
}

impl WorkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkKind::Lead => "lead",
            WorkKind::Event => "event",
        }
    }

    /// What an id names: webhook event ids carry their scheme (`rid:…`, `sha256:…`); lead ids
    /// are ULIDs.
    pub fn of_id(id: &str) -> WorkKind {
        if id.contains(':') {
            WorkKind::Event
        } else {
            WorkKind::Lead
        }
    }
}

/// A parked lead or event as operators see it (no customer data: the id finds the rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedItem {
    pub kind: WorkKind,
    pub id: String,
    pub received_at: Option<DateTime<Utc>>,
    /// When it was parked (its last update).
    pub parked_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    /// Where a lead came from (`site`, `bot`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub last_error: Option<String>,
    pub hint: Option<String>,
    /// Parked because amoCRM refused our address; the sync re-drives it once amoCRM answers.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
}

/// What re-driving one item did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RedriveOutcome {
    /// Parked → pending: crm-worker takes it again.
    Redriven,
    /// It was not parked (already re-driven, delivered, done): nothing changed.
    NotParked {
        status: String,
    },
    NotFound,
}

/// Lists, counts and re-drives work by status (the tables' `status-index`).
#[async_trait]
pub trait WorkQueues: Send + Sync {
    /// Whether webhook events are configured (INBOX_TABLE).
    fn has_events(&self) -> bool;
    /// Parked items of `kind`, oldest first, at most `limit` (pages through the index).
    async fn parked(&self, kind: WorkKind, limit: usize) -> Result<Vec<ParkedItem>, StoreError>;
    /// How many items of `kind` are in `status` (`pending`, `parked`), counting only those last
    /// updated before `updated_before` when given.
    async fn count(
        &self,
        kind: WorkKind,
        status: &str,
        updated_before: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError>;
    /// Parked → pending for one item.
    async fn redrive(
        &self,
        kind: WorkKind,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<RedriveOutcome, StoreError>;
}

/// The last maintenance sync run (the state table's `SYNC#last_run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastSync {
    pub finished_at: Option<DateTime<Utc>>,
    /// `None` when the record does not say (written by an older version, or unreadable).
    pub outcome: Option<RunOutcome>,
    pub error: Option<String>,
    pub hint: Option<String>,
    /// The run found no maintenance fields in amoCRM (nothing was synced).
    #[serde(default)]
    pub fields_missing: bool,
}

impl LastSync {
    pub fn failed(&self) -> bool {
        self.outcome == Some(RunOutcome::Failed)
    }
}

#[async_trait]
pub trait LastSyncSource: Send + Sync {
    async fn last_sync(&self) -> Result<Option<LastSync>, StoreError>;
}
