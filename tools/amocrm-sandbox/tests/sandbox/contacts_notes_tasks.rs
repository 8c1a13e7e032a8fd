//! Contacts search, notes and tasks.

use serde_json::json;

use super::common::{MANAGER, start};

#[tokio::test]
async fn contacts_are_found_by_phone_digits_email_and_name() {
    let env = start().await;
    let a = env
        .post(
            "/api/v4/contacts",
            json!([{ "name": "Иван Петров", "custom_fields_values": [
                { "field_code": "PHONE", "values": [{ "value": "+7 (912) 345-67-89", "enum_code": "MOB" }] },
                { "field_code": "EMAIL", "values": [{ "value": "Ivan@Example.ru" }] }
            ]}]),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let id = a.json["_embedded"]["contacts"][0]["id"].as_i64().unwrap();
    let found = |q: &'static str| {
        let env = &env;
        async move {
            let res = env.get(&format!("/api/v4/contacts?query={q}")).await;
            match res.status {
                204 => vec![],
                200 => res.json["_embedded"]["contacts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["id"].as_i64().unwrap())
                    .collect(),
                other => panic!("unexpected {other}"),
            }
        }
    };
    assert_eq!(found("79123456789").await, vec![id]);
    assert_eq!(found("%2B79123456789").await, vec![id]);
    assert_eq!(found("9123456789").await, vec![id]);
    assert_eq!(found("89123456789").await, Vec::<i64>::new());
    assert_eq!(found("ivan%40example.ru").await, vec![id]);
    assert_eq!(
        found("%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2").await,
        vec![id]
    );
    assert_eq!(found("nobody").await, Vec::<i64>::new());

    let email = &env.handle().contacts()[0]["custom_fields_values"][1]["values"][0];
    assert_eq!(email["enum_code"], "WORK", "WORK is the default enum");
    assert_eq!(env.get("/api/v4/contacts/1").await.status, 404);
}

#[tokio::test]
async fn notes_need_an_existing_lead_and_text() {
    let env = start().await;
    let lead = env.create_lead("С заметкой").await;
    assert_eq!(
        env.get(&format!("/api/v4/leads/{lead}/notes")).await.status,
        204
    );

    let ok = env
        .post(
            "/api/v4/leads/notes",
            json!([{ "entity_id": lead, "note_type": "common", "params": { "text": "Клиент просит перезвонить" } }]),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let note = &ok.json["_embedded"]["notes"][0];
    assert_eq!(note["entity_id"], lead);
    assert_eq!(note["request_id"], "0");

    let listed = env.get(&format!("/api/v4/leads/{lead}/notes")).await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.json["_embedded"]["notes"][0]["params"]["text"],
        "Клиент просит перезвонить"
    );
    assert_eq!(env.handle().notes().len(), 1);

    let bad = env
        .post(
            "/api/v4/leads/notes",
            json!([
                { "entity_id": 1, "note_type": "common", "params": { "text": "x" } },
                { "entity_id": lead, "note_type": "common", "params": { "text": "  " } },
                { "entity_id": lead, "note_type": "diary", "params": { "text": "x" } }
            ]),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.violations(),
        vec![
            ("NotSupportedChoice".to_string(), "entity_id".to_string()),
            ("NotBlank".to_string(), "params.text".to_string()),
            ("NotSupportedChoice".to_string(), "note_type".to_string()),
        ]
    );
    assert_eq!(env.handle().notes().len(), 1);

    let by_path = env
        .post(
            &format!("/api/v4/leads/{lead}/notes"),
            json!([{ "note_type": "common", "params": { "text": "второй" } }]),
        )
        .await;
    assert_eq!(by_path.status, 200);
    assert_eq!(
        env.post(
            "/api/v4/leads/1/notes",
            json!([{ "note_type": "common", "params": { "text": "x" } }])
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn tasks_are_checked_and_listed_by_entity() {
    let env = start().await;
    let lead = env.create_lead("С задачей").await;
    let deadline = env.handle().now() + 3600;
    let ok = env
        .post(
            "/api/v4/tasks",
            json!([{ "text": "Перезвонить клиенту", "complete_till": deadline, "task_type_id": 1,
                     "entity_type": "leads", "entity_id": lead, "responsible_user_id": MANAGER }]),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.json["_embedded"]["tasks"][0]["id"].is_i64());
    // The lead now shows its closest task.
    assert_eq!(
        env.handle().lead(lead).unwrap()["closest_task_at"],
        deadline
    );

    let listed = env
        .get(&format!(
            "/api/v4/tasks?filter[entity_id][]={lead}&filter[entity_type]=leads"
        ))
        .await;
    assert_eq!(
        listed.json["_embedded"]["tasks"][0]["text"],
        "Перезвонить клиенту"
    );
    assert_eq!(
        env.get("/api/v4/tasks?filter[entity_id][]=1").await.status,
        204
    );

    let bad = env
        .post(
            "/api/v4/tasks",
            json!([{ "entity_type": "leads", "entity_id": 1, "task_type_id": 99, "responsible_user_id": 5 }]),
        )
        .await;
    assert_eq!(bad.status, 400);
    let mut got = bad.violations();
    got.sort();
    let mut want = vec![
        ("NotBlank".to_string(), "text".to_string()),
        ("NotBlank".to_string(), "complete_till".to_string()),
        ("NotSupportedChoice".to_string(), "task_type_id".to_string()),
        ("NotSupportedChoice".to_string(), "entity_id".to_string()),
        (
            "NotSupportedChoice".to_string(),
            "responsible_user_id".to_string(),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(env.handle().tasks().len(), 1);
}
