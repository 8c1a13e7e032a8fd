//! `GET/POST /api/v4/{leads,contacts}/custom_fields`: the account's fields, and creating new
//! ones (text, numeric, date, select with enums, …) with amoCRM's checks.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::errors::{ApiError, Violations};
use crate::model::{CustomField, Entity, FieldEnum, FieldType};
use crate::state::{Sb, State as Account, next};

use super::params::{self, Params};
use super::render::self_link;
use super::{MAX_BATCH, batch_body, check, check_batch, hal, no_content, request_id_of};

fn entity_path(entity: Entity) -> &'static str {
    match entity {
        Entity::Leads => "leads",
        Entity::Contacts => "contacts",
    }
}

pub fn render(account_id: i64, base: &str, f: &CustomField) -> Value {
    let enums = if f.field_type.has_enums() {
        json!(
            f.enums
                .iter()
                .map(|e| json!({ "id": e.id, "value": e.value, "sort": e.sort }))
                .collect::<Vec<_>>()
        )
    } else {
        Value::Null
    };
    let entity = entity_path(f.entity);
    json!({
        "id": f.id,
        "name": f.name,
        "type": f.field_type.as_str(),
        "account_id": account_id,
        "code": f.code,
        "sort": f.sort,
        "is_api_only": false,
        "enums": enums,
        "group_id": null,
        "required_statuses": [],
        "is_deletable": f.code.is_none(),
        "is_predefined": f.code.is_some(),
        "entity_type": entity,
        "tracking_callback": null,
        "remind": null,
        "triggers": [],
        "currency": null,
        "hidden_statuses": [],
        "chained_lists": null,
        "_links": self_link(base, &format!("/api/v4/{entity}/custom_fields/{}", f.id)),
    })
}

fn list_fields(sb: &Sb, entity: Entity, query: Option<&str>) -> Result<Response, ApiError> {
    let params = Params::parse(query);
    let page = params::page(&params)?;
    let st = sb.lock();
    let items: Vec<Value> = st
        .fields
        .values()
        .filter(|f| f.entity == entity)
        .map(|f| render(sb.cfg.account_id, sb.base_url(), f))
        .collect();
    let total = items.len();
    let path = format!("/api/v4/{}/custom_fields", entity_path(entity));
    Ok(
        match params::envelope(sb.base_url(), &path, &params, page, "custom_fields", items) {
            Some(mut body) => {
                body["_total_items"] = json!(total);
                body["_page_count"] = json!(total.div_ceil(page.limit));
                hal(StatusCode::OK, body)
            }
            None => no_content(),
        },
    )
}

/// `GET /api/v4/leads/custom_fields`.
pub async fn list_lead_fields(
    State(sb): State<Sb>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list_fields(&sb, Entity::Leads, q.as_deref())
}

/// `GET /api/v4/contacts/custom_fields`.
pub async fn list_contact_fields(
    State(sb): State<Sb>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list_fields(&sb, Entity::Contacts, q.as_deref())
}

/// A field to create, checked: (name, type, code, sort, enum values with sort).
type NewField = (
    String,
    FieldType,
    Option<String>,
    Option<i64>,
    Vec<(String, i64)>,
);

fn check_field(st: &Account, entity: Entity, item: &Value, v: &mut Violations) -> Option<NewField> {
    if !check::object(item, v) {
        return None;
    }
    let name = match check::string(item, "name", "name", v) {
        Some(n) if !n.trim().is_empty() => Some(n.trim().to_string()),
        Some(_) => {
            v.blank("name");
            None
        }
        None => {
            if item.get("name").is_none_or(Value::is_null) {
                v.blank("name");
            }
            None
        }
    };
    let field_type = match check::string(item, "type", "type", v) {
        Some(t) => {
            let parsed = FieldType::parse_creatable(&t);
            if parsed.is_none() {
                v.not_a_choice("type");
            }
            parsed
        }
        None => {
            if item.get("type").is_none_or(Value::is_null) {
                v.blank("type");
            }
            None
        }
    };
    let code = check::string(item, "code", "code", v);
    if let Some(c) = &code
        && st.field_by_code(c, entity).is_some()
    {
        v.not_a_choice("code");
    }
    let sort = check::int(item, "sort", "sort", v);
    let mut enums = Vec::new();
    if field_type.is_some_and(FieldType::has_enums) {
        match item.get("enums") {
            Some(Value::Array(list)) if !list.is_empty() => {
                for (i, e) in list.iter().enumerate() {
                    match e.get("value") {
                        Some(Value::String(s)) if !s.trim().is_empty() => {
                            let sort = check::int(e, "sort", &format!("enums.{i}.sort"), v);
                            enums.push((s.clone(), sort.unwrap_or((i as i64 + 1) * 10)));
                        }
                        Some(Value::String(_)) | None | Some(Value::Null) => {
                            v.blank(&format!("enums.{i}.value"))
                        }
                        Some(_) => v.invalid_type(&format!("enums.{i}.value"), "string"),
                    }
                }
            }
            Some(Value::Array(_)) | None | Some(Value::Null) => v.too_few("enums", 1),
            Some(_) => v.invalid_type("enums", "array"),
        }
    }
    Some((name?, field_type?, code, sort, enums))
}

fn create_fields(sb: &Sb, entity: Entity, body: &Bytes) -> Result<Response, ApiError> {
    let items = batch_body(body, MAX_BATCH)?;
    let base = sb.base_url();
    let mut st = sb.lock();
    let checked = check_batch(&items, |item, v| check_field(&st, entity, item, v))?;
    let mut out = Vec::new();
    for (i, (item, (name, field_type, code, sort, enums))) in items.iter().zip(checked).enumerate()
    {
        let id = next(&mut st.ids.field);
        let enums = enums
            .into_iter()
            .map(|(value, sort)| FieldEnum {
                id: next(&mut st.ids.field_enum),
                value,
                sort,
            })
            .collect();
        let field = CustomField {
            id,
            name,
            field_type,
            code,
            sort: sort.unwrap_or(500 + st.fields.len() as i64),
            entity,
            enums,
        };
        let mut rendered = render(sb.cfg.account_id, base, &field);
        rendered["request_id"] = json!(request_id_of(item, i));
        out.push(rendered);
        st.fields.insert(id, field);
    }
    Ok(hal(
        StatusCode::OK,
        json!({
            "_total_items": out.len(),
            "_embedded": { "custom_fields": out },
        }),
    ))
}

/// `POST /api/v4/leads/custom_fields`.
pub async fn create_lead_fields(State(sb): State<Sb>, body: Bytes) -> Result<Response, ApiError> {
    create_fields(&sb, Entity::Leads, &body)
}

/// `POST /api/v4/contacts/custom_fields`.
pub async fn create_contact_fields(
    State(sb): State<Sb>,
    body: Bytes,
) -> Result<Response, ApiError> {
    create_fields(&sb, Entity::Contacts, &body)
}
