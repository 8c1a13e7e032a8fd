//! The token provider against a canned token endpoint and in-memory secret and state stores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::Value;

use super::*;
use crate::amocrm::testkit::{
    Canned, CannedServer, MemorySecrets, Recorded, fake_jwt, test_config,
};
use crate::amocrm::{AmoClient, CrmErrorKind, RetryPolicy, TokenKind, TokenSource};
use crate::config::OAuthConfig;
use crate::ports::{MailMessage, Notifier, NotifyError, SecretError};
use crate::store::{MemoryStateStore, StateStore, TokenHealthRecord};

const TOKEN_SECRET: &str = "amocrm-token";
const APP_SECRET: &str = "app";
const CLIENT_SECRET: &str = "client-secret-0123456789";
const ALERTS: &str = "ops@td-rss.ru";

/// Records mails instead of sending them.
#[derive(Default)]
pub(crate) struct Outbox(Mutex<Vec<MailMessage>>);

impl Outbox {
    pub(crate) fn mails(&self) -> Vec<MailMessage> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl Notifier for Outbox {
    async fn send(&self, mail: &MailMessage) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

/// Secrets whose writes can be made to fail (Secrets Manager refusing `PutSecretValue`).
struct WriteFailing {
    inner: Arc<MemorySecrets>,
    fail: AtomicBool,
}

#[async_trait]
impl SecretStore for WriteFailing {
    async fn read(&self, id: &str) -> Result<String, SecretError> {
        self.inner.read(id).await
    }

    async fn write(&self, id: &str, value: &str) -> Result<(), SecretError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(SecretError::Unavailable {
                id: id.into(),
                reason: "AccessDeniedException".into(),
            });
        }
        self.inner.write(id, value).await
    }
}

fn pair_json(access: &str, refresh: &str) -> String {
    format!(
        r#"{{"token_type":"Bearer","expires_in":86400,"access_token":"{access}","refresh_token":"{refresh}"}}"#
    )
}

fn oauth_secret(access: &str, refresh: &str, expires_at: DateTime<Utc>) -> String {
    TokenSecret::oauth_json(access, refresh, expires_at)
}

fn in_minutes(m: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::minutes(m)
}

fn test_timing() -> RefreshTiming {
    RefreshTiming {
        lease_ttl: Duration::from_secs(3),
        wait_for_other: Duration::from_secs(4),
        poll_every: Duration::from_millis(10),
        ..RefreshTiming::default()
    }
}

/// One "instance" of a function and what it shares with the others.
struct Rig {
    server: CannedServer,
    secrets: Arc<MemorySecrets>,
    state: Arc<MemoryStateStore>,
    outbox: Arc<Outbox>,
}

impl Rig {
    async fn start(token_secret: &str, replies: Vec<Canned>) -> Rig {
        let server = CannedServer::start(replies).await;
        let secrets = MemorySecrets::with(TOKEN_SECRET, token_secret);
        secrets.put(
            APP_SECRET,
            &format!(r#"{{"admin_key":"adm","amocrm_client_secret":"{CLIENT_SECRET}"}}"#),
        );
        Rig {
            server,
            secrets,
            state: Arc::new(MemoryStateStore::default()),
            outbox: Arc::new(Outbox::default()),
        }
    }

    fn endpoint(&self, timeout_ms: u64) -> TokenEndpoint {
        let mut cfg = test_config(&self.server.base_url);
        cfg.timeout_ms = timeout_ms;
        TokenEndpoint::new(&cfg, &oauth_config(None)).unwrap()
    }

    fn provider_with(&self, secrets: Arc<dyn SecretStore>, timeout_ms: u64) -> TokenProvider {
        TokenProvider::new(secrets.clone(), TOKEN_SECRET)
            .with_refresh(RefreshDeps {
                endpoint: self.endpoint(timeout_ms),
                client_secret: ClientSecretSource::new(secrets, APP_SECRET),
                state: self.state.clone(),
                notifier: self.outbox.clone(),
                alert_mailbox: ALERTS.into(),
            })
            .with_timing(test_timing())
    }

    fn provider(&self) -> TokenProvider {
        self.provider_with(self.secrets.clone(), 2_000)
    }

    fn token_calls(&self) -> Vec<Recorded> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path == "/oauth2/access_token")
            .collect()
    }

    async fn stored(&self) -> TokenSecret {
        let raw = self.secrets.read(TOKEN_SECRET).await.unwrap();
        TokenSecret::parse(TOKEN_SECRET, &raw).unwrap()
    }

    async fn health(&self) -> TokenHealthRecord {
        self.state.token_health().await.unwrap().unwrap_or_default()
    }
}

pub(crate) fn oauth_config(token_base_url: Option<&str>) -> OAuthConfig {
    OAuthConfig {
        authorize_url: "https://www.amocrm.ru/oauth".into(),
        token_base_url: token_base_url.map(str::to_string),
        alert_mailbox: ALERTS.into(),
    }
}

fn body_field<'a>(r: &'a Recorded, k: &str) -> Option<&'a str> {
    r.body.as_ref()?.get(k)?.as_str()
}

#[tokio::test]
async fn a_token_with_less_than_five_minutes_left_is_refreshed_and_stored_first() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(4)),
        vec![Canned::json(200, &pair_json("new-access", "new-refresh"))],
    )
    .await;
    let provider = rig.provider();
    assert_eq!(provider.bearer().await.unwrap(), "new-access");

    let calls = rig.token_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(body_field(&calls[0], "grant_type"), Some("refresh_token"));
    assert_eq!(body_field(&calls[0], "refresh_token"), Some("old-refresh"));
    assert_eq!(body_field(&calls[0], "client_secret"), Some(CLIENT_SECRET));
    assert_eq!(
        body_field(&calls[0], "client_id"),
        Some("2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd")
    );
    assert_eq!(
        body_field(&calls[0], "redirect_uri"),
        Some("https://api.td-rss.ru/webhook/amocrm")
    );

    let stored = rig.stored().await;
    assert_eq!(stored.kind, TokenKind::Oauth);
    assert_eq!(stored.access_token, "new-access");
    assert_eq!(stored.refresh_token.as_deref(), Some("new-refresh"));
    let left = stored.expires_at().unwrap() - Utc::now();
    assert!(left > chrono::Duration::hours(23), "{left}");
    let health = rig.health().await;
    assert!(health.last_refresh_at.is_some() && !health.reauthorization_required);
    assert_eq!(
        rig.state.lease_holder(REFRESH_LEASE),
        None,
        "lease released"
    );

    // The new token has a day left: no further refresh.
    assert_eq!(provider.bearer().await.unwrap(), "new-access");
    assert_eq!(rig.token_calls().len(), 1);
}

#[tokio::test]
async fn a_token_with_time_left_is_served_without_calling_amocrm() {
    let rig = Rig::start(&oauth_secret("access", "refresh", in_minutes(60)), vec![]).await;
    let provider = rig.provider();
    assert_eq!(provider.bearer().await.unwrap(), "access");
    assert_eq!(provider.bearer().await.unwrap(), "access");
    assert!(rig.server.requests().is_empty());
    assert_eq!(rig.secrets.reads(), 1, "the secret is cached");
}

#[tokio::test]
async fn a_401_from_the_api_refreshes_once_and_the_call_is_retried_with_the_new_token() {
    let unauthorized = r#"{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"Invalid user name or password"}"#;
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(600)),
        vec![
            Canned::json(401, unauthorized),
            Canned::json(200, &pair_json("new-access", "new-refresh")),
            Canned::json(200, r#"{"id":1,"subdomain":"new599bd9d13818a"}"#),
        ],
    )
    .await;
    let provider = Arc::new(rig.provider());
    let client = AmoClient::new(&test_config(&rig.server.base_url), provider)
        .unwrap()
        .with_retry_policy(RetryPolicy::fast());
    let account = client
        .request(Method::GET, "/api/v4/account", &[], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account["id"], 1);
    let reqs = rig.server.requests();
    let seen: Vec<_> = reqs
        .iter()
        .map(|r| (r.path.as_str(), r.bearer.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/api/v4/account", Some("old-access")),
            ("/oauth2/access_token", None),
            ("/api/v4/account", Some("new-access")),
        ]
    );
    assert_eq!(rig.stored().await.access_token, "new-access");
}

#[tokio::test]
async fn twenty_concurrent_callers_on_an_expired_token_cause_one_refresh() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
        vec![
            Canned::json(200, &pair_json("new-access", "new-refresh"))
                .delayed(Duration::from_millis(150)),
        ],
    )
    .await;
    let provider = Arc::new(rig.provider());
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let p = Arc::clone(&provider);
            tokio::spawn(async move { p.bearer().await })
        })
        .collect();
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap(), "new-access");
    }
    assert_eq!(rig.token_calls().len(), 1);
    assert_eq!(rig.state.lease_grants(), 1);
}

#[tokio::test]
async fn two_instances_sharing_the_lease_and_the_secret_refresh_once() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
        vec![
            Canned::json(200, &pair_json("new-access", "new-refresh"))
                .delayed(Duration::from_millis(300)),
        ],
    )
    .await;
    let a = rig.provider();
    let b = rig.provider();
    let (ta, tb) = tokio::join!(a.bearer(), b.bearer());
    assert_eq!(ta.unwrap(), "new-access");
    assert_eq!(tb.unwrap(), "new-access");
    assert_eq!(rig.token_calls().len(), 1);
    assert_eq!(
        rig.stored().await.refresh_token.as_deref(),
        Some("new-refresh")
    );
}

#[tokio::test]
async fn an_instance_waiting_for_the_lease_uses_the_pair_another_one_stored() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
        vec![],
    )
    .await;
    // Another instance holds the lease and is refreshing right now.
    let now = Utc::now();
    assert!(
        rig.state
            .acquire_lease(
                REFRESH_LEASE,
                "other",
                now,
                now + chrono::Duration::seconds(3)
            )
            .await
            .unwrap()
    );
    let provider = rig.provider();
    let secrets = rig.secrets.clone();
    let other = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        secrets.put(
            TOKEN_SECRET,
            &oauth_secret("theirs", "their-refresh", in_minutes(1440)),
        );
    });
    assert_eq!(provider.bearer().await.unwrap(), "theirs");
    other.await.unwrap();
    assert!(rig.token_calls().is_empty());
}

#[tokio::test]
async fn a_lost_refresh_answer_is_retried_once_with_the_old_refresh_token() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
        vec![
            Canned::json(200, &pair_json("lost-access", "lost-refresh"))
                .delayed(Duration::from_millis(2_000)),
            Canned::json(200, &pair_json("new-access", "new-refresh")),
        ],
    )
    .await;
    let provider = rig.provider_with(rig.secrets.clone(), 500);
    assert_eq!(provider.bearer().await.unwrap(), "new-access");
    let calls = rig.token_calls();
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert_eq!(body_field(c, "refresh_token"), Some("old-refresh"));
    }
    assert_eq!(
        rig.stored().await.refresh_token.as_deref(),
        Some("new-refresh")
    );
}

#[tokio::test]
async fn a_refresh_lost_twice_is_transient_and_starts_no_incident() {
    let slow = Canned::json(200, &pair_json("x", "y")).delayed(Duration::from_millis(2_000));
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
        vec![slow.clone(), slow],
    )
    .await;
    let provider = rig.provider_with(rig.secrets.clone(), 500);
    let e = provider.bearer().await.unwrap_err();
    assert_eq!(e.kind, CrmErrorKind::Transient);
    assert_eq!(rig.token_calls().len(), 2);
    assert!(!rig.health().await.reauthorization_required);
    assert!(rig.outbox.mails().is_empty());
    assert_eq!(rig.stored().await.access_token, "old-access");
}

#[tokio::test]
async fn a_server_error_keeps_serving_a_token_that_is_still_valid() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(3)),
        vec![Canned::json(503, r#"{"title":"Service Unavailable"}"#)],
    )
    .await;
    let provider = rig.provider();
    assert_eq!(provider.bearer().await.unwrap(), "old-access");
    assert_eq!(rig.token_calls().len(), 1);
    assert!(!rig.health().await.reauthorization_required);
}

#[tokio::test]
async fn a_pair_that_cannot_be_stored_is_not_used() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
        vec![Canned::json(200, &pair_json("new-access", "new-refresh"))],
    )
    .await;
    let failing = Arc::new(WriteFailing {
        inner: rig.secrets.clone(),
        fail: AtomicBool::new(true),
    });
    let provider = rig.provider_with(failing, 2_000);
    let e = provider.bearer().await.unwrap_err();
    assert_eq!(e.kind, CrmErrorKind::Transient);
    assert!(e.hint.contains("PutSecretValue"), "{}", e.hint);
    assert!(!e.message.contains("new-access") && !e.hint.contains("new-refresh"));
    assert_eq!(rig.stored().await.access_token, "old-access");
}

const REVOKED: &str = r#"{"hint":"Token has been revoked","title":"Некорректный запрос","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":401,"detail":"В запросе отсутствует ряд параметров или параметры невалидны"}"#;
const INCORRECT_CLIENT: &str = r#"{"title":"Некорректный клиент","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":401,"detail":"Авторизация клиента не прошла"}"#;
const WRONG_SECRET: &str = r#"{"hint":"Check the `client_secret` parameter","title":"Некорректный запрос","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":400,"detail":"В запросе отсутствует ряд параметров или параметры невалидны"}"#;

#[tokio::test]
async fn terminal_refusals_require_reauthorization_alert_once_and_stop_calling_amocrm() {
    for (status, body, hint_says) in [
        (401, REVOKED, "refresh token was revoked"),
        (401, INCORRECT_CLIENT, "\"Incorrect client\""),
        (400, WRONG_SECRET, "client secret is wrong"),
    ] {
        let rig = Rig::start(
            &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
            vec![Canned::json(status, body)],
        )
        .await;
        let provider = rig.provider();
        for _ in 0..3 {
            let e = provider.bearer().await.unwrap_err();
            assert_eq!(e.kind, CrmErrorKind::Unauthorized, "{body}");
            assert!(e.hint.contains(hint_says), "{body}: {}", e.hint);
            assert!(e.hint.contains("/oauth/start"), "{}", e.hint);
            assert!(e.message.contains("re-authorization"), "{}", e.message);
        }
        // Another instance fails fast too, without a token-endpoint call or a second mail.
        let other = rig.provider();
        let e = other.bearer().await.unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Unauthorized);
        assert_eq!(rig.token_calls().len(), 1, "{body}");

        let health = rig.health().await;
        assert!(health.reauthorization_required);
        assert!(health.hint.as_deref().unwrap().contains(hint_says));
        assert!(health.since.is_some());
        assert!(
            health
                .last_error
                .as_deref()
                .unwrap()
                .contains(&status.to_string())
        );

        let mails = rig.outbox.mails();
        assert_eq!(mails.len(), 1, "{body}");
        let mail = &mails[0];
        assert_eq!(mail.to, vec![ALERTS.to_string()]);
        assert!(
            mail.subject.contains("повторная авторизация"),
            "{}",
            mail.subject
        );
        assert!(mail.text.contains("Что сделать"));
        assert!(mail.text.contains("https://api.td-rss.ru/oauth/start"));
        assert!(
            mail.html
                .contains(&html_escape::encode_text(hint_says).to_string())
        );
        for secret in [CLIENT_SECRET, "old-refresh", "old-access"] {
            assert!(
                !mail.text.contains(secret) && !mail.html.contains(secret),
                "the mail leaks {secret}"
            );
        }
        // What a later /health shows.
        let h = provider.token_health().await.unwrap();
        assert!(h.reauthorization_required && h.kind == TokenKind::Oauth);
        assert!(h.hint.unwrap().contains(hint_says));
    }
}

const IP_NOT_ALLOWED: &str = r#"{"title":"Forbidden","type":"https://httpstatus.es/403","status":403,"detail":"Access to this account is prohibited from your IP address","error_code":113}"#;
const NGINX_403: &str = "<html><head><title>403 Forbidden</title></head><body>nginx</body></html>";

#[tokio::test]
async fn a_403_at_the_token_endpoint_is_our_address_not_the_grant_and_the_pair_survives() {
    for body in [IP_NOT_ALLOWED, NGINX_403] {
        let rig = Rig::start(
            &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
            vec![
                Canned::json(403, body),
                Canned::json(200, &pair_json("new-access", "new-refresh")),
            ],
        )
        .await;
        let provider = rig.provider();
        let e = provider.bearer().await.unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Blocked, "{body}");
        assert!(e.hint.contains("whitelist"), "{}", e.hint);
        assert!(e.hint.contains("AmoEgressIp"), "{}", e.hint);
        assert!(!e.hint.contains("/oauth/start"), "{}", e.hint);
        // No incident, no mail asking to re-authorize.
        assert!(!rig.health().await.reauthorization_required, "{body}");
        assert!(rig.outbox.mails().is_empty(), "{body}");
        // Once amoCRM lets us in, the same refresh token works: nobody re-authorized.
        assert_eq!(provider.bearer().await.unwrap(), "new-access", "{body}");
        assert_eq!(rig.token_calls().len(), 2);
        assert_eq!(
            body_field(&rig.token_calls()[1], "refresh_token"),
            Some("old-refresh")
        );
    }
}

#[tokio::test]
async fn a_401_during_an_incident_fails_fast_without_calling_the_token_endpoint() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(600)),
        vec![Canned::json(401, REVOKED)],
    )
    .await;
    let provider = rig.provider();
    assert_eq!(provider.bearer().await.unwrap(), "old-access");
    let e = provider.after_unauthorized("old-access").await.unwrap_err();
    assert_eq!(e.kind, CrmErrorKind::Unauthorized);
    // Blocked: even the still unexpired token is not served any more.
    assert_eq!(
        provider.bearer().await.unwrap_err().kind,
        CrmErrorKind::Unauthorized
    );
    assert_eq!(
        provider
            .after_unauthorized("old-access")
            .await
            .unwrap_err()
            .kind,
        CrmErrorKind::Unauthorized
    );
    assert_eq!(rig.token_calls().len(), 1);
    assert_eq!(rig.outbox.mails().len(), 1);
}

#[tokio::test]
async fn the_incident_ends_when_a_new_pair_is_stored() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
        vec![Canned::json(401, REVOKED)],
    )
    .await;
    let provider = rig.provider().with_timing(RefreshTiming {
        health_recheck: Duration::from_millis(300),
        ..test_timing()
    });
    assert!(provider.bearer().await.is_err());
    // A code exchange (or an operator) stores a new pair; the health record may lag behind.
    rig.secrets.put(
        TOKEN_SECRET,
        &oauth_secret("fresh-access", "fresh-refresh", in_minutes(1440)),
    );
    assert!(provider.bearer().await.is_err(), "not re-checked yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(provider.bearer().await.unwrap(), "fresh-access");
    assert!(
        !provider
            .token_health()
            .await
            .unwrap()
            .reauthorization_required
    );
    assert_eq!(rig.token_calls().len(), 1);
}

#[tokio::test]
async fn a_long_lived_token_is_served_as_is_and_never_refreshed() {
    let token = fake_jwt(1_928_361_600); // 2031-02-09
    let rig = Rig::start(
        &format!(r#"{{"kind":"long_lived","access_token":"{token}"}}"#),
        vec![],
    )
    .await;
    let provider = rig.provider();
    assert_eq!(provider.bearer().await.unwrap(), token);
    let e = provider.after_unauthorized(&token).await.unwrap_err();
    assert_eq!(e.kind, CrmErrorKind::Unauthorized);
    assert!(e.hint.contains("Generate a new long-lived token") || e.hint.contains("long-lived"));
    assert!(!e.hint.contains(&token) && !e.message.contains(&token));
    assert!(rig.server.requests().is_empty());
    let h = provider.token_health().await.unwrap();
    assert_eq!(h.kind, TokenKind::LongLived);
    assert_eq!(h.expires_at, DateTime::from_timestamp(1_928_361_600, 0));
    assert!(!h.reauthorization_required);
    assert!(!serde_json::to_string(&h).unwrap().contains(&token));
}

#[tokio::test]
async fn an_oauth_pair_without_a_state_table_is_a_clear_configuration_error() {
    let secrets = MemorySecrets::with(TOKEN_SECRET, &oauth_secret("a", "r", in_minutes(-1)));
    let provider = TokenProvider::new(secrets, TOKEN_SECRET);
    let e = provider.bearer().await.unwrap_err();
    assert_eq!(e.kind, CrmErrorKind::Permanent);
    assert!(e.hint.contains("STATE_TABLE"), "{}", e.hint);
}

#[tokio::test]
async fn a_missing_client_secret_is_named_without_calling_amocrm() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(-1)),
        vec![],
    )
    .await;
    rig.secrets.put(APP_SECRET, r#"{"admin_key":"adm"}"#);
    let e = rig.provider().bearer().await.unwrap_err();
    assert_eq!(e.kind, CrmErrorKind::Permanent);
    assert!(e.message.contains("amocrm_client_secret"), "{}", e.message);
    assert!(rig.server.requests().is_empty());
}

#[test]
fn refusals_are_classified_by_hint_title_and_status() {
    let cases = [
        (
            400,
            r#"{"hint":"Cannot decrypt the authorization code"}"#,
            Refusal::CannotDecryptCode,
        ),
        (
            400,
            r#"{"hint":"Authorization code has been revoked"}"#,
            Refusal::CodeRevoked,
        ),
        (
            401,
            r#"{"hint":"Authorization code has expired"}"#,
            Refusal::CodeExpired,
        ),
        (
            400,
            r#"{"hint":"Check the `client_id` parameter"}"#,
            Refusal::WrongClientId,
        ),
        (400, WRONG_SECRET, Refusal::WrongClientSecret),
        (401, INCORRECT_CLIENT, Refusal::WrongClientSecret),
        (
            401,
            r#"{"title":"Unauthorized"}"#,
            Refusal::WrongClientSecret,
        ),
        (
            400,
            r#"{"hint":"Redirect URI is not associated with client"}"#,
            Refusal::RedirectUriMismatch,
        ),
        (
            400,
            r#"{"hint":"Invalid account"}"#,
            Refusal::InvalidAccount,
        ),
        (401, REVOKED, Refusal::RefreshTokenRevoked),
        (
            401,
            r#"{"hint":"Token has expired"}"#,
            Refusal::RefreshTokenExpired,
        ),
        (
            400,
            r#"{"hint":"Invalid refresh token"}"#,
            Refusal::InvalidRefreshToken,
        ),
        (400, r#"{"title":"Bad Request"}"#, Refusal::Other),
    ];
    for (status, body, want) in cases {
        let problem = crate::amocrm::error::Problem::parse(body);
        assert_eq!(Refusal::classify(status, problem.as_ref()), want, "{body}");
    }
}

#[test]
fn only_amocrm_and_kommo_account_domains_are_referers() {
    for ok in [
        "new599bd9d13818a.amocrm.ru",
        "New599BD9d13818a.AmoCRM.ru",
        "gingersnaps.kommo.com",
        "acme-1.amocrm.com",
    ] {
        assert!(account_host(ok).is_some(), "{ok}");
    }
    for bad in [
        "",
        "amocrm.ru",
        ".amocrm.ru",
        "www.amocrm.ru",
        "evil.com",
        "evil.amocrm.ru.evil.com",
        "a.b.amocrm.ru",
        "sub.amocrm.ru:8443",
        "sub.amocrm.ru/path",
        "https://sub.amocrm.ru",
        "user@sub.amocrm.ru",
        "-sub.amocrm.ru",
        "127.0.0.1",
        "sub.amocrm.ru.",
    ] {
        assert_eq!(account_host(bad), None, "{bad}");
    }
    assert_eq!(
        account_subdomain("new599bd9d13818a.amocrm.ru"),
        "new599bd9d13818a"
    );
}

#[test]
fn the_authorize_url_carries_client_id_state_and_post_message_mode() {
    let url = authorize_url("https://www.amocrm.ru/oauth", "2df855f6-d54d", "01JSTATE");
    assert_eq!(
        url,
        "https://www.amocrm.ru/oauth?client_id=2df855f6-d54d&state=01JSTATE&mode=post_message"
    );
    assert_eq!(
        start_url("https://api.td-rss.ru/webhook/amocrm"),
        "https://api.td-rss.ru/oauth/start"
    );
    assert_eq!(
        start_url("http://127.0.0.1:9000/webhook/amocrm"),
        "http://127.0.0.1:9000/oauth/start"
    );
}

#[test]
fn a_token_pair_never_shows_its_tokens_in_debug_output() {
    let pair = TokenPair {
        access_token: "access-secret".into(),
        refresh_token: "refresh-secret".into(),
        expires_at: Utc::now(),
    };
    let shown = format!("{pair:?}");
    assert!(!shown.contains("access-secret") && !shown.contains("refresh-secret"));
    let v: Value = serde_json::from_str(&pair.secret_json()).unwrap();
    assert_eq!(v["kind"], "oauth");
    assert!(v["expires_at"].is_i64());
}

/// Secrets where another instance's refresh lands right before the `n`-th read.
struct RefreshedElsewhereBeforeRead {
    inner: Arc<MemorySecrets>,
    at_read: usize,
    value: String,
}

#[async_trait]
impl SecretStore for RefreshedElsewhereBeforeRead {
    async fn read(&self, id: &str) -> Result<String, SecretError> {
        if self.inner.reads() + 1 == self.at_read {
            self.inner.put(id, &self.value);
        }
        self.inner.read(id).await
    }

    async fn write(&self, id: &str, value: &str) -> Result<(), SecretError> {
        self.inner.write(id, value).await
    }
}

#[tokio::test]
async fn the_lease_holder_rereads_the_secret_and_uses_a_pair_stored_meanwhile() {
    let rig = Rig::start(
        &oauth_secret("old-access", "old-refresh", in_minutes(2)),
        vec![Canned::json(200, &pair_json("should-not", "be-used"))],
    )
    .await;
    // Read 1: the cached, near-expiry pair. Read 2 (after taking the lease): another
    // instance has refreshed in between.
    let secrets = Arc::new(RefreshedElsewhereBeforeRead {
        inner: rig.secrets.clone(),
        at_read: 2,
        value: oauth_secret("theirs", "their-refresh", in_minutes(1440)),
    });
    let provider = rig.provider_with(secrets, 2_000);
    assert_eq!(provider.bearer().await.unwrap(), "theirs");
    assert!(rig.token_calls().is_empty());
    assert_eq!(rig.state.lease_grants(), 1);
    assert_eq!(rig.state.lease_holder(REFRESH_LEASE), None);
}

#[test]
fn codes_are_exchanged_at_the_referer_unless_the_sandbox_is_configured() {
    let cfg = test_config("https://new599bd9d13818a.amocrm.ru");
    let prod = TokenEndpoint::new(&cfg, &oauth_config(None)).unwrap();
    assert_eq!(
        prod.exchange_base("new599bd9d13818a.kommo.com"),
        "https://new599bd9d13818a.kommo.com"
    );
    let local = TokenEndpoint::new(&cfg, &oauth_config(Some("http://127.0.0.1:8081"))).unwrap();
    assert_eq!(
        local.exchange_base("new599bd9d13818a.amocrm.ru"),
        "http://127.0.0.1:8081"
    );
}
