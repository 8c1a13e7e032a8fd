//! `POST /oauth2/access_token`: both grants, rotation, and amoCRM's error bodies.

use std::time::Duration;

use amocrm_sandbox::config::DEFAULT_CLIENT_SECRET;
use serde_json::{Value, json};

use super::common::{Answer, Env, start};

const CLIENT_ID: &str = "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd";
const REDIRECT: &str = "https://api.td-rss.ru/webhook/amocrm";

fn code_request(code: &str) -> Value {
    json!({
        "client_id": CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
    })
}

fn refresh_request(refresh: &str) -> Value {
    json!({
        "client_id": CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "redirect_uri": REDIRECT,
    })
}

async fn token(env: &Env, body: &Value) -> Answer {
    env.send(env.http.post(env.url("/oauth2/access_token")).json(body))
        .await
}

fn assert_hint(a: &Answer, status: u16, hint: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(a.content_type(), "application/problem+json");
    assert_eq!(
        a.json,
        json!({
            "hint": hint,
            "title": "Некорректный запрос",
            "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
            "status": status,
            "detail": "В запросе отсутствует ряд параметров или параметры невалидны"
        })
    );
}

async fn api_status(env: &Env, access: &str) -> u16 {
    env.send(env.http.get(env.url("/api/v4/account")).bearer_auth(access))
        .await
        .status
}

#[tokio::test]
async fn a_code_becomes_a_token_pair_and_refresh_tokens_rotate() {
    let env = start().await;
    let h = env.handle();
    let code = h.issue_auth_code(None);
    let first = token(&env, &code_request(&code)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert!(
        first
            .text
            .starts_with(r#"{"token_type":"Bearer","expires_in":86400,"access_token":""#)
    );
    let access = first.json["access_token"].as_str().unwrap().to_string();
    let refresh = first.json["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(access.split('.').count(), 3, "JWT-shaped");
    assert_eq!(api_status(&env, &access).await, 200);
    let kinds: Vec<_> = h.requests().iter().map(|r| r.authorization_kind).collect();
    assert_eq!(kinds.last(), Some(&amocrm_sandbox::AuthKind::OAuth));

    // The same code twice: revoked.
    assert_hint(
        &token(&env, &code_request(&code)).await,
        400,
        "Authorization code has been revoked",
    );

    // Refresh as a form, the way the league client sends it.
    let form = env
        .send(env.http.post(env.url("/oauth2/access_token")).form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("redirect_uri", REDIRECT),
        ]))
        .await;
    assert_eq!(form.status, 200, "{}", form.text);
    let refresh2 = form.json["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh, refresh2);
    assert_eq!(
        api_status(&env, form.json["access_token"].as_str().unwrap()).await,
        200
    );

    // The spent refresh token is single-use.
    assert_hint(
        &token(&env, &refresh_request(&refresh)).await,
        401,
        "Token has been revoked",
    );
    assert_hint(
        &token(&env, &refresh_request("garbage")).await,
        400,
        "Invalid refresh token",
    );
    assert_eq!(token(&env, &refresh_request(&refresh2)).await.status, 200);
    assert_eq!(h.token_endpoint_calls(), 6);
}

#[tokio::test]
async fn access_tokens_expire_after_a_day_and_codes_after_twenty_minutes() {
    let env = start().await;
    let h = env.handle();
    let pair = token(&env, &code_request(&h.issue_auth_code(None))).await;
    let access = pair.json["access_token"].as_str().unwrap().to_string();
    let late_code = h.issue_auth_code(None);
    h.advance_clock(Duration::from_secs(20 * 60 + 1));
    assert_hint(
        &token(&env, &code_request(&late_code)).await,
        400,
        "Authorization code has expired",
    );
    assert_eq!(api_status(&env, &access).await, 200);
    h.advance_clock(Duration::from_secs(86_400));
    assert_eq!(api_status(&env, &access).await, 401);
    // The refresh token still works (three months).
    let refreshed = token(
        &env,
        &refresh_request(pair.json["refresh_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(refreshed.status, 200);
    h.advance_clock(Duration::from_secs(91 * 86_400));
    assert_hint(
        &token(
            &env,
            &refresh_request(refreshed.json["refresh_token"].as_str().unwrap()),
        )
        .await,
        401,
        "Token has expired",
    );
}

#[tokio::test]
async fn client_and_redirect_checks_use_amocrms_hints() {
    let env = start().await;
    let h = env.handle();
    let code = h.issue_auth_code(None);

    let mut wrong_client = code_request(&code);
    wrong_client["client_id"] = json!("00000000-0000-0000-0000-000000000000");
    assert_hint(
        &token(&env, &wrong_client).await,
        400,
        "Check the `client_id` parameter",
    );

    let mut wrong_secret = code_request(&code);
    wrong_secret["client_secret"] = json!("old-secret");
    assert_hint(
        &token(&env, &wrong_secret).await,
        400,
        "Check the `client_secret` parameter",
    );

    let mut no_secret = code_request(&code);
    no_secret.as_object_mut().unwrap().remove("client_secret");
    let incorrect = token(&env, &no_secret).await;
    assert_eq!(incorrect.status, 401);
    assert_eq!(
        incorrect.json,
        json!({
            "title": "Некорректный клиент",
            "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
            "status": 401,
            "detail": "Авторизация клиента не прошла"
        })
    );

    let mut wrong_redirect = code_request(&code);
    wrong_redirect["redirect_uri"] = json!("https://api.td-rss.ru/webhook/amocrm/");
    assert_hint(
        &token(&env, &wrong_redirect).await,
        400,
        "Redirect URI is not associated with client",
    );

    assert_hint(
        &token(&env, &code_request("def50200garbled")).await,
        400,
        "Cannot decrypt the authorization code",
    );
    // A code issued for another redirect URI cannot be decrypted with the registered one.
    let foreign = h.issue_auth_code(Some("https://old.example.ru/callback"));
    assert_hint(
        &token(&env, &code_request(&foreign)).await,
        400,
        "Cannot decrypt the authorization code",
    );

    let mut no_grant = code_request(&code);
    no_grant.as_object_mut().unwrap().remove("grant_type");
    assert_hint(
        &token(&env, &no_grant).await,
        400,
        "Check the `grant_type` parameter",
    );

    // None of the refusals spent the code.
    assert_eq!(token(&env, &code_request(&code)).await.status, 200);
}

#[tokio::test]
async fn revoking_the_integration_stops_every_token_and_sends_the_signed_hook() {
    use std::sync::{Arc, Mutex};

    use axum::extract::RawQuery;
    use axum::http::HeaderMap;

    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let recorder = seen.clone();
    let app = axum::Router::new().route(
        "/revoked",
        axum::routing::get(move |headers: HeaderMap, RawQuery(q): RawQuery| {
            let recorder = recorder.clone();
            async move {
                let ua = headers
                    .get("user-agent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                recorder.lock().unwrap().push((ua, q.unwrap_or_default()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/revoked", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let env = super::common::start_with(amocrm_sandbox::SandboxConfig {
        revoke_hook_url: Some(hook_url),
        ..super::common::test_config()
    })
    .await;
    let h = env.handle();
    let pair = token(&env, &code_request(&h.issue_auth_code(None))).await;
    let access = pair.json["access_token"].as_str().unwrap().to_string();
    h.revoke_integration();
    assert_eq!(api_status(&env, &access).await, 401);
    assert_eq!(api_status(&env, &env.token).await, 401);
    assert_hint(
        &token(
            &env,
            &refresh_request(pair.json["refresh_token"].as_str().unwrap()),
        )
        .await,
        401,
        "Token has been revoked",
    );

    let done = h.wait_for_deliveries(1, Duration::from_secs(3)).await;
    assert_eq!(done.len(), 1);
    assert!(done[0].delivered);
    let (ua, query) = seen.lock().unwrap()[0].clone();
    assert_eq!(ua, "amoService-oAuth-Code-Sender/1.0");
    let params: std::collections::HashMap<String, String> = serde_qs::from_str(&query).unwrap();
    assert_eq!(params["client_uuid"], CLIENT_ID);
    assert_eq!(params["account_id"], "31234567");
    // signature = hex(HMAC-SHA256(client_secret, "client_id|account_id")), checked independently.
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(DEFAULT_CLIENT_SECRET.as_bytes()).unwrap();
    mac.update(format!("{CLIENT_ID}|31234567").as_bytes());
    assert_eq!(
        params["signature"],
        hex::encode(mac.finalize().into_bytes())
    );

    // A new consent brings the integration back.
    let again = token(&env, &code_request(&h.issue_auth_code(None))).await;
    assert_eq!(
        api_status(&env, again.json["access_token"].as_str().unwrap()).await,
        200
    );
}
