//! The `/_sandbox` control API (no auth, loopback clients only): the HTTP mirror of
//! `SandboxHandle` for `make run` and manual experiments.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::SandboxConfig;
use crate::faults::Fault;
use crate::handle::{ControlError, SandboxHandle};
use crate::state::Sb;

fn handle(sb: &Sb) -> SandboxHandle {
    SandboxHandle::new(sb.clone())
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A refused control call: status and a message naming the field.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

type Answer = Result<Response, Refusal>;

fn ok() -> Response {
    Json(json!({ "ok": true })).into_response()
}

/// Parses a control body, naming what is wrong.
fn body<T: for<'de> Deserialize<'de>>(raw: &str) -> Result<T, Refusal> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    serde_json::from_str(raw).map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        match &self {
            ControlError::LeadNotFound(_) => error(StatusCode::NOT_FOUND, self.to_string()),
            ControlError::Rejected(violations) => (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "rejected", "violations": violations })),
            )
                .into_response(),
            ControlError::Invalid(_) => error(StatusCode::BAD_REQUEST, self.to_string()),
        }
    }
}

async fn loopback_only(req: Request, next: Next) -> Response {
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) if !peer.ip().is_loopback() => error(
            StatusCode::FORBIDDEN,
            "the control API answers loopback clients only",
        ),
        _ => next.run(req).await,
    }
}

pub fn router() -> Router<Sb> {
    Router::new()
        .route("/_sandbox/reset", post(reset))
        .route(
            "/_sandbox/faults",
            get(faults).post(inject).delete(clear_faults),
        )
        .route("/_sandbox/tokens", post(add_token))
        .route("/_sandbox/tokens/revoke", post(revoke_token))
        .route("/_sandbox/unban", post(unban))
        .route("/_sandbox/state", get(state))
        .route("/_sandbox/requests", get(requests))
        .route("/_sandbox/deliveries", get(deliveries))
        .route("/_sandbox/leads/{id}/status", post(set_status))
        .route("/_sandbox/leads/{id}", axum::routing::patch(edit_lead))
        .route("/_sandbox/oauth/codes", post(issue_code))
        .route("/_sandbox/revoke_integration", post(revoke_integration))
        .route("/_sandbox/clock", post(advance_clock))
        .route("/_sandbox/settings", post(settings))
        .route("/_sandbox/history", post(history))
        .route_layer(middleware::from_fn(loopback_only))
}

async fn reset(State(sb): State<Sb>) -> Response {
    handle(&sb).reset();
    ok()
}

async fn faults(State(sb): State<Sb>) -> Response {
    Json(json!({ "faults": handle(&sb).pending_faults() })).into_response()
}

/// One fault or an array of them.
async fn inject(State(sb): State<Sb>, raw: String) -> Answer {
    let value: Value = body(&raw)?;
    let list = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    let mut parsed = Vec::new();
    for item in list {
        match serde_json::from_value::<Fault>(item) {
            Ok(f) => match f.validate() {
                Ok(()) => parsed.push(f),
                Err(e) => return Err(Refusal(StatusCode::BAD_REQUEST, e)),
            },
            Err(e) => return Err(Refusal(StatusCode::BAD_REQUEST, format!("fault: {e}"))),
        }
    }
    let h = handle(&sb);
    parsed.into_iter().for_each(|f| h.inject(f));
    Ok(Json(json!({ "faults": h.pending_faults() })).into_response())
}

async fn clear_faults(State(sb): State<Sb>) -> Response {
    handle(&sb).clear_faults();
    ok()
}

#[derive(Deserialize)]
struct NewToken {
    token: Option<String>,
    expires_at: Option<i64>,
}

/// Registers a long-lived token; without `token`, mints one and returns it.
async fn add_token(State(sb): State<Sb>, raw: String) -> Answer {
    let req: NewToken = body(&raw)?;
    let h = handle(&sb);
    let expires_at = req.expires_at.unwrap_or(h.now() + 5 * 365 * 86_400);
    let token = match req.token.filter(|t| !t.trim().is_empty()) {
        Some(t) => {
            h.add_long_lived_token(t.trim(), expires_at);
            t
        }
        None => h.new_long_lived_token(expires_at),
    };
    Ok(Json(json!({ "token": token, "expires_at": expires_at })).into_response())
}

#[derive(Deserialize)]
struct TokenRef {
    token: String,
}

async fn revoke_token(State(sb): State<Sb>, raw: String) -> Answer {
    let req: TokenRef = body(&raw)?;
    if handle(&sb).revoke_token(&req.token) {
        Ok(ok())
    } else {
        Err(Refusal(StatusCode::NOT_FOUND, "token: unknown".into()))
    }
}

async fn unban(State(sb): State<Sb>) -> Response {
    handle(&sb).unban();
    ok()
}

async fn state(State(sb): State<Sb>) -> Response {
    Json(handle(&sb).snapshot()).into_response()
}

async fn requests(State(sb): State<Sb>) -> Response {
    Json(json!({ "requests": handle(&sb).requests() })).into_response()
}

async fn deliveries(State(sb): State<Sb>) -> Response {
    Json(json!({ "deliveries": handle(&sb).deliveries() })).into_response()
}

#[derive(Deserialize)]
struct StatusChange {
    status_id: i64,
    pipeline_id: i64,
}

fn lead_id(raw: &str) -> Result<i64, Refusal> {
    raw.parse()
        .map_err(|_| Refusal(StatusCode::NOT_FOUND, format!("lead {raw} not found")))
}

async fn set_status(State(sb): State<Sb>, Path(id): Path<String>, raw: String) -> Answer {
    let id = lead_id(&id)?;
    let req: StatusChange = body(&raw)?;
    Ok(
        match handle(&sb).set_lead_status(id, req.status_id, req.pipeline_id) {
            Ok(()) => Json(handle(&sb).lead(id)).into_response(),
            Err(e) => e.into_response(),
        },
    )
}

async fn edit_lead(State(sb): State<Sb>, Path(id): Path<String>, raw: String) -> Answer {
    let id = lead_id(&id)?;
    let patch: Value = body(&raw)?;
    Ok(match handle(&sb).update_lead_as_manager(id, patch) {
        Ok(()) => Json(handle(&sb).lead(id)).into_response(),
        Err(e) => e.into_response(),
    })
}

#[derive(Deserialize)]
struct CodeRequest {
    redirect_uri: Option<String>,
}

async fn issue_code(State(sb): State<Sb>, raw: String) -> Answer {
    let req: CodeRequest = body(&raw)?;
    let code = handle(&sb).issue_auth_code(req.redirect_uri.as_deref());
    Ok(Json(json!({ "code": code })).into_response())
}

async fn revoke_integration(State(sb): State<Sb>) -> Response {
    handle(&sb).revoke_integration();
    ok()
}

#[derive(Deserialize)]
struct ClockAdvance {
    advance_secs: u64,
}

async fn advance_clock(State(sb): State<Sb>, raw: String) -> Answer {
    let req: ClockAdvance = body(&raw)?;
    let h = handle(&sb);
    h.advance_clock(std::time::Duration::from_secs(req.advance_secs));
    Ok(Json(json!({ "now": h.now() })).into_response())
}

/// Adds an account's past (`History`; `{}` takes the defaults) and names what was made.
async fn history(State(sb): State<Sb>, raw: String) -> Answer {
    let spec: crate::history::History = body(&raw)?;
    let made = handle(&sb).seed_history(&spec);
    Ok(Json(crate::history::summary(&made)).into_response())
}

/// Only the settings named change: `{"batch_504_above": 10}` leaves the whitelist alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default, deserialize_with = "present")]
    batch_504_above: Option<Option<usize>>,
    ip_allowlist: Option<Vec<String>>,
    search_lag_ms: Option<u64>,
}

/// A key that is present (even as `null`) is `Some`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

async fn settings(State(sb): State<Sb>, raw: String) -> Answer {
    let req: Settings = body(&raw)?;
    let h = handle(&sb);
    if let Some(list) = req.ip_allowlist {
        let allowed = SandboxConfig::parse_allowlist(&list.join(","))
            .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("ip_allowlist: {e}")))?;
        h.set_ip_allowlist(allowed);
    }
    if let Some(max) = req.batch_504_above {
        h.set_batch_504_above(max);
    }
    if let Some(lag) = req.search_lag_ms {
        h.set_search_lag_ms(lag);
    }
    let allowlist: Vec<String> = h.ip_allowlist().iter().map(ToString::to_string).collect();
    Ok(Json(json!({ "ok": true, "ip_allowlist": allowlist })).into_response())
}
