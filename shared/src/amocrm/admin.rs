//! Account-level reads and writes that operators' tools need (`rss-ops doctor` and `setup`):
//! pipelines with their statuses, users, lead custom fields (list and create) and webhook
//! subscriptions (list and register).

use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use super::client::AmoClient;
use super::error::CrmError;

const PIPELINES: &str = "/api/v4/leads/pipelines";
const USERS: &str = "/api/v4/users";
const LEAD_FIELDS: &str = "/api/v4/leads/custom_fields";
const WEBHOOKS: &str = "/api/v4/webhooks";
/// amoCRM's largest page.
const PAGE_LIMIT: u32 = 250;
/// A guard against a server that always links a next page.
const MAX_PAGES: u32 = 40;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pipeline {
    pub id: i64,
    pub name: String,
    pub statuses: Vec<PipelineStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineStatus {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountUser {
    pub id: i64,
    pub name: String,
    /// `rights.is_active`; a deactivated user cannot be made responsible for new leads.
    pub active: bool,
}

/// A custom field of leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeadField {
    pub id: i64,
    pub name: String,
    pub code: Option<String>,
    /// amoCRM's type name: `text`, `date`, `select`, …
    pub field_type: String,
    /// Options of select-like fields: (option id, label).
    pub enums: Vec<(i64, String)>,
}

/// A lead custom field to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLeadField {
    pub name: String,
    pub field_type: String,
    pub code: Option<String>,
    /// Option labels of select-like fields, in order.
    pub enums: Vec<String>,
}

/// A webhook subscription (`GET /api/v4/webhooks`). The destination carries our secret token:
/// show it only through `mask_destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSubscription {
    pub id: i64,
    pub destination: String,
    pub settings: Vec<String>,
    pub disabled: bool,
}

impl AmoClient {
    /// Every lead pipeline with its statuses.
    pub async fn pipelines(&self) -> Result<Vec<Pipeline>, CrmError> {
        // Not paged: an account has at most 50 pipelines.
        let resp = self.request(Method::GET, PIPELINES, &[], None).await?;
        Ok(resp
            .as_ref()
            .and_then(|v| embedded(v, "pipelines"))
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(Pipeline {
                    id: p.get("id")?.as_i64()?,
                    name: text(p, "name"),
                    statuses: embedded(p, "statuses")
                        .into_iter()
                        .flatten()
                        .filter_map(|s| {
                            Some(PipelineStatus {
                                id: s.get("id")?.as_i64()?,
                                name: text(s, "name"),
                            })
                        })
                        .collect(),
                })
            })
            .collect())
    }

    /// Every user of the account.
    pub async fn users(&self) -> Result<Vec<AccountUser>, CrmError> {
        let items = self.list_all(USERS, "users").await?;
        Ok(items
            .iter()
            .filter_map(|u| {
                Some(AccountUser {
                    id: u.get("id")?.as_i64()?,
                    name: text(u, "name"),
                    active: u
                        .pointer("/rights/is_active")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                })
            })
            .collect())
    }

    /// Every custom field of leads.
    pub async fn lead_fields(&self) -> Result<Vec<LeadField>, CrmError> {
        let items = self.list_all(LEAD_FIELDS, "custom_fields").await?;
        Ok(items.iter().filter_map(lead_field).collect())
    }

    /// Creates lead custom fields in one request; returns them as amoCRM created them.
    pub async fn create_lead_fields(
        &self,
        fields: &[NewLeadField],
    ) -> Result<Vec<LeadField>, CrmError> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<Value> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut item = json!({
                    "name": f.name,
                    "type": f.field_type,
                    "request_id": i.to_string(),
                });
                if let Some(code) = &f.code {
                    item["code"] = json!(code);
                }
                if !f.enums.is_empty() {
                    item["enums"] = f
                        .enums
                        .iter()
                        .enumerate()
                        .map(|(n, value)| json!({"value": value, "sort": (n as i64 + 1) * 10}))
                        .collect();
                }
                item
            })
            .collect();
        let endpoint = format!("POST {LEAD_FIELDS}");
        let resp = self
            .request(Method::POST, LEAD_FIELDS, &[], Some(&Value::Array(body)))
            .await?
            .ok_or_else(|| CrmError::unexpected_response(&endpoint, "no content"))?;
        let created: Vec<LeadField> = embedded(&resp, "custom_fields")
            .into_iter()
            .flatten()
            .filter_map(lead_field)
            .collect();
        if created.len() != fields.len() {
            return Err(CrmError::unexpected_response(
                &endpoint,
                "not every field came back created",
            ));
        }
        Ok(created)
    }

    /// Every webhook subscription of the account (admin only).
    pub async fn webhooks(&self) -> Result<Vec<WebhookSubscription>, CrmError> {
        // `GET /api/v4/webhooks` is not paged (amoCRM allows at most 100 subscriptions).
        let resp = self.request(Method::GET, WEBHOOKS, &[], None).await?;
        Ok(resp
            .as_ref()
            .and_then(|v| embedded(v, "webhooks"))
            .into_iter()
            .flatten()
            .filter_map(|w| {
                Some(WebhookSubscription {
                    id: w.get("id")?.as_i64()?,
                    destination: w.get("destination")?.as_str()?.to_string(),
                    settings: w
                        .get("settings")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect(),
                    disabled: w.get("disabled").and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect())
    }

    /// `POST /api/v4/webhooks`: subscribes `destination` to `settings`. amoCRM replaces the
    /// settings of a destination it already knows, so this is safe to repeat.
    pub async fn register_webhook(
        &self,
        destination: &str,
        settings: &[&str],
    ) -> Result<(), CrmError> {
        let body = json!({ "destination": destination, "settings": settings });
        self.request(Method::POST, WEBHOOKS, &[], Some(&body))
            .await
            .map(|_| ())
    }

    /// `DELETE /api/v4/webhooks` of one destination (exactly as amoCRM lists it).
    pub async fn delete_webhook(&self, destination: &str) -> Result<(), CrmError> {
        let body = json!({ "destination": destination });
        self.request(Method::DELETE, WEBHOOKS, &[], Some(&body))
            .await
            .map(|_| ())
    }

    /// Pages through a list endpoint (`_embedded.<key>`), 250 at a time, until amoCRM links
    /// no next page or answers 204.
    async fn list_all(&self, path: &str, key: &str) -> Result<Vec<Value>, CrmError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let q = [
                ("page", page.to_string()),
                ("limit", PAGE_LIMIT.to_string()),
            ];
            let Some(resp) = self.request(Method::GET, path, &q, None).await? else {
                break;
            };
            out.extend(embedded(&resp, key).into_iter().flatten().cloned());
            if resp.pointer("/_links/next/href").is_none() {
                break;
            }
        }
        Ok(out)
    }
}

/// The destination with the value of its `token` parameter hidden (it authenticates amoCRM's
/// webhooks): `https://api.td-rss.ru/webhook/amocrm?token=***`.
pub fn mask_destination(destination: &str) -> String {
    let Some((base, query)) = destination.split_once('?') else {
        return destination.to_string();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("token") => format!("{k}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", masked.join("&"))
}

fn lead_field(f: &Value) -> Option<LeadField> {
    Some(LeadField {
        id: f.get("id")?.as_i64()?,
        name: text(f, "name"),
        code: f
            .get("code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        field_type: text(f, "type"),
        enums: f
            .get("enums")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.get("id")?.as_i64()?, text(e, "value"))))
            .collect(),
    })
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn embedded<'a>(v: &'a Value, name: &str) -> Option<&'a Vec<Value>> {
    v.get("_embedded")?.get(name)?.as_array()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amocrm::testkit::{Canned, CannedServer, client_for};

    #[test]
    fn the_webhook_token_is_masked_and_nothing_else() {
        assert_eq!(
            mask_destination("https://api.td-rss.ru/webhook/amocrm?token=s3cr3t&x=1"),
            "https://api.td-rss.ru/webhook/amocrm?token=***&x=1"
        );
        assert_eq!(
            mask_destination("https://api.td-rss.ru/webhook/amocrm"),
            "https://api.td-rss.ru/webhook/amocrm"
        );
    }

    #[tokio::test]
    async fn lists_follow_next_links_and_stop_at_no_content() {
        let page1 = r#"{"_links":{"next":{"href":"x?page=2"}},"_embedded":{"custom_fields":[
            {"id":1,"name":"Серийный номер","type":"text","code":null,"enums":null}]}}"#;
        let page2 = r#"{"_embedded":{"custom_fields":[
            {"id":2,"name":"Статус ТО","type":"select","code":"RSS_STATUS",
             "enums":[{"id":11,"value":"В норме"},{"id":12,"value":"Скоро ТО"}]}]}}"#;
        let server =
            CannedServer::start(vec![Canned::json(200, page1), Canned::json(200, page2)]).await;
        let (client, _) = client_for(&server, "tok");
        let fields = client.lead_fields().await.unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].code, None);
        assert_eq!(fields[1].code.as_deref(), Some("RSS_STATUS"));
        assert_eq!(
            fields[1].enums,
            vec![(11, "В норме".to_string()), (12, "Скоро ТО".to_string())]
        );
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert!(
            reqs[1]
                .query
                .contains(&("page".to_string(), "2".to_string())),
            "{:?}",
            reqs[1].query
        );

        let server = CannedServer::start(vec![Canned::no_content()]).await;
        let (client, _) = client_for(&server, "tok");
        assert!(client.webhooks().await.unwrap().is_empty());
    }
}
