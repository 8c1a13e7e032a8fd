//! `GET/POST/DELETE /api/v4/webhooks`: which URLs get which events. Registering a known
//! destination again replaces its settings (amoCRM's idempotent re-registration).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::errors::{ApiError, ItemErrors, Violations};
use crate::model::Subscription;
use crate::seed::ADMIN_USER_ID;
use crate::state::{Sb, next};
use crate::webhooks::KNOWN_SETTINGS;

use super::params::Params;
use super::render::self_link;
use super::{check, hal, json_body, no_content};

/// amoCRM allows at most 100 webhooks per account.
const MAX_SUBSCRIPTIONS: usize = 100;

fn render(account_id: i64, s: &Subscription) -> Value {
    json!({
        "id": s.id,
        "created_by": ADMIN_USER_ID,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "sort": s.sort,
        "disabled": false,
        "destination": s.destination,
        "settings": s.settings,
        "account_id": account_id,
    })
}

/// An absolute http(s) URL with a host.
fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains(char::is_whitespace)
    }) && !s.contains(char::is_whitespace)
}

/// `GET /api/v4/webhooks`.
pub async fn list(State(sb): State<Sb>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let destination = params.get("filter[destination]");
    let st = sb.lock();
    let items: Vec<Value> = st
        .subscriptions
        .iter()
        .filter(|s| destination.is_none_or(|d| s.destination == d))
        .map(|s| render(sb.cfg.account_id, s))
        .collect();
    if items.is_empty() {
        return no_content();
    }
    hal(
        StatusCode::OK,
        json!({
            "_total_items": items.len(),
            "_links": self_link(sb.base_url(), "/api/v4/webhooks"),
            "_embedded": { "webhooks": items },
        }),
    )
}

fn destination_of(item: &Value, v: &mut Violations) -> Option<String> {
    match check::string(item, "destination", "destination", v) {
        Some(d) if is_http_url(&d) => Some(d),
        Some(d) if d.trim().is_empty() => {
            v.blank("destination");
            None
        }
        Some(_) => {
            v.invalid_url("destination");
            None
        }
        None => {
            if item.get("destination").is_none_or(Value::is_null) {
                v.blank("destination");
            }
            None
        }
    }
}

fn failed(v: Violations) -> ApiError {
    ApiError::Validation(vec![ItemErrors {
        request_id: "0".into(),
        errors: v.0,
    }])
}

/// Checks a subscription (`destination`, `settings`, `sort`) and registers it; a known
/// destination gets its settings replaced.
pub fn register(sb: &Sb, item: &Value) -> Result<Subscription, ApiError> {
    let mut v = Violations::default();
    if !check::object(item, &mut v) {
        return Err(failed(v));
    }
    let destination = destination_of(item, &mut v);
    let mut settings = Vec::new();
    match item.get("settings") {
        Some(Value::Array(list)) if !list.is_empty() => {
            for (i, s) in list.iter().enumerate() {
                match s {
                    Value::String(name) if KNOWN_SETTINGS.contains(&name.as_str()) => {
                        if !settings.contains(name) {
                            settings.push(name.clone());
                        }
                    }
                    Value::String(_) => v.not_a_choice(&format!("settings.{i}")),
                    _ => v.invalid_type(&format!("settings.{i}"), "string"),
                }
            }
        }
        Some(Value::Array(_)) | None | Some(Value::Null) => v.too_few("settings", 1),
        Some(_) => v.invalid_type("settings", "array"),
    }
    let sort = check::int(item, "sort", "sort", &mut v);
    let (Some(destination), true) = (destination, v.is_empty()) else {
        return Err(failed(v));
    };
    let now = sb.clock.now();
    let mut st = sb.lock();
    if let Some(s) = st
        .subscriptions
        .iter_mut()
        .find(|s| s.destination == destination)
    {
        s.settings = settings;
        s.updated_at = now;
        if let Some(sort) = sort {
            s.sort = sort;
        }
        return Ok(s.clone());
    }
    if st.subscriptions.len() >= MAX_SUBSCRIPTIONS {
        let mut v = Violations::default();
        v.too_many("destination", MAX_SUBSCRIPTIONS);
        return Err(failed(v));
    }
    let subscription = Subscription {
        id: next(&mut st.ids.subscription),
        destination,
        settings,
        sort: sort.unwrap_or(1),
        created_at: now,
        updated_at: now,
    };
    st.subscriptions.push(subscription.clone());
    Ok(subscription)
}

/// `POST /api/v4/webhooks`.
pub async fn subscribe(State(sb): State<Sb>, body: Bytes) -> Result<Response, ApiError> {
    let subscription = register(&sb, &json_body(&body)?)?;
    Ok(hal(
        StatusCode::OK,
        render(sb.cfg.account_id, &subscription),
    ))
}

/// `DELETE /api/v4/webhooks` with `{"destination": …}`.
pub async fn unsubscribe(State(sb): State<Sb>, body: Bytes) -> Result<Response, ApiError> {
    let item = json_body(&body)?;
    let mut v = Violations::default();
    let Some(destination) = destination_of(&item, &mut v) else {
        return Err(failed(v));
    };
    let mut st = sb.lock();
    let before = st.subscriptions.len();
    st.subscriptions.retain(|s| s.destination != destination);
    if st.subscriptions.len() == before {
        return Err(ApiError::NotFound);
    }
    Ok(no_content())
}
