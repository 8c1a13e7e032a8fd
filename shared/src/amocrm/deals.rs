//! `CrmDeals` over API v4: deals read back by id (one list request), notes on deals.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;

use super::client::AmoClient;
use crate::passport::register::WON_STATUS_ID;
use crate::ports::{Crm, CrmDeal, CrmDeals, CrmFailure, CrmFieldValue, WonDeals, WonPage};

/// amoCRM's page cap: at most this many ids per list request.
pub const MAX_IDS_PER_REQUEST: usize = 250;

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One lead object of a list response.
pub fn deal_from_json(lead: &Value) -> Option<CrmDeal> {
    let int = |k: &str| lead.get(k).and_then(Value::as_i64);
    let fields = lead["custom_fields_values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let field_id = f["field_id"].as_i64()?;
            let first = f["values"].as_array().and_then(|v| v.first());
            let value = first.and_then(|v| text_of(&v["value"]));
            Some(CrmFieldValue {
                field_id,
                // The API sends dates as unix seconds.
                unix: value.as_deref().and_then(|v| v.trim().parse().ok()),
                value,
                enum_id: first.and_then(|v| v["enum_id"].as_i64()),
            })
        })
        .collect();
    let contacts = lead["_embedded"]["contacts"].as_array();
    let main_contact_id = contacts
        .and_then(|c| {
            c.iter()
                .find(|c| c["is_main"].as_bool() == Some(true))
                .or(c.first())
        })
        .and_then(|c| c["id"].as_i64());
    Some(CrmDeal {
        id: int("id")?,
        name: lead["name"].as_str().unwrap_or_default().to_string(),
        status_id: int("status_id").unwrap_or_default(),
        pipeline_id: int("pipeline_id").unwrap_or_default(),
        responsible_user_id: int("responsible_user_id").unwrap_or_default(),
        closed_at: int("closed_at"),
        updated_at: int("updated_at").unwrap_or_default(),
        main_contact_id,
        fields,
        tags: lead["_embedded"]["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect(),
    })
}

#[async_trait]
impl CrmDeals for AmoClient {
    async fn deals(&self, ids: &[i64]) -> Result<Vec<CrmDeal>, CrmFailure> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS_PER_REQUEST) {
            let mut query: Vec<(&str, String)> = chunk
                .iter()
                .map(|id| ("filter[id][]", id.to_string()))
                .collect();
            query.push(("with", "contacts".into()));
            query.push(("limit", MAX_IDS_PER_REQUEST.to_string()));
            let Some(body) = self
                .request(Method::GET, "/api/v4/leads", &query, None)
                .await?
            else {
                continue; // 204: none of them exists any more
            };
            out.extend(
                body["_embedded"]["leads"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(deal_from_json),
            );
        }
        Ok(out)
    }

    async fn note_on_deal(&self, deal_id: i64, text: &str) -> Result<i64, CrmFailure> {
        self.add_note(deal_id, text).await
    }
}

#[async_trait]
impl WonDeals for AmoClient {
    /// `GET /api/v4/leads` with one `filter[statuses]` entry (142) per pipeline, oldest id first.
    async fn won_deals(
        &self,
        pipelines: &[i64],
        closed_since: Option<i64>,
        page: u32,
    ) -> Result<Option<WonPage>, CrmFailure> {
        let mut query: Vec<(String, String)> = Vec::new();
        for (i, p) in pipelines.iter().enumerate() {
            query.push((format!("filter[statuses][{i}][pipeline_id]"), p.to_string()));
            query.push((
                format!("filter[statuses][{i}][status_id]"),
                WON_STATUS_ID.to_string(),
            ));
        }
        if let Some(since) = closed_since {
            query.push(("filter[closed_at][from]".into(), since.to_string()));
        }
        query.push(("order[id]".into(), "asc".into()));
        query.push(("with".into(), "contacts".into()));
        query.push(("limit".into(), MAX_IDS_PER_REQUEST.to_string()));
        query.push(("page".into(), page.max(1).to_string()));
        let query: Vec<(&str, String)> =
            query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let Some(body) = self
            .request(Method::GET, "/api/v4/leads", &query, None)
            .await?
        else {
            return Ok(None);
        };
        let deals: Vec<CrmDeal> = body["_embedded"]["leads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(deal_from_json)
            .collect();
        Ok(Some(WonPage {
            has_more: body.pointer("/_links/next/href").is_some(),
            deals,
        }))
    }
}
