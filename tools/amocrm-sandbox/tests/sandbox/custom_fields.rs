//! Creating custom fields and using them.

use serde_json::json;

use super::common::{FIELD_SERIAL, start};

#[tokio::test]
async fn lists_the_seeded_fields() {
    let env = start().await;
    let leads = env.get("/api/v4/leads/custom_fields").await;
    let ids: Vec<i64> = leads.json["_embedded"]["custom_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![712629, 712631, 712633]);
    let contacts = env.get("/api/v4/contacts/custom_fields").await;
    let phone = contacts.json["_embedded"]["custom_fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "PHONE")
        .cloned()
        .unwrap();
    assert_eq!(phone["type"], "multitext");
    let codes: Vec<&str> = phone["enums"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    for code in ["WORK", "MOB", "HOME", "OTHER"] {
        assert!(codes.contains(&code));
    }
}

#[tokio::test]
async fn created_fields_validate_values_by_type() {
    let env = start().await;
    let created = env
        .post(
            "/api/v4/leads/custom_fields",
            json!([
                { "name": "Дата следующего ТО", "type": "date" },
                { "name": "Наработка, ч", "type": "numeric" },
                { "name": "Статус ТО", "type": "select", "enums": [{ "value": "Плановое", "sort": 1 }, { "value": "Просрочено", "sort": 2 }] }
            ]),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let fields = created.json["_embedded"]["custom_fields"]
        .as_array()
        .unwrap();
    let (date, numeric, select) = (
        fields[0]["id"].as_i64().unwrap(),
        fields[1]["id"].as_i64().unwrap(),
        fields[2]["id"].as_i64().unwrap(),
    );
    let planned = fields[2]["enums"][0]["id"].as_i64().unwrap();

    let lead = env
        .post(
            "/api/v4/leads/complex",
            json!([{ "name": "ТО", "custom_fields_values": [
                { "field_id": date, "values": [{ "value": "2026-03-01T00:00:00+03:00" }] },
                { "field_id": numeric, "values": [{ "value": 1250 }] },
                { "field_id": select, "values": [{ "value": "Просрочено" }] },
                { "field_id": FIELD_SERIAL, "values": [{ "value": "SN-1" }] }
            ]}]),
        )
        .await;
    assert_eq!(lead.status, 200, "{}", lead.text);
    let stored = env
        .handle()
        .lead(lead.json[0]["id"].as_i64().unwrap())
        .unwrap();
    let values = stored["custom_fields_values"].as_array().unwrap();
    assert_eq!(values[0]["field_type"], "date");
    assert_eq!(values[0]["values"], json!([{ "value": 1772312400 }]));
    assert_eq!(
        values[1]["values"],
        json!([{ "value": "1250" }]),
        "numbers read back as strings"
    );
    assert_eq!(values[2]["values"][0]["value"], "Просрочено");
    assert!(values[2]["values"][0]["enum_id"].is_i64());

    let bad = env
        .post(
            "/api/v4/leads/complex",
            json!([{ "custom_fields_values": [
                { "field_id": date, "values": [{ "value": "1 марта" }] },
                { "field_id": numeric, "values": [{ "value": "много" }] },
                { "field_id": select, "values": [{ "value": "Нет такого" }] },
                { "field_id": select, "values": [{ "enum_id": 1 }] },
                { "field_id": select, "values": [{ "enum_id": planned }] }
            ]}]),
        )
        .await;
    assert_eq!(
        bad.violations(),
        vec![
            (
                "InvalidType".to_string(),
                "custom_fields_values.0.values.0.value".to_string()
            ),
            (
                "InvalidType".to_string(),
                "custom_fields_values.1.values.0.value".to_string()
            ),
            (
                "NotSupportedChoice".to_string(),
                "custom_fields_values.2.values.0.value".to_string()
            ),
            (
                "NotSupportedChoice".to_string(),
                "custom_fields_values.3.values.0.enum_id".to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn field_creation_is_checked() {
    let env = start().await;
    let bad = env
        .post(
            "/api/v4/leads/custom_fields",
            json!([
                { "name": "x", "type": "hologram" },
                { "type": "text" },
                { "name": "Список", "type": "select" }
            ]),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.violations(),
        vec![
            ("NotSupportedChoice".to_string(), "type".to_string()),
            ("NotBlank".to_string(), "name".to_string()),
            ("TooFew".to_string(), "enums".to_string()),
        ]
    );
    let fields = env.get("/api/v4/leads/custom_fields").await;
    assert_eq!(fields.json["_total_items"], 3);
}
