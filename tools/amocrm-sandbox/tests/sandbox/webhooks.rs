//! Webhook subscriptions and the hooks the sandbox sends, compared with real captures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amocrm_sandbox::SandboxConfig;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::common::{FIELD_SERIAL, MANAGER, NEW_REQUEST, PIPELINE, start, start_with, test_config};

/// A webhook receiver: records every request; the first `failures` answers are 500 and each
/// answer waits `delay_ms`.
#[derive(Clone, Default)]
struct Receiver {
    hooks: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    failures: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicUsize>,
}

impl Receiver {
    async fn serve(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/webhook/amocrm",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let me = me.clone();
                async move {
                    me.hooks.lock().unwrap().push((headers, body));
                    let delay = me.delay_ms.load(Ordering::SeqCst) as u64;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let failing = me
                        .failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if failing {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/webhook/amocrm?secret=s3",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn bodies(&self) -> Vec<String> {
        self.hooks
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// Decodes one form component: `+` is a space, `%XX` a byte.
fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("valid escape"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8")
}

/// Parses a form body into nested objects the way PHP's `parse_str` does (`a[b][0]=x` →
/// `{"a":{"b":{"0":"x"}}}`), keeping ids used as keys (`linked_leads_id[123][ID]`).
fn parse_form(body: &str) -> Value {
    let mut root = json!({});
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k);
        let (head, rest) = key
            .split_once('[')
            .map_or((key.as_str(), ""), |(h, r)| (h, r));
        let mut path = vec![head.to_string()];
        path.extend(
            rest.trim_end_matches(']')
                .split("][")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        let (last, groups) = path.split_last().expect("a key");
        let mut node = &mut root;
        for part in groups {
            node = node
                .as_object_mut()
                .expect("no key is both a value and a group")
                .entry(part.clone())
                .or_insert_with(|| json!({}));
        }
        node.as_object_mut()
            .expect("no key is both a value and a group")
            .insert(last.clone(), json!(decode(v)));
    }
    root
}

#[tokio::test]
async fn subscriptions_are_validated_and_idempotent() {
    let env = start().await;
    assert_eq!(env.get("/api/v4/webhooks").await.status, 204);
    let bad_url = env
        .post(
            "/api/v4/webhooks",
            json!({ "destination": "ftp://x", "settings": ["add_lead"] }),
        )
        .await;
    assert_eq!(
        bad_url.violations(),
        vec![("InvalidUrl".to_string(), "destination".to_string())]
    );
    let bad_setting = env
        .post("/api/v4/webhooks", json!({ "destination": "https://api.td-rss.ru/webhook/amocrm", "settings": ["status_lead", "won_lead"] }))
        .await;
    assert_eq!(
        bad_setting.violations(),
        vec![("NotSupportedChoice".to_string(), "settings.1".to_string())]
    );
    let no_settings = env
        .post(
            "/api/v4/webhooks",
            json!({ "destination": "https://api.td-rss.ru/webhook/amocrm", "settings": [] }),
        )
        .await;
    assert_eq!(
        no_settings.violations(),
        vec![("TooFew".to_string(), "settings".to_string())]
    );

    let ok = env
        .post("/api/v4/webhooks", json!({ "destination": "https://api.td-rss.ru/webhook/amocrm", "settings": ["add_lead"] }))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json["settings"], json!(["add_lead"]));
    let again = env
        .post("/api/v4/webhooks", json!({ "destination": "https://api.td-rss.ru/webhook/amocrm", "settings": ["status_lead", "update_lead"] }))
        .await;
    assert_eq!(again.json["id"], ok.json["id"]);
    let list = env.get("/api/v4/webhooks").await;
    assert_eq!(
        list.json["_embedded"]["webhooks"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        list.json["_embedded"]["webhooks"][0]["settings"],
        json!(["status_lead", "update_lead"])
    );

    let delete = env
        .send(
            env.http
                .delete(env.url("/api/v4/webhooks"))
                .bearer_auth(&env.token)
                .json(&json!({ "destination": "https://api.td-rss.ru/webhook/amocrm" })),
        )
        .await;
    assert_eq!(delete.status, 204);
    assert_eq!(env.get("/api/v4/webhooks").await.status, 204);
}

#[tokio::test]
async fn a_new_lead_and_a_won_status_are_posted_like_amocrm() {
    let receiver = Receiver::default();
    let url = receiver.serve().await;
    let env = start().await;
    let sub = env
        .post(
            "/api/v4/webhooks",
            json!({ "destination": url, "settings": ["add_lead", "status_lead"] }),
        )
        .await;
    assert_eq!(sub.status, 200, "{}", sub.text);

    let created = env
        .post(
            "/api/v4/leads/complex",
            json!([{
                "name": "Заявка на ТО (станок 16К20)",
                "pipeline_id": PIPELINE, "status_id": NEW_REQUEST, "responsible_user_id": MANAGER, "price": 1500,
                "custom_fields_values": [{ "field_id": FIELD_SERIAL, "values": [{ "value": "SN 42/7" }] }],
                "_embedded": { "tags": [{ "name": "сайт" }] }
            }]),
        )
        .await;
    let lead = created.json[0]["id"].as_i64().unwrap();
    let h = env.handle();
    h.set_lead_status(lead, 142, PIPELINE).unwrap();
    let done = h.wait_for_deliveries(2, Duration::from_secs(3)).await;
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|d| d.delivered && d.attempts == 1));

    let hooks = receiver.hooks.lock().unwrap().clone();
    let (headers, add_body) = &hooks[0];
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(headers["user-agent"], "amoCRM-Webhooks/3.0");
    let request_id = headers["x-amocrm-requestid"].to_str().unwrap();
    assert_eq!(request_id.len(), 36, "a UUID");
    assert!(add_body.starts_with(
        "account%5Bsubdomain%5D=new599bd9d13818a&account%5Bid%5D=31234567&account%5B_links%5D%5Bself%5D=https%3A%2F%2Fnew599bd9d13818a.amocrm.ru&leads%5Badd%5D%5B0%5D%5Bid%5D="
    ));
    assert!(
        add_body.contains("%D0%97%D0%B0%D1%8F%D0%B2%D0%BA%D0%B0+%D0%BD%D0%B0+%D0%A2%D0%9E+%28"),
        "UTF-8, + for space"
    );

    // A standard bracket-aware parser reads it too.
    let qs: Value = serde_qs::Config::new()
        .use_form_encoding(true)
        .max_depth(10)
        .deserialize_str(add_body)
        .expect("serde_qs parses the body");
    assert_eq!(qs["leads"]["add"][0]["id"], lead.to_string());

    let add = parse_form(add_body);
    let l = &add["leads"]["add"]["0"];
    assert_eq!(l["id"], lead.to_string());
    assert_eq!(l["name"], "Заявка на ТО (станок 16К20)");
    assert_eq!(l["status_id"], NEW_REQUEST.to_string());
    assert_eq!(l["price"], "1500");
    assert_eq!(l["responsible_user_id"], MANAGER.to_string());
    assert_eq!(l["pipeline_id"], PIPELINE.to_string());
    assert_eq!(l["tags"]["0"]["name"], "сайт");
    assert_eq!(l["custom_fields"]["0"]["id"], FIELD_SERIAL.to_string());
    assert_eq!(l["custom_fields"]["0"]["name"], "Серийный номер");
    assert_eq!(l["custom_fields"]["0"]["values"]["0"]["value"], "SN 42/7");
    assert_eq!(add["account"]["id"], "31234567");

    let (_, status_body) = &hooks[1];
    let status = parse_form(status_body);
    let s = &status["leads"]["status"]["0"];
    assert_eq!(s["status_id"], "142");
    assert_eq!(s["old_status_id"], NEW_REQUEST.to_string());
    assert_eq!(s["pipeline_id"], PIPELINE.to_string());
    assert_eq!(s["modified_user_id"], MANAGER.to_string());
    assert!(
        status.get("leads").unwrap().get("update").is_none(),
        "not subscribed to update_lead"
    );
}

#[tokio::test]
async fn our_status_hook_has_the_fields_of_a_real_one() {
    let capture_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/captures/amocrm/webhook_status_change_b.txt"
    );
    let Ok(raw) = std::fs::read_to_string(capture_path) else {
        panic!("capture missing at {capture_path}");
    };
    // The repository author prefixed the body with a URL; the body starts after `?`.
    let captured = parse_form(raw.trim().split_once('?').unwrap().1);
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "tags" && *k != "custom_fields")
            .cloned()
            .collect();
        k.sort();
        k
    };

    let receiver = Receiver::default();
    let url = receiver.serve().await;
    let env = start().await;
    env.handle().subscribe(&url, &["status_lead"]).unwrap();
    let lead = env.create_lead("apple tv 3").await;
    env.handle()
        .set_lead_status(lead, 80953558, PIPELINE)
        .unwrap();
    env.handle()
        .wait_for_deliveries(1, Duration::from_secs(3))
        .await;
    let ours = parse_form(&receiver.bodies()[0]);
    assert_eq!(
        keys(&ours["leads"]["status"]["0"]),
        keys(&captured["leads"]["status"]["0"])
    );
    assert_eq!(keys(&ours["account"]), keys(&captured["account"]));
}

#[tokio::test]
async fn dates_and_selects_are_encoded_like_real_hooks() {
    let receiver = Receiver::default();
    let url = receiver.serve().await;
    let env = start().await;
    let fields = env
        .post(
            "/api/v4/leads/custom_fields",
            json!([
                { "name": "Дата ТО", "type": "date" },
                { "name": "Тип", "type": "select", "enums": [{ "value": "Плановое" }] }
            ]),
        )
        .await;
    let date = fields.json["_embedded"]["custom_fields"][0]["id"]
        .as_i64()
        .unwrap();
    let select = fields.json["_embedded"]["custom_fields"][1]["id"]
        .as_i64()
        .unwrap();
    let enum_id = fields.json["_embedded"]["custom_fields"][1]["enums"][0]["id"]
        .as_i64()
        .unwrap();
    env.handle().subscribe(&url, &["update_lead"]).unwrap();
    let lead = env.create_lead("ТО").await;
    env.patch(
        &format!("/api/v4/leads/{lead}"),
        json!({ "custom_fields_values": [
            { "field_id": date, "values": [{ "value": 1772312400 }] },
            { "field_id": select, "values": [{ "enum_id": enum_id }] }
        ]}),
    )
    .await;
    env.handle()
        .wait_for_deliveries(1, Duration::from_secs(3))
        .await;
    let body = &receiver.bodies()[0];
    // Dates have no [value]; selects carry [enum].
    assert!(body.contains(
        "leads%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bvalues%5D%5B0%5D=1772312400"
    ));
    let parsed = parse_form(body);
    let cf = &parsed["leads"]["update"]["0"]["custom_fields"];
    assert_eq!(cf["1"]["values"]["0"]["value"], "Плановое");
    assert_eq!(cf["1"]["values"]["0"]["enum"], enum_id.to_string());
    assert!(
        parsed["leads"]["update"]["0"]
            .get("old_status_id")
            .is_none(),
        "the status did not move"
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried() {
    let receiver = Receiver::default();
    receiver.failures.store(2, Ordering::SeqCst);
    let url = receiver.serve().await;
    let env = start().await;
    env.handle().subscribe(&url, &["add_lead"]).unwrap();
    env.create_lead("Повтор").await;
    let done = env
        .handle()
        .wait_for_deliveries(1, Duration::from_secs(3))
        .await;
    assert_eq!(done[0].statuses, vec![Some(500), Some(500), Some(200)]);
    assert!(done[0].delivered);
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "the same body each time"
    );
    let ids: Vec<String> = receiver
        .hooks
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| h["x-amocrm-requestid"].to_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]));
}

#[tokio::test]
async fn slow_receivers_time_out_and_are_given_up_after_the_retries() {
    let receiver = Receiver::default();
    receiver.delay_ms.store(300, Ordering::SeqCst);
    let url = receiver.serve().await;
    let env = start_with(SandboxConfig {
        webhook_timeout_ms: 100,
        webhook_retry_delays_ms: vec![10, 10],
        ..test_config()
    })
    .await;
    env.handle().subscribe(&url, &["add_lead"]).unwrap();
    env.create_lead("Медленно").await;
    let done = env
        .handle()
        .wait_for_deliveries(1, Duration::from_secs(3))
        .await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].statuses, vec![None, None, None]);
    assert!(!done[0].delivered);
    assert_eq!(done[0].last_error.as_deref(), Some("timed out"));
}

#[tokio::test]
async fn contacts_created_with_a_lead_send_add_contact() {
    let receiver = Receiver::default();
    let url = receiver.serve().await;
    let env = start().await;
    env.handle().subscribe(&url, &["add_contact"]).unwrap();
    env.post(
        "/api/v4/leads/complex",
        json!([{ "name": "С контактом", "_embedded": { "contacts": [{ "name": "Анна", "custom_fields_values": [
            { "field_code": "PHONE", "values": [{ "value": "+79001112233", "enum_code": "MOB" }] }
        ] }] } }]),
    )
    .await;
    env.handle()
        .wait_for_deliveries(1, Duration::from_secs(3))
        .await;
    let parsed = parse_form(&receiver.bodies()[0]);
    let c = &parsed["contacts"]["add"]["0"];
    assert_eq!(c["name"], "Анна");
    assert_eq!(c["type"], "contact");
    assert_eq!(c["custom_fields"]["0"]["code"], "PHONE");
    assert_eq!(
        c["custom_fields"]["0"]["values"]["0"]["value"],
        "+79001112233"
    );
    assert!(c["custom_fields"]["0"]["values"]["0"]["enum"].is_string());
}
