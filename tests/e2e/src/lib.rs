//! Helpers for the end-to-end tests: a local stack per test (its own moto and sandbox on free
//! ports), and small clients for the API, the sandbox's control API and moto's mail store.

use std::time::Duration;

use local_stack::{LocalStack, StackOptions};
use serde_json::{Value, json};

pub use local_stack;

mod dying_store;
pub use dying_store::DyingStore;

/// Starts a stack with test defaults. Fails loudly when moto is not installed.
pub async fn stack() -> LocalStack {
    stack_with(|_| {}).await
}

pub async fn stack_with(adjust: impl FnOnce(&mut StackOptions)) -> LocalStack {
    let mut options = StackOptions::for_tests();
    adjust(&mut options);
    LocalStack::start(options)
        .await
        .unwrap_or_else(|e| panic!("local stack did not start: {e}"))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Response status and JSON body (Null when the body is empty or not JSON).
pub async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn post_lead(stack: &LocalStack, body: &Value) -> (u16, Value) {
    post_lead_with(stack, body, &[]).await
}

pub async fn post_lead_with(
    stack: &LocalStack,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = http()
        .post(format!("{}/leads", stack.api_url))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.send().await.expect("POST /leads")).await
}

/// The sandbox's whole state (`GET /_sandbox/state`).
pub async fn sandbox_state(stack: &LocalStack) -> Value {
    http()
        .get(format!("{}/_sandbox/state", stack.sandbox.url))
        .send()
        .await
        .expect("sandbox state")
        .json()
        .await
        .expect("sandbox state json")
}

pub async fn sandbox_list(stack: &LocalStack, what: &str) -> Vec<Value> {
    sandbox_state(stack).await[what]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Injects a fault at the sandbox (`POST /_sandbox/faults`).
pub async fn inject(stack: &LocalStack, fault: Value) {
    let resp = http()
        .post(format!("{}/_sandbox/faults", stack.sandbox.url))
        .json(&fault)
        .send()
        .await
        .expect("inject fault");
    assert!(
        resp.status().is_success(),
        "fault {fault} refused: {}",
        resp.status()
    );
}

/// Requests the sandbox saw, as `(method, path, status)`.
pub async fn sandbox_requests(stack: &LocalStack) -> Vec<Value> {
    http()
        .get(format!("{}/_sandbox/requests", stack.sandbox.url))
        .send()
        .await
        .expect("sandbox requests")
        .json::<Value>()
        .await
        .map(|v| v["requests"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

/// The items of the leads table (leads and idempotency claims), one scan page.
pub async fn leads_table_scan(
    stack: &LocalStack,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    stack
        .aws
        .dynamodb
        .scan()
        .table_name(&stack.resources.leads_table)
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default()
}

/// How many items the leads table holds (leads and idempotency claims).
pub async fn table_items(stack: &LocalStack) -> usize {
    leads_table_scan(stack).await.len()
}

/// The custom field value of an amoCRM lead as rendered by the API.
pub fn field_value(lead: &Value, field_id: i64) -> Option<String> {
    lead["custom_fields_values"]
        .as_array()?
        .iter()
        .find(|f| f["field_id"].as_i64() == Some(field_id))
        .and_then(|f| {
            f["values"][0]["value"]
                .as_str()
                .map(str::to_string)
                .or_else(|| f["values"][0]["value"].as_i64().map(|n| n.to_string()))
        })
}

pub fn tag_names(lead: &Value) -> Vec<String> {
    lead["_embedded"]["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn site_lead(name: &str, phone: &str) -> Value {
    json!({
        "source": "site",
        "intent": "service",
        "name": name,
        "phone": phone,
        "message": "Нужна диагностика токарного станка",
        "equipment": {"model": "16К20", "serial": "SN-1001"},
        "page_url": "https://td-rss.ru/service",
        "utm": {"source": "yandex", "campaign": "service-q4"},
    })
}

/// Polls `check` (running the stream workers between tries) until it yields or 15 s pass.
pub async fn eventually<T, F, Fut>(stack: &LocalStack, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        stack.deliver_pending().await.expect("stream pumps");
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A properly signed Mini App initData for `user_id`, `age_secs` old.
pub fn init_data(stack: &LocalStack, user_id: i64, age_secs: i64) -> String {
    let auth_date = (chrono_now() - age_secs).to_string();
    let user =
        json!({"id": user_id, "first_name": "Иван", "last_name": "Петров", "username": "ivan"})
            .to_string();
    shared::telegram::sign_init_data(
        &[
            ("auth_date", &auth_date),
            ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc"),
            ("user", &user),
        ],
        &stack.options.telegram_bot_token,
    )
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `GET /passport` as the Mini App calls it.
pub async fn get_passport(stack: &LocalStack, authorization: &str) -> (u16, Value) {
    read(
        http()
            .get(format!("{}/passport", stack.api_url))
            .header("authorization", authorization)
            .send()
            .await
            .expect("GET /passport"),
    )
    .await
}

/// Moves an amoCRM lead at the sandbox (which then sends its webhooks).
pub async fn move_lead(stack: &LocalStack, amo_lead_id: i64, status_id: i64) {
    let resp = http()
        .post(format!(
            "{}/_sandbox/leads/{amo_lead_id}/status",
            stack.sandbox.url
        ))
        .json(&json!({"status_id": status_id, "pipeline_id": 10226282}))
        .send()
        .await
        .expect("move lead");
    assert!(resp.status().is_success(), "move lead: {}", resp.status());
}

/// Posts a webhook body to our route the way amoCRM does.
pub async fn post_webhook(
    stack: &LocalStack,
    token: &str,
    body: &str,
    request_id: Option<&str>,
) -> (u16, Value) {
    let mut req = http()
        .post(format!("{}/webhook/amocrm?token={token}", stack.api_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "amoCRM-Webhooks/3.0")
        .body(body.to_string());
    if let Some(id) = request_id {
        req = req.header("x-amocrm-requestid", id);
    }
    read(req.send().await.expect("POST /webhook/amocrm")).await
}

/// `GET /health`, with the admin key when given.
pub async fn get_health(stack: &LocalStack, key: Option<&str>) -> (u16, Value) {
    let mut req = http().get(format!("{}/health", stack.api_url));
    if let Some(k) = key {
        req = req.header("x-admin-key", k);
    }
    read(req.send().await.expect("GET /health")).await
}

/// The `code` of every reason a health report gives.
pub fn reason_codes(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["code"].as_str().map(str::to_string))
        .collect()
}

/// What an operator does when amoCRM refused the long-lived token: issues a new one (valid for
/// a year) in amoCRM and puts it into the token secret. Returns the new token.
pub async fn put_new_long_lived_token(stack: &LocalStack) -> String {
    use shared::ports::SecretStore;
    let fresh = stack
        .sandbox
        .state
        .new_long_lived_token(chrono::Utc::now().timestamp() + 365 * 86_400);
    shared::secrets::SecretsManagerStore::new(stack.aws.secrets.clone())
        .write(
            &stack.resources.token_secret_id,
            &json!({"kind": "long_lived", "access_token": fresh}).to_string(),
        )
        .await
        .expect("new token stored in the secret");
    fresh
}

/// The integration's client id (the sandbox's and the functions' default).
pub const CLIENT_ID: &str = "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd";
/// The account a redirect comes from.
pub const REFERER: &str = "new599bd9d13818a.amocrm.ru";

/// `GET /oauth/start` with the admin key: the state nonce of the consent URL.
pub async fn start_state(stack: &local_stack::LocalStack) -> String {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/oauth/start", stack.api_url))
        .header("x-admin-key", &stack.options.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains(&format!("client_id={CLIENT_ID}")),
        "{location}"
    );
    let url = reqwest::Url::parse(&location).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.to_string())
        .expect("state")
}

/// `GET /webhook/amocrm` (the OAuth redirect URI) with `query`: status and page.
pub async fn redirect(stack: &local_stack::LocalStack, query: &[(&str, &str)]) -> (u16, String) {
    let resp = http()
        .get(format!("{}/webhook/amocrm", stack.api_url))
        .query(query)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Authorises through the real redirect route; returns the page.
pub async fn authorize(stack: &local_stack::LocalStack) -> (u16, String) {
    let state = start_state(stack).await;
    let code = stack.sandbox.state.issue_auth_code(None);
    redirect(
        stack,
        &[
            ("code", &code),
            ("state", &state),
            ("referer", REFERER),
            ("client_id", CLIENT_ID),
            ("platform", "1"),
        ],
    )
    .await
}

/// A file of the repository (template.yaml, api/openapi.yaml, events/…) as text.
pub fn repo_file(name: &str) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The amoCRM lead whose name carries our lead id (the worker names deals so).
pub fn amo_lead_named<'a>(leads: &'a [Value], our_id: &str) -> &'a Value {
    leads
        .iter()
        .find(|l| l["name"].as_str().is_some_and(|n| n.contains(our_id)))
        .unwrap_or_else(|| panic!("no amoCRM lead carries {our_id}: {leads:?}"))
}
