//! The amoCRM API v4 HTTP client every part of the project uses.
//!
//! One call = paced attempts (≤ N starts per second, process-wide), a bearer from the
//! `TokenSource`, one token refresh on 401, back-off on network errors, 5xx and 429, and every
//! failure mapped to a `CrmError` with an operator hint. Logs never carry the token, and search
//! terms (phones, e-mails) are masked.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;
use tokio::time::{Instant, sleep};

use super::account_pacing::RequestPacing;
use super::error::{CrmError, CrmErrorKind, FailedResponse, NetworkFailure, ResponseContext};
use super::pacing::Pacer;
use super::token::TokenSource;
use crate::config::AmoConfig;

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total for transient failures and 429 (the one retry after a 401 is extra).
    pub max_attempts: u32,
    /// Wait after the first transient failure; doubles after each further one.
    pub base_delay: Duration,
    /// Cap of the doubling wait.
    pub max_delay: Duration,
    /// A 429 asking to wait longer than this is returned to the caller (with `retry_after`)
    /// instead of holding the function.
    pub max_rate_limit_wait: Duration,
    /// First wait after a 429 that did not say how long (amoCRM's HTML 429); doubles.
    pub rate_limit_default: Duration,
}

impl Default for RetryPolicy {
    /// Production: 4 attempts, 0.5 s doubling up to 8 s; a 429 is waited out up to 10 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_rate_limit_wait: Duration::from_secs(10),
            rate_limit_default: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// For tests: the same rules with millisecond waits.
    pub fn fast() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
            max_rate_limit_wait: Duration::from_secs(2),
            rate_limit_default: Duration::from_millis(30),
        }
    }

    /// The wait after the `n`-th transient failure (1-based).
    pub fn backoff(&self, n: u32) -> Duration {
        doubled(self.base_delay, n).min(self.max_delay)
    }
}

fn doubled(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.saturating_sub(1).min(20))
}

/// Per-call departures from the client's `RetryPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Hand 5xx answers and timeouts back at once instead of resending the same request: the
    /// maintenance push answers amoCRM's 504 ("batch too heavy") with a smaller batch. 401
    /// refresh, 429 waits and connections that never opened are handled as usual.
    pub no_transient_retries: bool,
}

/// The amoCRM API v4 client. Cheap to clone; clones share the pacer and connection pool.
#[derive(Clone)]
pub struct AmoClient {
    http: reqwest::Client,
    cfg: Arc<AmoConfig>,
    tokens: Arc<dyn TokenSource>,
    /// This process's pacer, or the account-wide one (`with_pacing`).
    pacer: Arc<dyn RequestPacing>,
    retry: RetryPolicy,
    /// Where each call's outcome is noted for `GET /health` (shared by clones).
    recorder: Option<Arc<super::call_log::CallRecorder>>,
}

impl std::fmt::Debug for AmoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmoClient")
            .field("base_url", &self.cfg.base_url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One failed attempt, and whether amoCRM can have acted on it.
struct Failure {
    error: CrmError,
    /// The request never left (connection refused, DNS): repeating it cannot duplicate anything.
    never_sent: bool,
}

impl AmoClient {
    pub fn new(cfg: &AmoConfig, tokens: Arc<dyn TokenSource>) -> Result<Self, CrmError> {
        let base = reqwest::Url::parse(&cfg.base_url).map_err(|e| {
            CrmError::permanent(
                format!("AMOCRM_BASE_URL {:?} is not a URL: {e}", cfg.base_url),
                "Set AMOCRM_SUBDOMAIN to the account's subdomain (or AMOCRM_BASE_URL to \
                 https://<subdomain>.amocrm.ru)."
                    .to_string(),
            )
        })?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(CrmError::permanent(
                format!("AMOCRM_BASE_URL {:?} is not an http(s) URL", cfg.base_url),
                "Set AMOCRM_BASE_URL to https://<subdomain>.amocrm.ru.".to_string(),
            ));
        }
        let http = http_client(cfg.timeout_ms, reqwest::redirect::Policy::default())?;
        Ok(AmoClient {
            http,
            cfg: Arc::new(cfg.clone()),
            tokens,
            pacer: Arc::new(Pacer::for_amocrm(cfg.requests_per_second)),
            retry: RetryPolicy::default(),
            recorder: None,
        })
    }

    /// Every call of this client (and its clones) noted by `recorder`.
    pub fn with_recorder(mut self, recorder: Arc<super::call_log::CallRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn config(&self) -> &AmoConfig {
        &self.cfg
    }

    /// Every request of this client (and its clones) started by `pacing` instead of the
    /// process's own pacer: the account-wide limit.
    pub fn with_pacing(mut self, pacing: Arc<dyn RequestPacing>) -> Self {
        self.pacer = pacing;
        self
    }

    /// One API call: `path` starts with `/api/v4/`. `Ok(None)` for 204 No Content (amoCRM's
    /// "empty list") or an empty 2xx body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, CrmError> {
        self.request_with(method, path, query, body, CallOptions::default())
            .await
    }

    /// `request` with per-call options. Its outcome goes to the recorder, if any.
    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        options: CallOptions,
    ) -> Result<Option<Value>, CrmError> {
        let endpoint = format!("{method} {path}");
        if let Some(recorder) = &self.recorder {
            // While a 403 or 429 holds calls, nothing is sent: every call would prolong a ban.
            recorder.admit().await?;
        }
        let result = self
            .call(method, path, &endpoint, query, body, options)
            .await;
        if let Some(recorder) = &self.recorder {
            recorder.observe(&endpoint, &result).await;
        }
        result
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        endpoint: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        options: CallOptions,
    ) -> Result<Option<Value>, CrmError> {
        let url = format!("{}{}", self.cfg.base_url, path);
        let logged_query = masked_query(query);
        // Repeating a POST that amoCRM may have executed could create a second lead or note;
        // the caller resolves that (it looks the entity up before creating it again).
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::PATCH | Method::DELETE
        );

        let mut token = self.tokens.bearer().await?;
        let mut refreshed = false;
        let mut attempt = 0u32;
        let mut transient_failures = 0u32;
        let mut rate_limits = 0u32;
        loop {
            attempt += 1;
            self.pacer.wait_turn().await;
            let started = Instant::now();
            let result = self
                .send_once(&method, &url, query, body, &token, endpoint)
                .await;
            let duration_ms = started.elapsed().as_millis() as u64;
            let failure = match result {
                Ok((status, value)) => {
                    tracing::info!(
                        method = %method, path, params = %logged_query, status, duration_ms, attempt,
                        "amoCRM request"
                    );
                    return Ok(value);
                }
                Err(f) => f,
            };
            let Failure {
                error: mut err,
                never_sent,
            } = failure;
            redact(&mut err, &token);
            tracing::warn!(
                method = %method, path, params = %logged_query, status = err.status,
                kind = ?err.kind, duration_ms, attempt, error = %err.message,
                "amoCRM request failed"
            );

            if err.status == Some(401) && !refreshed {
                refreshed = true;
                attempt -= 1;
                token = self.tokens.after_unauthorized(&token).await?;
                continue;
            }
            let caller_resizes =
                options.no_transient_retries && err.kind == CrmErrorKind::Transient && !never_sent;
            if !err.is_retryable()
                || attempt >= self.retry.max_attempts
                || caller_resizes
                || !(idempotent || never_sent || err.kind == CrmErrorKind::RateLimited)
            {
                if err.kind == CrmErrorKind::RateLimited && err.retry_after.is_none() {
                    // Tell the caller how long to stay away before it tries again.
                    err.retry_after = Some(doubled(self.retry.rate_limit_default, rate_limits + 1));
                }
                return Err(err);
            }
            let wait = if err.kind == CrmErrorKind::RateLimited {
                rate_limits += 1;
                let wait = err
                    .retry_after
                    .unwrap_or_else(|| doubled(self.retry.rate_limit_default, rate_limits));
                if wait > self.retry.max_rate_limit_wait {
                    err.retry_after = Some(wait);
                    return Err(err);
                }
                wait
            } else {
                transient_failures += 1;
                self.retry.backoff(transient_failures)
            };
            tracing::info!(method = %method, path, wait_ms = wait.as_millis() as u64, "amoCRM retry after wait");
            sleep(wait).await;
        }
    }

    /// One attempt: the status and JSON on success, the mapped error otherwise.
    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        token: &str,
        endpoint: &str,
    ) -> Result<(u16, Option<Value>), Failure> {
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(token)
            .header(ACCEPT, "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.network_failure(&e, endpoint))?;
        let status = resp.status().as_u16();
        crate::metrics::amocrm_status(status);
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(CONTENT_TYPE);
        let retry_after = header(RETRY_AFTER);
        let text = resp
            .text()
            .await
            .map_err(|e| self.network_failure(&e, endpoint))?;

        if (200..300).contains(&status) {
            if status == 204 || text.trim().is_empty() {
                return Ok((status, None));
            }
            return match serde_json::from_str(&text) {
                Ok(v) => Ok((status, Some(v))),
                Err(_) => Err(Failure {
                    error: CrmError::unexpected_response(endpoint, "not JSON").with_status(status),
                    never_sent: false,
                }),
            };
        }
        let error = CrmError::from_response(
            &FailedResponse {
                status,
                content_type: content_type.as_deref(),
                retry_after_header: retry_after.as_deref(),
                body: &text,
            },
            &ResponseContext {
                endpoint,
                config: &self.cfg,
                request_body: body,
            },
        );
        Err(Failure {
            error,
            never_sent: false,
        })
    }

    fn network_failure(&self, e: &reqwest::Error, endpoint: &str) -> Failure {
        crate::metrics::count(crate::metrics::Metric::AmoCrmNetworkErrors);
        let (kind, never_sent) = if e.is_timeout() {
            (NetworkFailure::Timeout, false)
        } else if e.is_connect() {
            (NetworkFailure::Connect, true)
        } else {
            (NetworkFailure::Other, false)
        };
        Failure {
            error: CrmError::network(kind, endpoint, &self.cfg),
            never_sent,
        }
    }
}

/// Defence in depth: no message or hint may ever carry the bearer.
fn redact(err: &mut CrmError, token: &str) {
    if token.len() >= 8 {
        err.message = err.message.replace(token, "<token>");
        err.hint = err.hint.replace(token, "<token>");
    }
}

/// The query for logs: search terms (`query=`) may be a phone or an e-mail, so they are masked.
pub(crate) fn masked_query(query: &[(&str, String)]) -> String {
    query
        .iter()
        .map(|(k, v)| {
            if *k == "query" {
                format!("{k}={}", mask_search_term(v))
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `i***@example.com`, `***4567`; our own ids (ULIDs, numbers) stay readable.
pub(crate) fn mask_search_term(v: &str) -> String {
    let v = v.trim();
    if let Some((local, domain)) = v.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    let phone_like = v.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c));
    if phone_like {
        let tail = &digits[digits.len().saturating_sub(4)..];
        return if digits.len() >= 7 {
            format!("***{tail}")
        } else {
            "***".to_string()
        };
    }
    if v.chars().all(|c| c.is_ascii_alphanumeric()) && v.len() <= 32 {
        return v.to_string();
    }
    format!("<{} chars>", v.chars().count())
}

/// The one way this crate builds its HTTPS client to amoCRM: the request timeout, our
/// user agent, and the redirect policy the caller needs.
pub(super) fn http_client(
    timeout_ms: u64,
    redirects: reqwest::redirect::Policy,
) -> Result<reqwest::Client, CrmError> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout_ms))
        .redirect(redirects)
        .user_agent(concat!(
            "rss-amocrm-integration/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| {
            CrmError::permanent(
                format!("the HTTP client could not be built: {e}"),
                "The TLS stack failed to initialise; this is a build problem, report it."
                    .to_string(),
            )
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::Method;
    use serde_json::json;

    use super::*;
    use crate::amocrm::testkit::{Canned, CannedServer, MemorySecrets, client_for};

    const OK_ACCOUNT: &str =
        r#"{"id":31234567,"name":"РусСтанкоСбыт","subdomain":"new599bd9d13818a"}"#;

    #[tokio::test]
    async fn success_sends_the_bearer_and_returns_the_json() {
        let server = CannedServer::start(vec![Canned::json(200, OK_ACCOUNT)]).await;
        let (client, _) = client_for(&server, "tok-1");
        let v = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v["subdomain"], "new599bd9d13818a");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("GET", "/api/v4/account")
        );
        assert_eq!(reqs[0].bearer.as_deref(), Some("tok-1"));
    }

    #[tokio::test]
    async fn no_content_is_none() {
        let server = CannedServer::start(vec![Canned::no_content()]).await;
        let (client, _) = client_for(&server, "tok");
        let q = [("query", "+79990001122".to_string())];
        let v = client
            .request(Method::GET, "/api/v4/contacts", &q, None)
            .await
            .unwrap();
        assert_eq!(v, None);
        assert_eq!(
            server.requests()[0].query,
            vec![("query".into(), "+79990001122".into())]
        );
    }

    #[tokio::test]
    async fn unauthorized_rereads_the_token_and_retries_exactly_once() {
        let server = CannedServer::start(vec![
            Canned::json(200, OK_ACCOUNT),
            Canned::json(401, r#"{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"Invalid user name or password"}"#),
            Canned::json(200, OK_ACCOUNT),
        ])
        .await;
        let (client, secrets) = client_for(&server, "old-token");
        client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap();
        // The operator replaces the token; the cached one is still used until amoCRM rejects it.
        secrets.put(
            "amocrm-token",
            r#"{"kind":"long_lived","access_token":"new-token"}"#,
        );
        let v = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap();
        assert!(v.is_some());
        let bearers: Vec<_> = server
            .requests()
            .into_iter()
            .map(|r| r.bearer.unwrap())
            .collect();
        assert_eq!(bearers, ["old-token", "old-token", "new-token"]);
    }

    #[tokio::test]
    async fn unauthorized_twice_is_reported_with_the_token_hint_and_not_looped() {
        let body401 =
            r#"{"title":"Unauthorized","status":401,"detail":"Invalid user name or password"}"#;
        let server = CannedServer::start(vec![
            Canned::json(200, OK_ACCOUNT),
            Canned::json(401, body401),
            Canned::json(401, body401),
            Canned::json(200, OK_ACCOUNT),
        ])
        .await;
        let (client, secrets) = client_for(&server, "old-token");
        client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap();
        secrets.put("amocrm-token", r#"{"access_token":"new-token"}"#);
        let e = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Unauthorized);
        assert!(e.hint.contains("Keys and scopes"), "{}", e.hint);
        assert_eq!(
            server.requests().len(),
            3,
            "one retry after the 401, not more"
        );

        // Unchanged secret: the token source's own error (naming the secret) comes back.
        let server = CannedServer::start(vec![Canned::json(401, body401)]).await;
        let (client, _) = client_for(&server, "same-token");
        let e = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Unauthorized);
        assert!(e.hint.contains("amocrm-token"), "{}", e.hint);
        assert!(!e.message.contains("same-token") && !e.hint.contains("same-token"));
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn html_429_is_waited_out_with_the_default_delay() {
        let server = CannedServer::start(vec![
            Canned::html(
                429,
                "<html><body><h1>429 Too Many Requests</h1></body></html>",
            ),
            Canned::json(200, OK_ACCOUNT),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let v = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap();
        assert!(v.is_some());
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        let gap = reqs[1].at - reqs[0].at;
        assert!(
            gap >= RetryPolicy::fast().rate_limit_default,
            "waited only {gap:?}"
        );
    }

    #[tokio::test]
    async fn json_429_retry_after_is_honoured() {
        let server = CannedServer::start(vec![
            Canned::json(429, r#"{"title":"Too Many Requests","type":"https://httpstatus.es/429","status":429,"detail":"You have sent too many requests in a given amount of time. Please try again later.","retry_after":1}"#),
            Canned::json(200, OK_ACCOUNT),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap();
        let reqs = server.requests();
        let gap = reqs[1].at - reqs[0].at;
        assert!(gap >= Duration::from_secs(1), "waited only {gap:?}");
    }

    #[tokio::test]
    async fn a_429_asking_for_longer_than_allowed_goes_back_to_the_caller() {
        let server = CannedServer::start(vec![Canned::json(
            429,
            r#"{"title":"Too Many Requests","status":429,"retry_after":300}"#,
        )])
        .await;
        let (client, _) = client_for(&server, "tok");
        let e = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(300)));
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn server_errors_are_retried_with_growing_waits() {
        let server = CannedServer::start(vec![
            Canned::json(
                500,
                r#"{"title":"ErrInternalServer","status":500,"detail":"x","trace_id":"t1"}"#,
            ),
            Canned::html(502, "<html><title>502 Bad Gateway</title></html>"),
            Canned::json(200, OK_ACCOUNT),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        assert!(
            client
                .request(Method::GET, "/api/v4/account", &[], None)
                .await
                .unwrap()
                .is_some()
        );
        let reqs = server.requests();
        assert_eq!(reqs.len(), 3);
        let p = RetryPolicy::fast();
        assert!(reqs[1].at - reqs[0].at >= p.backoff(1));
        assert!(reqs[2].at - reqs[1].at >= p.backoff(2));
    }

    #[tokio::test]
    async fn retries_stop_after_max_attempts_with_the_last_error() {
        let server = CannedServer::start(vec![Canned::html(503, ""); 5]).await;
        let (client, _) = client_for(&server, "tok");
        let e = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Transient);
        assert_eq!(e.status, Some(503));
        assert_eq!(server.requests().len(), 4);
    }

    #[tokio::test]
    async fn persistent_html_429_returns_rate_limited_with_a_wait_for_the_caller() {
        let server = CannedServer::start(vec![Canned::html(429, "<html></html>"); 5]).await;
        let (client, _) = client_for(&server, "tok");
        let e = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::RateLimited);
        assert_eq!(server.requests().len(), 4);
        // Waited 30, 60, 120 ms; the caller is told to wait the next step.
        assert_eq!(e.retry_after, Some(Duration::from_millis(240)));
        let reqs = server.requests();
        assert!(reqs[3].at - reqs[2].at >= Duration::from_millis(120));
    }

    #[tokio::test]
    async fn a_post_is_not_repeated_after_a_server_error_it_may_have_executed() {
        let server = CannedServer::start(vec![
            Canned::json(500, r#"{"title":"ErrInternalServer","status":500}"#),
            Canned::json(200, "[]"),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let body = json!([{"name": "x"}]);
        let e = client
            .request(Method::POST, "/api/v4/leads/complex", &[], Some(&body))
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Transient);
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_call_without_transient_retries_returns_the_504_but_still_waits_out_a_429() {
        let server = CannedServer::start(vec![
            Canned::html(504, "<html><title>504 Gateway Time-out</title></html>"),
            Canned::html(429, ""),
            Canned::json(200, r#"{"_embedded":{"leads":[]}}"#),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let body = json!([{"id": 1}]);
        let once = CallOptions {
            no_transient_retries: true,
        };
        let e = client
            .request_with(Method::PATCH, "/api/v4/leads", &[], Some(&body), once)
            .await
            .unwrap_err();
        assert_eq!((e.kind, e.status), (CrmErrorKind::Transient, Some(504)));
        assert_eq!(
            server.requests().len(),
            1,
            "the oversized batch is not resent"
        );
        client
            .request_with(Method::PATCH, "/api/v4/leads", &[], Some(&body), once)
            .await
            .unwrap();
        assert_eq!(
            server.requests().len(),
            3,
            "the 429 was waited out and repeated"
        );
    }

    #[tokio::test]
    async fn a_post_is_repeated_after_a_429() {
        let server = CannedServer::start(vec![
            Canned::html(429, ""),
            Canned::json(200, r#"{"_embedded":{"notes":[{"id":5}]}}"#),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let body = json!([{"entity_id": 1}]);
        let v = client
            .request(Method::POST, "/api/v4/leads/notes", &[], Some(&body))
            .await
            .unwrap();
        assert_eq!(v.unwrap()["_embedded"]["notes"][0]["id"], 5);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].body, Some(body));
    }

    #[tokio::test]
    async fn validation_error_is_permanent_at_once_and_names_the_pipeline_variable() {
        let server = CannedServer::start(vec![Canned::json(
            400,
            r#"{"validation-errors":[{"request_id":"0","errors":[{"code":"NotSupportedChoice","path":"pipeline_id","detail":"The value you selected is not a valid choice."}]}],"title":"Bad Request","type":"https://httpstatus.es/400","status":400,"detail":"Request validation failed"}"#,
        )])
        .await;
        let (client, _) = client_for(&server, "tok");
        let body = json!([{"name": "x", "pipeline_id": 10226282}]);
        let e = client
            .request(Method::POST, "/api/v4/leads/complex", &[], Some(&body))
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Permanent);
        assert!(e.hint.contains("AMOCRM_PIPELINE_ID"), "{}", e.hint);
        assert_eq!(e.validation[0].path, "pipeline_id");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn html_403_ban_is_never_retried() {
        let server = CannedServer::start(vec![
            Canned::html(
                403,
                "<html><head><title>403 Forbidden</title></head></html>",
            ),
            Canned::json(200, OK_ACCOUNT),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let e = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Blocked);
        assert!(e.hint.contains("prolongs a ban"), "{}", e.hint);
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_timeout_is_transient_and_a_refused_connection_too() {
        let server = CannedServer::start(vec![
            Canned::json(200, OK_ACCOUNT).delayed(Duration::from_millis(600)),
            Canned::json(200, OK_ACCOUNT).delayed(Duration::from_millis(600)),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let mut cfg = client.config().clone();
        cfg.timeout_ms = 150;
        let secrets = MemorySecrets::with("amocrm-token", r#"{"access_token":"tok"}"#);
        let tokens = Arc::new(crate::amocrm::token::LongLivedToken::new(
            secrets,
            "amocrm-token".into(),
        ));
        let client = AmoClient::new(&cfg, tokens.clone())
            .unwrap()
            .with_retry_policy(RetryPolicy {
                max_attempts: 2,
                ..RetryPolicy::fast()
            });
        let e = client
            .request(Method::GET, "/api/v4/account", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Transient);
        assert!(
            e.message.contains("no answer within 150 ms"),
            "{}",
            e.message
        );

        // Nothing listens on this port any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        cfg.base_url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = AmoClient::new(&cfg, tokens)
            .unwrap()
            .with_retry_policy(RetryPolicy::fast());
        let e = client
            .request(Method::POST, "/api/v4/leads/complex", &[], Some(&json!([])))
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Transient);
        assert!(e.message.contains("could not connect"), "{}", e.message);
    }

    #[test]
    fn search_terms_are_masked_in_logs() {
        let q = [
            ("query", "+79123456789".to_string()),
            ("with", "contacts".to_string()),
        ];
        assert_eq!(masked_query(&q), "query=***6789&with=contacts");
        assert_eq!(mask_search_term("Ivan.Petrov@mail.ru"), "I***@mail.ru");
        assert_eq!(
            mask_search_term("01JABCDEF0123456789XYZABCD"),
            "01JABCDEF0123456789XYZABCD"
        );
        assert_eq!(mask_search_term("Иван Петров"), "<11 chars>");
        assert_eq!(mask_search_term("123"), "***");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(4), Duration::from_secs(4));
        assert_eq!(p.backoff(6), Duration::from_secs(8));
        assert_eq!(p.backoff(200), Duration::from_secs(8));
    }

    #[test]
    fn a_base_url_that_is_not_http_is_refused_at_construction() {
        let mut cfg = crate::amocrm::testkit::test_config("ftp://x");
        let secrets = std::sync::Arc::new(MemorySecrets::default());
        let tokens = Arc::new(crate::amocrm::token::LongLivedToken::new(
            secrets,
            "t".into(),
        ));
        assert!(AmoClient::new(&cfg, tokens.clone()).is_err());
        cfg.base_url = "new599bd9d13818a".into();
        let e = AmoClient::new(&cfg, tokens).unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Permanent);
    }
}
