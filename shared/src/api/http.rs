//! The one place responses, CORS and admin-key checks are made. Every error, on every route,
//! has one body: `{"error", "message" (Russian, for a person), "fields"?, "correlation_id"}`,
//! and 429/503 carry `Retry-After` (the contract in `api/openapi.yaml`).

use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Map, Value};

tokio::task_local! {
    /// The request's correlation id, set by `traced` for everything the handler answers.
    static CORRELATION_ID: String;
}

/// Seconds a caller waits before retrying a 503 unless the route says otherwise.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 5;

/// A JSON response.
pub fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("cache-control", "no-store")
        .body(Body::Text(body.to_string()))
        .expect("static response parts are valid")
}

/// An error answer: the code a program matches on, the Russian message a person reads, and
/// (validation only) the fields at fault.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: u16,
    body: Map<String, Value>,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("error".into(), code.into());
        body.insert("message".into(), message.into().into());
        let retry_after = matches!(status, 429 | 503).then_some(DEFAULT_RETRY_AFTER_SECS);
        ApiError {
            status,
            body,
            retry_after,
            allow: None,
        }
    }

    /// 400 `validation_failed` with `[{"field", "message"}]` (messages in Russian).
    pub fn validation(fields: Vec<Value>) -> Self {
        Self::new(
            400,
            "validation_failed",
            "Проверьте поля заявки: некоторые заполнены неверно.",
        )
        .member("fields", Value::Array(fields))
    }

    /// 413 with the route's limit.
    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            "payload_too_large",
            format!(
                "Запрос слишком большой: не больше {} КБ.",
                limit_bytes / 1024
            ),
        )
        .member("limit_bytes", limit_bytes.into())
    }

    /// 400 `malformed_body`: the body could not be read at all; `detail` says why (English,
    /// for the developer).
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            400,
            "malformed_body",
            "Не удалось прочитать запрос: тело должно быть JSON-объектом или формой.",
        )
        .member("detail", detail.into().into())
    }

    /// 503: nothing was saved; the caller retries after `Retry-After`.
    pub fn unavailable() -> Self {
        Self::new(
            503,
            "temporarily_unavailable",
            "Сервис временно недоступен, запрос не сохранён. Повторите через несколько секунд.",
        )
    }

    /// 405 with the methods the route has.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(
            405,
            "method_not_allowed",
            "Этот метод не поддерживается для этого адреса.",
        );
        e.allow = Some(allow);
        e
    }

    pub fn not_found() -> Self {
        Self::new(404, "not_found", "Такого адреса нет.")
    }

    /// A documented extra member (`fields`, `limit_bytes`, `detail`, `hint`, …).
    pub fn member(mut self, key: &str, value: Value) -> Self {
        self.body.insert(key.into(), value);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn response(mut self) -> Response<Body> {
        if let Ok(id) = CORRELATION_ID.try_with(Clone::clone) {
            self.body.insert("correlation_id".into(), id.into());
        }
        let mut resp = json_response(self.status, &Value::Object(self.body));
        let headers = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert("retry-after", secs.into());
        }
        if let Some(allow) = self.allow {
            headers.insert("allow", allow.parse().expect("static"));
        }
        resp
    }
}

impl From<ApiError> for Response<Body> {
    fn from(e: ApiError) -> Self {
        e.response()
    }
}

/// `ApiError::new(status, code, message).response()`.
pub fn error_response(status: u16, code: &str, message: &str) -> Response<Body> {
    ApiError::new(status, code, message).response()
}

/// The request's correlation id inside `traced` (for bodies that are not errors).
pub fn current_correlation_id() -> Option<String> {
    CORRELATION_ID.try_with(Clone::clone).ok()
}

/// Method and path of the route, without the API Gateway stage prefix.
pub fn route(req: &Request) -> (&str, &str) {
    (req.method().as_str(), req.raw_http_path())
}

/// The id that ties this request's log lines together: API Gateway's request id (also in its
/// access log), else a fresh one. Echoed to the caller as `x-correlation-id`.
pub fn correlation_id(req: &Request) -> String {
    use lambda_http::request::RequestContext;
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
    .unwrap_or_else(|| ulid::Ulid::generate().to_string())
}

/// Runs `handler` inside a span carrying the correlation id and route, and echoes the id.
pub async fn traced<F>(req: Request, handler: impl FnOnce(Request) -> F) -> Response<Body>
where
    F: std::future::Future<Output = Response<Body>>,
{
    use tracing::Instrument;
    let id = correlation_id(&req);
    let span = tracing::info_span!(
        "http",
        correlation_id = %id,
        method = %req.method(),
        path = %req.raw_http_path()
    );
    let mut resp = CORRELATION_ID
        .scope(id.clone(), handler(req).instrument(span))
        .await;
    if let Ok(value) = id.parse() {
        resp.headers_mut().insert("x-correlation-id", value);
    }
    resp
}

/// A header as text, if present and valid UTF-8.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The request body as bytes (API Gateway's base64 is already decoded by lambda_http).
pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}
