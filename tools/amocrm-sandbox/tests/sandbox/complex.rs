//! `POST /api/v4/leads/complex`: shape of the answer, strict checks, atomicity.

use serde_json::{Value, json};

use super::common::{
    FIELD_MODEL, FIELD_SERIAL, FIELD_TELEGRAM, MANAGER, NEW_REQUEST, PIPELINE, start,
};

fn site_lead() -> Value {
    json!({
        "name": "Заявка на ТО: токарный станок",
        "price": 0,
        "pipeline_id": PIPELINE,
        "status_id": NEW_REQUEST,
        "responsible_user_id": MANAGER,
        "custom_fields_values": [
            { "field_id": FIELD_SERIAL, "values": [{ "value": "SN-2024-001" }] },
            { "field_id": FIELD_MODEL, "values": [{ "value": "16К20" }] },
            { "field_id": FIELD_TELEGRAM, "values": [{ "value": 123456789 }] }
        ],
        "_embedded": {
            "tags": [{ "name": "сайт" }],
            "contacts": [{
                "first_name": "Иван",
                "last_name": "Петров",
                "custom_fields_values": [
                    { "field_code": "PHONE", "values": [{ "value": "+79123456789", "enum_code": "WORK" }] },
                    { "field_code": "EMAIL", "values": [{ "value": "ivan@example.ru", "enum_code": "WORK" }] }
                ]
            }]
        },
        "request_id": "lead-1"
    })
}

#[tokio::test]
async fn a_lead_with_a_new_contact_is_created_and_reads_back_like_amocrm() {
    let env = start().await;
    let a = env
        .post("/api/v4/leads/complex", json!([site_lead()]))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let item = &a.json[0];
    assert_eq!(item["request_id"], json!(["lead-1"]));
    assert_eq!(item["merged"], false);
    assert_eq!(item["company_id"], Value::Null);
    let lead_id = item["id"].as_i64().unwrap();
    let contact_id = item["contact_id"].as_i64().unwrap();

    let lead = env
        .get(&format!("/api/v4/leads/{lead_id}?with=contacts"))
        .await;
    assert_eq!(lead.status, 200);
    let l = &lead.json;
    assert_eq!(l["name"], "Заявка на ТО: токарный станок");
    assert_eq!(
        (l["pipeline_id"].as_i64(), l["status_id"].as_i64()),
        (Some(PIPELINE), Some(NEW_REQUEST))
    );
    assert_eq!(l["responsible_user_id"], MANAGER);
    assert_eq!(l["account_id"], 31234567);
    assert_eq!(l["closed_at"], Value::Null);
    assert_eq!(l["_embedded"]["tags"][0]["name"], "сайт");
    assert_eq!(
        l["_embedded"]["contacts"],
        json!([{
            "id": contact_id, "is_main": true,
            "_links": { "self": { "href": env.url(&format!("/api/v4/contacts/{contact_id}")) } }
        }])
    );
    let fields = l["custom_fields_values"].as_array().unwrap();
    assert_eq!(fields[0]["field_id"], FIELD_SERIAL);
    assert_eq!(fields[0]["field_name"], "Серийный номер");
    assert_eq!(fields[0]["field_type"], "text");
    assert_eq!(fields[0]["values"], json!([{ "value": "SN-2024-001" }]));
    // A number sent to a text field is kept as text.
    assert_eq!(fields[2]["values"], json!([{ "value": "123456789" }]));

    let contact = env
        .get(&format!("/api/v4/contacts/{contact_id}?with=leads"))
        .await;
    assert_eq!(contact.json["name"], "Иван Петров");
    assert_eq!(contact.json["_embedded"]["leads"][0]["id"], lead_id);
    let phone = &contact.json["custom_fields_values"][0];
    assert_eq!(phone["field_code"], "PHONE");
    assert_eq!(phone["values"][0]["value"], "+79123456789");
    assert_eq!(phone["values"][0]["enum_code"], "WORK");
    assert!(phone["values"][0]["enum_id"].is_i64());
}

#[tokio::test]
async fn an_existing_contact_is_linked_by_id() {
    let env = start().await;
    let first = env
        .post("/api/v4/leads/complex", json!([site_lead()]))
        .await;
    let contact_id = first.json[0]["contact_id"].as_i64().unwrap();
    let second = env
        .post(
            "/api/v4/leads/complex",
            json!([{ "name": "Повторная заявка", "_embedded": { "contacts": [{ "id": contact_id }] } }]),
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.json[0]["contact_id"], contact_id);
    assert_eq!(second.json[0]["request_id"], json!(["0"]));
    assert_eq!(env.handle().contacts().len(), 1);
    // Without pipeline and status, the lead lands in the main pipeline's first stage.
    let lead = env
        .handle()
        .lead(second.json[0]["id"].as_i64().unwrap())
        .unwrap();
    assert_eq!(
        (lead["pipeline_id"].as_i64(), lead["status_id"].as_i64()),
        (Some(PIPELINE), Some(NEW_REQUEST))
    );
}

#[tokio::test]
async fn one_invalid_lead_fails_the_whole_batch_and_creates_nothing() {
    let env = start().await;
    let mut bad = site_lead();
    bad["request_id"] = json!("lead-2");
    bad["custom_fields_values"][1]["field_id"] = json!(999999);
    let a = env
        .post("/api/v4/leads/complex", json!([site_lead(), bad]))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.content_type(), "application/problem+json");
    // Byte for byte, in amoCRM's key order.
    assert_eq!(
        a.text,
        r#"{"validation-errors":[{"request_id":"lead-2","errors":[{"code":"NotSupportedChoice","path":"custom_fields_values.1.field_id","detail":"The value you selected is not a valid choice."}]}],"title":"Bad Request","type":"https://httpstatus.es/400","status":400,"detail":"Request validation failed"}"#
    );
    assert_eq!(a.json["title"], "Bad Request");
    assert_eq!(a.json["detail"], "Request validation failed");
    assert_eq!(
        a.json["validation-errors"],
        json!([{
            "request_id": "lead-2",
            "errors": [{
                "code": "NotSupportedChoice",
                "path": "custom_fields_values.1.field_id",
                "detail": "The value you selected is not a valid choice."
            }]
        }])
    );
    assert!(env.handle().leads().is_empty());
    assert!(env.handle().contacts().is_empty());
    assert_eq!(env.get("/api/v4/leads").await.status, 204);
}

/// Sends one lead and returns the `(code, path)` violations.
async fn violations_of(lead: Value) -> Vec<(String, String)> {
    let env = start().await;
    let a = env.post("/api/v4/leads/complex", json!([lead])).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(env.handle().leads().is_empty());
    a.violations()
}

fn v(code: &str, path: &str) -> Vec<(String, String)> {
    vec![(code.to_string(), path.to_string())]
}

#[tokio::test]
async fn wrong_types_are_invalid_type() {
    assert_eq!(
        violations_of(json!({ "price": "100" })).await,
        v("InvalidType", "price")
    );
    assert_eq!(
        violations_of(json!({ "price": 10.5 })).await,
        v("InvalidType", "price")
    );
    assert_eq!(
        violations_of(json!({ "name": 5 })).await,
        v("InvalidType", "name")
    );
    assert_eq!(
        violations_of(json!({ "price": -1 })).await,
        v("GreaterThanOrEqual", "price")
    );
    assert_eq!(
        violations_of(json!({ "custom_fields_values": [{ "field_id": FIELD_SERIAL, "values": [{ "value": true }] }] })).await,
        v("InvalidType", "custom_fields_values.0.values.0.value")
    );
}

#[tokio::test]
async fn pipeline_status_and_user_must_exist_and_match() {
    assert_eq!(
        violations_of(json!({ "pipeline_id": 1 })).await,
        v("NotSupportedChoice", "pipeline_id")
    );
    assert_eq!(
        violations_of(json!({ "pipeline_id": PIPELINE, "status_id": 80953570 })).await,
        v("NotSupportedChoice", "status_id")
    );
    assert_eq!(
        violations_of(json!({ "status_id": 1 })).await,
        v("NotSupportedChoice", "status_id")
    );
    assert_eq!(
        violations_of(json!({ "status_id": 142 })).await,
        v("NotBlank", "pipeline_id")
    );
    assert_eq!(
        violations_of(json!({ "responsible_user_id": 1 })).await,
        v("NotSupportedChoice", "responsible_user_id")
    );
}

#[tokio::test]
async fn custom_field_values_are_checked() {
    assert_eq!(
        violations_of(json!({ "custom_fields_values": [] })).await,
        v("TooFew", "custom_fields_values")
    );
    assert_eq!(
        violations_of(
            json!({ "custom_fields_values": [{ "field_id": FIELD_SERIAL, "values": [] }] })
        )
        .await,
        v("TooFew", "custom_fields_values.0.values")
    );
    assert_eq!(
        violations_of(json!({ "custom_fields_values": [{ "field_id": FIELD_SERIAL, "values": [{ "value": "a" }, { "value": "b" }] }] })).await,
        v("TooMuch", "custom_fields_values.0.values")
    );
    let many: Vec<Value> = (0..41)
        .map(|_| json!({ "field_id": FIELD_SERIAL, "values": [{ "value": "x" }] }))
        .collect();
    assert_eq!(
        violations_of(json!({ "custom_fields_values": many })).await,
        v("TooMuch", "custom_fields_values")
    );
    // A contact field is not a lead field.
    assert_eq!(
        violations_of(json!({ "custom_fields_values": [{ "field_code": "PHONE", "values": [{ "value": "1" }] }] })).await,
        v("NotSupportedChoice", "custom_fields_values.0.field_code")
    );
}

#[tokio::test]
async fn the_embedded_contact_is_checked() {
    assert_eq!(
        violations_of(json!({ "_embedded": { "contacts": [{ "name": "a" }, { "name": "b" }] } }))
            .await,
        v("TooMuch", "_embedded.contacts")
    );
    assert_eq!(
        violations_of(json!({ "_embedded": { "contacts": [{ "id": 12345 }] } })).await,
        v("NotSupportedChoice", "_embedded.contacts.0.id")
    );
    assert_eq!(
        violations_of(
            json!({ "_embedded": { "contacts": [{ "name": "a", "custom_fields_values": [
            { "field_code": "PHONE", "values": [{ "value": "+7900", "enum_code": "CELL" }] }
        ] }] } })
        )
        .await,
        v(
            "NotSupportedChoice",
            "_embedded.contacts.0.custom_fields_values.0.values.0.enum_code"
        )
    );
    assert_eq!(
        violations_of(
            json!({ "_embedded": { "contacts": [{ "name": "a", "responsible_user_id": "x" }] } })
        )
        .await,
        vec![
            (
                "InvalidType".to_string(),
                "_embedded.contacts.0.responsible_user_id".to_string()
            ),
            (
                "NotSupportedChoice".to_string(),
                "_embedded.contacts.0.responsible_user_id".to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn bodies_that_are_not_a_batch_are_refused() {
    let env = start().await;
    let empty = env.post_raw("/api/v4/leads/complex", "").await;
    assert_eq!(empty.status, 400);
    assert_eq!(empty.json["detail"], "Request data can not be empty");
    let empty_list = env.post_raw("/api/v4/leads/complex", "[]").await;
    assert_eq!(empty_list.json["detail"], "Request data can not be empty");
    let object = env
        .post("/api/v4/leads/complex", json!({ "name": "x" }))
        .await;
    assert_eq!(object.status, 400);
    assert_eq!(object.violations(), v("InvalidType", ""));
    let garbage = env.post_raw("/api/v4/leads/complex", "{nope").await;
    assert_eq!(garbage.status, 400);

    let fifty_one: Vec<Value> = (0..51)
        .map(|i| json!({ "name": format!("L{i}") }))
        .collect();
    let a = env
        .post("/api/v4/leads/complex", Value::Array(fifty_one))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.violations(), v("TooMuch", ""));
    let too_many: Vec<Value> = (0..251)
        .map(|i| json!({ "name": format!("L{i}") }))
        .collect();
    let a = env
        .post("/api/v4/leads/complex", Value::Array(too_many))
        .await;
    assert_eq!(a.status, 422);
    assert_eq!(
        a.json,
        json!({ "title": "Unprocessable Entity", "type": "https://httpstatus.es/422", "status": 422, "detail": "Limit 250 per page" })
    );
    assert!(env.handle().leads().is_empty());

    let fifty: Vec<Value> = (0..50)
        .map(|i| json!({ "name": format!("L{i}") }))
        .collect();
    let a = env.post("/api/v4/leads/complex", Value::Array(fifty)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json.as_array().unwrap().len(), 50);
    assert_eq!(a.json[49]["request_id"], json!(["49"]));
}

#[tokio::test]
async fn a_won_lead_needs_its_pipeline_and_gets_closed_at() {
    let env = start().await;
    let a = env
        .post(
            "/api/v4/leads/complex",
            json!([{ "name": "Сразу продано", "pipeline_id": PIPELINE, "status_id": 142 }]),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let lead = env
        .handle()
        .lead(a.json[0]["id"].as_i64().unwrap())
        .unwrap();
    assert_eq!(lead["status_id"], 142);
    assert!(lead["closed_at"].is_i64());
}
