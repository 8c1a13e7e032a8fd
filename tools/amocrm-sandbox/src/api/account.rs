//! Account-level reads: `GET /api/v4/account` (with a few `with=` parts), users, pipelines
//! and their statuses.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::model::{Pipeline, User};
use crate::seed::{ADMIN_USER_ID, TASK_TYPES};
use crate::state::Sb;

use super::params::Params;
use super::render::self_link;
use super::{hal, path_id};

/// The account was "created" on this date (2023-05-15), fixed so answers are stable.
const ACCOUNT_CREATED_AT: i64 = 1_684_108_800;

/// `GET /api/v4/account`.
pub async fn get_account(State(sb): State<Sb>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let cfg = &sb.cfg;
    let mut body = json!({
        "id": cfg.account_id,
        "name": "РусСтанкоСбыт",
        "subdomain": cfg.subdomain,
        "created_at": ACCOUNT_CREATED_AT,
        "created_by": ADMIN_USER_ID,
        "updated_at": ACCOUNT_CREATED_AT,
        "updated_by": ADMIN_USER_ID,
        "current_user_id": ADMIN_USER_ID,
        "country": "RU",
        "customers_mode": "disabled",
        "is_unsorted_on": true,
        "is_loss_reason_enabled": true,
        "is_helpbot_enabled": false,
        "is_technical_account": false,
        "contact_name_display_order": 1,
        "currency": "RUB",
        "currency_symbol": "₽",
        "_links": self_link(sb.base_url(), "/api/v4/account"),
    });
    if params.with("amojo_id") {
        body["amojo_id"] = json!(uuid::Uuid::nil().to_string());
    }
    if params.with("uuid") {
        body["uuid"] = json!(format!("sandbox-{}", cfg.account_id));
    }
    if params.with("version") {
        body["version"] = json!(13);
    }
    if params.with("is_api_filter_enabled") {
        body["is_api_filter_enabled"] = json!(true);
    }
    if params.with("datetime_settings") {
        body["datetime_settings"] = json!({
            "date_pattern": "d.m.Y H:i",
            "short_date_pattern": "d.m.Y",
            "short_time_pattern": "H:i",
            "date_format": "d.m.Y",
            "time_format": "H:i:s",
            "timezone": "Europe/Moscow",
            "timezone_offset": "+03:00",
        });
    }
    let mut embedded = serde_json::Map::new();
    if params.with("task_types") {
        embedded.insert(
            "task_types".into(),
            Value::Array(
                TASK_TYPES
                    .iter()
                    .map(|(id, name)| json!({ "id": id, "name": name, "color": null, "icon_id": null, "code": if *id == 1 { "FOLLOW_UP" } else { "MEETING" } }))
                    .collect(),
            ),
        );
    }
    if params.with("users_groups") {
        embedded.insert(
            "users_groups".into(),
            json!([{ "id": 0, "name": "Отдел продаж", "uuid": null }]),
        );
    }
    if !embedded.is_empty() {
        body["_embedded"] = Value::Object(embedded);
    }
    hal(StatusCode::OK, body)
}

fn render_user(base: &str, u: &User) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "lang": "ru",
        "rights": {
            "leads": { "view": "A", "edit": "A", "add": "A", "delete": if u.is_admin { "A" } else { "D" }, "export": "A" },
            "contacts": { "view": "A", "edit": "A", "add": "A", "delete": if u.is_admin { "A" } else { "D" }, "export": "A" },
            "companies": { "view": "A", "edit": "A", "add": "A", "delete": if u.is_admin { "A" } else { "D" }, "export": "A" },
            "tasks": { "edit": "A", "delete": "A" },
            "mail_access": true,
            "catalog_access": true,
            "is_admin": u.is_admin,
            "is_free": false,
            "is_active": true,
            "group_id": null,
            "role_id": null,
        },
        "_links": self_link(base, &format!("/api/v4/users/{}", u.id)),
    })
}

/// `GET /api/v4/users`.
pub async fn list_users(State(sb): State<Sb>) -> Response {
    let st = sb.lock();
    let users: Vec<Value> = st
        .users
        .iter()
        .map(|u| render_user(sb.base_url(), u))
        .collect();
    hal(
        StatusCode::OK,
        json!({
            "_total_items": users.len(),
            "_page": 1,
            "_page_count": 1,
            "_links": self_link(sb.base_url(), "/api/v4/users"),
            "_embedded": { "users": users },
        }),
    )
}

/// `GET /api/v4/users/{id}`.
pub async fn get_user(State(sb): State<Sb>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let st = sb.lock();
    let user = st
        .users
        .iter()
        .find(|u| u.id == id)
        .ok_or(ApiError::NotFound)?;
    Ok(hal(StatusCode::OK, render_user(sb.base_url(), user)))
}

fn render_pipeline(account_id: i64, base: &str, p: &Pipeline) -> Value {
    let statuses: Vec<Value> = p
        .statuses
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "name": s.name,
                "sort": s.sort,
                "is_editable": s.is_editable,
                "pipeline_id": p.id,
                "color": s.color,
                "type": s.kind,
                "account_id": account_id,
                "_links": self_link(base, &format!("/api/v4/leads/pipelines/{}/statuses/{}", p.id, s.id)),
            })
        })
        .collect();
    json!({
        "id": p.id,
        "name": p.name,
        "sort": p.sort,
        "is_main": p.is_main,
        "is_unsorted_on": true,
        "is_archive": false,
        "account_id": account_id,
        "_links": self_link(base, &format!("/api/v4/leads/pipelines/{}", p.id)),
        "_embedded": { "statuses": statuses },
    })
}

/// `GET /api/v4/leads/pipelines`.
pub async fn list_pipelines(State(sb): State<Sb>) -> Response {
    let st = sb.lock();
    let pipelines: Vec<Value> = st
        .pipelines
        .iter()
        .map(|p| render_pipeline(sb.cfg.account_id, sb.base_url(), p))
        .collect();
    hal(
        StatusCode::OK,
        json!({
            "_total_items": pipelines.len(),
            "_links": self_link(sb.base_url(), "/api/v4/leads/pipelines"),
            "_embedded": { "pipelines": pipelines },
        }),
    )
}

/// `GET /api/v4/leads/pipelines/{id}`.
pub async fn get_pipeline(
    State(sb): State<Sb>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let st = sb.lock();
    let p = st.pipeline(id).ok_or(ApiError::NotFound)?;
    Ok(hal(
        StatusCode::OK,
        render_pipeline(sb.cfg.account_id, sb.base_url(), p),
    ))
}
