//! Bearer auth, the 7 requests/s limit and the ban that follows repeated 429s.

use std::time::Duration;

use amocrm_sandbox::{AuthKind, SandboxConfig};
use serde_json::json;

use super::common::{start, start_with, test_config};

#[tokio::test]
async fn requests_without_a_valid_token_get_amocrms_401() {
    let env = start().await;
    let expected = json!({
        "title": "Unauthorized",
        "type": "https://httpstatus.es/401",
        "status": 401,
        "detail": "Invalid user name or password"
    });

    let none = env.send(env.http.get(env.url("/api/v4/account"))).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json, expected);
    assert_eq!(
        none.text,
        r#"{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"Invalid user name or password"}"#
    );
    assert_eq!(none.content_type(), "application/problem+json");

    let unknown = env
        .send(
            env.http
                .get(env.url("/api/v4/leads"))
                .bearer_auth("not-a-token"),
        )
        .await;
    assert_eq!((unknown.status, &unknown.json), (401, &expected));

    let basic = env
        .send(
            env.http
                .get(env.url("/api/v4/leads"))
                .basic_auth("u", Some("p")),
        )
        .await;
    assert_eq!(basic.status, 401);

    let h = env.handle();
    h.add_long_lived_token("expired-token", h.now() - 1);
    let expired = env
        .send(
            env.http
                .get(env.url("/api/v4/account"))
                .bearer_auth("expired-token"),
        )
        .await;
    assert_eq!(expired.status, 401);

    let ok = env.get("/api/v4/account").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.content_type(), "application/hal+json");
    assert!(h.revoke_token(&env.token));
    assert_eq!(env.get("/api/v4/account").await.status, 401);

    let kinds: Vec<AuthKind> = h.requests().iter().map(|r| r.authorization_kind).collect();
    assert_eq!(
        kinds,
        vec![
            AuthKind::None,
            AuthKind::Unknown,
            AuthKind::Unknown,
            AuthKind::LongLived,
            AuthKind::LongLived,
            AuthKind::LongLived
        ]
    );
    let statuses: Vec<u16> = h.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 401, 401, 401, 200, 401]);
}

#[tokio::test]
async fn tokens_from_the_config_work_and_a_jwt_exp_is_honoured() {
    let mut cfg = test_config();
    let past = amocrm_sandbox::mint_long_lived_token(&cfg, 1_600_000_000);
    cfg.long_lived_tokens = vec!["plain-dev-token".into(), past.clone()];
    let env = start_with(cfg).await;
    let ok = env
        .send(
            env.http
                .get(env.url("/api/v4/users"))
                .bearer_auth("plain-dev-token"),
        )
        .await;
    assert_eq!(ok.status, 200);
    let expired = env
        .send(env.http.get(env.url("/api/v4/users")).bearer_auth(&past))
        .await;
    assert_eq!(expired.status, 401);
}

#[tokio::test]
async fn more_than_seven_requests_in_a_second_get_an_html_429() {
    let env = start_with(SandboxConfig {
        requests_per_second: 7,
        ..test_config()
    })
    .await;
    for i in 0..7 {
        assert_eq!(env.get("/api/v4/account").await.status, 200, "request {i}");
    }
    let limited = env.get("/api/v4/account").await;
    assert_eq!(limited.status, 429);
    assert!(limited.content_type().starts_with("text/html"));
    assert!(limited.text.contains("429 Too Many Requests"));
    assert!(limited.headers.get("retry-after").is_none());

    // The window slides: a second later the client may continue.
    env.handle().advance_clock(Duration::from_millis(1_001));
    assert_eq!(env.get("/api/v4/account").await.status, 200);
}

#[tokio::test]
async fn the_limit_is_the_integrations_every_token_and_the_token_endpoint_together() {
    let env = start_with(SandboxConfig {
        requests_per_second: 3,
        ..test_config()
    })
    .await;
    let other = env.handle().new_long_lived_token(env.handle().now() + 3600);
    assert_eq!(env.get("/api/v4/account").await.status, 200);
    let by_other = env
        .send(env.http.get(env.url("/api/v4/account")).bearer_auth(&other))
        .await;
    assert_eq!(by_other.status, 200);
    // A token request (even a refused one) takes the third place of the second...
    let token = env
        .send(env.http.post(env.url("/oauth2/access_token")).body("{}"))
        .await;
    assert_eq!(token.status, 400);
    // ...so neither token, nor the token endpoint, gets a fourth.
    assert_eq!(env.get("/api/v4/account").await.status, 429);
    let by_other = env
        .send(env.http.get(env.url("/api/v4/account")).bearer_auth(&other))
        .await;
    assert_eq!(by_other.status, 429);
    let token = env
        .send(env.http.post(env.url("/oauth2/access_token")).body("{}"))
        .await;
    assert_eq!(token.status, 429);
    env.handle().advance_clock(Duration::from_millis(1_001));
    assert_eq!(env.get("/api/v4/account").await.status, 200);
}

#[tokio::test]
async fn a_client_that_keeps_hitting_429_is_banned_with_403_everywhere() {
    let env = start_with(SandboxConfig {
        requests_per_second: 1,
        ban_after_429s: 3,
        ban_secs: 600,
        ..test_config()
    })
    .await;
    assert_eq!(env.get("/api/v4/account").await.status, 200);
    for _ in 0..3 {
        assert_eq!(env.get("/api/v4/account").await.status, 429);
    }
    assert!(!env.handle().is_banned());
    assert_eq!(env.get("/api/v4/account").await.status, 429);
    assert!(env.handle().is_banned());

    env.handle().advance_clock(Duration::from_secs(5));
    let banned = env.get("/api/v4/leads").await;
    assert_eq!(banned.status, 403);
    assert!(banned.text.contains("<h1>403 Forbidden</h1>"));
    assert!(banned.content_type().starts_with("text/html"));
    // Even the token endpoint and unauthenticated calls are refused.
    let token = env
        .send(env.http.post(env.url("/oauth2/access_token")).body("{}"))
        .await;
    assert_eq!(token.status, 403);

    env.handle().unban();
    assert_eq!(env.get("/api/v4/leads").await.status, 204);
}

#[tokio::test]
async fn a_ban_ends_after_its_time() {
    let env = start_with(SandboxConfig {
        requests_per_second: 1,
        ban_after_429s: 0,
        ban_secs: 60,
        ..test_config()
    })
    .await;
    assert_eq!(env.get("/api/v4/account").await.status, 200);
    assert_eq!(env.get("/api/v4/account").await.status, 429);
    assert_eq!(env.get("/api/v4/account").await.status, 403);
    env.handle().advance_clock(Duration::from_secs(61));
    assert_eq!(env.get("/api/v4/account").await.status, 200);
}

/// A client that leaves from `from` (another loopback address plays another host).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(Some(from.parse().unwrap()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_ip_whitelist_answers_403_code_113_to_every_other_address_api_and_token_endpoint() {
    let env = start().await;
    // The whitelist lists the backend's address only; we call from 127.0.0.1.
    let set = env
        .send(
            env.http
                .post(env.url("/_sandbox/settings"))
                .json(&json!({ "ip_allowlist": ["127.0.0.2"] })),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.json["ip_allowlist"], json!(["127.0.0.2"]));

    let a = env.get("/api/v4/account").await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(a.json["error_code"], 113);
    assert_eq!(a.json["ip"], "127.0.0.1");
    assert_eq!(
        a.json["detail"],
        "Access to this account is prohibited from your IP address"
    );
    let token = env
        .send(env.http.post(env.url("/oauth2/access_token")).json(&json!({
            "client_id": "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd",
            "client_secret": "sandbox-client-secret",
            "grant_type": "refresh_token",
            "refresh_token": "whatever",
            "redirect_uri": "https://api.td-rss.ru/webhook/amocrm",
        })))
        .await;
    assert_eq!(token.status, 403, "{}", token.text);
    assert_eq!(token.json["error_code"], 113);
    // The address on the list gets through, by its real source address.
    let allowed = env
        .send(
            client_from("127.0.0.2")
                .get(env.url("/api/v4/account"))
                .bearer_auth(&env.token),
        )
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text);
    // The control API is not filtered; an empty list turns the filter off.
    let off = env
        .send(
            env.http
                .post(env.url("/_sandbox/settings"))
                .json(&json!({ "ip_allowlist": [] })),
        )
        .await;
    assert_eq!(off.status, 200);
    assert_eq!(env.get("/api/v4/account").await.status, 200);
    // A bad address is named and changes nothing.
    let bad = env
        .send(
            env.http
                .post(env.url("/_sandbox/settings"))
                .json(&json!({ "ip_allowlist": ["not-an-ip"] })),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("not-an-ip"), "{}", bad.text);
    assert!(env.handle().ip_allowlist().is_empty());
}

#[tokio::test]
async fn the_whitelist_can_be_set_from_the_start() {
    let env = start_with(SandboxConfig {
        ip_allowlist: SandboxConfig::parse_allowlist("127.0.0.2, 127.0.0.3").unwrap(),
        ..test_config()
    })
    .await;
    assert_eq!(env.get("/api/v4/account").await.status, 403);
    assert!(SandboxConfig::parse_allowlist("127.0.0.1,nope").is_err());
}
