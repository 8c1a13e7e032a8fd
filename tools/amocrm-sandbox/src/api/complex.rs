//! `POST /api/v4/leads/complex`: up to 50 leads, each with at most one contact (new, or an
//! existing one by `id`) and one company, created atomically. The answer is a plain array
//! `[{"id","contact_id","company_id","request_id":["…"],"merged":false}]`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::errors::{ApiError, Violations};
use crate::model::Company;
use crate::seed::ADMIN_USER_ID;
use crate::state::{Sb, State as Account, next};
use crate::webhooks::{self, LeadChange};

use super::contacts::{self, ContactDraft};
use super::lead_input::{self, LeadDraft, Mode};
use super::leads::refuse_large_batch;
use super::{batch_body, check_batch, hal, request_id_of};

/// amoCRM's limit for this endpoint.
pub const MAX_COMPLEX: usize = 50;

enum ContactPart {
    None,
    Existing(i64),
    New(ContactDraft),
}

enum CompanyPart {
    None,
    Existing(i64),
    New(String),
}

struct Checked {
    lead: LeadDraft,
    contact: ContactPart,
    company: CompanyPart,
}

/// The single embedded item of `_embedded.{key}` (0 or 1 allowed).
fn single<'a>(item: &'a Value, key: &str, v: &mut Violations) -> Option<&'a Value> {
    match item.get("_embedded").and_then(|e| e.get(key)) {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if list.len() > 1 => {
            v.too_many(&format!("_embedded.{key}"), 1);
            None
        }
        Some(Value::Array(list)) => list.first(),
        Some(_) => {
            v.invalid_type(&format!("_embedded.{key}"), "array");
            None
        }
    }
}

fn check_item(st: &Account, item: &Value, v: &mut Violations) -> Checked {
    // Contacts and companies here are new entities, not links: the lead checks see the rest.
    let mut lead_part = item.clone();
    if let Some(embedded) = lead_part
        .get_mut("_embedded")
        .and_then(Value::as_object_mut)
    {
        embedded.remove("contacts");
        embedded.remove("companies");
    }
    let lead = lead_input::parse(st, &lead_part, Mode::Create, None, v);
    let contact = match single(item, "contacts", v) {
        None => ContactPart::None,
        Some(c) => match c.get("id") {
            Some(Value::Number(n)) => match n.as_i64().filter(|id| st.contacts.contains_key(id)) {
                Some(id) => ContactPart::Existing(id),
                None => {
                    v.not_a_choice("_embedded.contacts.0.id");
                    ContactPart::None
                }
            },
            Some(id) if !id.is_null() => {
                v.invalid_type("_embedded.contacts.0.id", "int");
                ContactPart::None
            }
            _ => ContactPart::New(contacts::parse(st, c, "_embedded.contacts.0.", v)),
        },
    };
    let company = match single(item, "companies", v) {
        None => CompanyPart::None,
        Some(c) => match (c.get("id"), c.get("name")) {
            (Some(Value::Number(n)), _) => {
                match n.as_i64().filter(|id| st.companies.contains_key(id)) {
                    Some(id) => CompanyPart::Existing(id),
                    None => {
                        v.not_a_choice("_embedded.companies.0.id");
                        CompanyPart::None
                    }
                }
            }
            (_, Some(Value::String(name))) => CompanyPart::New(name.clone()),
            (_, Some(_)) => {
                v.invalid_type("_embedded.companies.0.name", "string");
                CompanyPart::None
            }
            _ => CompanyPart::New(String::new()),
        },
    };
    Checked {
        lead,
        contact,
        company,
    }
}

/// `POST /api/v4/leads/complex`.
pub async fn add(State(sb): State<Sb>, body: Bytes) -> Result<Response, ApiError> {
    let items = batch_body(&body, MAX_COMPLEX)?;
    let now = sb.clock.now();
    let mut st = sb.lock();
    refuse_large_batch(&st, items.len())?;

    let checked = check_batch(&items, |item, v| Some(check_item(&st, item, v)))?;

    let mut out = Vec::new();
    let mut new_contacts = Vec::new();
    let mut changes = Vec::new();
    for (i, (item, c)) in items.iter().zip(checked).enumerate() {
        let contact_id = match &c.contact {
            ContactPart::None => None,
            ContactPart::Existing(id) => Some(*id),
            ContactPart::New(draft) => {
                let id = contacts::create(&mut st, draft, now, ADMIN_USER_ID);
                new_contacts.push(id);
                Some(id)
            }
        };
        let company_id = match c.company {
            CompanyPart::None => None,
            CompanyPart::Existing(id) => Some(id),
            CompanyPart::New(name) => {
                let id = next(&mut st.ids.company);
                st.companies.insert(
                    id,
                    Company {
                        id,
                        name,
                        created_at: now,
                    },
                );
                Some(id)
            }
        };
        let mut lead = c.lead;
        lead.contact_ids = contact_id.into_iter().collect();
        lead.company_ids = company_id.into_iter().collect();
        // A new contact and a new company of one lead are linked together.
        if let (Some(contact), Some(company)) = (contact_id, company_id)
            && let Some(contact) = st.contacts.get_mut(&contact)
            && !contact.company_ids.contains(&company)
        {
            contact.company_ids.push(company);
        }
        let id = lead_input::create(&mut st, &lead, now, ADMIN_USER_ID);
        changes.push((id, LeadChange::Added));
        out.push(json!({
            "id": id,
            "contact_id": contact_id,
            "company_id": company_id,
            "request_id": [request_id_of(item, i)],
            "merged": false,
        }));
    }
    webhooks::contacts_added(&sb, &mut st, &new_contacts);
    webhooks::leads_changed(&sb, &mut st, &changes);
    Ok(hal(StatusCode::OK, Value::Array(out)))
}
