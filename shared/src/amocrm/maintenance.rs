//! `MaintenanceCrm` over API v4: changed deals (`GET /api/v4/leads` by `updated_at`), the
//! maintenance fields written in batches (`PATCH /api/v4/leads`, 504s handed back to the
//! caller), reminder tasks (`POST`/`GET /api/v4/tasks`).

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{AmoClient, CallOptions};
use super::deals::deal_from_json;
use super::error::{CrmError, CrmErrorKind};
use crate::maintenance::model::{AccountZone, MaintenanceFieldIds};
use crate::ports::{
    ChangedLeads, ChangedLeadsQuery, CrmFailure, CrmTask, MaintenanceCrm, MaintenanceWrite,
    NewTask, WriteOutcome,
};

const LEADS: &str = "/api/v4/leads";
const TASKS: &str = "/api/v4/tasks";
/// amoCRM's largest page.
const PAGE: usize = 250;
/// Deal ids per task lookup: each `filter%5Bentity_id%5D%5B%5D=<id>&` is about 37 bytes, so 90
/// keep the request URL under 4 KB (proxies and servers refuse longer ones; 250 would be 9 KB).
const TASK_IDS_PER_REQUEST: usize = 90;
/// The longest request URL the client sends.
pub const MAX_URL_BYTES: usize = 4096;

/// The amoCRM client plus the account's time zone (date fields hold midnight there).
#[derive(Debug, Clone)]
pub struct AmoMaintenance {
    pub client: AmoClient,
    pub zone: AccountZone,
}

fn embedded<'a>(v: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    v.get("_embedded")
        .and_then(|e| e.get(name))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

impl AmoMaintenance {
    /// The `PATCH` item of one deal: the date as midnight in the account's zone (RFC 3339, as
    /// amoCRM's SDK sends it), the status as its option id.
    pub fn write_item(
        &self,
        fields: &MaintenanceFieldIds,
        index: usize,
        w: &MaintenanceWrite,
    ) -> Value {
        json!({
            "id": w.lead_id,
            "custom_fields_values": [
                {
                    "field_id": fields.next_maintenance,
                    "values": [{ "value": self.zone.midnight(w.maintenance.next_due).to_rfc3339() }],
                },
                {
                    "field_id": fields.status,
                    "values": [{ "enum_id": fields.status_enums.enum_id(w.maintenance.status) }],
                },
            ],
            "request_id": index.to_string(),
        })
    }
}

/// 504, or the request went out and no answer came in time.
fn too_heavy(e: &CrmError) -> bool {
    e.status == Some(504) || (e.kind == CrmErrorKind::Transient && e.status.is_none())
}

/// The batch's deals amoCRM no longer knows: items its validation answer names (`request_id`
/// = index in the batch) with errors on `id` only. Other refusals (a field or option id amoCRM
/// does not know) are configuration errors that would hit every deal: the step stops on them.
fn deals_gone(e: &CrmError, len: usize) -> Vec<usize> {
    let mut items: Vec<usize> = e
        .validation
        .iter()
        .filter_map(|v| v.request_id.as_deref()?.parse().ok())
        .filter(|i| *i < len)
        .collect();
    items.sort_unstable();
    items.dedup();
    items.retain(|i| {
        e.validation
            .iter()
            .filter(|v| v.request_id.as_deref() == Some(&i.to_string()))
            .all(|v| v.path == "id")
    });
    items
}

#[async_trait]
impl MaintenanceCrm for AmoMaintenance {
    async fn changed_leads(
        &self,
        q: &ChangedLeadsQuery,
    ) -> Result<Option<ChangedLeads>, CrmFailure> {
        let mut query: Vec<(&str, String)> = vec![
            ("filter[updated_at][from]", q.updated_from.to_string()),
            (
                if q.by_id {
                    "order[id]"
                } else {
                    "order[updated_at]"
                },
                "asc".into(),
            ),
            ("limit", PAGE.to_string()),
            ("page", q.page.max(1).to_string()),
        ];
        if let Some(to) = q.updated_to {
            query.push(("filter[updated_at][to]", to.to_string()));
        }
        for p in &q.pipelines {
            query.push(("filter[pipeline_id][]", p.to_string()));
        }
        let Some(body) = self
            .client
            .request(Method::GET, LEADS, &query, None)
            .await?
        else {
            return Ok(None);
        };
        let leads: Vec<_> = embedded(&body, "leads")
            .filter_map(deal_from_json)
            .collect();
        let has_more = body.pointer("/_links/next/href").is_some();
        if leads.is_empty() && !has_more {
            return Ok(None);
        }
        Ok(Some(ChangedLeads { leads, has_more }))
    }

    async fn find_maintenance_fields(&self) -> Result<Option<MaintenanceFieldIds>, CrmFailure> {
        Ok(super::maintenance_fields::find_maintenance_fields(&self.client).await?)
    }

    async fn write_maintenance(
        &self,
        fields: &MaintenanceFieldIds,
        writes: &[MaintenanceWrite],
    ) -> Result<WriteOutcome, CrmFailure> {
        if writes.is_empty() {
            return Ok(WriteOutcome::Written(Vec::new()));
        }
        let body = Value::Array(
            writes
                .iter()
                .enumerate()
                .map(|(i, w)| self.write_item(fields, i, w))
                .collect(),
        );
        let once = CallOptions {
            no_transient_retries: true,
        };
        let answer = match self
            .client
            .request_with(Method::PATCH, LEADS, &[], Some(&body), once)
            .await
        {
            Ok(answer) => answer,
            Err(e) if too_heavy(&e) => return Ok(WriteOutcome::TooHeavy(e.into())),
            Err(e) if e.kind == CrmErrorKind::Permanent && e.status == Some(400) => {
                let items = deals_gone(&e, writes.len());
                if items.is_empty() {
                    return Err(e.into());
                }
                let failure = e.into();
                return Ok(WriteOutcome::DealsGone { items, failure });
            }
            Err(e) => return Err(e.into()),
        };
        // `_embedded.leads[{id, updated_at}]`; without it every deal counts as written.
        let reported: Vec<(i64, Option<i64>)> = answer
            .as_ref()
            .map(|v| {
                embedded(v, "leads")
                    .filter_map(|l| Some((l["id"].as_i64()?, l["updated_at"].as_i64())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(WriteOutcome::Written(
            writes
                .iter()
                .map(|w| {
                    let at = reported
                        .iter()
                        .find(|(id, _)| *id == w.lead_id)
                        .and_then(|(_, t)| *t);
                    (w.lead_id, at)
                })
                .collect(),
        ))
    }

    async fn create_tasks(&self, tasks: &[NewTask]) -> Result<Vec<i64>, CrmFailure> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let body = Value::Array(
            tasks
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    json!({
                        "text": t.text,
                        "complete_till": t.complete_till,
                        "task_type_id": 1,
                        "entity_type": "leads",
                        "entity_id": t.lead_id,
                        "responsible_user_id": t.responsible_user_id,
                        "request_id": i.to_string(),
                    })
                })
                .collect(),
        );
        let endpoint = format!("POST {TASKS}");
        let answer = self
            .client
            .request(Method::POST, TASKS, &[], Some(&body))
            .await?
            .ok_or_else(|| CrmError::unexpected_response(&endpoint, "no content"))?;
        Ok(embedded(&answer, "tasks")
            .filter_map(|t| t["id"].as_i64())
            .collect())
    }

    async fn tasks_on(&self, lead_ids: &[i64]) -> Result<Vec<CrmTask>, CrmFailure> {
        let mut found = Vec::new();
        for chunk in lead_ids.chunks(TASK_IDS_PER_REQUEST) {
            let mut page = 1;
            loop {
                let mut query: Vec<(&str, String)> = chunk
                    .iter()
                    .map(|id| ("filter[entity_id][]", id.to_string()))
                    .collect();
                query.push(("filter[entity_type]", "leads".into()));
                query.push(("limit", PAGE.to_string()));
                query.push(("page", page.to_string()));
                let Some(body) = self
                    .client
                    .request(Method::GET, TASKS, &query, None)
                    .await?
                else {
                    break;
                };
                found.extend(embedded(&body, "tasks").filter_map(|t| {
                    Some(CrmTask {
                        id: t["id"].as_i64()?,
                        lead_id: t["entity_id"].as_i64()?,
                        text: t["text"].as_str().unwrap_or_default().to_string(),
                    })
                }));
                if body.pointer("/_links/next/href").is_none() {
                    break;
                }
                page += 1;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amocrm::testkit::{Canned, CannedServer, client_for};

    #[tokio::test]
    async fn task_lookups_of_250_deals_keep_every_url_under_4_kb() {
        let server = CannedServer::start(vec![Canned::no_content(); 3]).await;
        let (client, _) = client_for(&server, "tok");
        let amo = AmoMaintenance {
            client,
            zone: AccountZone::default(),
        };
        let ids: Vec<i64> = (0..250).map(|i| 3_000_000_000 + i).collect();
        amo.tasks_on(&ids).await.unwrap();
        let reqs = server.requests();
        assert_eq!(reqs.len(), 3, "90 + 90 + 70 ids");
        let mut asked = Vec::new();
        for r in &reqs {
            let url = reqwest::Url::parse_with_params(
                &format!("{}{}", server.base_url, r.path),
                r.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap();
            assert!(
                url.as_str().len() <= MAX_URL_BYTES,
                "{} bytes",
                url.as_str().len()
            );
            asked.extend(
                r.query
                    .iter()
                    .filter(|(k, _)| k == "filter[entity_id][]")
                    .map(|(_, v)| v.parse::<i64>().unwrap()),
            );
        }
        assert_eq!(asked, ids, "every deal asked for once");
    }
}
