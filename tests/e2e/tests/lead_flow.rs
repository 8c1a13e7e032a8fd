//! Requests from the site, bot, cart and TMA become amoCRM leads with contact, fields, note and
//! a mail to the sales mailbox — through the real handlers, DynamoDB stream events, moto and
//! the amoCRM sandbox.

use std::sync::Arc;

use e2e::*;
use serde_json::{Value, json};
use shared::leads::{LeadStatus, StoredLead};
use shared::ports::LeadStore;
use shared::store::DynamoLeadStore;

const PIPELINE: i64 = 10226282;
const STATUS: i64 = 80953554;
const USER: i64 = 12380450;
const SERIAL: i64 = 712629;
const MODEL: i64 = 712631;
const TELEGRAM: i64 = 712633;

fn leads_store(stack: &local_stack::LocalStack) -> DynamoLeadStore {
    DynamoLeadStore::new(stack.aws.dynamodb.clone(), &stack.resources.leads_table)
}

async fn stored(stack: &local_stack::LocalStack, lead_id: &str) -> StoredLead {
    leads_store(stack)
        .get(lead_id)
        .await
        .unwrap()
        .expect("lead stored")
}

#[tokio::test]
async fn leads_from_every_source_arrive_in_amocrm_with_contact_fields_note_and_mail() {
    let stack = stack().await;
    let bodies = [
        site_lead("Иван Петров", "8 (912) 345-67-89"),
        json!({"source": "bot", "intent": "parts", "name": "Пётр", "telegram_id": 555000111,
               "message": "Нужен ремкомплект"}),
        json!({"source": "cart", "intent": "parts", "name": "ООО Ромашка", "email": "buyer@romashka.ru",
        "items": [
            {"sku": "BRG-6205", "name": "Подшипник 6205", "qty": 4, "price": 350.5},
            {"sku": "BLT-A1", "name": "Ремень A-1000", "qty": 1, "price": "1200"},
        ]}),
        json!({"source": "tma", "intent": "service", "name": "Сергей", "telegram_id": 777000222,
               "phone": "+7 903 111-22-33", "equipment": {"model": "1К62", "serial": "SN-77"}}),
    ];
    let mut ids = Vec::new();
    let tma = format!("tma {}", init_data(&stack, 777000222, 0));
    for body in &bodies {
        // Telegram vouches for the two Telegram IDs: the Mini App's initData, the bot's key.
        let headers: Vec<(&str, &str)> = match body["source"].as_str() {
            Some("tma") => vec![("authorization", tma.as_str())],
            Some("bot") => vec![("x-bot-key", stack.options.bot_api_key.as_str())],
            _ => vec![],
        };
        let (status, resp) = post_lead_with(&stack, body, &headers).await;
        assert_eq!(status, 202, "{resp}");
        assert_eq!(resp["status"], "accepted");
        let id = resp["lead_id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 26, "a ULID: {id}");
        ids.push(id);
    }
    // Nothing reached amoCRM inside the requests: the stream does it.
    assert!(sandbox_list(&stack, "leads").await.is_empty());
    stack.deliver_pending().await.unwrap();

    let leads = sandbox_list(&stack, "leads").await;
    assert_eq!(leads.len(), 4, "{leads:?}");
    for id in &ids {
        let lead = amo_lead_named(&leads, id);
        assert_eq!(lead["pipeline_id"], PIPELINE);
        assert_eq!(lead["status_id"], STATUS);
        assert_eq!(lead["responsible_user_id"], USER);
        let s = stored(&stack, id).await;
        assert_eq!(s.status, LeadStatus::Delivered, "{:?}", s.delivery);
        assert_eq!(s.delivery.amo_lead_id, lead["id"].as_i64());
        assert!(s.delivery.amo_contact_id.is_some());
        assert!(s.delivery.mailed_at.is_some());
    }
    let site = amo_lead_named(&leads, &ids[0]);
    assert_eq!(field_value(site, SERIAL).as_deref(), Some("SN-1001"));
    assert_eq!(field_value(site, MODEL).as_deref(), Some("16К20"));
    assert_eq!(field_value(site, TELEGRAM), None);
    assert_eq!(tag_names(site), vec!["site", "service"]);
    let bot = amo_lead_named(&leads, &ids[1]);
    assert_eq!(field_value(bot, TELEGRAM).as_deref(), Some("555000111"));
    let cart = amo_lead_named(&leads, &ids[2]);
    assert_eq!(cart["price"], 2602, "4 × 350.50 + 1200 = 2602 ₽");
    assert_eq!(tag_names(cart), vec!["cart", "parts"]);
    let tma = amo_lead_named(&leads, &ids[3]);
    assert_eq!(field_value(tma, SERIAL).as_deref(), Some("SN-77"));
    assert_eq!(field_value(tma, TELEGRAM).as_deref(), Some("777000222"));

    // The contact was created with the normalised phone.
    let contacts = sandbox_list(&stack, "contacts").await;
    assert!(
        contacts
            .iter()
            .any(|c| c.to_string().contains("+79123456789")),
        "{contacts:?}"
    );
    // One note per lead, with the cart as a readable list.
    let notes = sandbox_list(&stack, "notes").await;
    assert_eq!(notes.len(), 4, "{notes:?}");
    let cart_note = notes
        .iter()
        .find(|n| n["entity_id"] == cart["id"])
        .expect("note on the cart lead")
        .to_string();
    assert!(
        cart_note.contains("Подшипник 6205") && cart_note.contains("Ремень A-1000"),
        "{cart_note}"
    );
    // One mail per lead to the sales mailbox.
    let mail = stack.moto.sent_mail().await;
    assert_eq!(mail.len(), 4, "{mail:?}");
    assert!(
        mail.iter()
            .all(|m| m.to_string().contains("zakaz@tdrusstankosbyt.ru"))
    );
}

#[tokio::test]
async fn a_second_lead_from_the_same_customer_reuses_the_contact() {
    let stack = stack().await;
    let (_, first) = post_lead(&stack, &site_lead("Иван Петров", "+7 912 345-67-89")).await;
    stack.deliver_pending().await.unwrap();
    let mut second_body = site_lead("Иван Петров", "8 912 345 67 89");
    second_body["message"] = json!("И ещё вопрос по запчастям");
    let (_, second) = post_lead(&stack, &second_body).await;
    stack.deliver_pending().await.unwrap();

    let a = stored(&stack, first["lead_id"].as_str().unwrap()).await;
    let b = stored(&stack, second["lead_id"].as_str().unwrap()).await;
    assert_eq!(a.delivery.amo_contact_id, b.delivery.amo_contact_id);
    assert_eq!(sandbox_list(&stack, "contacts").await.len(), 1);
    assert_eq!(sandbox_list(&stack, "leads").await.len(), 2);
}

#[tokio::test]
async fn the_sales_mail_escapes_what_the_customer_typed() {
    let stack = stack().await;
    let mut body = site_lead("<script>alert('x')</script> Иван", "+79123456789");
    body["message"] = json!("<img src=x onerror=alert(1)> & \"кавычки\"");
    body["email"] = json!("ivan@example.ru");
    let (status, _) = post_lead(&stack, &body).await;
    assert_eq!(status, 202);
    stack.deliver_pending().await.unwrap();
    let mail = stack.moto.sent_mail().await;
    assert_eq!(mail.len(), 1);
    let html = mail[0]["body"].as_str().unwrap_or_default();
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(mail[0].to_string().contains("zakaz@tdrusstankosbyt.ru"));
}

#[tokio::test]
async fn repeats_return_the_first_answer_and_create_nothing() {
    let stack = stack().await;
    let body = site_lead("Иван", "+79123456789");
    let (s1, a) = post_lead_with(&stack, &body, &[("Idempotency-Key", "form-42")]).await;
    let mut changed = body.clone();
    changed["message"] = json!("другой текст, тот же ключ");
    let (s2, b) = post_lead_with(&stack, &changed, &[("Idempotency-Key", "form-42")]).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(a, b);

    // Without a key: the same body from the same source within 10 minutes is a repeat.
    let other = site_lead("Пётр", "+79031112233");
    let (_, c) = post_lead(&stack, &other).await;
    let (_, d) = post_lead(&stack, &other).await;
    assert_eq!(c["lead_id"], d["lead_id"]);
    // …but the same person from another source is a new lead.
    let mut from_bot = other.clone();
    from_bot["source"] = json!("bot");
    let (_, e) = post_lead(&stack, &from_bot).await;
    assert_ne!(c["lead_id"], e["lead_id"]);

    stack.deliver_pending().await.unwrap();
    assert_eq!(sandbox_list(&stack, "leads").await.len(), 3);
}

#[tokio::test]
async fn bad_input_is_refused_with_every_bad_field_and_nothing_is_stored() {
    let stack = stack().await;
    let (status, body) = post_lead(
        &stack,
        &json!({
            "source": "fax", "intent": "buy", "name": "", "phone": "12ab", "email": "not-an-email",
            "telegram_id": "x1", "message": "я".repeat(4001), "page_url": "javascript:alert(1)",
            "items": [{"name": "Подшипник", "qty": 0, "price": -1}],
        }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "validation_failed");
    let fields: Vec<String> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(!f["message"].as_str().unwrap_or_default().is_empty(), "{f}");
            f["field"].as_str().unwrap().to_string()
        })
        .collect();
    for expected in [
        "source",
        "intent",
        "name",
        "phone",
        "email",
        "telegram_id",
        "message",
        "page_url",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} missing from {fields:?}"
        );
    }
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("items") && f.contains("qty")),
        "{fields:?}"
    );
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("items") && f.contains("price")),
        "{fields:?}"
    );

    // No way to reach the customer at all.
    let (status, body) = post_lead(&stack, &json!({"source": "site", "name": "Иван"})).await;
    assert_eq!(status, 400, "{body}");

    let client = http();
    let url = format!("{}/leads", stack.api_url);
    let malformed = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"source\":")
        .send()
        .await
        .unwrap();
    let (status, body) = read(malformed).await;
    assert_eq!(status, 400, "{body}");
    let plain = client
        .post(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(read(plain).await.0, 415);
    let huge = client
        .post(&url)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"source\":\"site\",\"name\":\"{}\"}}",
            "a".repeat(70 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(read(huge).await.0, 413);
    let bad_key = post_lead_with(
        &stack,
        &site_lead("Иван", "+79123456789"),
        &[("Idempotency-Key", &"k".repeat(300))],
    )
    .await;
    assert_eq!(bad_key.0, 400);

    // The honeypot looks like success and stores nothing.
    let mut spam = site_lead("Bot", "+79123456789");
    spam["website"] = json!("http://spam.example");
    let (status, body) = post_lead(&stack, &spam).await;
    assert_eq!(status, 202, "{body}");

    assert_eq!(
        table_items(&stack).await,
        0,
        "a refused request stored something"
    );
    stack.deliver_pending().await.unwrap();
    assert!(sandbox_list(&stack, "leads").await.is_empty());
}

#[tokio::test]
async fn a_plain_html_form_post_is_accepted() {
    let stack = stack().await;
    let form = "source=site&intent=parts&name=%D0%98%D0%B2%D0%B0%D0%BD+%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2\
                &phone=8+(912)+345-67-89&equipment[model]=16%D0%9A20&equipment[serial]=SN-5\
                &items[0][name]=%D0%A0%D0%B5%D0%BC%D0%B5%D0%BD%D1%8C&items[0][qty]=2&items[0][price]=100.50\
                &utm[source]=vk";
    let resp = http()
        .post(format!("{}/leads", stack.api_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_eq!(status, 202, "{body}");
    stack.deliver_pending().await.unwrap();
    let leads = sandbox_list(&stack, "leads").await;
    let lead = amo_lead_named(&leads, body["lead_id"].as_str().unwrap());
    assert_eq!(lead["price"], 201);
    assert_eq!(field_value(lead, SERIAL).as_deref(), Some("SN-5"));
    assert!(lead["name"].as_str().unwrap().contains("Иван Петров"));
}

#[tokio::test]
async fn cors_allows_the_configured_site_origins_only() {
    let stack = stack().await;
    let client = http();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}/leads", stack.api_url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight("https://td-rss.ru").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://td-rss.ru"
    );
    assert!(
        ok.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    let evil = preflight("https://evil.example").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn server_errors_three_times_then_ok_give_exactly_one_amocrm_lead() {
    let stack = stack().await;
    inject(
        &stack,
        json!({"kind": "status", "status": 503, "count": 3, "path": "/api/v4/leads/complex"}),
    )
    .await;
    let (_, resp) = post_lead(&stack, &site_lead("Иван", "+79123456789")).await;
    stack.deliver_pending().await.unwrap();
    let leads = sandbox_list(&stack, "leads").await;
    assert_eq!(leads.len(), 1, "{leads:?}");
    let s = stored(&stack, resp["lead_id"].as_str().unwrap()).await;
    assert_eq!(s.status, LeadStatus::Delivered);
    let complex_calls: Vec<_> = sandbox_requests(&stack)
        .await
        .into_iter()
        .filter(|r| r["path"] == "/api/v4/leads/complex")
        .collect();
    assert_eq!(
        complex_calls.len(),
        4,
        "3 failures then one success: {complex_calls:?}"
    );
}

#[tokio::test]
async fn a_429_is_waited_out_and_the_lead_still_arrives() {
    let stack = stack().await;
    inject(
        &stack,
        json!({"kind": "rate_limit", "count": 2, "style": "html"}),
    )
    .await;
    let (_, resp) = post_lead(&stack, &site_lead("Иван", "+79123456789")).await;
    stack.deliver_pending().await.unwrap();
    assert_eq!(sandbox_list(&stack, "leads").await.len(), 1);
    let s = stored(&stack, resp["lead_id"].as_str().unwrap()).await;
    assert_eq!(s.status, LeadStatus::Delivered);
    let statuses: Vec<i64> = sandbox_requests(&stack)
        .await
        .iter()
        .filter_map(|r| r["status"].as_i64())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn failures_that_outlast_the_client_retries_go_back_to_the_stream_and_are_delivered_later() {
    let stack = stack().await;
    // More 5xx than the client's own attempts: the record is reported as a batch failure.
    inject(
        &stack,
        json!({"kind": "status", "status": 502, "count": 6, "path": "/api/v4/leads/complex"}),
    )
    .await;
    let (_, a) = post_lead(&stack, &site_lead("Иван", "+79123456789")).await;
    let (_, b) = post_lead(&stack, &site_lead("Пётр", "+79031112233")).await;
    let stats = stack.deliver_pending().await.unwrap();
    assert!(stats.batch_failures >= 1, "{stats:?}");
    assert_eq!(stats.sent_to_failure_destination, 0, "{stats:?}");
    for id in [&a, &b] {
        assert_eq!(
            stored(&stack, id["lead_id"].as_str().unwrap()).await.status,
            LeadStatus::Delivered
        );
    }
    assert_eq!(sandbox_list(&stack, "leads").await.len(), 2);
}

#[tokio::test]
async fn a_crash_after_the_amocrm_create_still_gives_one_lead() {
    let stack = stack().await;
    let (_, resp) = post_lead(&stack, &site_lead("Иван", "+79123456789")).await;
    let id = resp["lead_id"].as_str().unwrap();
    let crashing = shared::worker::CrmWorker {
        delivery: shared::leads::deliver::LeadDelivery {
            store: Arc::new(DyingStore::on_first_create(leads_store(&stack))),
            ..stack.worker.delivery.clone()
        },
        ..stack.worker.clone()
    };
    let first = stack.pumps[0].pump_once(&crashing).await.unwrap();
    assert_eq!(first.batch_failures, 1, "{first:?}");
    assert_eq!(
        sandbox_list(&stack, "leads").await.len(),
        1,
        "amoCRM has the lead…"
    );
    let s = stored(&stack, id).await;
    assert_eq!(s.delivery.amo_lead_id, None, "…but we never recorded it");
    assert!(s.delivery.create_started_at.is_some());

    // The stream delivers the record again to a fresh worker.
    stack.deliver_pending().await.unwrap();
    let leads = sandbox_list(&stack, "leads").await;
    assert_eq!(
        leads.len(),
        1,
        "a second amoCRM lead was created: {leads:?}"
    );
    let s = stored(&stack, id).await;
    assert_eq!(s.status, LeadStatus::Delivered);
    assert_eq!(s.delivery.amo_lead_id, leads[0]["id"].as_i64());
    assert_eq!(sandbox_list(&stack, "notes").await.len(), 1);
}

#[tokio::test]
async fn an_amocrm_validation_error_parks_the_lead_with_a_hint() {
    let stack = stack_with(|o| {
        o.config_overrides
            .push(("AMOCRM_FIELD_SERIAL".into(), "999999".into()))
    })
    .await;
    let (_, resp) = post_lead(&stack, &site_lead("Иван", "+79123456789")).await;
    let stats = stack.deliver_pending().await.unwrap();
    assert_eq!(
        stats.batch_failures, 0,
        "a permanent error is not retried: {stats:?}"
    );
    let s = stored(&stack, resp["lead_id"].as_str().unwrap()).await;
    assert_eq!(s.status, LeadStatus::Parked);
    let hint = s.delivery.hint.unwrap_or_default();
    assert!(hint.contains("AMOCRM_FIELD_SERIAL"), "{hint}");
    assert!(s.delivery.last_error.is_some());
    assert!(sandbox_list(&stack, "leads").await.is_empty());
    let parked = leads_store(&stack)
        .list_by_status(LeadStatus::Parked, 10)
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
}

#[tokio::test]
async fn test_crm_needs_the_admin_key_and_creates_a_lead_synchronously() {
    let stack = stack().await;
    let url = format!("{}/ingest/test-crm", stack.api_url);
    let (status, _) = read(http().get(&url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    let (status, _) = read(
        http()
            .get(&url)
            .header("x-admin-key", "wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(sandbox_list(&stack, "leads").await.is_empty());

    let (status, body) = read(
        http()
            .get(&url)
            .header("x-admin-key", &stack.options.admin_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    let leads = sandbox_list(&stack, "leads").await;
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["id"], body["amo_lead_id"]);

    // amoCRM down: 502 with an operator hint, and no token in the answer.
    inject(
        &stack,
        json!({"kind": "status", "status": 500, "count": 10}),
    )
    .await;
    let (status, body) = read(
        http()
            .get(&url)
            .header("x-admin-key", &stack.options.admin_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["status"], "error");
    assert!(!body["hint"].as_str().unwrap_or_default().is_empty());
    assert!(!body.to_string().contains("eyJ"), "a token leaked: {body}");
}

#[tokio::test]
async fn every_answer_carries_the_correlation_id_of_its_log_lines() {
    let stack = stack().await;
    let url = format!("{}/leads", stack.api_url);
    let mut ids = Vec::new();
    for body in [
        site_lead("Иван", "+79123456789").to_string(),
        "{".to_string(),
    ] {
        let resp = http()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let id = resp.headers()["x-correlation-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(id.len() >= 20, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn returning_customers_land_on_the_contact_a_manager_typed_and_no_second_one_is_made() {
    let stack = stack_with(|o| o.history = Some(amocrm_sandbox::History::default())).await;
    let made = stack.history.clone().unwrap();
    let contacts_before = stack.sandbox.state.contacts().len();
    // Each contact was typed differently (`8 (916) …`, `+7 916 …`, `8916…`, `+7 (916) …`,
    // `7-916-…`); the customer gives the number as the site normalises it, or the e-mail in
    // lower case where the manager used capitals.
    let mut expected = Vec::new();
    for (i, (contact_id, typed, national, email)) in made.contacts.iter().take(6).enumerate() {
        let mut body = json!({
            "source": "site",
            "intent": "parts",
            "name": format!("Покупатель {i}"),
            "message": "Нужны запчасти к станку",
        });
        if i == 5 {
            body["email"] = json!(email.to_lowercase());
        } else {
            body["phone"] = json!(format!("+7{national}"));
        }
        let (status, accepted) = post_lead(&stack, &body).await;
        assert_eq!(status, 202, "{accepted}");
        expected.push((
            accepted["lead_id"].as_str().unwrap().to_string(),
            *contact_id,
            typed.clone(),
        ));
    }
    stack.deliver_pending().await.unwrap();
    for (lead_id, contact_id, typed) in expected {
        let s = stored(&stack, &lead_id).await;
        assert_eq!(s.status, LeadStatus::Delivered, "{:?}", s.delivery);
        assert_eq!(
            s.delivery.amo_contact_id,
            Some(contact_id),
            "the contact saved as {typed}"
        );
    }
    assert_eq!(
        stack.sandbox.state.contacts().len(),
        contacts_before,
        "no second contact with the same phone or e-mail"
    );
}

#[tokio::test]
async fn a_create_that_timed_out_is_found_by_amocrms_filters_while_its_search_lags() {
    let stack = stack_with(|o| {
        o.sandbox.search_lag_ms = 30_000;
        o.config_overrides
            .push(("AMOCRM_TIMEOUT_MS".into(), "500".into()));
    })
    .await;
    // amoCRM creates the lead but the answer never arrives in time.
    inject(
        &stack,
        json!({"kind": "timeout", "delay_ms": 1500, "applied": true, "path": "/api/v4/leads/complex"}),
    )
    .await;
    let (_, resp) = post_lead(&stack, &site_lead("Иван", "+79123456789")).await;
    let id = resp["lead_id"].as_str().unwrap().to_string();
    stack.deliver_pending().await.unwrap();
    let s = stored(&stack, &id).await;
    assert_eq!(s.status, LeadStatus::Delivered, "{:?}", s.delivery);
    assert!(s.delivery.attempts >= 2, "the first attempt timed out");
    let ours: Vec<Value> = sandbox_list(&stack, "leads")
        .await
        .into_iter()
        .filter(|l| l["name"].as_str().is_some_and(|n| n.contains(&id)))
        .collect();
    assert_eq!(ours.len(), 1, "one amoCRM lead, not two: {ours:?}");
    assert_eq!(s.delivery.amo_lead_id, ours[0]["id"].as_i64());
}

/// A Telegram ID is trusted only when Telegram vouches for it: the Mini App's initData (whose
/// user replaces the body's id), or the bot's key. Any other is kept, and the deal tells the
/// managers to check it; a Mini App lead without initData is refused and nothing is stored.
#[tokio::test]
async fn a_telegram_id_nobody_vouched_for_is_marked_for_the_managers() {
    let stack = stack().await;
    let unverified = json!({"source": "site", "intent": "service", "name": "Кто-то",
                            "phone": "+79031112233", "telegram_id": 424242});
    let (status, resp) = post_lead(&stack, &unverified).await;
    assert_eq!(status, 202, "{resp}");
    let unverified_id = resp["lead_id"].as_str().unwrap().to_string();

    // The Mini App: initData's user (4711), not the body's 999, owns the lead.
    let tma_body = json!({"source": "tma", "intent": "service", "name": "Сергей",
                          "telegram_id": 999, "message": "ТО"});
    let tma = format!("tma {}", init_data(&stack, 4711, 0));
    let (status, resp) = post_lead_with(&stack, &tma_body, &[("authorization", &tma)]).await;
    assert_eq!(status, 202, "{resp}");
    let tma_id = resp["lead_id"].as_str().unwrap().to_string();

    let before = table_items(&stack).await;
    let (status, resp) = post_lead(&stack, &tma_body).await;
    assert_eq!(
        (status, resp["error"].as_str()),
        (401, Some("telegram_auth_required"))
    );
    let stale = format!("tma {}", init_data(&stack, 4711, 3 * 86_400));
    let (status, _) = post_lead_with(&stack, &tma_body, &[("authorization", &stale)]).await;
    assert_eq!(status, 401, "a stale initData");
    let bot = json!({"source": "bot", "intent": "parts", "name": "Пётр", "telegram_id": 555});
    let (status, _) = post_lead_with(&stack, &bot, &[("x-bot-key", "a guess")]).await;
    assert_eq!(status, 401, "a wrong bot key");
    assert_eq!(
        table_items(&stack).await,
        before,
        "refused leads store nothing"
    );

    stack.deliver_pending().await.unwrap();
    let leads = sandbox_list(&stack, "leads").await;
    let marked = amo_lead_named(&leads, &unverified_id);
    assert!(
        tag_names(marked).contains(&"Telegram ID не подтверждён".to_string()),
        "{marked}"
    );
    assert_eq!(
        field_value(marked, TELEGRAM).as_deref(),
        Some("424242"),
        "the id is kept"
    );
    let notes = sandbox_list(&stack, "notes").await;
    let note = notes
        .iter()
        .find(|n| n["entity_id"] == marked["id"])
        .expect("the unverified lead's note");
    assert!(
        note.to_string().contains("424242 — НЕ ПОДТВЕРЖДЁН"),
        "{note}"
    );
    let vouched = amo_lead_named(&leads, &tma_id);
    assert_eq!(field_value(vouched, TELEGRAM).as_deref(), Some("4711"));
    assert!(!tag_names(vouched).contains(&"Telegram ID не подтверждён".to_string()));
}
