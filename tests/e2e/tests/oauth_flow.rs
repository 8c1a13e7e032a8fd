//! OAuth2 against the sandbox's token endpoint (codes single-use, refresh tokens rotated and
//! single-use): the redirect URI exchange, one refresh for many concurrent users across
//! "instances", and every failure answered with its page and hint.

use std::time::Duration;

use e2e::*;
use serde_json::Value;
use shared::amocrm::{AmoClient, TokenKind};
use shared::maintenance::{Budget, MaintenanceSync, RunOutcome, Step, StepEnd};
use shared::ports::SecretStore;
use shared::secrets::SecretsManagerStore;

async fn token_secret(stack: &local_stack::LocalStack) -> Value {
    let store = SecretsManagerStore::new(stack.aws.secrets.clone());
    serde_json::from_str(&store.read(&stack.resources.token_secret_id).await.unwrap()).unwrap()
}

#[tokio::test]
async fn the_code_exchange_stores_the_pair_and_twenty_concurrent_users_cause_one_refresh() {
    let stack = stack().await;
    let (status, page) = authorize(&stack).await;
    assert_eq!(status, 200, "{page}");
    let mut pair = token_secret(&stack).await;
    assert_eq!(pair["kind"], "oauth");
    let first_refresh_token = pair["refresh_token"].as_str().unwrap().to_string();
    assert!(
        !page.contains(&first_refresh_token)
            && !page.contains(pair["access_token"].as_str().unwrap())
    );

    // A day later the access token is dead at amoCRM, and the stored expiry says so.
    stack
        .sandbox
        .state
        .advance_clock(Duration::from_secs(25 * 3600));
    pair["expires_at"] = Value::from(chrono_now() - 60);
    let store = SecretsManagerStore::new(stack.aws.secrets.clone());
    store
        .write(&stack.resources.token_secret_id, &pair.to_string())
        .await
        .unwrap();

    // Four "Lambda instances" (own providers, shared DynamoDB lease and secret), five callers each.
    let before = stack.sandbox.state.token_endpoint_calls();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let tokens = shared::wiring::token_provider(&stack.config, &stack.aws).unwrap();
        let client = AmoClient::new(&stack.config.amo, tokens).unwrap();
        for _ in 0..5 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move { client.account().await }));
        }
    }
    for t in tasks {
        let account = t.await.unwrap().expect("every caller succeeds");
        assert_eq!(account["subdomain"], "new599bd9d13818a");
    }
    assert_eq!(
        stack.sandbox.state.token_endpoint_calls() - before,
        1,
        "exactly one refresh"
    );
    let rotated = token_secret(&stack).await;
    assert_ne!(
        rotated["refresh_token"].as_str().unwrap(),
        first_refresh_token
    );
}

#[tokio::test]
async fn every_oauth_failure_answers_its_page_and_hint() {
    let stack = stack().await;
    // A garbled code: amoCRM cannot decrypt it → the redirect URI is the usual cause.
    let state = start_state(&stack).await;
    let (status, page) = redirect(
        &stack,
        &[
            ("code", "garbage"),
            ("state", &state),
            ("referer", REFERER),
            ("client_id", CLIENT_ID),
        ],
    )
    .await;
    assert_eq!(status, 502, "{page}");
    assert!(
        page.contains("https://api.td-rss.ru/webhook/amocrm"),
        "{page}"
    );

    // A code used twice: start again.
    let code = stack.sandbox.state.issue_auth_code(None);
    let s1 = start_state(&stack).await;
    assert_eq!(
        redirect(
            &stack,
            &[
                ("code", &code),
                ("state", &s1),
                ("referer", REFERER),
                ("client_id", CLIENT_ID)
            ]
        )
        .await
        .0,
        200
    );
    let s2 = start_state(&stack).await;
    let (status, page) = redirect(
        &stack,
        &[
            ("code", &code),
            ("state", &s2),
            ("referer", REFERER),
            ("client_id", CLIENT_ID),
        ],
    )
    .await;
    assert_eq!(status, 502);
    assert!(
        page.contains("уже использован") && page.contains("/oauth/start"),
        "{page}"
    );

    // The user declined.
    let (status, page) = redirect(
        &stack,
        &[("error", "access_denied"), ("client_id", CLIENT_ID)],
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("Доступ не предоставлен"), "{page}");

    // A state we never issued (or one used already): nothing is exchanged.
    let code = stack.sandbox.state.issue_auth_code(None);
    let calls = stack.sandbox.state.token_endpoint_calls();
    let (status, _) = redirect(
        &stack,
        &[
            ("code", &code),
            ("state", &s1),
            ("referer", REFERER),
            ("client_id", CLIENT_ID),
        ],
    )
    .await;
    assert_eq!(status, 400);
    // A referer that is not our amoCRM account: the client secret is never sent there.
    let s3 = start_state(&stack).await;
    let (status, _) = redirect(
        &stack,
        &[
            ("code", &code),
            ("state", &s3),
            ("referer", "evil.example.com"),
            ("client_id", CLIENT_ID),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(stack.sandbox.state.token_endpoint_calls(), calls);

    // The app secret holds another integration's client secret.
    let store = SecretsManagerStore::new(stack.aws.secrets.clone());
    let mut app: Value =
        serde_json::from_str(&store.read(&stack.resources.app_secret_id).await.unwrap()).unwrap();
    app["amocrm_client_secret"] = Value::from("not-the-integrations-secret");
    store
        .write(&stack.resources.app_secret_id, &app.to_string())
        .await
        .unwrap();
    let s4 = start_state(&stack).await;
    let (status, page) = redirect(
        &stack,
        &[
            ("code", &code),
            ("state", &s4),
            ("referer", REFERER),
            ("client_id", CLIENT_ID),
        ],
    )
    .await;
    assert_eq!(status, 502);
    assert!(page.contains("amocrm_client_secret"), "{page}");
    assert!(
        !page.contains("not-the-integrations-secret"),
        "the secret was echoed"
    );

    // /oauth/start itself needs the admin key.
    let resp = http()
        .get(format!("{}/oauth/start", stack.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn a_revoked_integration_stops_calls_with_a_reauthorization_hint_and_one_alert_mail() {
    let stack = stack().await;
    assert_eq!(authorize(&stack).await.0, 200);
    stack.sandbox.state.revoke_integration();
    let tokens = shared::wiring::token_provider(&stack.config, &stack.aws).unwrap();
    let client = AmoClient::new(&stack.config.amo, tokens.clone()).unwrap();
    for _ in 0..3 {
        let err = client.account().await.expect_err("revoked");
        assert!(
            err.hint.contains("/oauth/start") || err.hint.to_lowercase().contains("re-author"),
            "{}",
            err.hint
        );
    }
    let health = tokens.token_health().await.unwrap();
    assert!(health.reauthorization_required, "{health:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alerts: Vec<_> = stack
        .moto
        .sent_mail()
        .await
        .into_iter()
        .filter(|m| m["subject"].as_str().is_some_and(|s| s.contains("amoCRM")))
        .collect();
    assert_eq!(alerts.len(), 1, "one alert per incident: {alerts:?}");
}

#[tokio::test]
async fn the_sync_refreshes_an_oauth_pair_ahead_of_expiry_and_only_then() {
    let stack = stack().await;
    assert_eq!(authorize(&stack).await.0, 200);
    let calls = stack.sandbox.state.token_endpoint_calls();

    // A fresh pair (24 h): the run leaves it alone.
    let report = stack.sync_once().await;
    assert_eq!(report.outcome, RunOutcome::Complete, "{report:?}");
    assert_eq!(report.token.kind, Some(TokenKind::Oauth));
    assert!(!report.token.refreshed, "{report:?}");
    assert_eq!(stack.sandbox.state.token_endpoint_calls(), calls);

    // 90 minutes left: within the default two hours, so this run refreshes it.
    let mut pair = token_secret(&stack).await;
    let old_access = pair["access_token"].as_str().unwrap().to_string();
    let old_refresh = pair["refresh_token"].as_str().unwrap().to_string();
    pair["expires_at"] = Value::from(chrono_now() + 90 * 60);
    SecretsManagerStore::new(stack.aws.secrets.clone())
        .write(&stack.resources.token_secret_id, &pair.to_string())
        .await
        .unwrap();
    let report = stack.sync_once().await;
    assert_eq!(report.outcome, RunOutcome::Complete, "{report:?}");
    assert!(report.token.refreshed, "{report:?}");
    assert_eq!(stack.sandbox.state.token_endpoint_calls(), calls + 1);
    let rotated = token_secret(&stack).await;
    assert_ne!(rotated["access_token"].as_str().unwrap(), old_access);
    assert_ne!(rotated["refresh_token"].as_str().unwrap(), old_refresh);
    let hours_left = (report.token.expires_at.unwrap() - chrono::Utc::now()).num_hours();
    assert!((23..=24).contains(&hours_left), "{report:?}");

    // The next run finds a fresh pair again: no second refresh.
    let report = stack.sync_once().await;
    assert!(!report.token.refreshed, "{report:?}");
    assert_eq!(stack.sandbox.state.token_endpoint_calls(), calls + 1);
}

/// Expiry notices in the outbox (moto's SES store).
async fn expiry_notices(stack: &local_stack::LocalStack) -> Vec<Value> {
    stack
        .moto
        .sent_mail()
        .await
        .into_iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.contains("долгосрочный токен"))
        })
        .collect()
}

#[tokio::test]
async fn a_long_lived_token_is_announced_30_7_and_1_days_ahead_and_when_expired_once_each() {
    let stack = stack().await;
    let valid_for = Duration::from_secs(20 * 86_400);
    let token = local_stack::long_lived_token(stack.options.sandbox.account_id, valid_for);
    let registered = http()
        .post(format!("{}/_sandbox/tokens", stack.sandbox.url))
        .json(&serde_json::json!({
            "token": token,
            "expires_at": chrono_now() + valid_for.as_secs() as i64,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    SecretsManagerStore::new(stack.aws.secrets.clone())
        .write(
            &stack.resources.token_secret_id,
            &serde_json::json!({"kind": "long_lived", "access_token": token}).to_string(),
        )
        .await
        .unwrap();

    // 20 days left: the 30-day notice, once however many runs see it.
    let report = stack.sync_once().await;
    assert_eq!(report.outcome, RunOutcome::Complete, "{report:?}");
    assert_eq!(report.token.kind, Some(TokenKind::LongLived));
    assert_eq!(report.token.notice_days, Some(30), "{report:?}");
    assert_eq!(stack.sync_once().await.token.notice_days, None);
    let notices = expiry_notices(&stack).await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0]["subject"].as_str().unwrap().contains("20 дней"));

    // Later days of the same token (the step on its own, at a later "now").
    let later = |days: f64| chrono::Utc::now() + chrono::Duration::minutes((days * 1440.0) as i64);
    let budget = Budget::from_fn(|| Duration::from_secs(60));
    let notice_at = async |days: f64| {
        let mut report = MaintenanceSync::new_report(later(days));
        let end = stack
            .sync
            .step(Step::Token, later(days), &budget, &mut report)
            .await;
        assert!(matches!(end, Ok(StepEnd::Done)), "{end:?}");
        report.token.notice_days
    };
    assert_eq!(notice_at(14.0).await, Some(7), "6 days left");
    assert_eq!(
        notice_at(15.0).await,
        None,
        "the 7-day notice went out already"
    );
    assert_eq!(notice_at(19.5).await, Some(1), "half a day left");
    assert_eq!(notice_at(20.5).await, Some(0), "expired");
    assert_eq!(notice_at(25.0).await, None);

    let notices = expiry_notices(&stack).await;
    assert_eq!(notices.len(), 4, "{notices:?}");
    for mail in &notices {
        let whole = mail.to_string();
        assert!(whole.contains(&stack.config.oauth.alert_mailbox), "{whole}");
        assert!(whole.contains(&stack.resources.token_secret_id), "{whole}");
        assert!(!whole.contains(&token), "the token itself is never mailed");
    }
}
