//! Tasks: `POST /api/v4/tasks` (text, deadline, known type, an existing lead or contact, a
//! real user), `GET /api/v4/tasks` with `filter[...]`, `GET /api/v4/tasks/{id}`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::errors::{ApiError, Violations};
use crate::model::Task;
use crate::seed::{ADMIN_USER_ID, TASK_TYPES};
use crate::state::{Sb, State as Account, next};

use super::params::{self, Params};
use super::render::self_link;
use super::{MAX_BATCH, batch_body, check, check_batch, hal, list_page, path_id, request_id_of};

fn check_task(st: &Account, item: &Value, v: &mut Violations) -> Option<Task> {
    if !check::object(item, v) {
        return None;
    }
    let text = match check::string(item, "text", "text", v) {
        Some(t) if !t.trim().is_empty() => Some(t),
        Some(_) => {
            v.blank("text");
            None
        }
        None => {
            if item.get("text").is_none_or(Value::is_null) {
                v.blank("text");
            }
            None
        }
    };
    let complete_till = check::int(item, "complete_till", "complete_till", v);
    if complete_till.is_none() && item.get("complete_till").is_none_or(Value::is_null) {
        v.blank("complete_till");
    }
    let task_type_id = check::int(item, "task_type_id", "task_type_id", v).unwrap_or(1);
    if !TASK_TYPES.iter().any(|(id, _)| *id == task_type_id) {
        v.not_a_choice("task_type_id");
    }
    let entity_type = check::string(item, "entity_type", "entity_type", v);
    let entity_id = check::int(item, "entity_id", "entity_id", v);
    let (entity_type, entity_id) = match (entity_type, entity_id) {
        (Some(t), Some(id)) => {
            let exists = match t.as_str() {
                "leads" => st.leads.contains_key(&id),
                "contacts" => st.contacts.contains_key(&id),
                _ => {
                    v.not_a_choice("entity_type");
                    true
                }
            };
            if !exists {
                v.not_a_choice("entity_id");
            }
            (t, id)
        }
        (Some(_), None) => {
            v.blank("entity_id");
            (String::new(), 0)
        }
        (None, Some(_)) => {
            v.blank("entity_type");
            (String::new(), 0)
        }
        (None, None) => (String::new(), 0),
    };
    let responsible = check::int(item, "responsible_user_id", "responsible_user_id", v);
    if responsible.is_some_and(|id| !st.is_user(id)) {
        v.not_a_choice("responsible_user_id");
    }
    let duration = check::int(item, "duration", "duration", v).unwrap_or(0);
    if duration < 0 {
        v.below_zero("duration");
    }
    let is_completed = check::boolean(item, "is_completed", "is_completed", v).unwrap_or(false);
    Some(Task {
        id: 0,
        text: text?,
        complete_till: complete_till?,
        task_type_id,
        entity_type,
        entity_id,
        responsible_user_id: responsible.unwrap_or(ADMIN_USER_ID),
        duration,
        is_completed,
        created_by: ADMIN_USER_ID,
        created_at: 0,
        updated_at: 0,
    })
}

/// `POST /api/v4/tasks`.
pub async fn add(State(sb): State<Sb>, body: Bytes) -> Result<Response, ApiError> {
    let items = batch_body(&body, MAX_BATCH)?;
    let now = sb.clock.now();
    let base = sb.base_url();
    let mut st = sb.lock();
    let checked = check_batch(&items, |item, v| check_task(&st, item, v))?;
    let mut out = Vec::new();
    for (i, (item, mut task)) in items.iter().zip(checked).enumerate() {
        task.id = next(&mut st.ids.task);
        task.created_at = now;
        task.updated_at = now;
        out.push(json!({
            "id": task.id,
            "request_id": request_id_of(item, i),
            "_links": self_link(base, &format!("/api/v4/tasks/{}", task.id)),
        }));
        st.tasks.insert(task.id, task);
    }
    Ok(hal(
        StatusCode::OK,
        json!({ "_links": self_link(base, "/api/v4/tasks"), "_embedded": { "tasks": out } }),
    ))
}

pub fn render(account_id: i64, base: &str, t: &Task) -> Value {
    json!({
        "id": t.id,
        "created_by": t.created_by,
        "updated_by": t.created_by,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "responsible_user_id": t.responsible_user_id,
        "group_id": 0,
        "entity_id": if t.entity_type.is_empty() { Value::Null } else { json!(t.entity_id) },
        "entity_type": if t.entity_type.is_empty() { Value::Null } else { json!(t.entity_type) },
        "duration": t.duration,
        "is_completed": t.is_completed,
        "task_type_id": t.task_type_id,
        "text": t.text,
        "result": [],
        "complete_till": t.complete_till,
        "account_id": account_id,
        "_links": self_link(base, &format!("/api/v4/tasks/{}", t.id)),
    })
}

/// `GET /api/v4/tasks`.
pub async fn list(State(sb): State<Sb>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let page = params::page(&params)?;
    let st = sb.lock();
    let entity_ids = params.ints("filter[entity_id]");
    let entity_type = params.get("filter[entity_type]");
    let users = params.ints("filter[responsible_user_id]");
    let types = params.ints("filter[task_type]");
    let completed = params
        .get("filter[is_completed]")
        .map(|v| v == "1" || v == "true");
    let mut tasks: Vec<&Task> = st
        .tasks
        .values()
        .filter(|t| entity_ids.is_empty() || entity_ids.contains(&t.entity_id))
        .filter(|t| entity_type.is_none_or(|e| t.entity_type == e))
        .filter(|t| users.is_empty() || users.contains(&t.responsible_user_id))
        .filter(|t| types.is_empty() || types.contains(&t.task_type_id))
        .filter(|t| completed.is_none_or(|c| t.is_completed == c))
        .collect();
    if let Some((field, desc)) = params.order(&["created_at", "complete_till", "id"]) {
        tasks.sort_by_key(|t| match field.as_str() {
            "created_at" => (t.created_at, t.id),
            "complete_till" => (t.complete_till, t.id),
            _ => (t.id, t.id),
        });
        if desc {
            tasks.reverse();
        }
    }
    let items = tasks
        .into_iter()
        .map(|t| render(sb.cfg.account_id, sb.base_url(), t))
        .collect();
    Ok(list_page(
        &sb,
        "/api/v4/tasks",
        &params,
        page,
        "tasks",
        items,
    ))
}

/// `GET /api/v4/tasks/{id}`.
pub async fn get_one(State(sb): State<Sb>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let st = sb.lock();
    let task = st.tasks.get(&id).ok_or(ApiError::NotFound)?;
    Ok(hal(
        StatusCode::OK,
        render(sb.cfg.account_id, sb.base_url(), task),
    ))
}
