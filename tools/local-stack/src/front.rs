//! A stand-in for API Gateway (HTTP API, payload 2.0): each HTTP request becomes the same
//! JSON event Lambda would receive, parsed by lambda_http, and is handed to the function
//! that owns the route in template.yaml.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body as AxumBody, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use lambda_http::{Body, Request};
use serde_json::json;

use crate::contract::{Answer, ContractLog};

type BoxFuture = Pin<Box<dyn Future<Output = lambda_http::Response<Body>> + Send>>;

/// One Lambda behind the front.
pub type HttpFunction = Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>;

/// Wraps an async handler into an `HttpFunction`.
pub fn function<F, Fut>(f: F) -> HttpFunction
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = lambda_http::Response<Body>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

/// Routes as in template.yaml: `("POST", "/leads")` → function.
#[derive(Clone, Default)]
pub struct Routes {
    routes: Vec<(String, String, HttpFunction)>,
    /// Every answer checked against api/openapi.yaml (tests).
    contract: Option<Arc<ContractLog>>,
    /// How many of the next `POST /leads` get lead-ingest's 503 (the store unreachable) with
    /// `Retry-After: 1`, without reaching the function: a browser's retry, tested.
    pub unavailable_leads: Arc<std::sync::atomic::AtomicU32>,
    /// lead-ingest's CORS rules, applied to those 503s as the function applies them.
    leads_cors: Option<Arc<shared::api::cors::Cors>>,
}

impl Routes {
    pub fn add(mut self, method: &str, path: &str, f: HttpFunction) -> Self {
        self.routes.push((method.to_string(), path.to_string(), f));
        self
    }

    pub fn checked_by(mut self, log: Arc<ContractLog>) -> Self {
        self.contract = Some(log);
        self
    }

    /// The CORS rules of `POST /leads`, for the 503s answered on lead-ingest's behalf.
    pub fn leads_cors(mut self, cors: shared::api::cors::Cors) -> Self {
        self.leads_cors = Some(Arc::new(cors));
        self
    }

    /// API Gateway's `$default` route: whatever no other route matches.
    pub fn default_route(self, f: HttpFunction) -> Self {
        self.add("ANY", "$default", f)
    }

    /// The route's function and its route key (`POST /leads`, or `$default`).
    fn find(&self, method: &str, path: &str) -> Option<(&HttpFunction, String)> {
        let exact = self
            .routes
            .iter()
            .find(|(m, p, _)| m == method && p == path);
        match exact {
            Some((m, p, f)) => Some((f, format!("{m} {p}"))),
            None => self
                .routes
                .iter()
                .find(|(m, p, _)| m == "ANY" && p == "$default")
                .map(|(_, _, f)| (f, "$default".to_string())),
        }
    }
}

/// The API Gateway v2 event for one request.
pub fn gateway_event(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    route_key: &str,
) -> serde_json::Value {
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let v = String::from_utf8_lossy(value.as_bytes()).to_string();
        header_map
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_pairs(uri.query().unwrap_or("")) {
        query
            .entry(k)
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let now = chrono::Utc::now();
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or(""),
        "headers": header_map,
        "queryStringParameters": if query.is_empty() { serde_json::Value::Null } else { json!(query) },
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": ulid::Ulid::generate().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true,
    })
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

async fn dispatch(
    State(routes): State<Arc<Routes>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((function, route_key)) = routes.find(method.as_str(), uri.path()) else {
        // What API Gateway answers for a route it does not have.
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        )
            .into_response();
    };
    let unavailable = method == Method::POST
        && uri.path() == "/leads"
        && routes
            .unavailable_leads
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
    if unavailable {
        let answer = shared::api::http::ApiError::unavailable().retry_after(1);
        let request = lambda_http::Request::default();
        let resp = shared::api::http::traced(request, |_| async { answer.response() }).await;
        let mut caller = lambda_http::Request::default();
        if let Some(origin) = headers.get("origin") {
            caller.headers_mut().insert("origin", origin.clone());
        }
        let resp = match &routes.leads_cors {
            Some(cors) => cors.apply(&caller, resp),
            None => resp,
        };
        let (parts, body) = resp.into_parts();
        let text = match body {
            Body::Text(t) => t,
            _ => String::new(),
        };
        let mut out = Response::new(AxumBody::from(text));
        *out.status_mut() = parts.status;
        *out.headers_mut() = parts.headers;
        return out;
    }
    let event = gateway_event(&method, &uri, &headers, &body, &route_key);
    let request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("event conversion: {e}"),
            )
                .into_response();
        }
    };
    let resp = function(request).await;
    let (parts, body) = resp.into_parts();
    let bytes = match body {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    if let Some(log) = &routes.contract {
        log.record(Answer {
            method: method.as_str(),
            path: uri.path(),
            status: parts.status.as_u16(),
            headers: &parts.headers,
            body: &bytes,
        });
    }
    let mut out = Response::new(AxumBody::from(bytes));
    *out.status_mut() = parts.status;
    *out.headers_mut() = parts.headers;
    out
}

/// Serves `routes` on `addr` until the returned task is aborted.
pub async fn serve(
    addr: SocketAddr,
    routes: Routes,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .fallback(dispatch)
        .with_state(Arc::new(routes))
        // API Gateway accepts up to 10 MB; the functions enforce their own, smaller limits.
        .layer(DefaultBodyLimit::max(10 * 1024 * 1024));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((bound, task))
}
