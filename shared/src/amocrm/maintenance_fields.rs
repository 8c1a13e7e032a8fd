//! The two deal fields of the maintenance sync, made to exist: `ensure_maintenance_fields`
//! finds «Дата следующего ТО» (date) and «Статус ТО» (select with the six statuses) by name,
//! creates what is missing with one `POST /api/v4/leads/custom_fields`, and returns their ids.
//! Idempotent: the operator's `setup` and the local stack call it at every start.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::AmoClient;
use super::error::CrmError;
use crate::maintenance::model::{MaintenanceFieldIds, StatusEnums};
use crate::passport::MaintenanceStatus;

pub const NEXT_MAINTENANCE_FIELD_NAME: &str = "Дата следующего ТО";
pub const MAINTENANCE_STATUS_FIELD_NAME: &str = "Статус ТО";
const FIELDS: &str = "/api/v4/leads/custom_fields";

/// Every lead custom field of the account (all pages).
async fn lead_fields(client: &AmoClient) -> Result<Vec<Value>, CrmError> {
    let mut all = Vec::new();
    for page in 1..=20 {
        let query = [("limit", "250".to_string()), ("page", page.to_string())];
        let Some(body) = client.request(Method::GET, FIELDS, &query, None).await? else {
            break;
        };
        all.extend(
            body.pointer("/_embedded/custom_fields")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        if body.pointer("/_links/next/href").is_none() {
            break;
        }
    }
    Ok(all)
}

fn named<'a>(fields: &'a [Value], name: &str) -> Option<&'a Value> {
    fields
        .iter()
        .find(|f| f["name"].as_str().is_some_and(|n| n.trim() == name))
}

fn wrong_type(name: &str, found: &Value, wanted: &str) -> CrmError {
    CrmError::permanent(
        format!(
            "the deal field «{name}» exists with type {} (id {}), not {wanted}",
            found["type"], found["id"]
        ),
        format!(
            "Rename or delete that field in amoCRM (Settings → Deals → fields), or set \
             AMOCRM_FIELD_NEXT_MAINTENANCE / AMOCRM_FIELD_MAINTENANCE_STATUS to a {wanted} field's id."
        ),
    )
}

/// The select's options mapped to statuses by their Russian titles.
fn status_options(field: &Value) -> Result<StatusEnums, CrmError> {
    let options: Vec<(String, i64)> = field["enums"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["value"].as_str()?.trim().to_string(), e["id"].as_i64()?)))
        .collect();
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for status in MaintenanceStatus::ALL {
        match options.iter().find(|(v, _)| v == status.title_ru()) {
            Some((_, id)) => pairs.push((status, *id)),
            None => missing.push(status.title_ru()),
        }
    }
    if !missing.is_empty() {
        return Err(CrmError::permanent(
            format!(
                "the select «{MAINTENANCE_STATUS_FIELD_NAME}» lacks the options {}",
                missing.join(", ")
            ),
            format!(
                "Add the missing options to the deal field «{MAINTENANCE_STATUS_FIELD_NAME}» in \
                 amoCRM with exactly these names, then run setup again."
            ),
        ));
    }
    StatusEnums::new(pairs).map_err(|reason| {
        CrmError::permanent(
            format!("the options of «{MAINTENANCE_STATUS_FIELD_NAME}»: {reason}"),
            "Give every status its own option in amoCRM.".to_string(),
        )
    })
}

/// Finds or creates the two fields; returns their ids and the select's option ids.
pub async fn ensure_maintenance_fields(
    client: &AmoClient,
) -> Result<MaintenanceFieldIds, CrmError> {
    let mut fields = lead_fields(client).await?;
    let mut to_create = Vec::new();
    if named(&fields, NEXT_MAINTENANCE_FIELD_NAME).is_none() {
        to_create.push(json!({
            "name": NEXT_MAINTENANCE_FIELD_NAME,
            "type": "date",
            "sort": 510,
            "request_id": "next_maintenance",
        }));
    }
    if named(&fields, MAINTENANCE_STATUS_FIELD_NAME).is_none() {
        let enums: Vec<Value> = MaintenanceStatus::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| json!({ "value": s.title_ru(), "sort": (i as i64 + 1) * 10 }))
            .collect();
        to_create.push(json!({
            "name": MAINTENANCE_STATUS_FIELD_NAME,
            "type": "select",
            "sort": 511,
            "enums": enums,
            "request_id": "maintenance_status",
        }));
    }
    if !to_create.is_empty() {
        let endpoint = format!("POST {FIELDS}");
        let created = client
            .request(Method::POST, FIELDS, &[], Some(&Value::Array(to_create)))
            .await?
            .ok_or_else(|| CrmError::unexpected_response(&endpoint, "no content"))?;
        fields.extend(
            created
                .pointer("/_embedded/custom_fields")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        tracing::info!("maintenance fields created in amoCRM");
    }
    read_ids(&fields)
}

/// The two fields' ids when both exist (by name), without creating anything: what the sync
/// does on a deploy where nobody set the ids.
pub async fn find_maintenance_fields(
    client: &AmoClient,
) -> Result<Option<MaintenanceFieldIds>, CrmError> {
    let fields = lead_fields(client).await?;
    if named(&fields, NEXT_MAINTENANCE_FIELD_NAME).is_none()
        || named(&fields, MAINTENANCE_STATUS_FIELD_NAME).is_none()
    {
        return Ok(None);
    }
    read_ids(&fields).map(Some)
}

/// The ids of the two named fields, checked for their types and the select's options.
fn read_ids(fields: &[Value]) -> Result<MaintenanceFieldIds, CrmError> {
    let date = named(fields, NEXT_MAINTENANCE_FIELD_NAME)
        .ok_or_else(|| CrmError::unexpected_response(FIELDS, "the date field was not created"))?;
    if date["type"] != "date" {
        return Err(wrong_type(NEXT_MAINTENANCE_FIELD_NAME, date, "date"));
    }
    let select = named(fields, MAINTENANCE_STATUS_FIELD_NAME)
        .ok_or_else(|| CrmError::unexpected_response(FIELDS, "the select was not created"))?;
    if select["type"] != "select" {
        return Err(wrong_type(MAINTENANCE_STATUS_FIELD_NAME, select, "select"));
    }
    let id = |f: &Value| {
        f["id"]
            .as_i64()
            .ok_or_else(|| CrmError::unexpected_response(FIELDS, "a field without an id"))
    };
    Ok(MaintenanceFieldIds {
        next_maintenance: id(date)?,
        status: id(select)?,
        status_enums: status_options(select)?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::amocrm::CrmErrorKind;
    use crate::amocrm::testkit::{Canned, CannedServer, client_for};
    use crate::passport::MaintenanceStatus;

    fn list(fields: Value) -> Canned {
        Canned::json(
            200,
            &json!({"_page": 1, "_links": {}, "_embedded": {"custom_fields": fields}}).to_string(),
        )
    }

    fn select(options: &[(&str, i64)]) -> Value {
        json!({
            "id": 713002, "name": "Статус ТО", "type": "select",
            "enums": options.iter().map(|(v, id)| json!({"id": id, "value": v})).collect::<Vec<_>>(),
        })
    }

    const ALL: [(&str, i64); 6] = [
        ("В норме", 11),
        ("Скоро ТО", 12),
        ("ТО запланировано", 13),
        ("Идёт ТО", 14),
        ("ТО выполнено", 15),
        ("ТО просрочено", 16),
    ];

    #[tokio::test]
    async fn existing_fields_are_found_by_name_and_nothing_is_created() {
        let date = json!({"id": 713001, "name": "Дата следующего ТО", "type": "date"});
        let server = CannedServer::start(vec![list(json!([date, select(&ALL)]))]).await;
        let (client, _) = client_for(&server, "tok");
        let ids = ensure_maintenance_fields(&client).await.unwrap();
        assert_eq!((ids.next_maintenance, ids.status), (713001, 713002));
        assert_eq!(ids.status_enums.enum_id(MaintenanceStatus::InProgress), 14);
        assert_eq!(server.requests().len(), 1, "one read, no POST");
    }

    #[tokio::test]
    async fn a_select_without_every_status_or_a_field_of_another_type_is_refused_with_the_fix() {
        let date = json!({"id": 713001, "name": "Дата следующего ТО", "type": "date"});
        let server = CannedServer::start(vec![list(json!([date, select(&ALL[..4])]))]).await;
        let (client, _) = client_for(&server, "tok");
        let e = ensure_maintenance_fields(&client).await.unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Permanent);
        assert!(
            e.message.contains("ТО выполнено, ТО просрочено"),
            "{}",
            e.message
        );
        assert!(e.hint.contains("Add the missing options"), "{}", e.hint);

        let text = json!({"id": 713001, "name": "Дата следующего ТО", "type": "text"});
        let server = CannedServer::start(vec![list(json!([text, select(&ALL)]))]).await;
        let (client, _) = client_for(&server, "tok");
        let e = ensure_maintenance_fields(&client).await.unwrap_err();
        assert!(e.message.contains("not date"), "{}", e.message);
        assert!(
            e.hint.contains("AMOCRM_FIELD_NEXT_MAINTENANCE"),
            "{}",
            e.hint
        );
    }

    #[tokio::test]
    async fn missing_fields_are_created_in_one_request_with_every_status_option() {
        let created = json!({"_embedded": {"custom_fields": [
            {"id": 713001, "name": "Дата следующего ТО", "type": "date"},
            select(&ALL),
        ]}});
        let server = CannedServer::start(vec![
            Canned::no_content(),
            Canned::json(200, &created.to_string()),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let ids = ensure_maintenance_fields(&client).await.unwrap();
        assert_eq!(ids.status_enums.enum_id(MaintenanceStatus::Overdue), 16);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        let body = reqs[1].body.clone().unwrap();
        assert_eq!(body[0]["type"], "date");
        assert_eq!(body[1]["type"], "select");
        assert_eq!(body[1]["enums"].as_array().unwrap().len(), 6);
    }
}
