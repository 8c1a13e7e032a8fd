//! Every amoCRM failure as one type that says whether a retry can help and what an operator
//! should do about it.
//!
//! `CrmError::from_response` turns an amoCRM error answer (problem+json, an nginx HTML page or
//! nothing at all) into a `CrmError` whose `hint` is the operator's next step; `oauth_error`
//! does the same for the OAuth token endpoint. Messages and hints never carry a token. The
//! answer's parsing is `problem.rs`; the hints' prose is `hints.rs`.

use std::time::Duration;

use serde::Serialize;

pub use super::hints::oauth_hint;
use super::hints::{blocked_hint, status_hint};
pub use super::problem::{
    FailedResponse, IP_NOT_ALLOWED_CODE, Problem, ResponseContext, ValidationError,
};
use super::problem::{html_title, looks_like_html, parse_seconds};
use crate::config::AmoConfig;
use crate::ports::CrmFailure;

pub use crate::ports::CrmErrorKind;

#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct CrmError {
    pub kind: CrmErrorKind,
    /// HTTP status when amoCRM answered at all.
    pub status: Option<u16>,
    /// What happened, safe to store and show (never a token).
    pub message: String,
    /// What an operator should do.
    pub hint: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<ValidationError>,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

/// What the domain sees of an amoCRM failure: the HTTP status and validation paths stay here.
impl From<CrmError> for CrmFailure {
    fn from(e: CrmError) -> Self {
        CrmFailure {
            kind: e.kind,
            message: e.message,
            hint: e.hint,
            retry_after: e.retry_after,
        }
    }
}

/// A failure from behind a port (the token source) on its way back out of the client.
impl From<CrmFailure> for CrmError {
    fn from(f: CrmFailure) -> Self {
        CrmError {
            retry_after: f.retry_after,
            ..CrmError::new(f.kind, f.message, f.hint)
        }
    }
}

impl CrmError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            CrmErrorKind::Transient | CrmErrorKind::RateLimited
        )
    }

    pub fn new(kind: CrmErrorKind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        CrmError {
            kind,
            status: None,
            message: message.into(),
            hint: hint.into(),
            validation: Vec::new(),
            retry_after: None,
        }
    }

    pub fn transient(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(CrmErrorKind::Transient, message, hint)
    }

    pub fn permanent(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(CrmErrorKind::Permanent, message, hint)
    }

    pub fn unauthorized(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(CrmErrorKind::Unauthorized, message, hint)
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// amoCRM answered with a body the client cannot use (not JSON, or JSON of another shape).
    pub fn unexpected_response(endpoint: &str, what: &str) -> Self {
        Self::permanent(
            format!("amoCRM answered {endpoint} with an unexpected body: {what}"),
            format!(
                "{endpoint} answered in a shape this integration does not know. If AMOCRM_BASE_URL \
                 points at something other than amoCRM (a proxy, a captive portal), fix it; \
                 otherwise amoCRM may have changed its API: report it with the lead id, and check \
                 in amoCRM whether the entity was created before re-driving."
            ),
        )
    }

    /// The request never got an answer: timeout, refused connection, DNS, TLS.
    pub fn network(failure: NetworkFailure, endpoint: &str, cfg: &AmoConfig) -> Self {
        let (what, hint) = match failure {
            NetworkFailure::Timeout => (
                format!("no answer within {} ms", cfg.timeout_ms),
                format!(
                    "amoCRM did not answer in time; retried automatically. If it keeps happening, \
                     amoCRM may be degraded, or AMOCRM_TIMEOUT_MS ({} ms) is too short.",
                    cfg.timeout_ms
                ),
            ),
            NetworkFailure::Connect => (
                format!("could not connect to {}", cfg.base_url),
                format!(
                    "The function could not reach {}; retried automatically. If it persists, check \
                     AMOCRM_BASE_URL/AMOCRM_SUBDOMAIN, DNS and the function's outbound network \
                     (VPC/NAT, security groups).",
                    cfg.base_url
                ),
            ),
            NetworkFailure::Other => (
                "the connection failed mid-request".to_string(),
                "The connection to amoCRM broke; retried automatically. If it persists, check the \
                 function's outbound network."
                    .to_string(),
            ),
        };
        Self::transient(format!("amoCRM {endpoint}: {what}"), hint)
    }

    /// Maps an amoCRM error answer to a `CrmError` with the operator's hint.
    pub fn from_response(resp: &FailedResponse<'_>, ctx: &ResponseContext<'_>) -> Self {
        let problem = Problem::parse(resp.body);
        let is_html = problem.is_none() && looks_like_html(resp.content_type, resp.body);
        let summary = match (&problem, is_html) {
            (Some(p), _) => p.summary(),
            (None, true) => match html_title(resp.body) {
                Some(title) => format!("HTML page \"{title}\""),
                None => "an HTML page".to_string(),
            },
            (None, false) if resp.body.trim().is_empty() => "an empty body".to_string(),
            (None, false) => "a body that is not JSON".to_string(),
        };
        let message = format!(
            "amoCRM answered {} to {}: {}",
            resp.status, ctx.endpoint, summary
        );
        let validation = problem
            .as_ref()
            .map(|p| p.validation.clone())
            .unwrap_or_default();

        let (kind, hint) = status_hint(resp.status, problem.as_ref(), is_html, &validation, ctx);

        let retry_after = if resp.status == 429 {
            problem
                .as_ref()
                .and_then(|p| p.retry_after)
                .or_else(|| resp.retry_after_header.and_then(parse_seconds))
                .map(Duration::from_secs)
        } else {
            None
        };
        CrmError {
            kind,
            status: Some(resp.status),
            message,
            hint,
            validation,
            retry_after,
        }
    }
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkFailure {
    Timeout,
    Connect,
    Other,
}

/// Maps an answer of `POST /oauth2/access_token` (code exchange or refresh) to a `CrmError`.
///
/// Any 4xx except 429 is terminal (`Unauthorized`: someone must re-authorize or fix the
/// client credentials); looping on it risks a ban. 429 and 5xx are worth a later retry.
pub fn oauth_error(status: u16, body: &str, cfg: &AmoConfig) -> CrmError {
    let problem = Problem::parse(body);
    let summary = problem
        .as_ref()
        .map(Problem::summary)
        .unwrap_or_else(|| "a body that is not JSON".to_string());
    let message = format!("amoCRM token endpoint answered {status}: {summary}");
    let kind = match status {
        429 => CrmErrorKind::RateLimited,
        // The whitelist and the ban answer 403 at the token endpoint too; the refresh token
        // is not spent by it (see `CrmErrorKind::Blocked`).
        403 => CrmErrorKind::Blocked,
        s if s >= 500 => CrmErrorKind::Transient,
        _ => CrmErrorKind::Unauthorized,
    };
    let cause = problem
        .as_ref()
        .and_then(|p| p.hint.as_deref())
        .unwrap_or("");
    let title = problem
        .as_ref()
        .and_then(|p| p.title.as_deref())
        .unwrap_or("");
    let hint = match kind {
        CrmErrorKind::RateLimited => {
            "The token endpoint is rate-limited; retry later, never in a tight loop.".to_string()
        }
        CrmErrorKind::Transient => {
            "amoCRM's token endpoint failed; retry later. Keep the stored refresh token: it was \
             not spent."
                .to_string()
        }
        CrmErrorKind::Blocked => {
            let is_html = problem.is_none() && looks_like_html(None, body);
            blocked_hint(cfg, problem.as_ref(), is_html)
        }
        _ => oauth_hint(status, cause, title, cfg),
    };
    let mut err = CrmError::new(kind, message, hint).with_status(status);
    if let Some(wait) = problem.and_then(|p| p.retry_after) {
        err.retry_after = Some(Duration::from_secs(wait));
    }
    err
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::amocrm::problem::redact_tokens;
    use crate::amocrm::testkit::test_config;

    fn map(status: u16, body: &str, request_body: Option<&Value>) -> CrmError {
        let cfg = test_config("http://127.0.0.1:1");
        CrmError::from_response(
            &FailedResponse {
                status,
                content_type: None,
                retry_after_header: None,
                body,
            },
            &ResponseContext {
                endpoint: "POST /api/v4/leads/complex",
                config: &cfg,
                request_body,
            },
        )
    }

    const VALIDATION_BODY: &str = r#"{"validation-errors":[{"request_id":"0","errors":[{"code":"NotSupportedChoice","path":"custom_fields_values.0.field_id","detail":"The value you selected is not a valid choice."}]}],"title":"Bad Request","type":"https://httpstatus.es/400","status":400,"detail":"Request validation failed"}"#;

    #[test]
    fn documented_validation_body_is_parsed_and_names_the_field_variable() {
        let sent = json!([{
            "name": "x",
            "request_id": "01J0000000000000000000000",
            "custom_fields_values": [
                {"field_id": 712631, "values": [{"value": "16К20"}]},
            ]
        }]);
        let err = map(400, VALIDATION_BODY, Some(&sent));
        assert_eq!(err.kind, CrmErrorKind::Permanent);
        assert_eq!(err.status, Some(400));
        assert_eq!(
            err.validation,
            vec![ValidationError {
                request_id: Some("0".into()),
                code: "NotSupportedChoice".into(),
                path: "custom_fields_values.0.field_id".into(),
                detail: "The value you selected is not a valid choice.".into(),
            }]
        );
        assert!(
            err.message.contains("Request validation failed"),
            "{}",
            err.message
        );
        assert!(err.message.contains("POST /api/v4/leads/complex"));
        assert!(
            err.hint.contains("AMOCRM_FIELD_MODEL=712631"),
            "{}",
            err.hint
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn pipeline_status_and_user_paths_name_their_variables() {
        for (path, var) in [
            ("pipeline_id", "AMOCRM_PIPELINE_ID=10226282"),
            ("status_id", "AMOCRM_STATUS_ID=80953554"),
            ("responsible_user_id", "AMOCRM_RESPONSIBLE_USER_ID=12380450"),
            (
                "_embedded.contacts.0.responsible_user_id",
                "AMOCRM_RESPONSIBLE_USER_ID=12380450",
            ),
        ] {
            let body = format!(
                r#"{{"validation-errors":[{{"request_id":"0","errors":[{{"code":"InvalidType","path":"{path}","detail":"bad"}}]}}],"title":"Bad Request","status":400}}"#
            );
            let err = map(400, &body, None);
            assert!(err.hint.contains(var), "{path}: {}", err.hint);
        }
    }

    #[test]
    fn field_index_is_resolved_in_the_item_our_request_id_names() {
        let sent = json!([
            {"request_id": "A", "custom_fields_values": [{"field_id": 712629, "values": []}]},
            {"request_id": "B", "custom_fields_values": [
                {"field_id": 712629, "values": []},
                {"field_id": 712633, "values": []}
            ]},
        ]);
        let body = r#"{"validation-errors":[{"request_id":"B","errors":[{"code":"InvalidType","path":"custom_fields_values.1.values.0.value","detail":"x"}]}]}"#;
        let err = map(400, body, Some(&sent));
        assert!(
            err.hint.contains("AMOCRM_FIELD_TELEGRAM_ID=712633"),
            "{}",
            err.hint
        );
    }

    #[test]
    fn unknown_paths_ask_for_a_bug_report_instead_of_a_config_change() {
        let body = r#"{"validation-errors":[{"request_id":"0","errors":[{"code":"TooFew","path":"custom_fields_values","detail":"This collection should contain 1 element or more."}]}],"title":"Bad Request","status":400}"#;
        let err = map(400, body, None);
        assert!(
            err.hint
                .contains("`custom_fields_values` was rejected (TooFew"),
            "{}",
            err.hint
        );
        assert!(!err.hint.contains("AMOCRM_"), "{}", err.hint);
    }

    #[test]
    fn every_403_means_amocrm_refuses_our_address_never_the_token() {
        let html = "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        let ban = map(403, html, None);
        assert_eq!(ban.kind, CrmErrorKind::Blocked);
        assert!(!ban.is_retryable());
        assert!(
            ban.message.contains("HTML page \"403 Forbidden\""),
            "{}",
            ban.message
        );
        assert!(ban.hint.contains("prolongs a ban"), "{}", ban.hint);
        assert!(ban.hint.contains("amoCRM support"));
        assert!(ban.hint.contains("new599bd9d13818a"));
        assert!(ban.hint.contains("AmoEgress=StaticIp"), "{}", ban.hint);
        assert!(ban.hint.contains("No re-authorization is needed"));

        let rights = map(
            403,
            r#"{"title":"Forbidden","type":"https://httpstatus.es/403","status":403,"detail":"Access denied"}"#,
            None,
        );
        assert_eq!(rights.kind, CrmErrorKind::Blocked);
        assert!(rights.hint.contains("whitelist"), "{}", rights.hint);
        assert!(rights.hint.contains("rights"), "{}", rights.hint);
        assert!(!rights.hint.contains("ban page"));
    }

    #[test]
    fn a_code_113_names_the_whitelist_and_the_egress_address() {
        let body = r#"{"title":"Forbidden","type":"https://httpstatus.es/403","status":403,"detail":"Access to this account is prohibited from your IP address","error_code":113}"#;
        let mut cfg = test_config("https://new599bd9d13818a.amocrm.ru");
        cfg.egress_ip = Some("198.51.100.7".into());
        let e = CrmError::from_response(
            &FailedResponse {
                status: 403,
                content_type: Some("application/problem+json"),
                retry_after_header: None,
                body,
            },
            &ResponseContext {
                endpoint: "POST /api/v4/leads/complex",
                config: &cfg,
                request_body: None,
            },
        );
        assert_eq!(e.kind, CrmErrorKind::Blocked);
        assert!(
            e.hint
                .starts_with("amoCRM refuses our IP address (error 113"),
            "{}",
            e.hint
        );
        assert!(
            e.hint
                .contains("198.51.100.7 (the stack output AmoEgressIp)"),
            "{}",
            e.hint
        );
        // The legacy `response` envelope carries the code too.
        let legacy =
            Problem::parse(r#"{"response":{"error":"Доступ запрещён","error_code":"113"}}"#)
                .expect("an object");
        assert_eq!(legacy.code, Some(113));
        // At the token endpoint the same 403 is not a token refusal.
        let token = oauth_error(403, body, &cfg);
        assert_eq!(token.kind, CrmErrorKind::Blocked);
        assert!(token.hint.contains("AmoEgressIp"), "{}", token.hint);
        assert!(
            !token.hint.contains("re-authorize the integration"),
            "{}",
            token.hint
        );
    }

    #[test]
    fn status_table() {
        let e401 = map(
            401,
            r#"{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"Invalid user name or password"}"#,
            None,
        );
        assert_eq!(e401.kind, CrmErrorKind::Unauthorized);
        assert!(
            e401.message
                .contains("Unauthorized: Invalid user name or password")
        );
        assert!(e401.hint.contains("Keys and scopes"));
        assert!(e401.hint.contains("https://api.td-rss.ru/webhook/amocrm"));

        let e402 = map(
            402,
            r#"{"title":"Payment Required","type":"https://httpstatus.es/402","status":402,"detail":"Payment required"}"#,
            None,
        );
        assert_eq!(e402.kind, CrmErrorKind::Permanent);
        assert!(e402.hint.contains("not paid"));

        let e404 = map(404, r#"{"title":"Not Found","status":404}"#, None);
        assert_eq!(e404.kind, CrmErrorKind::Permanent);
        assert!(e404.hint.contains("AMOCRM_SUBDOMAIN"));

        let e422 = map(
            422,
            r#"{"title":"Unprocessable Entity","type":"https://httpstatus.es/422","status":422,"detail":"Limit 250 per page"}"#,
            None,
        );
        assert_eq!(e422.kind, CrmErrorKind::Permanent);
        assert!(e422.message.contains("Limit 250 per page"));

        let e500 = map(
            500,
            r#"{"title":"ErrInternalServer","status":500,"detail":"oops","trace_id":"abc123"}"#,
            None,
        );
        assert_eq!(e500.kind, CrmErrorKind::Transient);
        assert!(e500.message.contains("trace_id abc123"));

        let e503 = map(503, "", None);
        assert_eq!(e503.kind, CrmErrorKind::Transient);
        assert!(e503.message.contains("an empty body"));

        let e405 = map(405, "nope", None);
        assert_eq!(e405.kind, CrmErrorKind::Permanent);
    }

    #[test]
    fn rate_limit_reads_retry_after_from_the_body_or_the_header() {
        let json_429 = r#"{"title":"Too Many Requests","type":"https://httpstatus.es/429","status":429,"detail":"You have sent too many requests in a given amount of time. Please try again later.","retry_after":300}"#;
        let e = map(429, json_429, None);
        assert_eq!(e.kind, CrmErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(300)));

        let html = map(429, "<html><body>Too many</body></html>", None);
        assert_eq!(html.kind, CrmErrorKind::RateLimited);
        assert_eq!(html.retry_after, None);

        let cfg = test_config("http://127.0.0.1:1");
        let header = CrmError::from_response(
            &FailedResponse {
                status: 429,
                content_type: Some("text/html"),
                retry_after_header: Some("7"),
                body: "",
            },
            &ResponseContext {
                endpoint: "GET /api/v4/leads",
                config: &cfg,
                request_body: None,
            },
        );
        assert_eq!(header.retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn problem_parsing_tolerates_missing_fields_odd_types_and_non_json() {
        assert_eq!(Problem::parse("<html></html>"), None);
        assert_eq!(Problem::parse(""), None);
        assert_eq!(Problem::parse("[1,2]"), None);
        let p = Problem::parse(r#"{"status":"429","retry_after":"12","validation-errors":"x"}"#)
            .unwrap();
        assert_eq!(p.status, Some(429));
        assert_eq!(p.retry_after, Some(12));
        assert!(p.validation.is_empty());
        assert_eq!(p.title, None);
        let flat =
            Problem::parse(r#"{"validation-errors":[{"code":"InvalidType","path":"price"}]}"#)
                .unwrap();
        assert_eq!(flat.validation[0].path, "price");
        assert_eq!(flat.validation[0].detail, "");
    }

    /// Found by the `amocrm_problem` fuzz target: a `Bearer` token in an HTML ban page's title
    /// came out in the message. Tokens in any echoed text are now redacted.
    #[test]
    fn tokens_in_an_error_body_never_reach_message_hint_or_validation() {
        let jwt = format!("eyJ0eXAiOiJKV1QifQ.{}.sig", "eyJhdWQiOiJ4In0".repeat(6));
        let bearer = "Bearer Zk9mYXJfc2VjcmV0X3Rva2Vu";
        let html = format!("<html><title>{} {bearer}</title></html>", "x".repeat(80));
        let problem = json!({
            "title": format!("Unauthorized {bearer}"),
            "detail": format!("token {jwt} rejected"),
            "hint": format!("refresh_token={jwt}"),
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "validation-errors": [{"request_id": "0", "errors": [
                {"code": "InvalidType", "path": "custom_fields_values.0.field_id", "detail": jwt}
            ]}],
        })
        .to_string();
        let cfg = test_config("http://127.0.0.1:1");
        for err in [
            map(403, &html, None),
            map(400, &problem, None),
            oauth_error(401, &problem, &cfg),
        ] {
            let stored = serde_json::to_string(&err).unwrap();
            for text in [&err.message, &err.hint, &stored] {
                assert!(!text.contains("Zk9mYXJfc2VjcmV0X3Rva2Vu"), "{text}");
                assert!(!text.contains("eyJhdWQiOiJ4In0"), "{text}");
            }
        }
        let p = Problem::parse(&problem).unwrap();
        assert_eq!(p.title.as_deref(), Some("Unauthorized Bearer [redacted]"));
        assert_eq!(p.detail.as_deref(), Some("token [redacted] rejected"));
        // What operators need stays: short words after Bearer, trace ids, paths.
        assert_eq!(
            p.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(p.validation[0].path, "custom_fields_values.0.field_id");
        assert_eq!(
            redact_tokens("Invalid Bearer token"),
            "Invalid Bearer token"
        );
    }

    #[test]
    fn network_failures_are_transient_and_say_where() {
        let cfg = test_config("https://example.amocrm.ru");
        let e = CrmError::network(NetworkFailure::Timeout, "GET /api/v4/account", &cfg);
        assert_eq!(e.kind, CrmErrorKind::Transient);
        assert_eq!(e.status, None);
        assert!(e.message.contains("GET /api/v4/account"));
        let e = CrmError::network(NetworkFailure::Connect, "GET /api/v4/account", &cfg);
        assert!(e.hint.contains("https://example.amocrm.ru"));
    }

    #[test]
    fn oauth_errors_from_the_brief_and_api_notes_get_their_fixes() {
        let cfg = test_config("https://new599bd9d13818a.amocrm.ru");
        let decrypt = oauth_error(
            400,
            r#"{"hint":"Cannot decrypt the authorization code","title":"Некорректный запрос","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":400,"detail":"В запросе отсутствует ряд параметров или параметры невалидны"}"#,
            &cfg,
        );
        assert_eq!(decrypt.kind, CrmErrorKind::Unauthorized);
        assert!(
            decrypt
                .message
                .contains("(Cannot decrypt the authorization code)")
        );
        assert!(
            decrypt
                .hint
                .contains("exactly https://api.td-rss.ru/webhook/amocrm"),
            "{}",
            decrypt.hint
        );

        let incorrect_client = oauth_error(
            401,
            r#"{"title":"Некорректный клиент","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":401,"detail":"Авторизация клиента не прошла"}"#,
            &cfg,
        );
        assert_eq!(incorrect_client.kind, CrmErrorKind::Unauthorized);
        assert!(incorrect_client.hint.contains("Incorrect client"));
        assert!(
            incorrect_client
                .hint
                .contains("2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd")
        );

        for (cause, expect) in [
            ("Authorization code has been revoked", "already used"),
            ("Authorization code has expired", "20 minutes"),
            ("Check the `client_id` parameter", "AMOCRM_CLIENT_ID"),
            (
                "Check the `client_secret` parameter",
                "amocrm_client_secret",
            ),
            (
                "Redirect URI is not associated with client",
                "AMOCRM_REDIRECT_URI",
            ),
            ("Invalid account", "AMOCRM_SUBDOMAIN"),
            ("Token has been revoked", "single-use"),
            ("Token has expired", "3 months"),
            ("Invalid refresh token", "damaged"),
        ] {
            let body =
                format!(r#"{{"hint":"{cause}","title":"Некорректный запрос","status":400}}"#);
            let e = oauth_error(400, &body, &cfg);
            assert!(e.hint.contains(expect), "{cause}: {}", e.hint);
        }

        assert_eq!(
            oauth_error(503, "<html>", &cfg).kind,
            CrmErrorKind::Transient
        );
        assert_eq!(oauth_error(429, "{}", &cfg).kind, CrmErrorKind::RateLimited);
    }
}
