//! The `Crm` port on amoCRM API v4: contact search, lead lookup and creation
//! (`/api/v4/leads/complex`), notes; plus the connectivity check's test lead and the account.
//!
//! Pipeline, status, responsible user and custom field ids come from `AmoConfig`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::AmoClient;
use super::error::CrmError;
use crate::config::AmoConfig;
use crate::leads::Lead;
use crate::leads::render::{UNVERIFIED_TELEGRAM_TAG, lead_title};
use crate::ports::{ContactLink, Crm, CrmFailure, CrmLeadRef};

const CONTACTS: &str = "/api/v4/contacts";
const LEADS: &str = "/api/v4/leads";
const LEADS_COMPLEX: &str = "/api/v4/leads/complex";
const LEAD_NOTES: &str = "/api/v4/leads/notes";
/// amoCRM's largest page; our note is among a lead's first, so one page is enough.
const NOTES_PAGE: u32 = 250;
/// Pages of leads created around an attempt read before falling back to `query`.
const FIND_PAGES: u32 = 4;
/// `created_at` is amoCRM's clock, in seconds: the window reaches this far past the attempt.
const FIND_SLACK_SECS: i64 = 120;

impl AmoClient {
    /// `GET /api/v4/account`: who we are talking to (id, name, subdomain…).
    pub async fn account(&self) -> Result<Value, CrmError> {
        self.request(Method::GET, "/api/v4/account", &[], None)
            .await?
            .ok_or_else(|| CrmError::unexpected_response("GET /api/v4/account", "no content"))
    }

    /// Creates «Тестовая заявка (проверка связи) <UTC time>» tagged `test` in the configured
    /// pipeline, status and user (the connectivity check); returns its amoCRM id.
    pub async fn create_test_lead(&self) -> Result<i64, CrmError> {
        let cfg = self.config();
        let body = json!([{
            "name": format!(
                "Тестовая заявка (проверка связи) {}",
                Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
            ),
            "pipeline_id": cfg.pipeline_id,
            "status_id": cfg.status_id,
            "responsible_user_id": cfg.responsible_user_id,
            "_embedded": { "tags": [{ "name": "test" }] },
            "request_id": "test",
        }]);
        let endpoint = format!("POST {LEADS}");
        let resp = self.request(Method::POST, LEADS, &[], Some(&body)).await?;
        // `{"_embedded":{"leads":[{"id":…}]}}`; a plain array is accepted as well.
        resp.as_ref()
            .and_then(|v| embedded(v, "leads").or_else(|| v.as_array()))
            .and_then(|leads| leads.first())
            .and_then(|l| l.get("id")?.as_i64())
            .ok_or_else(|| CrmError::unexpected_response(&endpoint, "no lead id in the answer"))
    }
}

#[async_trait]
impl Crm for AmoClient {
    async fn find_contact(&self, query: &str) -> Result<Option<i64>, CrmFailure> {
        let Some(wanted) = ContactKey::parse(query) else {
            return Ok(None);
        };
        // amoCRM matches the query as a substring (phones by their digits): `+79161234567` does
        // not find a contact saved as `8 (916) 123-45-67`, its last ten digits do. Then only a
        // contact whose phone or e-mail really matches is kept.
        let resp = self
            .request(
                Method::GET,
                CONTACTS,
                &[("query", wanted.search_text().to_string())],
                None,
            )
            .await?;
        Ok(resp
            .as_ref()
            .and_then(|v| embedded(v, "contacts"))
            .into_iter()
            .flatten()
            .find(|c| wanted.matches(c))
            .and_then(|c| c.get("id")?.as_i64()))
    }

    async fn find_lead_for(
        &self,
        lead: &Lead,
        create_started_at: DateTime<Utc>,
    ) -> Result<Option<CrmLeadRef>, CrmFailure> {
        // Nothing says when amoCRM's full-text search sees a new lead; its filters read the
        // database at once. So first the leads of our pipeline and manager created around the
        // attempt, matched by our id in the name; `query` only as the fallback (a lead moved
        // to another pipeline or manager since).
        let cfg = self.config();
        let mut found = None;
        for page in 1..=FIND_PAGES {
            let query = [
                (
                    "filter[created_at][from]",
                    (create_started_at.timestamp() - FIND_SLACK_SECS).to_string(),
                ),
                (
                    "filter[created_at][to]",
                    (Utc::now().timestamp() + FIND_SLACK_SECS).to_string(),
                ),
                ("filter[pipeline_id][]", cfg.pipeline_id.to_string()),
                (
                    "filter[responsible_user_id][]",
                    cfg.responsible_user_id.to_string(),
                ),
                ("with", "contacts".to_string()),
                ("limit", "250".to_string()),
                ("page", page.to_string()),
            ];
            let Some(resp) = self.request(Method::GET, LEADS, &query, None).await? else {
                break;
            };
            found = named_for(&resp, lead);
            if found.is_some() || resp.pointer("/_links/next/href").is_none() {
                break;
            }
        }
        if found.is_none() {
            let query = [("query", lead.id.clone()), ("with", "contacts".to_string())];
            let resp = self.request(Method::GET, LEADS, &query, None).await?;
            found = resp.as_ref().and_then(|r| named_for(r, lead));
        }
        let Some(found) = found else {
            return Ok(None);
        };
        let lead_id = found.get("id").and_then(Value::as_i64).ok_or_else(|| {
            CrmError::unexpected_response(&format!("GET {LEADS}"), "a lead without an id")
        })?;
        Ok(Some(CrmLeadRef {
            lead_id,
            contact_id: main_contact(&found),
        }))
    }

    async fn create_lead(
        &self,
        lead: &Lead,
        contact: ContactLink,
    ) -> Result<CrmLeadRef, CrmFailure> {
        let body = complex_lead_body(lead, contact, self.config());
        let endpoint = format!("POST {LEADS_COMPLEX}");
        let resp = self
            .request(Method::POST, LEADS_COMPLEX, &[], Some(&body))
            .await?
            .ok_or_else(|| CrmError::unexpected_response(&endpoint, "no content"))?;
        let created = parse_complex_response(&resp, &lead.id).ok_or_else(|| {
            CrmError::unexpected_response(&endpoint, "no created lead in the answer")
        })?;
        if created.merged {
            tracing::info!(lead_id = %lead.id, amo_lead_id = created.lead.lead_id, "amoCRM merged the new lead into an existing one (duplicate control)");
        }
        let contact_id = created.lead.contact_id.or(match contact {
            ContactLink::Existing(id) => Some(id),
            ContactLink::CreateNew => None,
        });
        Ok(CrmLeadRef {
            lead_id: created.lead.lead_id,
            contact_id,
        })
    }

    async fn find_note(&self, amo_lead_id: i64, marker: &str) -> Result<Option<i64>, CrmFailure> {
        let path = format!("{LEADS}/{amo_lead_id}/notes");
        let query = [("limit", NOTES_PAGE.to_string())];
        let resp = self.request(Method::GET, &path, &query, None).await?;
        Ok(resp
            .as_ref()
            .and_then(|v| embedded(v, "notes"))
            .into_iter()
            .flatten()
            .find(|n| {
                n.pointer("/params/text")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.contains(marker))
            })
            .and_then(|n| n.get("id")?.as_i64()))
    }

    async fn add_note(&self, amo_lead_id: i64, text: &str) -> Result<i64, CrmFailure> {
        let body = json!([{
            "entity_id": amo_lead_id,
            "note_type": "common",
            "params": { "text": text },
        }]);
        let endpoint = format!("POST {LEAD_NOTES}");
        let resp = self
            .request(Method::POST, LEAD_NOTES, &[], Some(&body))
            .await?;
        resp.as_ref()
            .and_then(|v| embedded(v, "notes").or_else(|| v.as_array()))
            .and_then(|notes| notes.first())
            .and_then(|n| n.get("id")?.as_i64())
            .ok_or_else(|| {
                CrmError::unexpected_response(&endpoint, "no note id in the answer").into()
            })
    }
}

/// `_embedded.<name>` of a list answer.
fn embedded<'a>(v: &'a Value, name: &str) -> Option<&'a Vec<Value>> {
    v.get("_embedded")?.get(name)?.as_array()
}

/// The lead's main contact (`is_main`), else its first one.
fn main_contact(lead: &Value) -> Option<i64> {
    let contacts = embedded(lead, "contacts")?;
    contacts
        .iter()
        .find(|c| c.get("is_main").and_then(Value::as_bool) == Some(true))
        .or_else(|| contacts.first())
        .and_then(|c| c.get("id")?.as_i64())
}

/// What a contact search must really match.
#[derive(Debug, PartialEq, Eq)]
enum ContactKey {
    /// Lower-cased.
    Email(String),
    /// The last ten digits (a Russian number without its country code), or all when fewer.
    Phone(String),
}

impl ContactKey {
    fn parse(query: &str) -> Option<Self> {
        let q = query.trim();
        if q.contains('@') {
            return Some(ContactKey::Email(q.to_lowercase()));
        }
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        // Fewer digits than any real phone number would match unrelated contacts.
        (digits.len() >= 7).then(|| ContactKey::Phone(last_ten(&digits)))
    }

    /// What to ask amoCRM's search for: the e-mail, or the phone's last ten digits.
    fn search_text(&self) -> &str {
        match self {
            ContactKey::Email(e) | ContactKey::Phone(e) => e,
        }
    }

    fn matches(&self, contact: &Value) -> bool {
        let (code, wanted) = match self {
            ContactKey::Email(e) => ("EMAIL", e),
            ContactKey::Phone(p) => ("PHONE", p),
        };
        contact
            .get("custom_fields_values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| f.get("field_code").and_then(Value::as_str) == Some(code))
            .filter_map(|f| f.get("values")?.as_array())
            .flatten()
            .filter_map(|v| v.get("value")?.as_str())
            .any(|value| match self {
                ContactKey::Email(_) => value.trim().to_lowercase() == *wanted,
                ContactKey::Phone(_) => {
                    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
                    last_ten(&digits) == *wanted
                }
            })
    }
}

/// The lead of a list answer whose name carries our id.
fn named_for(resp: &Value, lead: &Lead) -> Option<Value> {
    embedded(resp, "leads")
        .into_iter()
        .flatten()
        .find(|l| {
            l.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.contains(&lead.id))
        })
        .cloned()
}

fn last_ten(digits: &str) -> String {
    digits[digits.len().saturating_sub(10)..].to_string()
}

/// The body of `POST /api/v4/leads/complex` for one lead.
pub(crate) fn complex_lead_body(lead: &Lead, contact: ContactLink, cfg: &AmoConfig) -> Value {
    let r = &lead.request;
    let mut fields = Vec::new();
    let equipment = r.equipment.as_ref();
    let text_field = |field_id: i64, value: &str| json!({ "field_id": field_id, "values": [{ "value": value }] });
    if let Some(serial) = equipment
        .and_then(|e| e.serial.as_deref())
        .filter(|s| !s.trim().is_empty())
    {
        fields.push(text_field(cfg.field_serial, serial.trim()));
    }
    if let Some(model) = equipment
        .and_then(|e| e.model.as_deref())
        .filter(|s| !s.trim().is_empty())
    {
        fields.push(text_field(cfg.field_model, model.trim()));
    }
    if let Some(tg) = r.telegram_id {
        fields.push(text_field(cfg.field_telegram_id, &tg.to_string()));
    }

    let contact = match contact {
        ContactLink::Existing(id) => json!({ "id": id }),
        ContactLink::CreateNew => {
            let mut contact_fields = Vec::new();
            if let Some(phone) = &r.phone {
                contact_fields.push(json!({
                    "field_code": "PHONE",
                    "values": [{ "value": phone, "enum_code": "WORK" }],
                }));
            }
            if let Some(email) = &r.email {
                contact_fields.push(json!({
                    "field_code": "EMAIL",
                    "values": [{ "value": email, "enum_code": "WORK" }],
                }));
            }
            let mut c = json!({
                "name": r.name,
                "responsible_user_id": cfg.responsible_user_id,
            });
            // amoCRM rejects an empty collection (`TooFew`), so leave it out.
            if !contact_fields.is_empty() {
                c["custom_fields_values"] = Value::Array(contact_fields);
            }
            c
        }
    };

    let mut tags = vec![
        json!({ "name": r.source.as_str() }),
        json!({ "name": r.intent.as_str() }),
    ];
    if r.telegram_unverified && r.telegram_id.is_some() {
        tags.push(json!({ "name": UNVERIFIED_TELEGRAM_TAG }));
    }
    let mut item = json!({
        "name": lead_title(lead),
        "price": r.total_roubles(),
        "pipeline_id": cfg.pipeline_id,
        "status_id": cfg.status_id,
        "responsible_user_id": cfg.responsible_user_id,
        "_embedded": {
            "tags": tags,
            "contacts": [contact],
        },
        "request_id": lead.id,
    });
    if !fields.is_empty() {
        item["custom_fields_values"] = Value::Array(fields);
    }
    json!([item])
}

#[derive(Debug, PartialEq, Eq)]
struct ComplexCreated {
    lead: CrmLeadRef,
    merged: bool,
}

/// `[{"id","contact_id","company_id","request_id":[…],"merged"}]`: the item carrying our
/// request id, else the only/first one.
fn parse_complex_response(resp: &Value, request_id: &str) -> Option<ComplexCreated> {
    let items = resp.as_array()?;
    let ours = |i: &&Value| match i.get("request_id") {
        Some(Value::Array(ids)) => ids.iter().any(|id| id.as_str() == Some(request_id)),
        Some(Value::String(id)) => id == request_id,
        _ => false,
    };
    let item = items.iter().find(ours).or_else(|| items.first())?;
    Some(ComplexCreated {
        lead: CrmLeadRef {
            lead_id: item.get("id")?.as_i64()?,
            contact_id: item.get("contact_id").and_then(Value::as_i64),
        },
        merged: item.get("merged").and_then(Value::as_bool).unwrap_or(false),
    })
}

#[async_trait::async_trait]
impl crate::ports::CrmProbe for AmoClient {
    async fn create_test_lead(&self) -> Result<i64, CrmFailure> {
        Ok(AmoClient::create_test_lead(self).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::amocrm::CrmErrorKind;
    use crate::amocrm::testkit::{Canned, CannedServer, LogCapture, client_for};
    use crate::leads::fixtures::{accepted, cart_request};
    use crate::leads::{CartItem, Intent, LeadRequest, MachineRef, Source};

    const LEAD_ID: &str = "01JKXYZ0000000000000000000";

    /// The sample order as a service request from the Mini App.
    fn service_lead() -> Lead {
        let request = LeadRequest {
            source: Source::Tma,
            intent: Intent::Service,
            message: Some("Станок не включается".into()),
            items: vec![CartItem {
                sku: None,
                name: "Ремень".into(),
                qty: 3,
                price_kopecks: 150_050,
            }],
            page_url: None,
            utm: BTreeMap::new(),
            ..cart_request()
        };
        let received_at = Utc.with_ymd_and_hms(2026, 2, 9, 10, 0, 0).unwrap();
        accepted(LEAD_ID, received_at, request)
    }

    fn contact(id: i64, phones: &[&str], emails: &[&str]) -> Value {
        let values = |vs: &[&str]| -> Vec<Value> {
            vs.iter()
                .map(|v| json!({"value": v, "enum_id": 1, "enum_code": "WORK"}))
                .collect()
        };
        json!({
            "id": id,
            "name": "x",
            "custom_fields_values": [
                {"field_id": 1, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext", "values": values(phones)},
                {"field_id": 2, "field_name": "Email", "field_code": "EMAIL", "field_type": "multitext", "values": values(emails)},
            ],
        })
    }

    #[tokio::test]
    async fn create_lead_sends_the_complex_body_with_config_ids_and_a_new_contact() {
        let server = CannedServer::start(vec![Canned::json(
            200,
            &format!(r#"[{{"id":31001,"contact_id":42001,"company_id":null,"request_id":["{LEAD_ID}"],"merged":false}}]"#),
        )])
        .await;
        let (client, _) = client_for(&server, "tok");
        let lead = service_lead();
        let created = client
            .create_lead(&lead, ContactLink::CreateNew)
            .await
            .unwrap();
        assert_eq!(
            created,
            CrmLeadRef {
                lead_id: 31001,
                contact_id: Some(42001)
            }
        );

        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("POST", "/api/v4/leads/complex")
        );
        assert_eq!(reqs[0].bearer.as_deref(), Some("tok"));
        let expected = json!([{
            "name": lead_title(&lead),
            "price": 4502,
            "pipeline_id": 10226282,
            "status_id": 80953554,
            "responsible_user_id": 12380450,
            "custom_fields_values": [
                {"field_id": 712629, "values": [{"value": "SN-001"}]},
                {"field_id": 712631, "values": [{"value": "16К20"}]},
                {"field_id": 712633, "values": [{"value": "123456789"}]},
            ],
            "_embedded": {
                "tags": [{"name": "tma"}, {"name": "service"}],
                "contacts": [{
                    "name": "Иван Петров",
                    "responsible_user_id": 12380450,
                    "custom_fields_values": [
                        {"field_code": "PHONE", "values": [{"value": "+79123456789", "enum_code": "WORK"}]},
                        {"field_code": "EMAIL", "values": [{"value": "ivan@example.ru", "enum_code": "WORK"}]},
                    ],
                }],
            },
            "request_id": LEAD_ID,
        }]);
        assert_eq!(reqs[0].body.as_ref(), Some(&expected));
        assert!(lead_title(&lead).contains(LEAD_ID));
    }

    #[tokio::test]
    async fn create_lead_links_an_existing_contact_and_leaves_out_absent_fields() {
        let server = CannedServer::start(vec![Canned::json(
            200,
            r#"[{"id":31002,"contact_id":null,"company_id":null,"request_id":["x"],"merged":true}]"#,
        )])
        .await;
        let (client, _) = client_for(&server, "tok");
        let mut lead = service_lead();
        lead.request.intent = Intent::Parts;
        lead.request.source = Source::Cart;
        lead.request.equipment = Some(MachineRef {
            model: Some("1К62".into()),
            serial: None,
        });
        lead.request.telegram_id = None;
        lead.request.items.clear();
        let created = client
            .create_lead(&lead, ContactLink::Existing(777))
            .await
            .unwrap();
        assert_eq!(
            created,
            CrmLeadRef {
                lead_id: 31002,
                contact_id: Some(777)
            }
        );

        let body = server.requests()[0].body.clone().unwrap();
        assert_eq!(body[0]["price"], 0);
        assert_eq!(
            body[0]["custom_fields_values"],
            json!([{"field_id": 712631, "values": [{"value": "1К62"}]}])
        );
        assert_eq!(body[0]["_embedded"]["contacts"], json!([{"id": 777}]));
        assert_eq!(
            body[0]["_embedded"]["tags"],
            json!([{"name": "cart"}, {"name": "parts"}])
        );

        // No equipment and no Telegram id: no custom_fields_values at all (amoCRM says TooFew).
        lead.request.equipment = None;
        let body = complex_lead_body(&lead, ContactLink::CreateNew, client.config());
        assert!(body[0].get("custom_fields_values").is_none());
    }

    #[tokio::test]
    async fn create_lead_validation_error_is_permanent_and_names_the_variable() {
        let server = CannedServer::start(vec![Canned::json(
            400,
            r#"{"validation-errors":[{"request_id":"0","errors":[{"code":"NotSupportedChoice","path":"pipeline_id","detail":"The value you selected is not a valid choice."}]}],"title":"Bad Request","type":"https://httpstatus.es/400","status":400,"detail":"Request validation failed"}"#,
        )])
        .await;
        let (client, _) = client_for(&server, "tok");
        let e = client
            .create_lead(&service_lead(), ContactLink::CreateNew)
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Permanent);
        assert!(e.hint.contains("AMOCRM_PIPELINE_ID=10226282"), "{}", e.hint);
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn find_contact_keeps_only_a_real_phone_match() {
        let list = json!({
            "_page": 1,
            "_embedded": {"contacts": [
                contact(1, &["+7 (912) 345-67-00"], &[]),
                contact(2, &["8 912 345-67-89"], &["other@example.ru"]),
                contact(3, &["+79123456789"], &[]),
            ]}
        });
        let server = CannedServer::start(vec![Canned::json(200, &list.to_string())]).await;
        let (client, _) = client_for(&server, "tok");
        assert_eq!(client.find_contact("+79123456789").await.unwrap(), Some(2));
        let reqs = server.requests();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("GET", "/api/v4/contacts")
        );
        // The national number: it finds `8 912…` and `+7 912…` alike.
        assert_eq!(reqs[0].query, vec![("query".into(), "9123456789".into())]);
        assert_eq!(reqs[0].body, None);
    }

    #[tokio::test]
    async fn logs_carry_neither_the_token_nor_a_full_phone_or_email() {
        let (logs, _guard) = LogCapture::start();
        let server = CannedServer::start(vec![
            Canned::json(500, r#"{"title":"ErrInternalServer","status":500}"#),
            Canned::no_content(),
            Canned::no_content(),
        ])
        .await;
        let (client, _) = client_for(&server, "secret-bearer-value");
        client.find_contact("+79123456789").await.unwrap();
        client.find_contact("ivan.petrov@example.ru").await.unwrap();
        let text = logs.text();
        assert!(text.contains("/api/v4/contacts"), "{text}");
        assert!(text.contains("query=***6789"), "{text}");
        assert!(text.contains("query=i***@example.ru"), "{text}");
        for secret in [
            "secret-bearer-value",
            "79123456789",
            "9123456789",
            "ivan.petrov",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    #[tokio::test]
    async fn find_contact_matches_email_case_insensitively_and_ignores_fuzzy_hits() {
        let list = json!({"_embedded": {"contacts": [
            contact(5, &[], &["ivan@example.ru.old"]),
            contact(6, &[], &[" Ivan@Example.RU "]),
        ]}});
        let fuzzy_only = json!({"_embedded": {"contacts": [contact(7, &["+79000000000"], &["ivanov@example.ru"])]}});
        let server = CannedServer::start(vec![
            Canned::json(200, &list.to_string()),
            Canned::json(200, &fuzzy_only.to_string()),
            Canned::no_content(),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        assert_eq!(
            client.find_contact("ivan@example.ru").await.unwrap(),
            Some(6)
        );
        assert_eq!(client.find_contact("ivan@example.ru").await.unwrap(), None);
        assert_eq!(
            client.find_contact("+79123456789").await.unwrap(),
            None,
            "204 means nobody"
        );
        assert_eq!(server.requests().len(), 3);
        // Nothing that could identify a contact: no request at all.
        assert_eq!(client.find_contact("  ").await.unwrap(), None);
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test]
    async fn find_contact_retries_server_errors() {
        let server = CannedServer::start(vec![
            Canned::json(500, r#"{"title":"ErrInternalServer","status":500}"#),
            Canned::html(504, "<html><title>504 Gateway Time-out</title></html>"),
            Canned::json(
                200,
                &json!({"_embedded": {"contacts": [contact(9, &["79123456789"], &[])]}})
                    .to_string(),
            ),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        assert_eq!(client.find_contact("+79123456789").await.unwrap(), Some(9));
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test]
    async fn find_lead_for_reads_the_leads_created_around_the_attempt_then_falls_back_to_query() {
        let list = json!({
            "_page": 1,
            "_embedded": {"leads": [
                {"id": 100, "name": "Заявка 01JKXYZ0000000000000000001: сервис", "_embedded": {"contacts": []}},
                {"id": 101, "name": format!("Заявка {LEAD_ID}: сервис (Telegram Mini App) — Иван"),
                 "_embedded": {"tags": [], "contacts": [
                    {"id": 501, "is_main": false},
                    {"id": 502, "is_main": true},
                 ]}},
            ]}
        });
        let others = json!({"_page": 1, "_embedded": {"leads": [
            {"id": 100, "name": "Заявка 01JKXYZ0000000000000000001: сервис", "_embedded": {"contacts": []}},
        ]}});
        let server = CannedServer::start(vec![
            // Found by the filters at once.
            Canned::json(200, &list.to_string()),
            // Not among the leads of the window: the full-text search finds it.
            Canned::json(200, &others.to_string()),
            Canned::json(200, &list.to_string()),
            // Nowhere.
            Canned::no_content(),
            Canned::no_content(),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let lead = service_lead();
        let started = chrono::DateTime::from_timestamp(1_770_000_000, 0).unwrap();
        let ours = Some(CrmLeadRef {
            lead_id: 101,
            contact_id: Some(502),
        });
        assert_eq!(client.find_lead_for(&lead, started).await.unwrap(), ours);
        let reqs = server.requests();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("GET", "/api/v4/leads")
        );
        let q = |name: &str| {
            reqs[0]
                .query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(q("filter[created_at][from]").as_deref(), Some("1769999880"));
        assert_eq!(q("filter[pipeline_id][]").as_deref(), Some("10226282"));
        assert_eq!(
            q("filter[responsible_user_id][]").as_deref(),
            Some("12380450")
        );
        assert_eq!(
            q("query"),
            None,
            "no full-text search when the filters find it"
        );

        assert_eq!(client.find_lead_for(&lead, started).await.unwrap(), ours);
        let reqs = server.requests();
        assert_eq!(
            reqs[2].query,
            vec![
                ("query".into(), LEAD_ID.into()),
                ("with".into(), "contacts".into())
            ]
        );
        assert_eq!(client.find_lead_for(&lead, started).await.unwrap(), None);
        assert_eq!(server.requests().len(), 5);
    }

    #[tokio::test]
    async fn notes_are_added_and_found_by_marker() {
        let notes = json!({
            "_page": 1,
            "_embedded": {"notes": [
                {"id": 9001, "entity_id": 31001, "note_type": "common", "params": {"text": "другая"}},
                {"id": 9002, "entity_id": 31001, "note_type": "common", "params": {"text": format!("Заявка {LEAD_ID}\nСтанок не включается")}},
                {"id": 9003, "entity_id": 31001, "note_type": "call_in", "params": {"uniq": "x"}},
            ]}
        });
        let server = CannedServer::start(vec![
            Canned::json(200, r#"{"_links":{},"_embedded":{"notes":[{"id":9002,"entity_id":31001,"request_id":"0"}]}}"#),
            Canned::json(200, &notes.to_string()),
            Canned::no_content(),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let text = format!("Заявка {LEAD_ID}\nСтанок не включается");
        assert_eq!(client.add_note(31001, &text).await.unwrap(), 9002);
        assert_eq!(client.find_note(31001, LEAD_ID).await.unwrap(), Some(9002));
        assert_eq!(
            client.find_note(31001, LEAD_ID).await.unwrap(),
            None,
            "204: no notes"
        );

        let reqs = server.requests();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("POST", "/api/v4/leads/notes")
        );
        assert_eq!(
            reqs[0].body,
            Some(json!([{"entity_id": 31001, "note_type": "common", "params": {"text": text}}]))
        );
        assert_eq!(
            (reqs[1].method.as_str(), reqs[1].path.as_str()),
            ("GET", "/api/v4/leads/31001/notes")
        );
        assert_eq!(reqs[1].query, vec![("limit".into(), "250".into())]);
    }

    #[tokio::test]
    async fn test_lead_and_account() {
        let server = CannedServer::start(vec![
            Canned::json(200, r#"{"_links":{"self":{"href":"x"}},"_embedded":{"leads":[{"id":31999,"request_id":"test","_links":{}}]}}"#),
            Canned::json(200, r#"{"id":31234567,"name":"РусСтанкоСбыт","subdomain":"new599bd9d13818a"}"#),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        assert_eq!(client.create_test_lead().await.unwrap(), 31999);
        assert_eq!(client.account().await.unwrap()["id"], 31234567);

        let reqs = server.requests();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("POST", "/api/v4/leads")
        );
        let item = &reqs[0].body.as_ref().unwrap()[0];
        assert!(
            item["name"]
                .as_str()
                .unwrap()
                .starts_with("Тестовая заявка (проверка связи) 20")
        );
        assert!(item["name"].as_str().unwrap().ends_with(" UTC"));
        assert_eq!(
            (
                &item["pipeline_id"],
                &item["status_id"],
                &item["responsible_user_id"]
            ),
            (&json!(10226282), &json!(80953554), &json!(12380450))
        );
        assert_eq!(item["_embedded"]["tags"], json!([{"name": "test"}]));
        assert_eq!(
            (reqs[1].method.as_str(), reqs[1].path.as_str()),
            ("GET", "/api/v4/account")
        );
    }

    #[test]
    fn complex_response_picks_our_request_id() {
        let resp = json!([
            {"id": 1, "contact_id": 10, "request_id": ["other"], "merged": false},
            {"id": 2, "contact_id": 20, "request_id": [LEAD_ID, "dup"], "merged": true},
        ]);
        assert_eq!(
            parse_complex_response(&resp, LEAD_ID),
            Some(ComplexCreated {
                lead: CrmLeadRef {
                    lead_id: 2,
                    contact_id: Some(20)
                },
                merged: true
            })
        );
        assert_eq!(parse_complex_response(&json!([]), LEAD_ID), None);
        assert_eq!(parse_complex_response(&json!({"id": 1}), LEAD_ID), None);
    }
}
