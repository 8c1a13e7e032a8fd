//! An amoCRM error answer as read off the wire: its status and body, the request it answered,
//! and the problem+json fields parsed out of it (anything credential-shaped redacted). Both
//! the error mapping (`error.rs`) and the operator hints (`hints.rs`) read it.

use serde::Serialize;
use serde_json::Value;

use crate::config::AmoConfig;

/// One entry of amoCRM's `validation-errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    pub request_id: Option<String>,
    pub code: String,
    pub path: String,
    pub detail: String,
}

/// amoCRM's error code for "access to this account is prohibited from your IP address".
pub const IP_NOT_ALLOWED_CODE: u64 = 113;

/// An amoCRM answer that was not a success, as read off the wire.
#[derive(Debug, Clone, Copy)]
pub struct FailedResponse<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    /// The `Retry-After` header, if any (amoCRM usually sends none).
    pub retry_after_header: Option<&'a str>,
    pub body: &'a str,
}

/// What the request was, so the hint can name the configuration behind a rejected value.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext<'a> {
    /// `METHOD /path` without query values (they may hold a phone or e-mail).
    pub endpoint: &'a str,
    pub config: &'a AmoConfig,
    /// The JSON the request sent: `validation-errors` paths point into it.
    pub request_body: Option<&'a Value>,
}

/// An amoCRM problem+json body; every field is optional because amoCRM omits them freely.
/// Texts come with anything credential-shaped replaced by `[redacted]` (see `redact_tokens`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problem {
    pub problem_type: Option<String>,
    pub title: Option<String>,
    pub detail: Option<String>,
    pub status: Option<u16>,
    /// The OAuth endpoint's real cause (`Cannot decrypt the authorization code`, …).
    pub hint: Option<String>,
    pub validation: Vec<ValidationError>,
    /// Seconds, from a 429 body.
    pub retry_after: Option<u64>,
    pub trace_id: Option<String>,
    /// amoCRM's numeric error code (`error_code`, top level or under the legacy `response`
    /// object), e.g. 113 for "access from your IP address is prohibited".
    pub code: Option<u64>,
}

impl Problem {
    /// Parses a problem body; `None` when the body is not a JSON object (HTML ban page, empty).
    pub fn parse(body: &str) -> Option<Problem> {
        let v: Value = serde_json::from_str(body.trim()).ok()?;
        let obj = v.as_object()?;
        let text = |k: &str| match obj.get(k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(redact_tokens(s.trim())),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Some(Problem {
            problem_type: text("type"),
            title: text("title"),
            detail: text("detail"),
            status: obj
                .get("status")
                .and_then(number)
                .and_then(|n| u16::try_from(n).ok()),
            hint: text("hint"),
            validation: obj
                .get("validation-errors")
                .map(parse_validation_errors)
                .unwrap_or_default(),
            retry_after: obj.get("retry_after").and_then(number),
            trace_id: text("trace_id"),
            code: obj
                .get("error_code")
                .or_else(|| obj.get("response").and_then(|r| r.get("error_code")))
                .and_then(number),
        })
    }

    /// `title: detail (hint)` plus the validation errors, as the official SDK prints them.
    pub(super) fn summary(&self) -> String {
        let mut out = match (&self.title, &self.detail) {
            (Some(t), Some(d)) => format!("{t}: {d}"),
            (Some(t), None) => t.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => "an error without title or detail".to_string(),
        };
        if let Some(h) = &self.hint {
            out.push_str(&format!(" ({h})"));
        }
        for e in &self.validation {
            out.push_str(&format!("; {}: {} ({})", e.path, e.code, e.detail));
        }
        if let Some(t) = &self.trace_id {
            out.push_str(&format!(" [trace_id {t}]"));
        }
        out
    }
}

/// A non-negative integer given as a JSON number or a numeric string.
pub(super) fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.ceil() as u64)),
        Value::String(s) => parse_seconds(s),
        _ => None,
    }
}

pub(super) fn parse_seconds(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// `[{"request_id":"0","errors":[{code,path,detail}]}]`; flat `[{code,path,detail}]` is accepted too.
pub(super) fn parse_validation_errors(v: &Value) -> Vec<ValidationError> {
    let str_of = |o: &Value, k: &str| match o.get(k) {
        Some(Value::String(s)) => redact_tokens(s),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let one = |e: &Value, request_id: Option<String>| ValidationError {
        request_id,
        code: str_of(e, "code"),
        path: str_of(e, "path"),
        detail: str_of(e, "detail"),
    };
    let mut out = Vec::new();
    for item in v.as_array().into_iter().flatten() {
        let request_id = match item.get("request_id") {
            Some(Value::String(s)) => Some(redact_tokens(s)),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match item.get("errors").and_then(Value::as_array) {
            Some(errors) => out.extend(errors.iter().map(|e| one(e, request_id.clone()))),
            None if item.get("path").is_some() || item.get("code").is_some() => {
                out.push(one(item, request_id))
            }
            None => {}
        }
    }
    out
}

pub(super) fn looks_like_html(content_type: Option<&str>, body: &str) -> bool {
    content_type.is_some_and(|c| c.to_ascii_lowercase().contains("html"))
        || body.trim_start().starts_with('<')
}

/// The `<title>` of an HTML page, shortened (nginx ban pages say "403 Forbidden").
pub(super) fn html_title(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let title: String = body[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // Redacted before it is cut: a token cut in half is no longer recognisable.
    (!title.is_empty()).then(|| redact_tokens(&title).chars().take(100).collect())
}

/// Credential-shaped text an error body may carry (a proxy echoing the `Authorization` header,
/// a token endpoint quoting what it was sent): the word after `Bearer` when it is 16 characters
/// or more, and any run of 64 or more characters of the base64/base64url alphabet and `.` (a
/// JWT: amoCRM's access and refresh tokens are hundreds long; ids, validation paths and trace
/// ids are far shorter).
const REDACTED: &str = "[redacted]";
const TOKEN_RUN: usize = 64;
const BEARER_TOKEN: usize = 16;

pub(super) fn redact_tokens(text: &str) -> String {
    let is_token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '=' | '.');
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if is_token_char(c) {
            let end = rest.find(|c| !is_token_char(c)).unwrap_or(rest.len());
            let word = &rest[..end];
            let secret = word.len() >= TOKEN_RUN || (after_bearer && word.len() >= BEARER_TOKEN);
            out.push_str(if secret { REDACTED } else { word });
            after_bearer = word.eq_ignore_ascii_case("bearer");
            rest = &rest[end..];
        } else {
            after_bearer &= c.is_whitespace();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}
