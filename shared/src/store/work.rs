//! `WorkQueues` on DynamoDB: leads (leads table) and webhook events (inbox table) by status,
//! through each table's `status-index` (hash `status`, range `updated_at`).
//!
//! An inbox table created before it had the index is still served, by a filtered scan (logged
//! as a warning): operators can see and re-drive parked events while the index is deployed.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use tracing::warn;

use super::attr::{Item, conditional_write, s, text, time, time_text, unavailable};
use super::status_index::{IndexWalkError, StatusQuery};
use super::{EVENT_PREFIX, LEAD_PREFIX, STATUS_INDEX};
use crate::ops::parked::{ParkedItem, RedriveOutcome, WorkKind, WorkQueues};
use crate::ports::StoreError;

#[derive(Clone)]
pub struct DynamoWorkQueues {
    client: Client,
    leads_table: String,
    inbox_table: Option<String>,
}

impl DynamoWorkQueues {
    pub fn new(
        client: Client,
        leads_table: impl Into<String>,
        inbox_table: Option<String>,
    ) -> Self {
        Self {
            client,
            leads_table: leads_table.into(),
            inbox_table,
        }
    }

    fn table(&self, kind: WorkKind) -> Result<&str, StoreError> {
        match kind {
            WorkKind::Lead => Ok(&self.leads_table),
            WorkKind::Event => self.inbox_table.as_deref().ok_or_else(|| {
                StoreError::Config("INBOX_TABLE is not set: there are no webhook events".into())
            }),
        }
    }

    /// Items of `kind` in `status` (last updated before `before`), oldest first, at most `limit`.
    async fn items(
        &self,
        kind: WorkKind,
        status: &str,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let table = self.table(kind)?;
        let query = StatusQuery::new(&self.client, table, status).updated_before(before);
        match query.items(limit).await {
            Err(IndexWalkError::NoIndex(_)) => self.scan_items(&query, table, limit).await,
            other => Ok(other?),
        }
    }

    async fn count_items(
        &self,
        kind: WorkKind,
        status: &str,
        before: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        let table = self.table(kind)?;
        let query = StatusQuery::new(&self.client, table, status).updated_before(before);
        match query.count().await {
            Err(IndexWalkError::NoIndex(_)) => {
                let items = self.scan_items(&query, table, usize::MAX).await?;
                Ok(items.len() as u64)
            }
            other => Ok(other?),
        }
    }

    /// The same listing by a filtered scan, for a table without the index.
    async fn scan_items(
        &self,
        query: &StatusQuery<'_>,
        table: &str,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        warn!(
            table,
            index = STATUS_INDEX,
            "table has no status index; scanning instead (deploy the template's index)"
        );
        let (filter, values) = query.condition();
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(table)
                .filter_expression(&filter)
                .expression_attribute_names("#status", "status")
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        items.sort_by_key(|a| text(a, "updated_at"));
        items.truncate(limit);
        Ok(items)
    }
}

fn parked_item(kind: WorkKind, item: &Item) -> Result<ParkedItem, StoreError> {
    let id_attr = match kind {
        WorkKind::Lead => "lead_id",
        WorkKind::Event => "event_id",
    };
    let id = text(item, id_attr).ok_or_else(|| {
        StoreError::Corrupt(format!("parked {} without {id_attr}", kind.as_str()))
    })?;
    Ok(ParkedItem {
        kind,
        id,
        received_at: time(item, "received_at"),
        parked_at: time(item, "updated_at"),
        attempts: item
            .get("attempts")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        source: match kind {
            WorkKind::Lead => text(item, "source"),
            WorkKind::Event => None,
        },
        last_error: text(item, "last_error"),
        hint: text(item, "hint"),
        blocked: item
            .get("blocked")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}

#[async_trait]
impl WorkQueues for DynamoWorkQueues {
    fn has_events(&self) -> bool {
        self.inbox_table.is_some()
    }

    async fn parked(&self, kind: WorkKind, limit: usize) -> Result<Vec<ParkedItem>, StoreError> {
        self.items(kind, "parked", None, limit)
            .await?
            .iter()
            .map(|item| parked_item(kind, item))
            .collect()
    }

    async fn count(
        &self,
        kind: WorkKind,
        status: &str,
        updated_before: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        self.count_items(kind, status, updated_before).await
    }

    async fn redrive(
        &self,
        kind: WorkKind,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<RedriveOutcome, StoreError> {
        let table = self.table(kind)?;
        let key = match kind {
            WorkKind::Lead => format!("{LEAD_PREFIX}{id}"),
            WorkKind::Event => format!("{EVENT_PREFIX}{id}"),
        };
        let update = self
            .client
            .update_item()
            .table_name(table)
            .key("pk", s(&key))
            .update_expression("SET #status = :pending, updated_at = :now, redriven_at = :now")
            .condition_expression("#status = :parked")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":parked", s("parked"))
            .expression_attribute_values(":now", s(time_text(now)))
            .send()
            .await;
        if conditional_write(update)? {
            return Ok(RedriveOutcome::Redriven);
        }
        let current = self
            .client
            .get_item()
            .table_name(table)
            .key("pk", s(&key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(match current.item {
            None => RedriveOutcome::NotFound,
            Some(item) => RedriveOutcome::NotParked {
                status: text(&item, "status").unwrap_or_else(|| "unknown".into()),
            },
        })
    }
}
