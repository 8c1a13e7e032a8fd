//! Every log line of a representative run — site lead with phone and e-mail, test-crm, the
//! webhook with its token, the OAuth exchange and a refresh, the Mini App — captured as JSON
//! (at debug level, stricter than production's info) and searched for the secrets and the
//! customer's contact data. None may appear. `LOG_CAPTURE_DUMP=<file>` keeps the capture.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use e2e::*;
use local_stack::LocalStack;
use serde_json::{Value, json};
use shared::ports::SecretStore;
use shared::secrets::SecretsManagerStore;
use tracing_subscriber::fmt::MakeWriter;

const WON: i64 = 142;
const CLIENT_ID: &str = "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd";
const PHONE: &str = "+79123456789";
const EMAIL: &str = "ivan.petrov@example.ru";

/// The log output of this test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn capture() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(logs.clone())
            .init();
        logs
    })
}

async fn token_secret(stack: &LocalStack) -> Value {
    let store = SecretsManagerStore::new(stack.aws.secrets.clone());
    serde_json::from_str(&store.read(&stack.resources.token_secret_id).await.unwrap()).unwrap()
}

async fn test_crm(stack: &LocalStack) -> u16 {
    http()
        .get(format!("{}/ingest/test-crm", stack.api_url))
        .header("x-admin-key", &stack.options.admin_key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Authorises through `/oauth/start` and the redirect route; returns the code used.
async fn authorize(stack: &LocalStack) -> String {
    let state = start_state(stack).await;
    let code = stack.sandbox.state.issue_auth_code(None);
    let resp = http()
        .get(format!("{}/webhook/amocrm", stack.api_url))
        .query(&[
            ("code", code.as_str()),
            ("state", &state),
            ("referer", REFERER),
            ("client_id", CLIENT_ID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    code
}

#[tokio::test]
async fn no_token_secret_phone_or_email_reaches_the_logs() {
    let logs = capture();
    let stack = stack_with(|o| {
        o.admin_key = "adm-Q7x9-log-capture-key-4711".into();
        o.webhook_token = "whk-Zr8p-log-capture-token-0815".into();
        o.telegram_bot_token = "987654:AAH-log-capture-bot-token".into();
        o.sandbox.client_secret = "cs-log-capture-client-secret-9931".into();
    })
    .await;
    stack.register_webhook().await.unwrap();
    let mut secrets: Vec<(String, String)> = vec![
        ("admin key".into(), stack.options.admin_key.clone()),
        ("webhook token".into(), stack.options.webhook_token.clone()),
        ("bot token".into(), stack.options.telegram_bot_token.clone()),
        (
            "client secret".into(),
            stack.options.sandbox.client_secret.clone(),
        ),
        (
            "long-lived token".into(),
            token_secret(&stack).await["access_token"]
                .as_str()
                .unwrap()
                .to_string(),
        ),
        ("phone".into(), PHONE.into()),
        ("phone digits".into(), PHONE[2..].into()),
        ("e-mail".into(), EMAIL.into()),
    ];

    // A site lead with phone and e-mail, delivered; test-crm; the deal won → webhook → passport.
    let mut body = site_lead("Иван Петров", "8 (912) 345-67-89");
    body["email"] = json!(EMAIL);
    body["telegram_id"] = json!(4242);
    let (status, resp) = post_lead(&stack, &body).await;
    assert_eq!(status, 202, "{resp}");
    stack.deliver_pending().await.unwrap();
    assert_eq!(test_crm(&stack).await, 200);
    let amo_id = stack.sandbox.state.leads()[0]["id"].as_i64().unwrap();
    move_lead(&stack, amo_id, WON).await;
    let auth = format!("tma {}", init_data(&stack, 4242, 10));
    eventually(&stack, "equipment in the passport", || async {
        let (_, body) = get_passport(&stack, &auth).await;
        (body["equipment"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    let resp = http()
        .post(format!("{}/passport/service-requests", stack.api_url))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(json!({"serial": "SN-1001", "message": "Стучит шпиндель"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    stack.deliver_pending().await.unwrap();
    // Refused calls log too.
    get_passport(&stack, &auth.replace("4242", "4243")).await;
    post_webhook(&stack, "wrong-token", "leads[status][0][id]=1", None).await;

    // OAuth: the exchange, a call with the access token, an expired one refreshed.
    let code = authorize(&stack).await;
    secrets.push(("authorization code".into(), code));
    let pair = token_secret(&stack).await;
    for key in ["access_token", "refresh_token"] {
        secrets.push((
            format!("OAuth {key}"),
            pair[key].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(test_crm(&stack).await, 200);
    stack
        .sandbox
        .state
        .advance_clock(Duration::from_secs(25 * 3600));
    let mut expired = pair.clone();
    expired["expires_at"] = json!(chrono_now() - 60);
    SecretsManagerStore::new(stack.aws.secrets.clone())
        .write(&stack.resources.token_secret_id, &expired.to_string())
        .await
        .unwrap();
    // A fresh "instance" (no token in memory) reads the expired pair and refreshes it.
    let tokens = shared::wiring::token_provider(&stack.config, &stack.aws).unwrap();
    let client = shared::amocrm::AmoClient::new(&stack.config.amo, tokens).unwrap();
    client.account().await.expect("a call after the refresh");
    let rotated = token_secret(&stack).await;
    assert_ne!(rotated["refresh_token"], pair["refresh_token"], "refreshed");
    for key in ["access_token", "refresh_token"] {
        secrets.push((
            format!("refreshed OAuth {key}"),
            rotated[key].as_str().unwrap().to_string(),
        ));
    }
    // amoCRM failing: the errors are logged with their hints.
    stack.sandbox.state.revoke_integration();
    assert_eq!(test_crm(&stack).await, 502);
    let mut second = site_lead("Иван Петров", PHONE);
    second["email"] = json!(EMAIL);
    second["message"] = json!("Ещё одна заявка");
    post_lead(&stack, &second).await;
    stack.deliver_pending().await.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    if let Ok(path) = std::env::var("LOG_CAPTURE_DUMP") {
        std::fs::write(&path, &text).expect("dump the captured logs");
    }
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() > 50,
        "the run logged too little to mean anything: {} lines",
        lines.len()
    );
    assert!(
        text.contains("lead delivered") && text.contains("webhook stored"),
        "the flow's own lines are missing"
    );
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        for line in lines.iter().filter(|l| l.contains(secret.as_str())) {
            leaks.push(format!("{what}: {line}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
