//! The one place responses, CORS and admin-key checks are made.

use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

/// A JSON response.
pub fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("cache-control", "no-store")
        .body(Body::Text(body.to_string()))
        .expect("static response parts are valid")
}

/// `{"error": code, "message": …}` with the status.
pub fn error_response(status: u16, code: &str, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": code, "message": message }))
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
    let mut resp = handler(req).instrument(span).await;
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

/// CORS for the site origins in config.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    pub allowed_origins: Vec<String>,
}

impl Cors {
    fn allowed<'a>(&self, req: &'a Request) -> Option<&'a str> {
        let origin = header(req, "origin")?;
        self.allowed_origins
            .iter()
            .any(|o| o == origin.trim_end_matches('/'))
            .then_some(origin)
    }

    /// Adds the CORS headers when the caller's origin is allowed.
    pub fn apply(&self, req: &Request, mut resp: Response<Body>) -> Response<Body> {
        let headers = resp.headers_mut();
        headers.insert("vary", "Origin".parse().expect("static"));
        if let Some(origin) = self.allowed(req).and_then(|o| o.parse().ok()) {
            headers.insert("access-control-allow-origin", origin);
            headers.insert(
                "access-control-expose-headers",
                "Content-Type".parse().expect("static"),
            );
        }
        resp
    }

    /// The answer to a preflight `OPTIONS`.
    pub fn preflight(&self, req: &Request, methods: &str) -> Response<Body> {
        let mut resp = Response::builder()
            .status(204)
            .body(Body::Empty)
            .expect("static response parts are valid");
        if self.allowed(req).is_some() {
            let h = resp.headers_mut();
            h.insert(
                "access-control-allow-methods",
                methods.parse().expect("static"),
            );
            h.insert(
                "access-control-allow-headers",
                "Authorization, Content-Type, Idempotency-Key"
                    .parse()
                    .expect("static"),
            );
            h.insert("access-control-max-age", "600".parse().expect("static"));
        }
        self.apply(req, resp)
    }
}
