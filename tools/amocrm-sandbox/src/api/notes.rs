//! Lead notes: `POST /api/v4/leads/notes` (and `/leads/{id}/notes`), `GET` lists. The lead
//! must exist and a `common` note needs non-empty `params.text`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::errors::{ApiError, Violations};
use crate::model::Note;
use crate::seed::ADMIN_USER_ID;
use crate::state::{Sb, State as Account, next};

use super::params::{self, Params};
use super::render::self_link;
use super::{MAX_BATCH, batch_body, check, check_batch, hal, list_page, path_id, request_id_of};

/// Note types amoCRM accepts from integrations; those with text need `params.text`.
const NOTE_TYPES: &[&str] = &[
    "common",
    "call_in",
    "call_out",
    "service_message",
    "extended_service_message",
    "message_cashier",
    "geolocation",
    "sms_in",
    "sms_out",
    "attachment",
];
const TEXT_NOTES: &[&str] = &[
    "common",
    "service_message",
    "extended_service_message",
    "sms_in",
    "sms_out",
];

fn check_note(
    st: &Account,
    item: &Value,
    entity_id: Option<i64>,
    v: &mut Violations,
) -> Option<(i64, String, Value)> {
    if !check::object(item, v) {
        return None;
    }
    let entity_id = match entity_id {
        Some(id) => Some(id),
        None => match check::int(item, "entity_id", "entity_id", v) {
            Some(id) if st.leads.contains_key(&id) => Some(id),
            Some(_) => {
                v.not_a_choice("entity_id");
                None
            }
            None => {
                if item.get("entity_id").is_none_or(Value::is_null) {
                    v.blank("entity_id");
                }
                None
            }
        },
    };
    let note_type = match check::string(item, "note_type", "note_type", v) {
        Some(t) if NOTE_TYPES.contains(&t.as_str()) => Some(t),
        Some(_) => {
            v.not_a_choice("note_type");
            None
        }
        None => {
            if item.get("note_type").is_none_or(Value::is_null) {
                v.blank("note_type");
            }
            None
        }
    };
    let params = item.get("params").cloned().unwrap_or(Value::Null);
    if !params.is_object() {
        if params.is_null() {
            v.blank("params");
        } else {
            v.invalid_type("params", "object");
        }
        return None;
    }
    if let Some(t) = &note_type
        && TEXT_NOTES.contains(&t.as_str())
    {
        match params.get("text") {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(Value::String(_)) | None | Some(Value::Null) => v.blank("params.text"),
            Some(_) => v.invalid_type("params.text", "string"),
        }
    }
    Some((entity_id?, note_type?, params))
}

fn add_notes(sb: &Sb, body: &Bytes, entity_id: Option<i64>) -> Result<Response, ApiError> {
    let items = batch_body(body, MAX_BATCH)?;
    let now = sb.clock.now();
    let base = sb.base_url();
    let mut st = sb.lock();
    if let Some(id) = entity_id
        && !st.leads.contains_key(&id)
    {
        return Err(ApiError::NotFound);
    }
    let checked = check_batch(&items, |item, v| check_note(&st, item, entity_id, v))?;
    let mut out = Vec::new();
    for (i, (item, (entity_id, note_type, params))) in items.iter().zip(checked).enumerate() {
        let id = next(&mut st.ids.note);
        st.notes.insert(
            id,
            Note {
                id,
                entity_id,
                note_type,
                params,
                created_by: ADMIN_USER_ID,
                created_at: now,
                updated_at: now,
                responsible_user_id: ADMIN_USER_ID,
            },
        );
        out.push(json!({
            "id": id,
            "entity_id": entity_id,
            "request_id": request_id_of(item, i),
            "_links": self_link(base, &format!("/api/v4/leads/{entity_id}/notes/{id}")),
        }));
    }
    Ok(hal(
        StatusCode::OK,
        json!({ "_links": self_link(base, "/api/v4/leads/notes"), "_embedded": { "notes": out } }),
    ))
}

/// `POST /api/v4/leads/notes`.
pub async fn add(State(sb): State<Sb>, body: Bytes) -> Result<Response, ApiError> {
    add_notes(&sb, &body, None)
}

/// `POST /api/v4/leads/{id}/notes`.
pub async fn add_for_lead(
    State(sb): State<Sb>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    add_notes(&sb, &body, Some(path_id(&id)?))
}

pub fn render(account_id: i64, base: &str, n: &Note) -> Value {
    json!({
        "id": n.id,
        "entity_id": n.entity_id,
        "created_by": n.created_by,
        "updated_by": n.created_by,
        "created_at": n.created_at,
        "updated_at": n.updated_at,
        "responsible_user_id": n.responsible_user_id,
        "group_id": 0,
        "note_type": n.note_type,
        "params": n.params,
        "account_id": account_id,
        "_links": self_link(base, &format!("/api/v4/leads/{}/notes/{}", n.entity_id, n.id)),
    })
}

fn list_notes(
    sb: &Sb,
    params: &Params,
    lead: Option<i64>,
    path: &str,
) -> Result<Response, ApiError> {
    let page = params::page(params)?;
    let st = sb.lock();
    let entity_ids = params.ints("filter[entity_id]");
    let types = params.list("filter[note_type]");
    let items = st
        .notes
        .values()
        .filter(|n| lead.is_none_or(|l| n.entity_id == l))
        .filter(|n| entity_ids.is_empty() || entity_ids.contains(&n.entity_id))
        .filter(|n| types.is_empty() || types.contains(&n.note_type))
        .map(|n| render(sb.cfg.account_id, sb.base_url(), n))
        .collect();
    Ok(list_page(sb, path, params, page, "notes", items))
}

/// `GET /api/v4/leads/notes`.
pub async fn list(State(sb): State<Sb>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    list_notes(
        &sb,
        &Params::parse(query.as_deref()),
        None,
        "/api/v4/leads/notes",
    )
}

/// `GET /api/v4/leads/{id}/notes`.
pub async fn list_for_lead(
    State(sb): State<Sb>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    list_notes(
        &sb,
        &Params::parse(query.as_deref()),
        Some(id),
        &format!("/api/v4/leads/{id}/notes"),
    )
}
