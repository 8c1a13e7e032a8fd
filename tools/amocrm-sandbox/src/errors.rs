//! amoCRM's error answers, byte for byte where a real sample exists (problem JSON with
//! `title`/`type`/`status`/`detail`, `validation-errors` for 400, nginx HTML for 403/429/5xx).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// One violation inside `validation-errors[].errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub code: String,
    pub path: String,
    pub detail: String,
}

/// The violations of one item of a batch (`request_id` is the item's own or its index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemErrors {
    pub request_id: String,
    pub errors: Vec<Violation>,
}

/// Collects violations for one item; paths are amoCRM's dot notation
/// (`custom_fields_values.0.values.0.value`).
#[derive(Debug, Default)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    fn push(&mut self, code: &str, path: &str, detail: String) {
        self.0.push(Violation {
            code: code.into(),
            path: path.into(),
            detail,
        });
    }

    /// Wrong JSON type (`price: "100"`): amoCRM's `InvalidType`.
    pub fn invalid_type(&mut self, path: &str, expected: &str) {
        self.push(
            "InvalidType",
            path,
            format!("This value should be of type {expected}."),
        );
    }

    /// Unknown id or enum (`field_id` of another entity, a missing status).
    pub fn not_a_choice(&mut self, path: &str) {
        self.push(
            "NotSupportedChoice",
            path,
            "The value you selected is not a valid choice.".into(),
        );
    }

    pub fn too_few(&mut self, path: &str, min: usize) {
        let noun = if min == 1 { "element" } else { "elements" };
        self.push(
            "TooFew",
            path,
            format!("This collection should contain {min} {noun} or more."),
        );
    }

    pub fn too_many(&mut self, path: &str, max: usize) {
        self.push(
            "TooMuch",
            path,
            format!("This collection should contain {max} elements or less."),
        );
    }

    pub fn blank(&mut self, path: &str) {
        self.push("NotBlank", path, "This value should not be blank.".into());
    }

    pub fn below_zero(&mut self, path: &str) {
        self.push(
            "GreaterThanOrEqual",
            path,
            "This value should be greater than or equal to 0.".into(),
        );
    }

    pub fn invalid_url(&mut self, path: &str) {
        self.push("InvalidUrl", path, "This value is not a valid URL.".into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Everything the API answers other than success.
#[derive(Debug, Clone)]
pub enum ApiError {
    Unauthorized,
    /// 400 without `validation-errors` (e.g. "Request data can not be empty").
    BadRequest(String),
    Validation(Vec<ItemErrors>),
    NotFound,
    MethodNotAllowed,
    /// 422 "Limit 250 per page".
    LimitExceeded(usize),
    /// 429; `json` picks the documented body, otherwise the HTML observed in the wild.
    TooManyRequests {
        json: bool,
        retry_after: Option<u64>,
    },
    /// 403 nginx page (ban).
    Forbidden,
    /// 403 with error code 113: the account's API IP whitelist does not list the caller.
    IpNotAllowed {
        ip: String,
    },
    PaymentRequired,
    /// Any other status (fault injection): problem JSON for 4xx/500, nginx HTML for 502–504.
    Status(u16),
}

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A JSON object with its keys in the given order (amoCRM's order; `serde_json::Value`
/// would sort them).
pub fn ordered_json(pairs: &[(&str, Value)]) -> String {
    let raw: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    ordered_raw_json(&raw)
}

/// Like `ordered_json`, with values given as JSON text.
fn ordered_raw_json(pairs: &[(&str, String)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(*k), v))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("title", json!(title)),
        (
            "type",
            json!(format!("https://httpstatus.es/{}", status.as_u16())),
        ),
        ("status", json!(status.as_u16())),
        ("detail", json!(detail)),
    ]
}

/// A response with a problem JSON body.
pub fn problem_response(status: StatusCode, body: &[(&str, Value)]) -> Response {
    problem_text_response(status, ordered_json(body))
}

fn problem_text_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

/// The page nginx renders in front of amoCRM for 403/429/502/503/504.
pub fn nginx_page(status: StatusCode) -> Response {
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Unauthorized => problem_response(
                StatusCode::UNAUTHORIZED,
                &problem(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "Invalid user name or password",
                ),
            ),
            ApiError::BadRequest(detail) => problem_response(
                StatusCode::BAD_REQUEST,
                &problem(StatusCode::BAD_REQUEST, "Bad Request", &detail),
            ),
            ApiError::Validation(items) => {
                // amoCRM puts `validation-errors` first; items keep their field order
                // (`request_id`, `errors`; `code`, `path`, `detail`).
                let items = serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
                let mut body = vec![("validation-errors", items)];
                body.extend(
                    problem(
                        StatusCode::BAD_REQUEST,
                        "Bad Request",
                        "Request validation failed",
                    )
                    .into_iter()
                    .map(|(k, v)| (k, v.to_string())),
                );
                problem_text_response(StatusCode::BAD_REQUEST, ordered_raw_json(&body))
            }
            ApiError::NotFound => problem_response(
                StatusCode::NOT_FOUND,
                &problem(StatusCode::NOT_FOUND, "Not Found", "Not Found"),
            ),
            ApiError::MethodNotAllowed => problem_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &problem(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method Not Allowed",
                    "Method Not Allowed",
                ),
            ),
            ApiError::LimitExceeded(limit) => problem_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Unprocessable Entity",
                    &format!("Limit {limit} per page"),
                ),
            ),
            ApiError::TooManyRequests { json, retry_after } => {
                if json {
                    let mut body = problem(
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too Many Requests",
                        "You have sent too many requests in a given amount of time. Please try again later.",
                    );
                    body.push(("retry_after", json!(retry_after.unwrap_or(300))));
                    problem_response(StatusCode::TOO_MANY_REQUESTS, &body)
                } else {
                    let mut res = nginx_page(StatusCode::TOO_MANY_REQUESTS);
                    if let Some(secs) = retry_after {
                        res.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                    }
                    res
                }
            }
            ApiError::Forbidden => nginx_page(StatusCode::FORBIDDEN),
            ApiError::IpNotAllowed { ip } => {
                let mut body = problem(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "Access to this account is prohibited from your IP address",
                );
                body.push(("error_code", json!(113)));
                body.push(("ip", json!(ip)));
                problem_response(StatusCode::FORBIDDEN, &body)
            }
            ApiError::PaymentRequired => problem_response(
                StatusCode::PAYMENT_REQUIRED,
                &problem(
                    StatusCode::PAYMENT_REQUIRED,
                    "Payment Required",
                    "Payment required",
                ),
            ),
            ApiError::Status(code) => status_response(code),
        }
    }
}

fn status_response(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status.as_u16() {
        401 => ApiError::Unauthorized.into_response(),
        402 => ApiError::PaymentRequired.into_response(),
        403 | 429 | 502..=504 => nginx_page(status),
        500 => {
            let body = [
                ("title", json!("ErrInternalServer")),
                ("type", json!("https://httpstatus.es/500")),
                ("status", json!(500)),
                ("detail", json!("Internal Server Error")),
                ("trace_id", json!(uuid::Uuid::new_v4().simple().to_string())),
            ];
            problem_response(status, &body)
        }
        _ => {
            let reason = status.canonical_reason().unwrap_or("Error");
            problem_response(status, &problem(status, reason, reason))
        }
    }
}
