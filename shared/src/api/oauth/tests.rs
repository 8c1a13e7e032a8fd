//! The OAuth start and redirect over HTTP, against a canned token endpoint and memory stores.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, RequestExt, Response};

use super::*;
use crate::amocrm::oauth::{ClientSecretSource, TokenEndpoint};
use crate::amocrm::testkit::{Canned, CannedServer, MemorySecrets, Recorded, test_config};
use crate::api::webhook::WebhookReceiver;
use crate::config::OAuthConfig;
use crate::ports::AppSecrets;
use crate::ports::TokenHealthRecord;
use crate::ports::{InboxEvent, InboxStatus, InboxStore, StoreError};
use crate::secrets::AppSecretsSource;
use crate::store::MemoryStateStore;

const CLIENT_ID: &str = "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd";
const CLIENT_SECRET: &str = "client-secret-0123456789";
const ADMIN_KEY: &str = "admin-key-0123456789";
const TOKEN_SECRET: &str = "amocrm-token";
const ACCOUNT: &str = "new599bd9d13818a.amocrm.ru";
const CODE: &str = "def50200code0123456789abcdef";

/// The inbox is not part of the OAuth flow: any use of it is a routing bug.
struct NoInbox;

#[async_trait]
impl InboxStore for NoInbox {
    async fn insert_new(&self, _: &str, _: &str, _: DateTime<Utc>) -> Result<bool, StoreError> {
        panic!("the OAuth routes must not touch the webhook inbox")
    }
    async fn get(&self, _: &str) -> Result<Option<InboxEvent>, StoreError> {
        panic!("the OAuth routes must not touch the webhook inbox")
    }
    async fn set_status(
        &self,
        _: &str,
        _: InboxStatus,
        _: u32,
        _: Option<&str>,
        _: Option<&str>,
        _: bool,
    ) -> Result<(), StoreError> {
        panic!("the OAuth routes must not touch the webhook inbox")
    }
    async fn pending_before(&self, _: DateTime<Utc>, _: usize) -> Result<Vec<String>, StoreError> {
        panic!("the OAuth routes must not touch the webhook inbox")
    }
}

struct Rig {
    server: CannedServer,
    secrets: Arc<MemorySecrets>,
    state: Arc<MemoryStateStore>,
    receiver: WebhookReceiver,
}

impl Rig {
    async fn start(replies: Vec<Canned>) -> Rig {
        let server = CannedServer::start(replies).await;
        let secrets = MemorySecrets::with(
            "app",
            &format!(r#"{{"admin_key":"{ADMIN_KEY}","amocrm_client_secret":"{CLIENT_SECRET}"}}"#),
        );
        let state = Arc::new(MemoryStateStore::default());
        // The sandbox override: codes go to the canned server, whatever the referer says.
        let oauth = OAuthConfig {
            authorize_url: "https://www.amocrm.ru/oauth".into(),
            token_base_url: Some(server.base_url.clone()),
            alert_mailbox: "ops@td-rss.ru".into(),
        };
        let endpoint = TokenEndpoint::new(&test_config(&server.base_url), &oauth).unwrap();
        let flow = OAuthFlow {
            state: state.clone(),
            secrets: secrets.clone(),
            token_secret_id: TOKEN_SECRET.into(),
            client_secret: ClientSecretSource::new(secrets.clone(), "app"),
            endpoint,
            authorize_url: oauth.authorize_url.clone(),
            app_secrets: Arc::new(AppSecretsSource::fixed(AppSecrets {
                admin_key: Some(ADMIN_KEY.into()),
                ..AppSecrets::default()
            })),
        };
        let receiver = WebhookReceiver {
            inbox: Arc::new(NoInbox),
            secrets: Arc::new(AppSecretsSource::fixed(AppSecrets {
                webhook_token: Some("hook-token".into()),
                ..AppSecrets::default()
            })),
            subdomain: "new599bd9d13818a".into(),
            account_id: None,
            oauth: Some(Arc::new(flow)),
        };
        Rig {
            server,
            secrets,
            state,
            receiver,
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let resp = self.receiver.handle(request(path, query, headers)).await;
        Answer::from(resp)
    }

    /// The redirect amoCRM sends after consent, with `extra` parameters added or replaced.
    async fn redirect(&self, params: &[(&str, &str)]) -> Answer {
        self.get("/webhook/amocrm", params, &[]).await
    }

    /// A `state` handed out by `/oauth/start`.
    async fn issued_state(&self) -> String {
        let a = self
            .get("/oauth/start", &[], &[("x-admin-key", ADMIN_KEY)])
            .await;
        assert_eq!(a.status, 302);
        let location = a.location.unwrap();
        let url = reqwest::Url::parse(&location).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    fn token_calls(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

fn request(path: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> Request {
    let mut b = lambda_http::http::Request::builder()
        .method("GET")
        .uri(format!("https://api.td-rss.ru{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let params: HashMap<String, String> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    b.body(Body::Empty)
        .unwrap()
        .with_raw_http_path(path)
        .with_query_string_parameters(params)
}

struct Answer {
    status: u16,
    content_type: String,
    location: Option<String>,
    body: String,
}

impl From<Response<Body>> for Answer {
    fn from(resp: Response<Body>) -> Self {
        let h = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Answer {
            status: resp.status().as_u16(),
            content_type: h("content-type").unwrap_or_default(),
            location: h("location"),
            body: match resp.body() {
                Body::Text(t) => t.clone(),
                Body::Binary(b) => String::from_utf8(b.clone()).unwrap(),
                _ => String::new(),
            },
        }
    }
}

impl Answer {
    /// A page for a person: HTML, UTF-8, self-contained, no secret material.
    fn assert_page(&self) {
        assert_eq!(self.content_type, "text/html; charset=utf-8");
        assert!(self.body.starts_with("<!doctype html>"), "{}", self.body);
        assert!(self.body.contains("<meta charset=\"utf-8\">"));
        for external in ["<script", "<link", "<img", "src=", "@import"] {
            assert!(!self.body.contains(external), "external asset {external}");
        }
        for secret in [
            CLIENT_SECRET,
            ADMIN_KEY,
            CODE,
            "access-from-code",
            "refresh-from-code",
        ] {
            assert!(!self.body.contains(secret), "the page leaks {secret}");
        }
    }

    fn offers_restart(&self) -> bool {
        self.body.contains("https://api.td-rss.ru/oauth/start")
    }
}

fn pair_json() -> String {
    r#"{"token_type":"Bearer","expires_in":86400,"access_token":"access-from-code","refresh_token":"refresh-from-code"}"#.to_string()
}

fn params(state: &str) -> Vec<(&str, &str)> {
    vec![
        ("code", CODE),
        ("state", state),
        ("referer", ACCOUNT),
        ("platform", "1"),
        ("client_id", CLIENT_ID),
    ]
}

fn with<'a>(
    mut p: Vec<(&'a str, &'a str)>,
    key: &'a str,
    value: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    p.retain(|(k, _)| *k != key);
    if let Some(v) = value {
        p.push((key, v));
    }
    p
}

#[tokio::test]
async fn start_needs_the_admin_key_and_redirects_to_amocrm_with_a_stored_state() {
    let rig = Rig::start(vec![]).await;
    for headers in [vec![], vec![("x-admin-key", "wrong")]] {
        let a = rig.get("/oauth/start", &[], &headers).await;
        assert_eq!(a.status, 401);
        assert_eq!(a.location, None);
    }
    let a = rig
        .get("/oauth/start", &[], &[("x-admin-key", ADMIN_KEY)])
        .await;
    assert_eq!(a.status, 302);
    let url = reqwest::Url::parse(a.location.as_deref().unwrap()).unwrap();
    assert_eq!(
        (url.scheme(), url.host_str(), url.path()),
        ("https", Some("www.amocrm.ru"), "/oauth")
    );
    let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["mode"], "post_message");
    assert!(q["state"].len() >= 26);
    // Two starts, two different states, each valid exactly once.
    let other = rig.issued_state().await;
    assert_ne!(other, q["state"]);
    let now = Utc::now();
    assert_eq!(
        rig.state.take_oauth_state(&q["state"], now).await.unwrap(),
        StateTake::Taken
    );
    assert_eq!(
        rig.state.take_oauth_state(&q["state"], now).await.unwrap(),
        StateTake::Unknown
    );
}

#[tokio::test]
async fn a_valid_redirect_exchanges_the_code_stores_the_pair_and_ends_an_incident() {
    let rig = Rig::start(vec![Canned::json(200, &pair_json())]).await;
    rig.state
        .put_token_health(&TokenHealthRecord {
            reauthorization_required: true,
            hint: Some("re-authorize".into()),
            since: Some(Utc::now()),
            ..Default::default()
        })
        .await
        .unwrap();
    let state = rig.issued_state().await;
    let a = rig.redirect(&params(&state)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.assert_page();
    assert!(a.body.contains("Интеграция с amoCRM подключена"));
    assert!(a.body.contains(ACCOUNT));

    let calls = rig.token_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("POST", "/oauth2/access_token")
    );
    let body = calls[0].body.clone().unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "authorization_code",
            "code": CODE,
            "redirect_uri": "https://api.td-rss.ru/webhook/amocrm",
        })
    );

    let stored: serde_json::Value =
        serde_json::from_str(&rig.secrets.read(TOKEN_SECRET).await.unwrap()).unwrap();
    let obj = stored.as_object().unwrap();
    assert_eq!(obj.len(), 4, "{stored}");
    assert_eq!(stored["kind"], "oauth");
    assert_eq!(stored["access_token"], "access-from-code");
    assert_eq!(stored["refresh_token"], "refresh-from-code");
    let expires = stored["expires_at"].as_i64().unwrap();
    let in_a_day = Utc::now().timestamp() + 86_400;
    assert!((in_a_day - 5..=in_a_day).contains(&expires), "{expires}");

    let health = rig.state.token_health().await.unwrap().unwrap();
    assert!(!health.reauthorization_required);
    assert!(health.last_authorized_at.is_some());
    assert_eq!(health.hint, None);

    // The state was single-use: the same redirect again is refused before calling amoCRM.
    let again = rig.redirect(&params(&state)).await;
    assert_eq!(again.status, 400);
    again.assert_page();
    assert_eq!(rig.token_calls().len(), 1);
}

#[tokio::test]
async fn every_token_endpoint_refusal_gets_its_page_and_hint() {
    let problem = |status: u16, hint: Option<&str>, title: &str| {
        let hint = hint
            .map(|h| format!(r#""hint":"{h}","#))
            .unwrap_or_default();
        format!(
            r#"{{{hint}"title":"{title}","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":{status},"detail":"…"}}"#
        )
    };
    let cases = [
        (
            Canned::json(
                400,
                &problem(
                    400,
                    Some("Cannot decrypt the authorization code"),
                    "Некорректный запрос",
                ),
            ),
            "amoCRM не смог расшифровать код",
            vec!["https://api.td-rss.ru/webhook/amocrm", "redirect URI"],
        ),
        (
            Canned::json(
                400,
                &problem(
                    400,
                    Some("Authorization code has been revoked"),
                    "Некорректный запрос",
                ),
            ),
            "Код авторизации уже использован",
            vec!["already used"],
        ),
        (
            Canned::json(
                400,
                &problem(
                    400,
                    Some("Authorization code has expired"),
                    "Некорректный запрос",
                ),
            ),
            "Код авторизации устарел",
            vec!["expired"],
        ),
        (
            Canned::json(
                400,
                &problem(
                    400,
                    Some("Check the `client_secret` parameter"),
                    "Некорректный запрос",
                ),
            ),
            "amoCRM не принял секретный ключ",
            vec!["amocrm_client_secret", "Secrets Manager"],
        ),
        (
            Canned::json(401, &problem(401, None, "Некорректный клиент")),
            "amoCRM не принял секретный ключ",
            vec!["amocrm_client_secret", "Secrets Manager"],
        ),
        (
            Canned::json(
                400,
                &problem(
                    400,
                    Some("Check the `client_id` parameter"),
                    "Некорректный запрос",
                ),
            ),
            "amoCRM не знает эту интеграцию",
            vec!["AMOCRM_CLIENT_ID"],
        ),
        (
            Canned::html(500, "<html><title>500</title></html>"),
            "amoCRM не ответил",
            vec!["retry later"],
        ),
        (
            Canned::json(
                403,
                r#"{"title":"Forbidden","status":403,"detail":"Access to this account is prohibited from your IP address","error_code":113}"#,
            ),
            "amoCRM не принимает запросы с нашего адреса",
            vec!["AmoEgressIp", "whitelist"],
        ),
    ];
    for (reply, title, hints) in cases {
        let rig = Rig::start(vec![reply]).await;
        let state = rig.issued_state().await;
        let a = rig.redirect(&params(&state)).await;
        assert_eq!(a.status, 502, "{title}");
        a.assert_page();
        assert!(a.body.contains(title), "{title}: {}", a.body);
        for h in hints {
            assert!(a.body.contains(h), "{title}: no {h:?} in {}", a.body);
        }
        assert!(a.offers_restart(), "{title}");
        assert_eq!(rig.token_calls().len(), 1);
        assert!(
            rig.secrets.read(TOKEN_SECRET).await.is_err(),
            "nothing stored after a failure"
        );
    }
}

#[tokio::test]
async fn a_declined_consent_is_a_400_page_without_calling_amocrm() {
    let rig = Rig::start(vec![]).await;
    let state = rig.issued_state().await;
    let a = rig
        .redirect(&[
            ("error", "access_denied"),
            ("client_id", CLIENT_ID),
            ("state", &state),
        ])
        .await;
    assert_eq!(a.status, 400);
    a.assert_page();
    assert!(a.body.contains("Доступ не предоставлен"));
    assert!(a.offers_restart());
    assert!(rig.token_calls().is_empty());
}

#[tokio::test]
async fn a_missing_unknown_or_expired_state_is_refused_before_calling_amocrm() {
    let rig = Rig::start(vec![]).await;
    rig.state
        .put_oauth_state("old-state", Utc::now() - chrono::Duration::seconds(1))
        .await
        .unwrap();
    for (state, title) in [
        (None, "Нет параметра state"),
        (Some("never-issued"), "Неизвестная ссылка авторизации"),
        (Some("old-state"), "Ссылка авторизации устарела"),
    ] {
        let a = rig.redirect(&with(params(""), "state", state)).await;
        assert_eq!(a.status, 400, "{state:?}");
        a.assert_page();
        assert!(a.body.contains(title), "{state:?}: {}", a.body);
        assert!(a.offers_restart());
    }
    assert!(rig.token_calls().is_empty());
}

#[tokio::test]
async fn the_widget_install_redirect_is_exchanged_without_a_state() {
    let rig = Rig::start(vec![Canned::json(200, &pair_json())]).await;
    let p = with(params(""), "state", None);
    let a = rig.redirect(&with(p, "from_widget", Some("1"))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.assert_page();
    assert_eq!(rig.token_calls().len(), 1);
}

#[tokio::test]
async fn a_foreign_referer_is_refused_and_the_secret_goes_nowhere() {
    let rig = Rig::start(vec![Canned::json(200, &pair_json())]).await;
    for referer in [
        Some("evil.example.com"),
        Some("new599bd9d13818a.amocrm.ru.evil.com"),
        Some("127.0.0.1:8080"),
        Some("new599bd9d13818a.amocrm.ru/oauth2"),
        None,
    ] {
        let state = rig.issued_state().await;
        let a = rig
            .redirect(&with(params(&state), "referer", referer))
            .await;
        assert_eq!(a.status, 400, "{referer:?}");
        a.assert_page();
        assert!(a.body.contains("Неизвестный адрес аккаунта"), "{referer:?}");
    }
    // A real amoCRM domain, but another account than the configured one.
    let state = rig.issued_state().await;
    let a = rig
        .redirect(&with(
            params(&state),
            "referer",
            Some("someone-else.kommo.com"),
        ))
        .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("Другой аккаунт amoCRM"));
    assert!(rig.token_calls().is_empty());
}

#[tokio::test]
async fn a_wrong_client_id_or_a_missing_code_is_a_400_without_calling_amocrm() {
    let rig = Rig::start(vec![]).await;
    let state = rig.issued_state().await;
    let a = rig
        .redirect(&with(
            params(&state),
            "client_id",
            Some("someone-elses-app"),
        ))
        .await;
    assert_eq!(a.status, 400);
    a.assert_page();
    assert!(a.body.contains("Код выдан не для этой интеграции"));
    let a = rig.redirect(&with(params(&state), "code", None)).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("Нет кода авторизации"));
    assert!(rig.token_calls().is_empty());
}

#[tokio::test]
async fn every_dynamic_string_is_html_escaped() {
    let rig = Rig::start(vec![]).await;
    let a = rig
        .redirect(&[
            ("error", "<script>alert(1)</script>"),
            ("client_id", CLIENT_ID),
        ])
        .await;
    assert_eq!(a.status, 400);
    assert!(!a.body.contains("<script>"));
    assert!(a.body.contains("&lt;script&gt;"));
}

#[tokio::test]
async fn a_missing_client_secret_is_named_and_nothing_is_sent() {
    let rig = Rig::start(vec![Canned::json(200, &pair_json())]).await;
    rig.secrets
        .put("app", &format!(r#"{{"admin_key":"{ADMIN_KEY}"}}"#));
    let state = rig.issued_state().await;
    let a = rig.redirect(&params(&state)).await;
    assert_eq!(a.status, 500);
    a.assert_page();
    assert!(a.body.contains("amocrm_client_secret"));
    assert!(a.offers_restart());
    assert!(rig.token_calls().is_empty());
}

/// Secrets Manager that refuses writes.
struct ReadOnlySecrets(Arc<MemorySecrets>);

#[async_trait]
impl SecretStore for ReadOnlySecrets {
    async fn read(&self, id: &str) -> Result<String, crate::ports::SecretError> {
        self.0.read(id).await
    }
    async fn write(&self, id: &str, _: &str) -> Result<(), crate::ports::SecretError> {
        Err(crate::ports::SecretError::Unavailable {
            id: id.into(),
            reason: "AccessDeniedException".into(),
        })
    }
}

#[tokio::test]
async fn a_pair_that_cannot_be_stored_is_reported_and_the_incident_stays() {
    let mut rig = Rig::start(vec![Canned::json(200, &pair_json())]).await;
    let mut flow = Arc::try_unwrap(rig.receiver.oauth.take().unwrap())
        .ok()
        .unwrap();
    flow.secrets = Arc::new(ReadOnlySecrets(rig.secrets.clone()));
    rig.receiver.oauth = Some(Arc::new(flow));
    rig.state
        .put_token_health(&TokenHealthRecord {
            reauthorization_required: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let state = rig.issued_state().await;
    let a = rig.redirect(&params(&state)).await;
    assert_eq!(a.status, 503);
    a.assert_page();
    assert!(a.body.contains("Токен получен, но не сохранён"));
    assert!(a.body.contains("PutSecretValue"));
    assert!(a.offers_restart());
    let health = rig.state.token_health().await.unwrap().unwrap();
    assert!(health.reauthorization_required);
}

#[tokio::test]
async fn without_a_state_table_the_oauth_routes_say_what_is_missing() {
    let mut rig = Rig::start(vec![]).await;
    rig.receiver.oauth = None;
    for path in ["/oauth/start", "/webhook/amocrm"] {
        let a = rig.get(path, &[], &[("x-admin-key", ADMIN_KEY)]).await;
        assert_eq!(a.status, 503, "{path}");
        assert!(a.body.contains("STATE_TABLE"));
    }
}
