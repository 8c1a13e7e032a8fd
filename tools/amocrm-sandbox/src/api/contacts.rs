//! `GET/POST /api/v4/contacts`, `GET /api/v4/contacts/{id}`: contacts with PHONE/EMAIL, the
//! `query=` search (name, e-mail substring, phone digits substring), and the contact checks
//! `/leads/complex` reuses.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::errors::{ApiError, Violations};
use crate::model::{Contact, Entity};
use crate::seed::ADMIN_USER_ID;
use crate::state::{Sb, State as Account, next};
use crate::webhooks;

use super::field_values::{self, FieldPatch};
use super::params::{self, Params};
use super::render::{self, self_link};
use super::{MAX_BATCH, batch_body, check, check_batch, hal, list_page, path_id, request_id_of};

/// A checked new contact.
#[derive(Debug, Clone, Default)]
pub struct ContactDraft {
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub responsible_user_id: Option<i64>,
    pub fields: Vec<FieldPatch>,
    pub tag_names: Vec<String>,
}

/// Checks a new contact; every path is prefixed with `prefix` (e.g. `_embedded.contacts.0.`).
pub fn parse(st: &Account, item: &Value, prefix: &str, v: &mut Violations) -> ContactDraft {
    let mut d = ContactDraft::default();
    if !item.is_object() {
        v.invalid_type(prefix.trim_end_matches('.'), "object");
        return d;
    }
    let path = |key: &str| format!("{prefix}{key}");
    d.name = check::string(item, "name", &path("name"), v);
    d.first_name = check::string(item, "first_name", &path("first_name"), v);
    d.last_name = check::string(item, "last_name", &path("last_name"), v);
    // A wrong type and an unknown user are reported together, as amoCRM does.
    match item.get("responsible_user_id") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.is_i64() => match n.as_i64().filter(|id| st.is_user(*id)) {
            Some(id) => d.responsible_user_id = Some(id),
            None => v.not_a_choice(&path("responsible_user_id")),
        },
        Some(_) => {
            v.invalid_type(&path("responsible_user_id"), "int");
            v.not_a_choice(&path("responsible_user_id"));
        }
    }
    if let Some(raw) = item.get("custom_fields_values") {
        d.fields = field_values::parse(st, Entity::Contacts, raw, &path("custom_fields_values"), v);
    }
    if let Some(tags) = item.get("_embedded").and_then(|e| e.get("tags")) {
        match tags {
            Value::Array(tags) => {
                for (i, tag) in tags.iter().enumerate() {
                    match tag.get("name") {
                        Some(Value::String(n)) if !n.trim().is_empty() => {
                            d.tag_names.push(n.trim().to_string())
                        }
                        _ => v.blank(&path(&format!("_embedded.tags.{i}.name"))),
                    }
                }
            }
            Value::Null => {}
            _ => v.invalid_type(&path("_embedded.tags"), "array"),
        }
    }
    d
}

/// Creates a checked contact and returns its id.
pub fn create(st: &mut Account, d: &ContactDraft, now: i64, user: i64) -> i64 {
    let id = next(&mut st.ids.contact);
    let first = d.first_name.clone().unwrap_or_default();
    let last = d.last_name.clone().unwrap_or_default();
    let name = d
        .name
        .clone()
        .unwrap_or_else(|| format!("{first} {last}").trim().to_string());
    let tag_ids = d.tag_names.iter().map(|n| st.tag_named(n)).collect();
    let mut custom_fields = Vec::new();
    field_values::apply(&mut custom_fields, &d.fields);
    st.contacts.insert(
        id,
        Contact {
            id,
            name,
            first_name: first,
            last_name: last,
            responsible_user_id: d.responsible_user_id.unwrap_or(user),
            created_by: user,
            updated_by: user,
            created_at: now,
            updated_at: now,
            custom_fields,
            tag_ids,
            company_ids: Vec::new(),
        },
    );
    id
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// amoCRM's `query=`: a substring of the name or of a field value; phone-like queries are
/// compared by digits (so `+7 (912) 345` finds `79123456789`, but `+7…` does not find `8…`).
fn matches_query(contact: &Contact, query: &str) -> bool {
    let q = query.trim().to_lowercase();
    if q.is_empty() {
        return true;
    }
    if contact.name.to_lowercase().contains(&q) {
        return true;
    }
    let phone_like = q.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c));
    let q_digits = digits(&q);
    field_values::texts(&contact.custom_fields).any(|value| {
        value.to_lowercase().contains(&q)
            || (phone_like && !q_digits.is_empty() && digits(&value).contains(&q_digits))
    })
}

/// `GET /api/v4/contacts`.
pub async fn list(State(sb): State<Sb>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let page = params::page(&params)?;
    let st = sb.lock();
    let ids = params.ints("filter[id]");
    let q = params.get("query").unwrap_or("");
    let with_leads = params.with("leads");
    // A search index sees a contact only `search_lag_ms` after it was created or changed.
    let indexed_to = (sb.clock.now_ms() - st.search_lag_ms as i64).div_euclid(1000);
    let items = st
        .contacts
        .values()
        .filter(|c| ids.is_empty() || ids.contains(&c.id))
        .filter(|c| q.trim().is_empty() || c.updated_at.max(c.created_at) <= indexed_to)
        .filter(|c| matches_query(c, q))
        .map(|c| render::contact(&st, sb.cfg.account_id, sb.base_url(), c, with_leads))
        .collect();
    Ok(list_page(
        &sb,
        "/api/v4/contacts",
        &params,
        page,
        "contacts",
        items,
    ))
}

/// `GET /api/v4/contacts/{id}`.
pub async fn get_one(
    State(sb): State<Sb>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let params = Params::parse(query.as_deref());
    let st = sb.lock();
    let contact = st.contacts.get(&id).ok_or(ApiError::NotFound)?;
    Ok(hal(
        StatusCode::OK,
        render::contact(
            &st,
            sb.cfg.account_id,
            sb.base_url(),
            contact,
            params.with("leads"),
        ),
    ))
}

/// `POST /api/v4/contacts`.
pub async fn add(State(sb): State<Sb>, body: Bytes) -> Result<Response, ApiError> {
    let items = batch_body(&body, MAX_BATCH)?;
    let now = sb.clock.now();
    let base = sb.base_url();
    let mut st = sb.lock();
    let drafts = check_batch(&items, |item, v| Some(parse(&st, item, "", v)))?;
    let mut out = Vec::new();
    let mut ids = Vec::new();
    for (i, (item, draft)) in items.iter().zip(&drafts).enumerate() {
        let id = create(&mut st, draft, now, ADMIN_USER_ID);
        ids.push(id);
        out.push(json!({
            "id": id,
            "request_id": request_id_of(item, i),
            "_links": self_link(base, &format!("/api/v4/contacts/{id}")),
        }));
    }
    webhooks::contacts_added(&sb, &mut st, &ids);
    Ok(hal(
        StatusCode::OK,
        json!({ "_links": self_link(base, "/api/v4/contacts"), "_embedded": { "contacts": out } }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact_with_phone(phone: &str) -> Contact {
        Contact {
            id: 1,
            name: "Иван Петров".into(),
            first_name: String::new(),
            last_name: String::new(),
            responsible_user_id: 1,
            created_by: 1,
            updated_by: 1,
            created_at: 0,
            updated_at: 0,
            custom_fields: vec![crate::model::FieldValues {
                field_id: crate::seed::FIELD_PHONE,
                values: vec![json!({"value": phone, "enum_id": 1, "enum_code": "WORK"})],
            }],
            tag_ids: vec![],
            company_ids: vec![],
        }
    }

    #[test]
    fn phone_search_is_a_digits_substring() {
        let c = contact_with_phone("+7 (912) 345-67-89");
        assert!(matches_query(&c, "79123456789"));
        assert!(matches_query(&c, "9123456789"));
        assert!(!matches_query(&c, "89123456789"));
        assert!(matches_query(&c, "иван"));
        assert!(!matches_query(&c, "сидоров"));
    }
}
