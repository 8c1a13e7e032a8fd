//! `GET/POST/PATCH /api/v4/leads` and `GET/PATCH /api/v4/leads/{id}`: lists with amoCRM's
//! filters, ordering and paging; batch writes of up to 250 leads that are all-or-nothing.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::errors::{ApiError, ItemErrors, Violations};
use crate::model::Lead;
use crate::seed::ADMIN_USER_ID;
use crate::state::{Sb, State as Account};
use crate::webhooks::{self, LeadChange};

use super::field_values;
use super::lead_input::{self, LeadDraft, Mode};
use super::params::{self, Params};
use super::render::{self, self_link};
use super::{
    MAX_BATCH, batch_body, check, check_batch, hal, json_body, list_page, path_id, request_id_of,
};

fn in_range(value: Option<i64>, params: &Params, key: &str) -> bool {
    if let Some(exact) = params.int(key) {
        return value == Some(exact);
    }
    let from = params.int(&format!("{key}[from]"));
    let to = params.int(&format!("{key}[to]"));
    match (from, to) {
        (None, None) => true,
        _ => value.is_some_and(|v| from.is_none_or(|f| v >= f) && to.is_none_or(|t| v <= t)),
    }
}

/// Whether a lead passes `query=` and every `filter[...]` of the request. `query=` sees only
/// leads created or changed at or before `indexed_to` (unix seconds: the search index's lag).
fn matches(lead: &Lead, params: &Params, indexed_to: i64) -> bool {
    let ids = params.ints("filter[id]");
    if !ids.is_empty() && !ids.contains(&lead.id) {
        return false;
    }
    let names = params.list("filter[name]");
    if !names.is_empty() && !names.contains(&lead.name) {
        return false;
    }
    let pipelines = params.ints("filter[pipeline_id]");
    if !pipelines.is_empty() && !pipelines.contains(&lead.pipeline_id) {
        return false;
    }
    let users = params.ints("filter[responsible_user_id]");
    if !users.is_empty() && !users.contains(&lead.responsible_user_id) {
        return false;
    }
    let statuses = params.status_filters();
    if !statuses.is_empty()
        && !statuses.iter().any(|(p, s)| {
            p.is_none_or(|p| p == lead.pipeline_id) && s.is_none_or(|s| s == lead.status_id)
        })
    {
        return false;
    }
    if !in_range(Some(lead.updated_at), params, "filter[updated_at]")
        || !in_range(Some(lead.created_at), params, "filter[created_at]")
        || !in_range(lead.closed_at, params, "filter[closed_at]")
        || !in_range(Some(lead.price), params, "filter[price]")
    {
        return false;
    }
    match params.get("query").map(str::trim).filter(|q| !q.is_empty()) {
        None => true,
        Some(_) if lead.updated_at.max(lead.created_at) > indexed_to => false,
        Some(q) => {
            let q = q.to_lowercase();
            lead.id.to_string() == q
                || lead.name.to_lowercase().contains(&q)
                || field_values::texts(&lead.custom_fields).any(|t| t.to_lowercase().contains(&q))
        }
    }
}

/// `GET /api/v4/leads`.
pub async fn list(State(sb): State<Sb>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let page = params::page(&params)?;
    let st = sb.lock();
    let indexed_to = (sb.clock.now_ms() - st.search_lag_ms as i64).div_euclid(1000);
    let mut leads: Vec<&Lead> = st
        .leads
        .values()
        .filter(|l| matches(l, &params, indexed_to))
        .collect();
    if let Some((field, desc)) = params.order(&["created_at", "updated_at", "id"]) {
        let key = |l: &Lead| match field.as_str() {
            "created_at" => (l.created_at, l.id),
            "updated_at" => (l.updated_at, l.id),
            _ => (l.id, l.id),
        };
        leads.sort_by_key(|l| key(l));
        if desc {
            leads.reverse();
        }
    }
    let with_contacts = params.with("contacts");
    let items = leads
        .into_iter()
        .map(|l| render::lead(&st, sb.cfg.account_id, sb.base_url(), l, with_contacts))
        .collect();
    Ok(list_page(
        &sb,
        "/api/v4/leads",
        &params,
        page,
        "leads",
        items,
    ))
}

/// `GET /api/v4/leads/{id}`.
pub async fn get_one(
    State(sb): State<Sb>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let params = Params::parse(query.as_deref());
    let st = sb.lock();
    let lead = st.leads.get(&id).ok_or(ApiError::NotFound)?;
    Ok(hal(
        StatusCode::OK,
        render::lead(
            &st,
            sb.cfg.account_id,
            sb.base_url(),
            lead,
            params.with("contacts"),
        ),
    ))
}

/// Answers 504 (changing nothing) when a batch is larger than the configured threshold.
pub fn refuse_large_batch(st: &Account, len: usize) -> Result<(), ApiError> {
    match st.batch_504_above {
        Some(max) if len > max => Err(ApiError::Status(504)),
        _ => Ok(()),
    }
}

/// Checks a batch of leads; in update mode each item names an existing lead by `id`.
fn check_all(st: &Account, items: &[Value], mode: Mode) -> Result<Vec<LeadDraft>, ApiError> {
    check_batch(items, |item, v| {
        let existing = match mode {
            Mode::Create => None,
            Mode::Update => existing_lead(st, item, v),
        };
        Some(lead_input::parse(st, item, mode, existing, v))
    })
}

/// The lead an update item names by `id` (violations when missing or unknown).
fn existing_lead<'a>(st: &'a Account, item: &Value, v: &mut Violations) -> Option<&'a Lead> {
    match check::int(item, "id", "id", v) {
        Some(id) => {
            let lead = st.leads.get(&id);
            if lead.is_none() {
                v.not_a_choice("id");
            }
            lead
        }
        None => {
            if item.get("id").is_none() && item.is_object() {
                v.blank("id");
            }
            None
        }
    }
}

/// `POST /api/v4/leads`.
pub async fn add(State(sb): State<Sb>, body: Bytes) -> Result<Response, ApiError> {
    let items = batch_body(&body, MAX_BATCH)?;
    let now = sb.clock.now();
    let base = sb.base_url();
    let mut st = sb.lock();
    refuse_large_batch(&st, items.len())?;
    let drafts = check_all(&st, &items, Mode::Create)?;
    let mut out = Vec::new();
    let mut changes = Vec::new();
    for (i, (item, draft)) in items.iter().zip(&drafts).enumerate() {
        let id = lead_input::create(&mut st, draft, now, ADMIN_USER_ID);
        changes.push((id, LeadChange::Added));
        out.push(json!({
            "id": id,
            "request_id": request_id_of(item, i),
            "_links": self_link(base, &format!("/api/v4/leads/{id}")),
        }));
    }
    webhooks::leads_changed(&sb, &mut st, &changes);
    Ok(hal(
        StatusCode::OK,
        json!({ "_links": self_link(base, "/api/v4/leads"), "_embedded": { "leads": out } }),
    ))
}

/// Applies checked updates and sends their webhooks; returns `(id, updated_at)` per lead.
fn apply_updates(sb: &Sb, st: &mut Account, drafts: &[LeadDraft], user: i64) -> Vec<(i64, i64)> {
    let now = sb.clock.now();
    let mut changes = Vec::new();
    let mut out = Vec::new();
    for draft in drafts {
        if let (Some(id), Some(old_status)) = (draft.id, lead_input::update(st, draft, now, user)) {
            changes.push((
                id,
                LeadChange::Updated {
                    old_status_id: old_status,
                },
            ));
            out.push((id, st.leads.get(&id).map(|l| l.updated_at).unwrap_or(now)));
        }
    }
    webhooks::leads_changed(sb, st, &changes);
    out
}

/// `PATCH /api/v4/leads`.
pub async fn update_many(State(sb): State<Sb>, body: Bytes) -> Result<Response, ApiError> {
    let items = batch_body(&body, MAX_BATCH)?;
    let base = sb.base_url();
    let mut st = sb.lock();
    refuse_large_batch(&st, items.len())?;
    let drafts = check_all(&st, &items, Mode::Update)?;
    let updated = apply_updates(&sb, &mut st, &drafts, ADMIN_USER_ID);
    let out: Vec<Value> = updated
        .iter()
        .zip(&items)
        .enumerate()
        .map(|(i, ((id, updated_at), item))| {
            json!({
                "id": id,
                "updated_at": updated_at,
                "request_id": request_id_of(item, i),
                "_links": self_link(base, &format!("/api/v4/leads/{id}")),
            })
        })
        .collect();
    Ok(hal(
        StatusCode::OK,
        json!({ "_links": self_link(base, "/api/v4/leads"), "_embedded": { "leads": out } }),
    ))
}

/// Updates one lead as `user` (the API's user, or a manager through the control API).
pub fn update_single(sb: &Sb, id: i64, item: &Value, user: i64) -> Result<(i64, i64), ApiError> {
    let mut st = sb.lock();
    let mut v = Violations::default();
    let existing = st.leads.get(&id).ok_or(ApiError::NotFound)?;
    let draft = lead_input::parse(&st, item, Mode::Update, Some(existing), &mut v);
    if !v.is_empty() {
        return Err(ApiError::Validation(vec![ItemErrors {
            request_id: request_id_of(item, 0),
            errors: v.0,
        }]));
    }
    Ok(apply_updates(sb, &mut st, &[draft], user)
        .pop()
        .unwrap_or((id, sb.clock.now())))
}

/// `PATCH /api/v4/leads/{id}`.
pub async fn update_one(
    State(sb): State<Sb>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let item = json_body(&body)?;
    let (id, updated_at) = update_single(&sb, id, &item, ADMIN_USER_ID)?;
    Ok(hal(
        StatusCode::OK,
        json!({
            "id": id,
            "updated_at": updated_at,
            "_links": self_link(sb.base_url(), &format!("/api/v4/leads/{id}")),
        }),
    ))
}
