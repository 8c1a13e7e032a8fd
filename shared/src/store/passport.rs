//! `PassportStore` on DynamoDB. Items: `OWNER#<telegram id>` / `EQ#<serial>` per machine
//! (GSI `deal-index` on `amo_lead_id` finds a deal's equipment), and `WAITING#<deal>` /
//! `WAITING` for won deals that wait for missing data.
//!
//! Two sparse GSIs serve the maintenance sync without scans: `push-index` (hash `push_pending`)
//! holds the machines whose values wait to be written to amoCRM, `due-index` (hash `due_watch`,
//! range `next_due`) those whose due date can still make the sync act. Both attributes are
//! derived from the machine on every write (`Equipment::needs_push`, `watches_due_date`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, TransactWriteItem, Update};
use chrono::{DateTime, NaiveDate, Utc};

use super::attr::{Item, conditional_write, n, s, unavailable};
use crate::passport::{
    AmoValues, Equipment, EquipmentState, Maintenance, MaintenanceStatus, SyncMarks,
};
use crate::ports::{Page, PassportStore, RegisterOutcome, StoreError};

pub const DEAL_INDEX: &str = "deal-index";
/// Sparse: machines whose maintenance values wait to be written to amoCRM.
pub const PUSH_INDEX: &str = "push-index";
/// Sparse, range `next_due`: machines whose due date can still make the sync act.
pub const DUE_INDEX: &str = "due-index";
/// The value of the sparse index keys (`push_pending`, `due_watch`) while an item is indexed.
const INDEXED: &str = "Y";
/// BatchGetItem's cap.
const MAX_BATCH_GET: usize = 100;

#[derive(Clone)]
pub struct DynamoPassportStore {
    client: Client,
    table: String,
    /// Machines per TransactWriteItems in `update_many` (1: one UpdateItem each).
    record_transaction: usize,
}

impl DynamoPassportStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            record_transaction: 1,
        }
    }

    /// Groups `update_many`'s writes `size` to a transaction (DynamoDB takes up to 100).
    pub fn with_record_transaction(mut self, size: usize) -> Self {
        self.record_transaction = size.clamp(1, 100);
        self
    }
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
    item.insert("version".into(), n(e.sync.version));
    for (name, value) in sync_attributes(e) {
        if let Some(v) = value {
            item.insert(name.into(), v);
        }
    }
    item
}

/// Everything `update` may change: state, maintenance, sync marks and the index keys.
fn mutable_attributes(e: &Equipment) -> Vec<(&'static str, Option<AttributeValue>)> {
    let mut attrs = vec![
        ("state", Some(s(e.state.as_str()))),
        ("maintenance_status", Some(s(e.maintenance.status.as_str()))),
        ("next_due", Some(s(e.maintenance.next_due.to_string()))),
    ];
    attrs.extend(sync_attributes(e));
    attrs
}

/// The optional attributes of a machine: the sync marks and the sparse index keys.
fn sync_attributes(e: &Equipment) -> [(&'static str, Option<AttributeValue>); 9] {
    let m = &e.sync;
    [
        (
            "local_changed_at",
            m.local_changed_at.map(|t| s(t.to_rfc3339())),
        ),
        ("amo_status", m.amo.status.map(|v| s(v.as_str()))),
        ("amo_next_due", m.amo.next_due.map(|d| s(d.to_string()))),
        ("amo_updated_at", m.amo_updated_at.map(n)),
        ("reminded_for", m.reminded_for.map(|d| s(d.to_string()))),
        (
            "reminder_started_for",
            m.reminder_started_for.map(|d| s(d.to_string())),
        ),
        (
            "push_refused_for",
            m.push_refused_for
                .map(|r| s(format!("{} {}", r.status.as_str(), r.next_due))),
        ),
        ("push_pending", e.needs_push().then(|| s(INDEXED))),
        ("due_watch", e.watches_due_date().then(|| s(INDEXED))),
    ]
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
    let date = |k: &str| text(k).and_then(|d| d.parse::<NaiveDate>().ok());
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
        sync: SyncMarks {
            version: num("version").unwrap_or(0).max(0) as u64,
            local_changed_at: time("local_changed_at"),
            amo: AmoValues {
                status: text("amo_status").and_then(|v| MaintenanceStatus::parse(&v)),
                next_due: date("amo_next_due"),
            },
            amo_updated_at: num("amo_updated_at"),
            reminded_for: date("reminded_for"),
            reminder_started_for: date("reminder_started_for"),
            push_refused_for: text("push_refused_for").and_then(|v| {
                let (status, day) = v.split_once(' ')?;
                Some(Maintenance {
                    status: MaintenanceStatus::parse(status)?,
                    next_due: day.parse().ok()?,
                })
            }),
        },
    })
}

/// A page position as text (`LastEvaluatedKey` of string and number attributes).
fn encode_position(key: Option<Item>) -> Option<String> {
    let key = key?;
    let map: serde_json::Map<String, serde_json::Value> = key
        .into_iter()
        .filter_map(|(k, v)| {
            let v = match v {
                AttributeValue::S(t) => serde_json::json!({ "S": t }),
                AttributeValue::N(t) => serde_json::json!({ "N": t }),
                _ => return None,
            };
            Some((k, v))
        })
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

fn decode_position(text: Option<String>) -> Result<Option<Item>, StoreError> {
    let Some(text) = text else { return Ok(None) };
    let bad = || StoreError::Corrupt(format!("not a page position: {text:?}"));
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad())?;
    let map = v.as_object().ok_or_else(bad)?;
    let mut item = Item::new();
    for (k, v) in map {
        let value = match (v.get("S"), v.get("N")) {
            (Some(t), _) => s(t.as_str().ok_or_else(bad)?),
            (_, Some(t)) => AttributeValue::N(t.as_str().ok_or_else(bad)?.to_string()),
            _ => return Err(bad()),
        };
        item.insert(k.clone(), value);
    }
    Ok(Some(item))
}

/// The attribute map of a machine as the store writes it (bulk loads in tests use it).
pub fn equipment_item(e: &Equipment) -> Item {
    to_item(e)
}

impl DynamoPassportStore {
    async fn query_index(
        &self,
        index: &str,
        condition: &str,
        values: Item,
        limit: usize,
        after: Option<String>,
    ) -> Result<Page<Equipment>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .set_exclusive_start_key(decode_position(after)?)
            .limit(limit.clamp(1, 5000) as i32)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(Page {
            items: out
                .items()
                .iter()
                .map(from_item)
                .collect::<Result<_, _>>()?,
            next: encode_position(out.last_evaluated_key),
        })
    }
}

/// Machines recorded at once by `update_many` (in transactions or one by one).
const RECORDS_IN_FLIGHT: usize = 16;
/// Transactions cancelled for another item's sake (or a conflict) before the rest are written
/// one by one.
const TRANSACTION_ATTEMPTS: usize = 3;

/// The write `update` makes: only what differs between `current` and `next`, if the stored
/// version is still `current`'s.
struct ConditionalUpdate {
    key: Item,
    expression: String,
    condition: &'static str,
    names: Option<HashMap<String, String>>,
    values: Item,
}

impl ConditionalUpdate {
    fn of(current: &Equipment, next: &Equipment) -> Self {
        let mut values = HashMap::from([
            (":now".to_string(), s(next.updated_at.to_rfc3339())),
            (":version".to_string(), n(current.sync.version + 1)),
            (":seen".to_string(), n(current.sync.version)),
        ]);
        let mut names = HashMap::new();
        let mut set = vec![
            "updated_at = :now".to_string(),
            "version = :version".to_string(),
        ];
        let mut remove = Vec::new();
        // Only what changed: smaller writes, and no attribute another writer owns is touched.
        for ((name, before), (_, after)) in mutable_attributes(current)
            .into_iter()
            .zip(mutable_attributes(next))
        {
            if before == after {
                continue;
            }
            let path = if name == "state" {
                names.insert("#state".to_string(), name.to_string());
                "#state".to_string()
            } else {
                name.to_string()
            };
            match after {
                Some(v) => {
                    set.push(format!("{path} = :{name}"));
                    values.insert(format!(":{name}"), v);
                }
                None => remove.push(path),
            }
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let condition = if current.sync.version == 0 {
            // Written before the sync existed (no version yet).
            "attribute_exists(pk) AND (attribute_not_exists(version) OR version = :seen)"
        } else {
            "attribute_exists(pk) AND version = :seen"
        };
        ConditionalUpdate {
            key: HashMap::from([
                ("pk".to_string(), s(owner_pk(current.owner_telegram_id))),
                ("sk".to_string(), s(equipment_sk(&current.serial))),
            ]),
            expression,
            condition,
            names: (!names.is_empty()).then_some(names),
            values,
        }
    }
}

impl DynamoPassportStore {
    /// Writes one group of `update_many`: one TransactWriteItems for all of them. A machine
    /// whose version moved is not written (false); when only others stopped the transaction,
    /// the rest are sent again, and after TRANSACTION_ATTEMPTS one by one.
    async fn write_group(
        &self,
        group: Vec<(Equipment, Equipment)>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut written = vec![false; group.len()];
        let mut pending: Vec<usize> = (0..group.len()).collect();
        for _ in 0..TRANSACTION_ATTEMPTS {
            if pending.len() < 2 {
                break;
            }
            let items = pending
                .iter()
                .map(|&i| {
                    let u = ConditionalUpdate::of(&group[i].0, &group[i].1);
                    let update = Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(u.key))
                        .update_expression(u.expression)
                        .condition_expression(u.condition)
                        .set_expression_attribute_names(u.names)
                        .set_expression_attribute_values(Some(u.values))
                        .build()
                        .map_err(|e| StoreError::Config(e.to_string()))?;
                    Ok(TransactWriteItem::builder().update(update).build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let reasons = match result {
                Ok(_) => {
                    for i in pending.drain(..) {
                        written[i] = true;
                    }
                    return Ok(written);
                }
                Err(e) => match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                        c.cancellation_reasons().to_vec()
                    }
                    _ => return Err(unavailable(e)),
                },
            };
            if reasons.len() != pending.len() {
                break; // no reason per item: let each find out on its own
            }
            // Written: none. Refused for good: those whose own condition failed.
            pending = pending
                .into_iter()
                .zip(&reasons)
                .filter(|(_, r)| r.code() != Some("ConditionalCheckFailed"))
                .map(|(i, _)| i)
                .collect();
        }
        for i in pending {
            written[i] = self.update(&group[i].0, &group[i].1).await?;
        }
        Ok(written)
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
        if conditional_write(put)? {
            return Ok(RegisterOutcome::Registered);
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
        // Read-modify-write: the sparse index keys depend on the state.
        for _ in 0..5 {
            let e = self
                .get(telegram_id, serial)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("no equipment {serial}")))?;
            if e.state == state {
                return Ok(());
            }
            let mut next = e.clone();
            next.state = state;
            next.updated_at = Utc::now();
            if self.update(&e, &next).await? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "equipment {serial} kept changing while its state was set"
        )))
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
        conditional_write(put)
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

    async fn get_many(&self, keys: &[(i64, String)]) -> Result<Vec<Equipment>, StoreError> {
        let mut unique: Vec<&(i64, String)> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(MAX_BATCH_GET) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|(owner, serial)| {
                    HashMap::from([
                        ("pk".to_string(), s(owner_pk(*owner))),
                        ("sk".to_string(), s(equipment_sk(serial))),
                    ])
                })
                .collect();
            for attempt in 0..8u32 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    // Throttled keys come back unprocessed: back off before asking again.
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Config(e.to_string()))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    found.push(from_item(item)?);
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(StoreError::Unavailable(
                    "DynamoDB kept keys unprocessed (throttled)".into(),
                ));
            }
        }
        Ok(found)
    }

    async fn update(&self, current: &Equipment, next: &Equipment) -> Result<bool, StoreError> {
        let u = ConditionalUpdate::of(current, next);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(u.key))
            .update_expression(u.expression)
            .condition_expression(u.condition)
            .set_expression_attribute_names(u.names)
            .set_expression_attribute_values(Some(u.values))
            .send()
            .await;
        conditional_write(result)
    }

    async fn update_many(&self, pairs: &[(Equipment, Equipment)]) -> Result<Vec<bool>, StoreError> {
        let size = self.record_transaction.max(1);
        // About RECORDS_IN_FLIGHT machines in flight, however they are grouped.
        let in_flight = (RECORDS_IN_FLIGHT / size).max(1);
        let mut written = vec![false; pairs.len()];
        let mut groups = pairs.chunks(size).enumerate();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < in_flight {
                let Some((g, group)) = groups.next() else {
                    break;
                };
                let (store, group) = (self.clone(), group.to_vec());
                running.spawn(async move { (g, store.write_group(group).await) });
            }
            let Some(done) = running.join_next().await else {
                return Ok(written);
            };
            let (g, result) =
                done.map_err(|e| StoreError::Unavailable(format!("recording stopped: {e}")))?;
            for (i, w) in result?.into_iter().enumerate() {
                written[g * size + i] = w;
            }
        }
    }

    async fn pending_push(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<Page<Equipment>, StoreError> {
        self.query_index(
            PUSH_INDEX,
            "push_pending = :y",
            HashMap::from([(":y".to_string(), s(INDEXED))]),
            limit,
            after,
        )
        .await
    }

    async fn due_by(
        &self,
        last_day: NaiveDate,
        limit: usize,
        after: Option<String>,
    ) -> Result<Page<Equipment>, StoreError> {
        self.query_index(
            DUE_INDEX,
            "due_watch = :y AND next_due <= :last",
            HashMap::from([
                (":y".to_string(), s(INDEXED)),
                (":last".to_string(), s(last_day.to_string())),
            ]),
            limit,
            after,
        )
        .await
    }
}
