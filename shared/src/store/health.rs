//! Health records in the integration state table (key `pk` only):
//! - `AMOCRM_LAST_ERROR`: the last failed amoCRM call (time, operation, kind, status, message,
//!   hint), written by the functions' `LoggedAmo`.
//! - `AMOCRM_LAST_OK`: when an amoCRM call last succeeded (written sparingly, see `call_log`).
//! - `SYNC#last_run`: read only; the maintenance sync writes its last run's report there.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, Utc};

use super::attr::{Item, conditional_write, n, s, text, time, time_text, unavailable};
use crate::amocrm::CrmErrorKind;
use crate::amocrm::call_log::{AmoCalls, AmoFailure, CallLog};
use crate::ops::health::{LastSync, LastSyncSource};
use crate::ports::StoreError;

pub const LAST_ERROR_KEY: &str = "AMOCRM_LAST_ERROR";
pub const LAST_OK_KEY: &str = "AMOCRM_LAST_OK";
/// `AMOCRM_INCIDENT#<key>`: a refusal incident that was announced (once), kept 30 days.
pub const INCIDENT_PREFIX: &str = "AMOCRM_INCIDENT#";
const INCIDENT_KEEP_SECS: i64 = 30 * 86_400;
/// Written by the maintenance sync (`outcome`, `finished_at`, `report` JSON with `error`, `hint`).
pub const LAST_SYNC_KEY: &str = "SYNC#last_run";

#[derive(Clone)]
pub struct DynamoHealthRecords {
    client: Client,
    table: String,
}

impl DynamoHealthRecords {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Item>, StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(unavailable)
    }
}

pub(crate) fn failure_item(f: &AmoFailure) -> Item {
    let kind = serde_json::to_value(f.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut item = HashMap::from([
        ("pk".to_string(), s(LAST_ERROR_KEY)),
        ("kind".to_string(), s("amocrm_last_error")),
        ("at".to_string(), s(time_text(f.at))),
        ("operation".to_string(), s(&f.operation)),
        ("error_kind".to_string(), s(kind)),
        ("message".to_string(), s(&f.message)),
        ("hint".to_string(), s(&f.hint)),
    ]);
    if let Some(status) = f.status {
        item.insert("status".into(), AttributeValue::N(status.to_string()));
    }
    if let Some(secs) = f.retry_after_secs {
        item.insert(
            "retry_after_secs".into(),
            AttributeValue::N(secs.to_string()),
        );
    }
    item
}

pub(crate) fn failure_from_item(item: &Item) -> Result<AmoFailure, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("{LAST_ERROR_KEY} without {what}"));
    let kind: CrmErrorKind = text(item, "error_kind")
        .and_then(|k| serde_json::from_value(serde_json::Value::String(k)).ok())
        .ok_or_else(|| corrupt("a known error_kind"))?;
    Ok(AmoFailure {
        at: time(item, "at").ok_or_else(|| corrupt("at"))?,
        operation: text(item, "operation").unwrap_or_default(),
        kind,
        status: item
            .get("status")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
        message: text(item, "message").unwrap_or_default(),
        hint: text(item, "hint").unwrap_or_default(),
        retry_after_secs: item
            .get("retry_after_secs")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
    })
}

pub(crate) fn last_sync_from_item(item: &Item) -> LastSync {
    let report: Option<serde_json::Value> =
        text(item, "report").and_then(|r| serde_json::from_str(&r).ok());
    let from_report = |k: &str| {
        report
            .as_ref()
            .and_then(|r| r.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    LastSync {
        finished_at: time(item, "finished_at"),
        outcome: text(item, "outcome")
            .or_else(|| from_report("outcome"))
            .and_then(|o| serde_json::from_value(serde_json::Value::String(o)).ok()),
        error: from_report("error"),
        hint: from_report("hint"),
        fields_missing: report
            .as_ref()
            .and_then(|r| r.get("fields_missing"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    }
}

#[async_trait]
impl CallLog for DynamoHealthRecords {
    async fn record_failure(&self, failure: &AmoFailure) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(failure_item(failure)))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn record_success(&self, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(LAST_OK_KEY))
            .item("kind", s("amocrm_last_ok"))
            .item("at", s(time_text(at)))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn open_incident(&self, key: &str) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{INCIDENT_PREFIX}{key}")))
            .item("kind", s("amocrm_incident"))
            .item("at", s(time_text(Utc::now())))
            .item("expires_at", n(Utc::now().timestamp() + INCIDENT_KEEP_SECS))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional_write(put)
    }

    async fn calls(&self) -> Result<AmoCalls, StoreError> {
        let keys = KeysAndAttributes::builder()
            .keys(HashMap::from([("pk".to_string(), s(LAST_ERROR_KEY))]))
            .keys(HashMap::from([("pk".to_string(), s(LAST_OK_KEY))]))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, keys)
            .send()
            .await
            .map_err(unavailable)?;
        let items = out
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .unwrap_or_default();
        let mut calls = AmoCalls::default();
        for item in &items {
            match text(item, "pk").as_deref() {
                Some(LAST_ERROR_KEY) => calls.last_failure = Some(failure_from_item(item)?),
                Some(LAST_OK_KEY) => calls.last_success_at = time(item, "at"),
                _ => {}
            }
        }
        Ok(calls)
    }
}

#[async_trait]
impl LastSyncSource for DynamoHealthRecords {
    async fn last_sync(&self) -> Result<Option<LastSync>, StoreError> {
        Ok(self
            .get(LAST_SYNC_KEY)
            .await?
            .as_ref()
            .map(last_sync_from_item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amocrm::CrmError;

    #[test]
    fn a_failure_round_trips_through_its_item() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T10:42:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let e = CrmError::unauthorized("amoCRM rejected the token", "Generate a new one")
            .with_status(401);
        let f = AmoFailure::new("create_lead", &e, at);
        let item = failure_item(&f);
        assert_eq!(item["error_kind"].as_s().unwrap(), "unauthorized");
        assert_eq!(failure_from_item(&item).unwrap(), f);
        let mut no_status = item.clone();
        no_status.remove("status");
        assert_eq!(failure_from_item(&no_status).unwrap().status, None);
        let mut bad = item;
        bad.insert("error_kind".into(), s("weird"));
        assert!(matches!(
            failure_from_item(&bad),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn the_sync_record_gives_outcome_time_error_and_hint() {
        let item = HashMap::from([
            ("pk".to_string(), s(LAST_SYNC_KEY)),
            ("outcome".to_string(), s("failed")),
            ("finished_at".to_string(), s("2026-11-21T03:00:05+00:00")),
            (
                "report".to_string(),
                s(
                    r#"{"outcome":"failed","error":"amoCRM answered 400","hint":"Fix it","pull":{}}"#,
                ),
            ),
        ]);
        let sync = last_sync_from_item(&item);
        assert!(sync.failed());
        assert_eq!(sync.error.as_deref(), Some("amoCRM answered 400"));
        assert_eq!(sync.hint.as_deref(), Some("Fix it"));
        assert!(sync.finished_at.is_some());
        let bare = HashMap::from([("pk".to_string(), s(LAST_SYNC_KEY))]);
        assert_eq!(last_sync_from_item(&bare).outcome, None);
    }
}
