//! `SyncStateStore` on the state table (key `pk` only): the maintenance sync's bookkeeping.
//!
//! - `SYNC#cursor`: `updated_at` (amoCRM unix seconds) up to which every deal change was applied.
//! - `SYNC#lease`: who runs now and until when (the state table's one lease, `lease.rs`); a
//!   second run stays out.
//! - `SYNC#last_run`: the last run's report (`report` JSON, `outcome`, `finished_at`) for /health.
//! - `BACKFILL#cursor`: where `rss-ops backfill` resumes (`cursor` JSON).
//! - `SYNC#fields`: the maintenance fields' ids (`next_maintenance`, `status`, `status_enums` in
//!   `AMOCRM_MAINTENANCE_STATUS_ENUMS` form), saved by `setup` or by the run that found them.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::attr::{conditional_write, n, s, unavailable};
use super::lease::Lease;
use crate::maintenance::RunReport;
use crate::maintenance::model::{MaintenanceFieldIds, StatusEnums};
use crate::passport::backfill::{BackfillCursor, BackfillCursorStore};
use crate::ports::{StoreError, SyncStateStore};

pub const CURSOR_KEY: &str = "SYNC#cursor";
pub const LEASE_KEY: &str = "SYNC#lease";
pub const LAST_RUN_KEY: &str = "SYNC#last_run";
pub const FIELDS_KEY: &str = "SYNC#fields";
pub const BACKFILL_KEY: &str = "BACKFILL#cursor";

#[derive(Clone)]
pub struct DynamoSyncState {
    client: Client,
    table: String,
}

impl DynamoSyncState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl SyncStateStore for DynamoSyncState {
    async fn cursor(&self) -> Result<Option<i64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(CURSOR_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| i.get("updated_at"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()))
    }

    async fn save_cursor(&self, updated_at: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(CURSOR_KEY))
            .update_expression("SET updated_at = :t, saved_at = :now")
            .condition_expression("attribute_not_exists(updated_at) OR updated_at <= :t")
            .expression_attribute_values(":t", n(updated_at))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .send()
            .await;
        // Not written: another run got further, and the cursor never moves back.
        conditional_write(result).map(|_| ())
    }

    async fn acquire_lease(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Lease::new(&self.client, &self.table, LEASE_KEY)
            .acquire(owner, now, until)
            .await
    }

    async fn release_lease(&self, owner: &str) -> Result<(), StoreError> {
        Lease::new(&self.client, &self.table, LEASE_KEY)
            .release(owner)
            .await
    }

    async fn field_ids(&self) -> Result<Option<MaintenanceFieldIds>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(FIELDS_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let number = |k: &str| -> Result<i64, StoreError> {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("{FIELDS_KEY} without {k}")))
        };
        let enums = item
            .get("status_enums")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("{FIELDS_KEY} without status_enums")))?;
        Ok(Some(MaintenanceFieldIds {
            next_maintenance: number("next_maintenance")?,
            status: number("status")?,
            status_enums: StatusEnums::parse(enums)
                .map_err(|e| StoreError::Corrupt(format!("{FIELDS_KEY}: {e}")))?,
        }))
    }

    async fn save_field_ids(&self, ids: &MaintenanceFieldIds) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(FIELDS_KEY))
            .item("next_maintenance", n(ids.next_maintenance))
            .item("status", n(ids.status))
            .item("status_enums", s(ids.status_enums.to_spec()))
            .item("saved_at", s(Utc::now().to_rfc3339()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn save_last_run(&self, report: &RunReport) -> Result<(), StoreError> {
        let json = serde_json::to_string(report)
            .map_err(|e| StoreError::Corrupt(format!("run report: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(LAST_RUN_KEY))
            .item("report", s(json))
            .item("outcome", s(report.outcome.as_str()))
            .item("finished_at", s(report.finished_at.to_rfc3339()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn last_run(&self) -> Result<Option<RunReport>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(LAST_RUN_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(text) = out
            .item
            .as_ref()
            .and_then(|i| i.get("report"))
            .and_then(|v| v.as_s().ok())
        else {
            return Ok(None);
        };
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("SYNC#last_run: {e}")))
    }
}

#[async_trait]
impl BackfillCursorStore for DynamoSyncState {
    async fn backfill_cursor(&self) -> Result<Option<BackfillCursor>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(BACKFILL_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item
            .as_ref()
            .and_then(|i| i.get("cursor"))
            .and_then(|v| v.as_s().ok())
            .map(|json| {
                serde_json::from_str(json)
                    .map_err(|e| StoreError::Corrupt(format!("{BACKFILL_KEY}: {e}")))
            })
            .transpose()
    }

    async fn save_backfill_cursor(&self, cursor: &BackfillCursor) -> Result<(), StoreError> {
        let json = serde_json::to_string(cursor)
            .map_err(|e| StoreError::Corrupt(format!("{BACKFILL_KEY}: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(BACKFILL_KEY))
            .item("cursor", s(json))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
