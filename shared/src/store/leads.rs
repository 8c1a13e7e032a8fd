//! `LeadStore` on DynamoDB: a transaction writes the lead and claims its idempotency key.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::Utc;

use super::attr::{Item, conditional_write, get_n, get_s, n, s, time, time_text, unavailable};
use super::status_index::StatusQuery;
use super::{IDEM_PREFIX, LEAD_PREFIX};
use crate::leads::{Delivery, Lead, LeadStatus, StoredLead};
use crate::ports::{Claim, Held, IdempotencyClaim, InsertOutcome, LeadStore, StoreError};

#[derive(Clone)]
pub struct DynamoLeadStore {
    client: Client,
    table: String,
}

impl DynamoLeadStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The lead's item, strongly consistent.
    async fn item(&self, lead_id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("{LEAD_PREFIX}{lead_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }
}

fn lead_item(lead: &Lead, claim_key: &str) -> Result<Item, StoreError> {
    let payload = serde_json::to_string(lead).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let now = time_text(lead.received_at);
    Ok(HashMap::from([
        ("pk".into(), s(format!("{LEAD_PREFIX}{}", lead.id))),
        ("kind".into(), s("lead")),
        ("lead_id".into(), s(&lead.id)),
        ("status".into(), s(LeadStatus::Pending.as_str())),
        ("source".into(), s(lead.request.source.as_str())),
        ("payload".into(), s(payload)),
        ("received_at".into(), s(&now)),
        ("updated_at".into(), s(now)),
        ("idem_key".into(), s(claim_key)),
        ("attempts".into(), n(0)),
    ]))
}

/// Reads a lead item back; any missing core attribute means the item is corrupt.
pub(crate) fn stored_lead_from_item(item: &Item) -> Result<StoredLead, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("lead item without {what}"));
    let lead: Lead =
        serde_json::from_str(get_s(item, "payload").ok_or_else(|| corrupt("payload"))?)
            .map_err(|e| StoreError::Corrupt(format!("lead payload: {e}")))?;
    let status = get_s(item, "status")
        .and_then(LeadStatus::parse)
        .ok_or_else(|| corrupt("status"))?;
    let delivery = Delivery {
        amo_contact_id: get_n(item, "amo_contact_id"),
        amo_lead_id: get_n(item, "amo_lead_id"),
        create_started_at: time(item, "create_started_at"),
        amo_note_id: get_n(item, "amo_note_id"),
        note_started_at: time(item, "note_started_at"),
        mailed_at: time(item, "mailed_at"),
        attempts: get_n(item, "attempts").unwrap_or(0),
        last_error: get_s(item, "last_error").map(str::to_string),
        hint: get_s(item, "hint").map(str::to_string),
        blocked: item
            .get("blocked")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        mail_attempts: get_n(item, "mail_attempts").unwrap_or(0),
    };
    Ok(StoredLead {
        updated_at: time(item, "updated_at").unwrap_or(lead.received_at),
        lead,
        status,
        delivery,
    })
}

#[async_trait]
impl LeadStore for DynamoLeadStore {
    async fn insert(
        &self,
        lead: &Lead,
        claim: &IdempotencyClaim,
    ) -> Result<InsertOutcome, StoreError> {
        let idem_pk = format!("{IDEM_PREFIX}{}", claim.key);
        let now = lead.received_at.timestamp();
        let claim_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(HashMap::from([
                ("pk".into(), s(&idem_pk)),
                ("kind".into(), s("idem")),
                ("lead_id".into(), s(&lead.id)),
                ("expires_at".into(), n(claim.expires_at.timestamp())),
            ])))
            // An expired claim (TTL deletes lazily) may be taken over.
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let lead_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(lead_item(lead, &claim.key)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(claim_put).build())
            .transact_items(TransactWriteItem::builder().put(lead_put).build())
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(InsertOutcome::Created),
            Err(err) => err,
        };
        // Reason 0 is the claim: a failed condition there means "seen before".
        let claim_taken = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                e.cancellation_reasons().first().and_then(|r| r.code())
                    == Some("ConditionalCheckFailed")
            }
            _ => false,
        };
        if !claim_taken {
            return Err(unavailable(err));
        }
        let existing = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&idem_pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let lead_id = existing
            .item
            .as_ref()
            .and_then(|item| get_s(item, "lead_id"))
            .ok_or_else(|| StoreError::Corrupt(format!("claim {idem_pk} without lead_id")))?;
        Ok(InsertOutcome::Duplicate {
            lead_id: lead_id.to_string(),
        })
    }

    async fn get(&self, lead_id: &str) -> Result<Option<StoredLead>, StoreError> {
        self.item(lead_id)
            .await?
            .as_ref()
            .map(stored_lead_from_item)
            .transpose()
    }

    async fn claim_delivery(
        &self,
        lead_id: &str,
        runner: &str,
        until: chrono::DateTime<Utc>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("{LEAD_PREFIX}{lead_id}")))
            .update_expression("SET held_by = :runner, held_until = :until")
            .condition_expression(
                "#status IN (:pending, :mailing) AND (attribute_not_exists(held_until) \
                 OR held_until < :now OR held_by = :runner)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(LeadStatus::Pending.as_str()))
            .expression_attribute_values(":mailing", s(LeadStatus::Mailing.as_str()))
            .expression_attribute_values(":runner", s(runner))
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .send()
            .await;
        if conditional_write(result)? {
            return Ok(Claim::Claimed);
        }
        // Not pending any more, or held: read which.
        let item = self.item(lead_id).await?.unwrap_or_default();
        let runnable = [LeadStatus::Pending, LeadStatus::Mailing].map(LeadStatus::as_str);
        if !get_s(&item, "status").is_some_and(|s| runnable.contains(&s)) {
            return Ok(Claim::NotPending);
        }
        let until = get_n::<i64>(&item, "held_until")
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or(now);
        Ok(Claim::HeldUntil(until))
    }

    async fn save_delivery(
        &self,
        lead_id: &str,
        status: LeadStatus,
        delivery: &Delivery,
        held: Option<Held<'_>>,
    ) -> Result<(), StoreError> {
        let mut set = vec![
            "#status = :status",
            "updated_at = :now",
            "attempts = :attempts",
        ];
        let mut remove = Vec::new();
        let mut values: Item = HashMap::from([
            (":status".into(), s(status.as_str())),
            (":now".into(), s(time_text(Utc::now()))),
            (":attempts".into(), n(delivery.attempts)),
        ]);
        let optional: [(&str, Option<AttributeValue>); 10] = [
            ("amo_contact_id", delivery.amo_contact_id.map(n)),
            ("amo_lead_id", delivery.amo_lead_id.map(n)),
            (
                "create_started_at",
                delivery.create_started_at.map(|t| s(time_text(t))),
            ),
            ("amo_note_id", delivery.amo_note_id.map(n)),
            (
                "note_started_at",
                delivery.note_started_at.map(|t| s(time_text(t))),
            ),
            ("mailed_at", delivery.mailed_at.map(|t| s(time_text(t)))),
            ("last_error", delivery.last_error.clone().map(s)),
            ("hint", delivery.hint.clone().map(s)),
            (
                "blocked",
                delivery.blocked.then_some(AttributeValue::Bool(true)),
            ),
            (
                "mail_attempts",
                (delivery.mail_attempts > 0).then(|| n(delivery.mail_attempts)),
            ),
        ];
        let mut clauses = Vec::new();
        for (name, value) in optional {
            match value {
                Some(v) => {
                    clauses.push(format!("{name} = :{name}"));
                    values.insert(format!(":{name}"), v);
                }
                None => remove.push(name),
            }
        }
        set.extend(clauses.iter().map(String::as_str));
        // A runner's save: only while it holds the lead, so a runner whose hold lapsed and was
        // taken can never overwrite the other's progress (an `amo_lead_id` above all).
        let mut condition = "attribute_exists(pk)".to_string();
        let renewal;
        if let Some(h) = held {
            condition.push_str(" AND held_by = :runner");
            values.insert(":runner".into(), s(h.runner));
            if h.release {
                remove.extend(["held_by", "held_until"]);
            } else {
                renewal = "held_until = :held_until".to_string();
                set.push(&renewal);
                values.insert(":held_until".into(), n(h.until.timestamp_millis()));
            }
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("{LEAD_PREFIX}{lead_id}")))
            .update_expression(expr)
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match (conditional_write(result)?, held) {
            (true, _) => Ok(()),
            (false, Some(_)) => Err(StoreError::Held(lead_id.to_string())),
            (false, None) => Err(StoreError::Unavailable(format!(
                "lead {lead_id} is not stored: its delivery cannot be saved"
            ))),
        }
    }

    async fn list_by_status(
        &self,
        status: LeadStatus,
        limit: usize,
    ) -> Result<Vec<StoredLead>, StoreError> {
        StatusQuery::new(&self.client, &self.table, status.as_str())
            .items(limit)
            .await?
            .iter()
            .map(stored_lead_from_item)
            .collect()
    }
}
