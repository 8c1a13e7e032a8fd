//! `InboxStore` on DynamoDB: received webhooks, verbatim, one item per dedup key
//! (`EVT#<key>`, `kind = webhook`). Its stream drives crm-worker; the `status-index` GSI
//! (hash `status`, range `updated_at`) lets the maintenance sync find events left pending.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::attr::{conditional_write, s, unavailable};
use super::status_index::StatusQuery;
use crate::ports::{InboxEvent, InboxStatus, InboxStore, StoreError};

pub const EVENT_PREFIX: &str = "EVT#";

#[derive(Clone)]
pub struct DynamoInboxStore {
    client: Client,
    table: String,
}

impl DynamoInboxStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl InboxStore for DynamoInboxStore {
    async fn insert_new(
        &self,
        id: &str,
        body: &str,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{EVENT_PREFIX}{id}")))
            .item("kind", s("webhook"))
            .item("event_id", s(id))
            .item("status", s(InboxStatus::Pending.as_str()))
            .item("body", s(body))
            .item("received_at", s(&at))
            .item("updated_at", s(at))
            .item("attempts", AttributeValue::N("0".into()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional_write(put)
    }

    async fn get(&self, id: &str) -> Result<Option<InboxEvent>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("{EVENT_PREFIX}{id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let corrupt = |what: &str| StoreError::Corrupt(format!("inbox item without {what}"));
        Ok(Some(InboxEvent {
            id: id.to_string(),
            body: text("body").ok_or_else(|| corrupt("body"))?,
            received_at: text("received_at")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| corrupt("received_at"))?,
            status: text("status")
                .and_then(|v| InboxStatus::parse(&v))
                .ok_or_else(|| corrupt("status"))?,
            attempts: item
                .get("attempts")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            last_error: text("last_error"),
            hint: text("hint"),
        }))
    }

    async fn set_status(
        &self,
        id: &str,
        status: InboxStatus,
        attempts: u32,
        error: Option<&str>,
        hint: Option<&str>,
        blocked: bool,
    ) -> Result<(), StoreError> {
        let mut values = HashMap::from([
            (":status".to_string(), s(status.as_str())),
            (
                ":now".to_string(),
                s(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            ),
            (
                ":attempts".to_string(),
                AttributeValue::N(attempts.to_string()),
            ),
        ]);
        let mut expr = "SET #status = :status, updated_at = :now, attempts = :attempts".to_string();
        let mut remove = Vec::new();
        for (name, value) in [("last_error", error), ("hint", hint)] {
            match value {
                Some(v) => {
                    expr.push_str(&format!(", {name} = :{name}"));
                    values.insert(format!(":{name}"), s(v));
                }
                None => remove.push(name),
            }
        }
        if blocked {
            expr.push_str(", blocked = :blocked");
            values.insert(":blocked".to_string(), AttributeValue::Bool(true));
        } else {
            remove.push("blocked");
        }
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("{EVENT_PREFIX}{id}")))
            .update_expression(expr)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn pending_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let items = StatusQuery::new(&self.client, &self.table, InboxStatus::Pending.as_str())
            .updated_before(Some(before))
            .items(limit)
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| item.get("event_id").and_then(|v| v.as_s().ok()).cloned())
            .collect())
    }
}
