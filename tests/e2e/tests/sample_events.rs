//! The sample events in `events/` (the ones `cargo lambda invoke` and the docs use) are real:
//! each deserialises into the types Lambda hands our functions and gets the expected answer.

use std::path::PathBuf;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::sns::SnsEvent;
use chrono::Utc;
use e2e::*;
use local_stack::contract::{Answer, CONTRACT};
use serde_json::Value;
use shared::leads::{Lead, LeadStatus};
use shared::passport::{Equipment, EquipmentState, Maintenance, MaintenanceStatus, SyncMarks};
use shared::ports::{IdempotencyClaim, LeadStore, PassportStore};
use shared::store::{DynamoLeadStore, DynamoPassportStore};
use shared::worker::{Work, work_of};

fn event_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The sample customer of the Mini App samples (their initData's user).
const SAMPLE_TELEGRAM_USER: i64 = 428113907;

/// The sample as API Gateway would hand it now: a Mini App sample's initData is re-signed with
/// the stack's bot token (the file's went stale a day after it was made).
fn http_event(stack: &local_stack::LocalStack, file: &str) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(&event_file(file)).unwrap();
    if event["headers"]["authorization"]
        .as_str()
        .is_some_and(|a| a.starts_with("tma "))
    {
        event["headers"]["authorization"] =
            format!("tma {}", init_data(stack, SAMPLE_TELEGRAM_USER, 0)).into();
    }
    lambda_http::request::from_str(&event.to_string())
        .unwrap_or_else(|e| panic!("{file} is not an API Gateway v2 event: {e}"))
}

/// The handler's answer to a sample, checked against api/openapi.yaml like the front's.
fn keeps_the_contract(
    file: &str,
    request_line: (&str, &str),
    response: &lambda_http::Response<lambda_http::Body>,
) {
    let body: &[u8] = match response.body() {
        lambda_http::Body::Text(t) => t.as_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => &[],
    };
    CONTRACT
        .check(Answer {
            method: request_line.0,
            path: request_line.1,
            status: response.status().as_u16(),
            headers: response.headers(),
            body,
        })
        .unwrap_or_else(|e| panic!("{file}: {e}"));
}

fn request_line(file: &str) -> (String, String) {
    let event: Value = serde_json::from_str(&event_file(file)).unwrap();
    let key = event["routeKey"].as_str().unwrap().to_string();
    let (method, path) = key.split_once(' ').unwrap();
    (method.to_string(), path.to_string())
}

#[tokio::test]
async fn every_lead_ingest_event_gets_its_expected_answer() {
    let stack = stack().await;
    let api = shared::wiring::lead_ingest(&stack.config, &stack.aws)
        .await
        .unwrap();
    for (file, expected) in [
        ("lead-ingest-post-leads-json.json", 202),
        ("lead-ingest-post-leads-form.json", 202),
        ("lead-ingest-post-leads-cart.json", 202),
        ("lead-ingest-post-leads-tma.json", 202),
        ("lead-ingest-post-leads-invalid.json", 400),
        ("lead-ingest-options-preflight.json", 204),
        // The sample carries a placeholder, not the local admin key.
        ("test-crm.json", 401),
    ] {
        let response = api.handle(http_event(&stack, file)).await;
        assert_eq!(response.status().as_u16(), expected, "{file}");
        let (method, path) = request_line(file);
        keeps_the_contract(file, (&method, &path), &response);
    }
    stack.deliver_pending().await.unwrap();
    assert_eq!(sandbox_list(&stack, "leads").await.len(), 4);
}

#[tokio::test]
async fn the_passport_and_webhook_events_get_their_expected_answers_in_the_contract() {
    let stack = stack().await;
    let passport = shared::wiring::passport_api(&stack.config, &stack.aws)
        .await
        .unwrap();
    let webhook = shared::wiring::webhook_receiver(&stack.config, &stack.aws)
        .await
        .unwrap();
    // The sample customer owns the sample machine.
    let store =
        DynamoPassportStore::new(stack.aws.dynamodb.clone(), &stack.resources.passport_table);
    let bought = Utc::now() - chrono::Duration::days(200);
    store
        .register(&Equipment {
            owner_telegram_id: SAMPLE_TELEGRAM_USER,
            amo_contact_id: None,
            serial: "RSS-6R12-000871".into(),
            model: Some("6Р12".into()),
            purchased_at: bought,
            amo_lead_id: 31_000_871,
            maintenance: Maintenance {
                status: MaintenanceStatus::Ok,
                next_due: (bought + chrono::Duration::days(365)).date_naive(),
            },
            state: EquipmentState::Active,
            updated_at: bought,
            sync: SyncMarks::default(),
        })
        .await
        .unwrap();
    for (file, expected) in [
        ("passport-get.json", 200),
        ("passport-service-request.json", 202),
    ] {
        let response = passport.handle(http_event(&stack, file)).await;
        assert_eq!(response.status().as_u16(), expected, "{file}");
        let (method, path) = request_line(file);
        keeps_the_contract(file, (&method, &path), &response);
    }
    for (file, expected) in [
        // The samples carry a placeholder token and a code amoCRM never issued to this stack.
        ("amocrm-webhook-status-142.json", 401),
        ("amocrm-webhook-oauth-redirect.json", 400),
    ] {
        let response = webhook.handle(http_event(&stack, file)).await;
        assert_eq!(response.status().as_u16(), expected, "{file}");
        let (method, path) = request_line(file);
        keeps_the_contract(file, (&method, &path), &response);
    }
}

#[tokio::test]
async fn the_stream_events_are_work_for_crm_worker_and_deliver_their_lead() {
    let stack = stack().await;
    let insert: Event = serde_json::from_str(&event_file("crm-worker-stream-insert.json")).unwrap();
    let modify: Event = serde_json::from_str(&event_file("crm-worker-stream-modify.json")).unwrap();
    let Some(Work::DeliverLead(id)) = work_of(&insert.records[0]) else {
        panic!("the INSERT sample is not a lead to deliver");
    };
    assert!(
        matches!(work_of(&modify.records[0]), Some(Work::DeliverLead(_))),
        "re-drive MODIFY"
    );

    // Store the sample's lead as lead-ingest would, then hand the sample event to the worker.
    let image = serde_json::to_value(&insert.records[0].change.new_image).unwrap();
    let lead: Lead = serde_json::from_str(image["payload"]["S"].as_str().unwrap()).unwrap();
    let store = DynamoLeadStore::new(stack.aws.dynamodb.clone(), &stack.resources.leads_table);
    let claim = IdempotencyClaim {
        key: "sample".into(),
        expires_at: chrono::Utc::now(),
    };
    store.insert(&lead, &claim).await.unwrap();
    let response = stack.worker.handle(insert).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().status,
        LeadStatus::Delivered
    );
    let leads: Vec<Value> = sandbox_list(&stack, "leads").await;
    assert!(leads[0]["name"].as_str().unwrap().contains(&id));
}

#[tokio::test]
async fn the_sample_bounce_is_recorded_on_its_lead_and_reported_by_health() {
    let stack = stack().await;
    // The lead of the stream sample, delivered with its sales copy.
    let insert: Event = serde_json::from_str(&event_file("crm-worker-stream-insert.json")).unwrap();
    let image = serde_json::to_value(&insert.records[0].change.new_image).unwrap();
    let lead: Lead = serde_json::from_str(image["payload"]["S"].as_str().unwrap()).unwrap();
    let store = DynamoLeadStore::new(stack.aws.dynamodb.clone(), &stack.resources.leads_table);
    let claim = IdempotencyClaim {
        key: "sample".into(),
        expires_at: chrono::Utc::now(),
    };
    store.insert(&lead, &claim).await.unwrap();
    stack.worker.handle(insert).await;

    // SES reports the copy bounced, through the topic; the sample is an hour old as far as
    // /health goes (it shows bounces of the last 24 h as reasons).
    let mut event: SnsEvent =
        serde_json::from_str(&event_file("mail-events-bounce.json")).expect("an SNS event");
    let mut message: Value = serde_json::from_str(&event.records[0].sns.message).unwrap();
    let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    message["bounce"]["timestamp"] = Value::from(an_hour_ago);
    event.records[0].sns.message = message.to_string();
    let recorder = shared::wiring::mail_events(&stack.config, &stack.aws).unwrap();
    let messages = event.records.iter().map(|r| r.sns.message.as_str());
    assert_eq!(recorder.record_all(messages).await.unwrap(), 1);

    let item = stack
        .aws
        .dynamodb
        .get_item()
        .table_name(&stack.resources.leads_table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("LEAD#{}", lead.id)),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let feedback = item["mail_feedback"].as_l().unwrap();
    assert_eq!(feedback.len(), 1);
    let recorded: Value = serde_json::from_str(feedback[0].as_s().unwrap()).unwrap();
    assert_eq!(recorded["kind"], "bounce");
    assert_eq!(recorded["recipients"][0], "z***@tdrusstankosbyt.ru");
    // The delivery's state is untouched by it.
    assert_eq!(
        store.get(&lead.id).await.unwrap().unwrap().status,
        LeadStatus::Delivered
    );

    let (status, health) = get_health(&stack, Some(&stack.options.admin_key)).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(reason_codes(&health), ["mail_bounced"], "{health}");
    let text = health.to_string();
    assert!(
        text.contains(&lead.id) && text.contains("550 5.1.1"),
        "{text}"
    );
    assert!(
        !text.contains("zakaz@"),
        "no full address in /health: {text}"
    );
}
