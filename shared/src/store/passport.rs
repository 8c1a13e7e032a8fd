//! `PassportStore` on DynamoDB. Items: `OWNER#<telegram id>` / `EQ#<serial>` per machine
//! (GSI `deal-index` on `amo_lead_id` finds a deal's equipment), and `WAITING#<deal>` /
//! `WAITING` for won deals that wait for missing data.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, NaiveDate, Utc};

use crate::passport::{Equipment, EquipmentState, Maintenance, MaintenanceStatus};
use crate::ports::{PassportStore, RegisterOutcome, StoreError};

pub const DEAL_INDEX: &str = "deal-index";

type Item = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoPassportStore {
    client: Client,
    table: String,
}

impl DynamoPassportStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable(e: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn owner_pk(telegram_id: i64) -> String {
    format!("OWNER#{telegram_id}")
}

fn equipment_sk(serial: &str) -> String {
    format!("EQ#{serial}")
}

fn to_item(e: &Equipment) -> Item {
    let mut item = HashMap::from([
        ("pk".to_string(), s(owner_pk(e.owner_telegram_id))),
        ("sk".to_string(), s(equipment_sk(&e.serial))),
        ("kind".to_string(), s("equipment")),
        ("owner_telegram_id".to_string(), n(e.owner_telegram_id)),
        ("serial".to_string(), s(&e.serial)),
        ("purchased_at".to_string(), s(e.purchased_at.to_rfc3339())),
        ("amo_lead_id".to_string(), n(e.amo_lead_id)),
        (
            "maintenance_status".to_string(),
            s(e.maintenance.status.as_str()),
        ),
        (
            "next_due".to_string(),
            s(e.maintenance.next_due.to_string()),
        ),
        ("state".to_string(), s(e.state.as_str())),
        ("updated_at".to_string(), s(e.updated_at.to_rfc3339())),
    ]);
    if let Some(model) = &e.model {
        item.insert("model".into(), s(model));
    }
    if let Some(contact) = e.amo_contact_id {
        item.insert("amo_contact_id".into(), n(contact));
    }
    item
}

fn from_item(item: &Item) -> Result<Equipment, StoreError> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let time = |k: &str| {
        text(k)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("equipment item without {what}"));
    Ok(Equipment {
        owner_telegram_id: num("owner_telegram_id").ok_or_else(|| corrupt("owner"))?,
        amo_contact_id: num("amo_contact_id"),
        serial: text("serial").ok_or_else(|| corrupt("serial"))?,
        model: text("model"),
        purchased_at: time("purchased_at").ok_or_else(|| corrupt("purchased_at"))?,
        amo_lead_id: num("amo_lead_id").ok_or_else(|| corrupt("amo_lead_id"))?,
        maintenance: Maintenance {
            status: text("maintenance_status")
                .and_then(|v| MaintenanceStatus::parse(&v))
                .ok_or_else(|| corrupt("maintenance_status"))?,
            next_due: text("next_due")
                .and_then(|d| d.parse::<NaiveDate>().ok())
                .ok_or_else(|| corrupt("next_due"))?,
        },
        state: match text("state").as_deref() {
            Some("revoked") => EquipmentState::Revoked,
            _ => EquipmentState::Active,
        },
        updated_at: time("updated_at").unwrap_or_else(Utc::now),
    })
}

impl DynamoPassportStore {
    async fn get(&self, telegram_id: i64, serial: &str) -> Result<Option<Equipment>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(owner_pk(telegram_id)))
            .key("sk", s(equipment_sk(serial)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.as_ref().map(from_item).transpose()
    }
}

#[async_trait]
impl PassportStore for DynamoPassportStore {
    async fn register(&self, equipment: &Equipment) -> Result<RegisterOutcome, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(equipment)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => return Ok(RegisterOutcome::Registered),
            Err(e)
                if !matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                return Err(unavailable(e));
            }
            Err(_) => {}
        }
        let existing = self
            .get(equipment.owner_telegram_id, &equipment.serial)
            .await?
            .ok_or_else(|| StoreError::Unavailable("equipment vanished during register".into()))?;
        if existing.state == EquipmentState::Active {
            return Ok(RegisterOutcome::AlreadyRegistered);
        }
        self.set_state(
            equipment.owner_telegram_id,
            &equipment.serial,
            EquipmentState::Active,
        )
        .await?;
        Ok(RegisterOutcome::Reactivated)
    }

    async fn for_owner(&self, telegram_id: i64) -> Result<Vec<Equipment>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :eq)")
            .expression_attribute_values(":pk", s(owner_pk(telegram_id)))
            .expression_attribute_values(":eq", s("EQ#"))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.items().iter().map(from_item).collect()
    }

    async fn by_deal(&self, amo_lead_id: i64) -> Result<Vec<Equipment>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DEAL_INDEX)
            .key_condition_expression("amo_lead_id = :id")
            .expression_attribute_values(":id", n(amo_lead_id))
            .send()
            .await
            .map_err(unavailable)?;
        out.items().iter().map(from_item).collect()
    }

    async fn set_state(
        &self,
        telegram_id: i64,
        serial: &str,
        state: EquipmentState,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(owner_pk(telegram_id)))
            .key("sk", s(equipment_sk(serial)))
            .update_expression("SET #state = :state, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn mark_waiting(&self, amo_lead_id: i64, missing: &str) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("WAITING#{amo_lead_id}")))
            .item("sk", s("WAITING"))
            .item("kind", s("waiting"))
            .item("waiting_lead_id", n(amo_lead_id))
            .item("missing", s(missing))
            .item("since", s(Utc::now().to_rfc3339()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn clear_waiting(&self, amo_lead_id: i64) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("WAITING#{amo_lead_id}")))
            .key("sk", s("WAITING"))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
