//! The amoCRM API v4 surface: routes, the gate every API call passes (ban → injected fault →
//! bearer auth → rate limit, then the request log), and the helpers all endpoints share
//! (`application/hal+json` answers, 204 for empty lists, strict batch bodies, paging).

pub mod account;
pub mod complex;
pub mod contacts;
pub mod custom_fields;
pub mod field_values;
pub mod lead_input;
pub mod leads;
pub mod notes;
pub mod params;
pub mod render;
pub mod subscriptions;
pub mod tasks;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::auth::{self, AuthKind, GrantKind};
use crate::errors::{ApiError, ItemErrors, Violations};
use crate::faults::{Fault, RateLimitStyle};
use crate::limits::Verdict;
use crate::state::{RequestLog, Sb};
use crate::{control, oauth};

/// The whole HTTP surface: API, token endpoint and the `/_sandbox` control API.
pub fn router(sb: Sb) -> Router {
    Router::new()
        .route("/api/v4/account", get(account::get_account))
        .route("/api/v4/users", get(account::list_users))
        .route("/api/v4/users/{id}", get(account::get_user))
        .route("/api/v4/leads/pipelines", get(account::list_pipelines))
        .route("/api/v4/leads/pipelines/{id}", get(account::get_pipeline))
        .route(
            "/api/v4/leads/custom_fields",
            get(custom_fields::list_lead_fields).post(custom_fields::create_lead_fields),
        )
        .route(
            "/api/v4/contacts/custom_fields",
            get(custom_fields::list_contact_fields).post(custom_fields::create_contact_fields),
        )
        .route(
            "/api/v4/leads",
            get(leads::list).post(leads::add).patch(leads::update_many),
        )
        .route("/api/v4/leads/complex", post(complex::add))
        .route("/api/v4/leads/notes", get(notes::list).post(notes::add))
        .route(
            "/api/v4/leads/{id}",
            get(leads::get_one).patch(leads::update_one),
        )
        .route(
            "/api/v4/leads/{id}/notes",
            get(notes::list_for_lead).post(notes::add_for_lead),
        )
        .route("/api/v4/contacts", get(contacts::list).post(contacts::add))
        .route("/api/v4/contacts/{id}", get(contacts::get_one))
        .route("/api/v4/tasks", get(tasks::list).post(tasks::add))
        .route("/api/v4/tasks/{id}", get(tasks::get_one))
        .route(
            "/api/v4/webhooks",
            get(subscriptions::list)
                .post(subscriptions::subscribe)
                .delete(subscriptions::unsubscribe),
        )
        .route(TOKEN_PATH, post(oauth::token))
        .merge(control::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(sb.clone(), gate))
        .with_state(sb)
}

/// amoCRM's token endpoint.
const TOKEN_PATH: &str = "/oauth2/access_token";

/// The rate limit's verdict on a request that may proceed otherwise. The limit is the
/// integration's: every token it was granted and its calls to the token endpoint share one
/// window (the sandbox serves one integration, `cfg.client_id`).
fn rate_limited(
    st: &mut crate::state::State,
    cfg: &crate::config::SandboxConfig,
    now_ms: i64,
    hold: Option<(u64, bool)>,
) -> Admission {
    match st
        .limiter
        .admit(&cfg.client_id, now_ms, cfg.requests_per_second)
    {
        Verdict::Allowed => Admission::Proceed { hold },
        Verdict::TooMany => {
            st.limiter.strike(now_ms, cfg.ban_after_429s, cfg.ban_secs);
            Admission::Answer(
                ApiError::TooManyRequests {
                    json: false,
                    retry_after: None,
                }
                .into_response(),
            )
        }
    }
}

/// What the gate decided before the handler runs.
enum Admission {
    Answer(Response),
    Proceed { hold: Option<(u64, bool)> },
}

/// Every non-control request passes here: it may be banned, hit an injected fault, be
/// unauthenticated or over the rate limit; then it is logged.
async fn gate(State(sb): State<Sb>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_sandbox") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_string);
    let header_value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").to_string());
    let token = auth::bearer(header_value.as_deref()).map(str::to_string);
    let needs_token = path.starts_with("/api/");
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let now_ms = sb.clock.now_ms();

    let (admission, kind) = {
        let mut st = sb.lock();
        let kind = match (&header_value, &token) {
            (None, _) => AuthKind::None,
            (Some(_), Some(t)) => match st.grants.get(t).map(|g| g.kind) {
                Some(GrantKind::LongLived) => AuthKind::LongLived,
                Some(GrantKind::OAuth) => AuthKind::OAuth,
                None => AuthKind::Unknown,
            },
            (Some(_), None) => AuthKind::Unknown,
        };
        let filtered = needs_token || path.starts_with("/oauth2/");
        let refused_ip = peer
            .filter(|ip| filtered && !st.ip_allowlist.is_empty() && !st.ip_allowlist.contains(ip));
        let admission = if let Some(ip) = refused_ip {
            Admission::Answer(ApiError::IpNotAllowed { ip: ip.to_string() }.into_response())
        } else if st.limiter.is_banned(now_ms) {
            Admission::Answer(ApiError::Forbidden.into_response())
        } else {
            match st.faults.take(&path) {
                Some(Fault::Status { status, .. }) => {
                    Admission::Answer(ApiError::Status(status).into_response())
                }
                Some(Fault::RateLimit {
                    style, retry_after, ..
                }) => Admission::Answer(
                    ApiError::TooManyRequests {
                        json: style == RateLimitStyle::Json,
                        retry_after,
                    }
                    .into_response(),
                ),
                Some(Fault::Timeout {
                    delay_ms, applied, ..
                }) => Admission::Proceed {
                    hold: Some((delay_ms, applied)),
                },
                None => Admission::Proceed { hold: None },
            }
        };
        let admission = match admission {
            Admission::Proceed { hold } if needs_token => {
                let checked =
                    auth::check(token.as_ref().and_then(|t| st.grants.get(t)), now_ms / 1000);
                match (checked, &token) {
                    (Ok(_), Some(_)) => rate_limited(&mut st, &sb.cfg, now_ms, hold),
                    _ => Admission::Answer(ApiError::Unauthorized.into_response()),
                }
            }
            Admission::Proceed { hold } if path == TOKEN_PATH => {
                rate_limited(&mut st, &sb.cfg, now_ms, hold)
            }
            other => other,
        };
        (admission, kind)
    };

    let log = |status: StatusCode| {
        sb.lock().log_request(RequestLog {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            status: status.as_u16(),
            at_ms: now_ms,
            authorization_kind: kind,
        });
    };
    match admission {
        Admission::Answer(res) => {
            log(res.status());
            res
        }
        Admission::Proceed { hold: None } => {
            let res = next.run(req).await;
            log(res.status());
            res
        }
        Admission::Proceed {
            hold: Some((delay_ms, applied)),
        } => {
            // The effect (if any) happens first, so a client that gives up still leaves a
            // trace; then the answer is held past its timeout.
            let res = if applied {
                next.run(req).await
            } else {
                ApiError::Status(504).into_response()
            };
            log(res.status());
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            res
        }
    }
}

/// A success answer in amoCRM's content type.
pub fn hal(status: StatusCode, body: Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/hal+json"),
    );
    res
}

/// One page of a list in amoCRM's envelope, or 204 when the page is empty.
pub fn list_page(
    sb: &Sb,
    path: &str,
    params: &params::Params,
    page: params::Page,
    key: &str,
    items: Vec<Value>,
) -> Response {
    match params::envelope(sb.base_url(), path, params, page, key, items) {
        Some(body) => hal(StatusCode::OK, body),
        None => no_content(),
    }
}

/// Empty list or deletion: 204 with no body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// amoCRM's largest page and batch.
pub const MAX_BATCH: usize = 250;

/// Parses a JSON body; an empty one gets amoCRM's "Request data can not be empty".
pub fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("Request data can not be empty".into()));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|_| ApiError::BadRequest("Syntax error".into()))?;
    if value.is_null() {
        return Err(ApiError::BadRequest("Request data can not be empty".into()));
    }
    Ok(value)
}

/// A batch body: a JSON array of 1..=`max` objects (more than 250 is amoCRM's 422).
pub fn batch_body(body: &Bytes, max: usize) -> Result<Vec<Value>, ApiError> {
    let value = json_body(body)?;
    let Value::Array(items) = value else {
        let mut v = Violations::default();
        v.invalid_type("", "array");
        return Err(single_item_errors("0", v));
    };
    if items.is_empty() {
        return Err(ApiError::BadRequest("Request data can not be empty".into()));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::LimitExceeded(MAX_BATCH));
    }
    if items.len() > max {
        let mut v = Violations::default();
        v.too_many("", max);
        return Err(single_item_errors("0", v));
    }
    Ok(items)
}

fn single_item_errors(request_id: &str, v: Violations) -> ApiError {
    ApiError::Validation(vec![ItemErrors {
        request_id: request_id.into(),
        errors: v.0,
    }])
}

/// Checks every item of a batch with `check`: any violation fails the whole batch, and
/// amoCRM reports every failing item at once (by its `request_id`). `check` returns `None`
/// only after recording why.
pub fn check_batch<T>(
    items: &[Value],
    mut check: impl FnMut(&Value, &mut Violations) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut v = Violations::default();
        let result = check(item, &mut v);
        if let Some(r) = item.get("request_id")
            && !r.is_string()
            && !r.is_null()
        {
            v.invalid_type("request_id", "string");
        }
        match result {
            Some(t) if v.is_empty() => checked.push(t),
            _ => failures.push(ItemErrors {
                request_id: request_id_of(item, i),
                errors: v.0,
            }),
        }
    }
    if failures.is_empty() {
        Ok(checked)
    } else {
        Err(ApiError::Validation(failures))
    }
}

/// The `request_id` of a batch item: its own string, or its index as amoCRM's SDK sends.
pub fn request_id_of(item: &Value, index: usize) -> String {
    match item.get("request_id") {
        Some(Value::String(s)) => s.clone(),
        _ => index.to_string(),
    }
}

/// A path id: anything but a positive integer is simply not found.
pub fn path_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::NotFound)
}

/// Type checks shared by the write endpoints: `Some(v)` when present and of the right type.
pub mod check {
    use serde_json::Value;

    use crate::errors::Violations;

    pub fn int(item: &Value, key: &str, path: &str, v: &mut Violations) -> Option<i64> {
        match item.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            Some(_) => {
                v.invalid_type(path, "int");
                None
            }
        }
    }

    pub fn string(item: &Value, key: &str, path: &str, v: &mut Violations) -> Option<String> {
        match item.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                v.invalid_type(path, "string");
                None
            }
        }
    }

    pub fn boolean(item: &Value, key: &str, path: &str, v: &mut Violations) -> Option<bool> {
        match item.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                v.invalid_type(path, "bool");
                None
            }
        }
    }

    /// The item itself must be an object.
    pub fn object(item: &Value, v: &mut Violations) -> bool {
        if item.is_object() {
            true
        } else {
            v.invalid_type("", "object");
            false
        }
    }
}
