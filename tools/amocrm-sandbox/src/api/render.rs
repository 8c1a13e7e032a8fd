//! Leads and contacts rendered as `GET /api/v4/...` renders them (field order and nulls as in
//! real responses).

use serde_json::{Value, json};

use crate::model::{Contact, Lead};
use crate::state::State;

use super::field_values;

pub fn self_link(base: &str, path: &str) -> Value {
    json!({ "self": { "href": format!("{base}{path}") } })
}

fn tags(st: &State, ids: &[i64]) -> Value {
    Value::Array(
        ids.iter()
            .filter_map(|id| st.tags.get(id))
            .map(|t| json!({ "id": t.id, "name": t.name, "color": null }))
            .collect(),
    )
}

fn companies(base: &str, ids: &[i64]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| json!({ "id": id, "_links": self_link(base, &format!("/api/v4/companies/{id}")) }))
            .collect(),
    )
}

/// A lead; `with_contacts` adds `_embedded.contacts` (`with=contacts`).
pub fn lead(st: &State, account_id: i64, base: &str, lead: &Lead, with_contacts: bool) -> Value {
    let mut embedded = json!({
        "tags": tags(st, &lead.tag_ids),
        "companies": companies(base, &lead.company_ids),
    });
    if with_contacts {
        embedded["contacts"] = Value::Array(
            lead.contact_ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    json!({
                        "id": id,
                        "is_main": i == 0,
                        "_links": self_link(base, &format!("/api/v4/contacts/{id}")),
                    })
                })
                .collect(),
        );
    }
    json!({
        "id": lead.id,
        "name": lead.name,
        "price": lead.price,
        "responsible_user_id": lead.responsible_user_id,
        "group_id": 0,
        "status_id": lead.status_id,
        "pipeline_id": lead.pipeline_id,
        "loss_reason_id": lead.loss_reason_id,
        "created_by": lead.created_by,
        "updated_by": lead.updated_by,
        "created_at": lead.created_at,
        "updated_at": lead.updated_at,
        "closed_at": lead.closed_at,
        "closest_task_at": st.closest_task_at("leads", lead.id),
        "is_deleted": false,
        "custom_fields_values": field_values::render(st, &lead.custom_fields),
        "score": null,
        "account_id": account_id,
        "labor_cost": null,
        "is_price_computed": false,
        "_links": self_link(base, &format!("/api/v4/leads/{}", lead.id)),
        "_embedded": embedded,
    })
}

/// A contact; `with_leads` adds `_embedded.leads` (`with=leads`).
pub fn contact(
    st: &State,
    account_id: i64,
    base: &str,
    contact: &Contact,
    with_leads: bool,
) -> Value {
    let mut embedded = json!({
        "tags": tags(st, &contact.tag_ids),
        "companies": companies(base, &contact.company_ids),
    });
    if with_leads {
        embedded["leads"] = Value::Array(
            st.leads
                .values()
                .filter(|l| l.contact_ids.contains(&contact.id))
                .map(|l| json!({ "id": l.id, "_links": self_link(base, &format!("/api/v4/leads/{}", l.id)) }))
                .collect(),
        );
    }
    json!({
        "id": contact.id,
        "name": contact.name,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "responsible_user_id": contact.responsible_user_id,
        "group_id": 0,
        "created_by": contact.created_by,
        "updated_by": contact.updated_by,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "closest_task_at": st.closest_task_at("contacts", contact.id),
        "is_deleted": false,
        "is_unsorted": false,
        "custom_fields_values": field_values::render(st, &contact.custom_fields),
        "account_id": account_id,
        "_links": self_link(base, &format!("/api/v4/contacts/{}", contact.id)),
        "_embedded": embedded,
    })
}
