//! One lead of a write request (`POST /leads`, `PATCH /leads`, `/leads/complex`, the control
//! API): checked against the account (pipeline and status must match, users and fields must
//! exist, types must be exact) and then applied. Checking never changes state, so a batch
//! with any violation changes nothing.

use serde_json::Value;

use crate::errors::Violations;
use crate::model::{Entity, Lead, is_closed_status};
use crate::state::{State, next};

use super::check;
use super::field_values::{self, FieldPatch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Update,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TagRef {
    Id(i64),
    Name(String),
}

/// A checked lead write.
#[derive(Debug, Clone, Default)]
pub struct LeadDraft {
    /// The lead to update (update mode).
    pub id: Option<i64>,
    pub name: Option<String>,
    pub price: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub status_id: Option<i64>,
    pub responsible_user_id: Option<i64>,
    pub loss_reason_id: Option<Option<i64>>,
    pub created_by: Option<i64>,
    pub updated_by: Option<i64>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub fields: Vec<FieldPatch>,
    /// `Some(vec![])` detaches every tag (`"tags": null` on update).
    pub tags: Option<Vec<TagRef>>,
    pub contact_ids: Vec<i64>,
    pub company_ids: Vec<i64>,
}

/// A user id or 0 (amoCRM's "robot") for `created_by`/`updated_by`.
fn author(st: &State, item: &Value, key: &str, v: &mut Violations) -> Option<i64> {
    let id = check::int(item, key, key, v)?;
    if id != 0 && !st.is_user(id) {
        v.not_a_choice(key);
        return None;
    }
    Some(id)
}

/// Checks one lead object. `existing` is the lead being updated, if known.
pub fn parse(
    st: &State,
    item: &Value,
    mode: Mode,
    existing: Option<&Lead>,
    v: &mut Violations,
) -> LeadDraft {
    let mut d = LeadDraft::default();
    if !check::object(item, v) {
        return d;
    }
    if mode == Mode::Update {
        d.id = existing.map(|l| l.id);
    }
    d.name = check::string(item, "name", "name", v);
    d.price = check::int(item, "price", "price", v);
    if d.price.is_some_and(|p| p < 0) {
        v.below_zero("price");
        d.price = None;
    }
    resolve_stage(st, item, mode, existing, &mut d, v);
    if let Some(user) = check::int(item, "responsible_user_id", "responsible_user_id", v) {
        if st.is_user(user) {
            d.responsible_user_id = Some(user);
        } else {
            v.not_a_choice("responsible_user_id");
        }
    }
    match item.get("loss_reason_id") {
        Some(Value::Null) => d.loss_reason_id = Some(None),
        Some(_) => {
            d.loss_reason_id = check::int(item, "loss_reason_id", "loss_reason_id", v).map(Some)
        }
        None => {}
    }
    d.created_by = author(st, item, "created_by", v);
    d.updated_by = author(st, item, "updated_by", v);
    d.created_at = check::int(item, "created_at", "created_at", v);
    d.updated_at = check::int(item, "updated_at", "updated_at", v);
    d.closed_at = check::int(item, "closed_at", "closed_at", v);
    if let Some(raw) = item.get("custom_fields_values") {
        d.fields = field_values::parse(st, Entity::Leads, raw, "custom_fields_values", v);
    }
    match item.get("_embedded") {
        None | Some(Value::Null) => {}
        Some(embedded @ Value::Object(_)) => parse_embedded(st, embedded, mode, &mut d, v),
        Some(_) => v.invalid_type("_embedded", "object"),
    }
    d
}

/// Pipeline and status must exist and match; 142/143 exist in every pipeline, so a new lead
/// closed at once must name its pipeline.
fn resolve_stage(
    st: &State,
    item: &Value,
    mode: Mode,
    existing: Option<&Lead>,
    d: &mut LeadDraft,
    v: &mut Violations,
) {
    let pipeline_id = check::int(item, "pipeline_id", "pipeline_id", v);
    let status_id = check::int(item, "status_id", "status_id", v);
    let pipeline = match pipeline_id {
        Some(id) => match st.pipeline(id) {
            Some(p) => Some(p),
            None => {
                v.not_a_choice("pipeline_id");
                return;
            }
        },
        None => None,
    };
    match (pipeline, status_id) {
        (Some(p), Some(s)) => {
            if p.has_status(s) {
                (d.pipeline_id, d.status_id) = (Some(p.id), Some(s));
            } else {
                v.not_a_choice("status_id");
            }
        }
        (Some(p), None) => {
            let keep = existing
                .filter(|l| l.pipeline_id == p.id)
                .map(|l| l.status_id);
            (d.pipeline_id, d.status_id) = (
                Some(p.id),
                Some(keep.unwrap_or_else(|| p.first_working_status())),
            );
        }
        (None, Some(s)) if is_closed_status(s) => match (mode, existing) {
            (Mode::Update, Some(lead)) => {
                (d.pipeline_id, d.status_id) = (Some(lead.pipeline_id), Some(s))
            }
            _ => v.blank("pipeline_id"),
        },
        (None, Some(s)) => match st.pipeline_of_status(s) {
            Some(p) => (d.pipeline_id, d.status_id) = (Some(p.id), Some(s)),
            None => v.not_a_choice("status_id"),
        },
        (None, None) => {
            if mode == Mode::Create {
                let main = st.main_pipeline();
                (d.pipeline_id, d.status_id) = (Some(main.id), Some(main.first_working_status()));
            }
        }
    }
}

fn parse_embedded(st: &State, embedded: &Value, mode: Mode, d: &mut LeadDraft, v: &mut Violations) {
    match embedded.get("tags") {
        None => {}
        Some(Value::Null) if mode == Mode::Update => d.tags = Some(Vec::new()),
        Some(Value::Null) => {}
        Some(Value::Array(tags)) => {
            let mut refs = Vec::new();
            for (i, tag) in tags.iter().enumerate() {
                let p = format!("_embedded.tags.{i}");
                match (tag.get("id"), tag.get("name")) {
                    (Some(Value::Number(n)), _) => {
                        match n.as_i64().filter(|id| st.tags.contains_key(id)) {
                            Some(id) => refs.push(TagRef::Id(id)),
                            None => v.not_a_choice(&format!("{p}.id")),
                        }
                    }
                    (_, Some(Value::String(name))) if !name.trim().is_empty() => {
                        refs.push(TagRef::Name(name.trim().to_string()))
                    }
                    (_, Some(Value::String(_))) | (None, None) => v.blank(&format!("{p}.name")),
                    (Some(_), _) => v.invalid_type(&format!("{p}.id"), "int"),
                    (_, Some(_)) => v.invalid_type(&format!("{p}.name"), "string"),
                }
            }
            d.tags = Some(refs);
        }
        Some(_) => v.invalid_type("_embedded.tags", "array"),
    }
    // Links to existing contacts and companies are taken on creation only.
    if mode == Mode::Create {
        d.contact_ids = linked_ids(embedded, "contacts", |id| st.contacts.contains_key(&id), v);
        d.company_ids = linked_ids(
            embedded,
            "companies",
            |id| st.companies.contains_key(&id),
            v,
        );
    }
}

fn linked_ids(
    embedded: &Value,
    key: &str,
    exists: impl Fn(i64) -> bool,
    v: &mut Violations,
) -> Vec<i64> {
    let mut ids = Vec::new();
    match embedded.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("_embedded.{key}.{i}.id");
                match item.get("id") {
                    Some(Value::Number(n)) if n.as_i64().is_some_and(&exists) => {
                        ids.push(n.as_i64().unwrap_or_default())
                    }
                    Some(Value::Number(_)) => v.not_a_choice(&p),
                    Some(_) => v.invalid_type(&p, "int"),
                    None => v.blank(&p),
                }
            }
        }
        Some(_) => v.invalid_type(&format!("_embedded.{key}"), "array"),
    }
    ids
}

fn tag_ids(st: &mut State, refs: &[TagRef]) -> Vec<i64> {
    let mut ids = Vec::new();
    for r in refs {
        let id = match r {
            TagRef::Id(id) => *id,
            TagRef::Name(name) => st.tag_named(name),
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Creates the lead of a checked draft; `user` is the token's user.
pub fn create(st: &mut State, d: &LeadDraft, now: i64, user: i64) -> i64 {
    let id = next(&mut st.ids.lead);
    let main = st.main_pipeline();
    let pipeline_id = d.pipeline_id.unwrap_or(main.id);
    let status_id = d.status_id.unwrap_or_else(|| main.first_working_status());
    let tag_ids = d
        .tags
        .as_deref()
        .map(|t| tag_ids(st, t))
        .unwrap_or_default();
    let mut custom_fields = Vec::new();
    field_values::apply(&mut custom_fields, &d.fields);
    let created_at = d.created_at.unwrap_or(now);
    let lead = Lead {
        id,
        name: d.name.clone().unwrap_or_else(|| format!("Сделка #{id}")),
        price: d.price.unwrap_or(0),
        responsible_user_id: d.responsible_user_id.unwrap_or(user),
        status_id,
        pipeline_id,
        loss_reason_id: d.loss_reason_id.flatten(),
        created_by: d.created_by.unwrap_or(user),
        updated_by: d.updated_by.unwrap_or(user),
        created_at,
        updated_at: d.updated_at.unwrap_or(created_at.max(now)),
        closed_at: d
            .closed_at
            .or_else(|| is_closed_status(status_id).then_some(now)),
        custom_fields,
        tag_ids,
        contact_ids: d.contact_ids.clone(),
        company_ids: d.company_ids.clone(),
    };
    st.leads.insert(id, lead);
    id
}

/// Applies a checked draft to an existing lead; returns the old status if it moved.
pub fn update(st: &mut State, d: &LeadDraft, now: i64, user: i64) -> Option<Option<i64>> {
    let id = d.id?;
    let tag_ids = d.tags.as_deref().map(|t| tag_ids(st, t));
    let lead = st.leads.get_mut(&id)?;
    let old_status = lead.status_id;
    if let Some(name) = &d.name {
        lead.name = name.clone();
    }
    if let Some(price) = d.price {
        lead.price = price;
    }
    if let (Some(p), Some(s)) = (d.pipeline_id, d.status_id) {
        lead.pipeline_id = p;
        lead.status_id = s;
    }
    if let Some(user) = d.responsible_user_id {
        lead.responsible_user_id = user;
    }
    if let Some(reason) = d.loss_reason_id {
        lead.loss_reason_id = reason;
    }
    if let Some(created_by) = d.created_by {
        lead.created_by = created_by;
    }
    if let Some(created_at) = d.created_at {
        lead.created_at = created_at;
    }
    field_values::apply(&mut lead.custom_fields, &d.fields);
    if let Some(tags) = tag_ids {
        lead.tag_ids = tags;
    }
    let moved = lead.status_id != old_status;
    if moved {
        lead.closed_at = is_closed_status(lead.status_id).then_some(now);
    }
    if let Some(closed_at) = d.closed_at {
        lead.closed_at = Some(closed_at);
    }
    lead.updated_by = d.updated_by.unwrap_or(user);
    lead.updated_at = d.updated_at.unwrap_or(now);
    Some(moved.then_some(old_status))
}
