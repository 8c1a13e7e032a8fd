//! `GET /api/v4/leads` (filters, order, paging, 204) and `POST`/`PATCH` batches.

use std::time::Duration;

use serde_json::{Value, json};

use super::common::{FIELD_SERIAL, NEW_REQUEST, PIPELINE, start};

fn ids(list: &Value) -> Vec<i64> {
    list["_embedded"]["leads"]
        .as_array()
        .map(|a| a.iter().map(|l| l["id"].as_i64().unwrap()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn empty_lists_are_204_without_a_body() {
    let env = start().await;
    let a = env.get("/api/v4/leads").await;
    assert_eq!(a.status, 204);
    assert!(a.text.is_empty());
    assert_eq!(env.get("/api/v4/leads/12345").await.status, 404);
}

#[tokio::test]
async fn pages_follow_next_links_until_204() {
    let env = start().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(env.create_lead(&format!("Лид {i}")).await);
    }
    let first = env.get("/api/v4/leads?limit=2").await;
    assert_eq!(first.json["_page"], 1);
    assert_eq!(ids(&first.json), created[..2]);
    let mut seen = ids(&first.json);
    let mut next = first.json["_links"]["next"]["href"]
        .as_str()
        .map(str::to_string);
    while let Some(href) = next {
        let path = href
            .strip_prefix(&env.running.url)
            .expect("links point at the sandbox")
            .to_string();
        let page = env.get(&path).await;
        assert_eq!(page.status, 200);
        seen.extend(ids(&page.json));
        next = page.json["_links"]["next"]["href"]
            .as_str()
            .map(str::to_string);
    }
    assert_eq!(seen, created);
    assert_eq!(env.get("/api/v4/leads?limit=2&page=4").await.status, 204);
    let over = env.get("/api/v4/leads?limit=251").await;
    assert_eq!(over.status, 422);
    assert_eq!(over.json["detail"], "Limit 250 per page");
}

#[tokio::test]
async fn filters_and_order() {
    let env = start().await;
    let h = env.handle();
    let a = env.create_lead("Фрезерный станок").await;
    h.advance_clock(Duration::from_secs(10));
    let cursor = h.now();
    let b = env.create_lead("Токарный станок").await;
    let c = env.create_lead("Запчасти").await;
    env.patch(
        &format!("/api/v4/leads/{c}"),
        json!({ "custom_fields_values": [
            { "field_id": FIELD_SERIAL, "values": [{ "value": "SN-777" }] }
        ]}),
    )
    .await;

    assert_eq!(
        ids(&env
            .get(&format!("/api/v4/leads?filter[id][]={a}&filter[id][]={c}"))
            .await
            .json),
        vec![a, c]
    );
    assert_eq!(
        ids(&env
            .get(&format!("/api/v4/leads?filter%5Bid%5D={b}"))
            .await
            .json),
        vec![b]
    );
    assert_eq!(
        ids(&env
            .get("/api/v4/leads?query=%D1%82%D0%BE%D0%BA%D0%B0%D1%80%D0%BD")
            .await
            .json),
        vec![b]
    );
    assert_eq!(
        ids(&env.get("/api/v4/leads?query=SN-777").await.json),
        vec![c]
    );
    assert_eq!(
        ids(&env
            .get(&format!(
                "/api/v4/leads?filter[updated_at][from]={cursor}&order[updated_at]=asc"
            ))
            .await
            .json),
        vec![b, c]
    );
    assert_eq!(
        ids(&env
            .get(&format!(
                "/api/v4/leads?filter[updated_at][to]={}",
                cursor - 1
            ))
            .await
            .json),
        vec![a]
    );
    assert_eq!(
        ids(&env.get("/api/v4/leads?order[id]=desc").await.json),
        vec![c, b, a]
    );

    h.set_lead_status(b, 142, PIPELINE).unwrap();
    let won = env
        .get(&format!("/api/v4/leads?filter[statuses][0][pipeline_id]={PIPELINE}&filter[statuses][0][status_id]=142"))
        .await;
    assert_eq!(ids(&won.json), vec![b]);
    assert_eq!(
        ids(&env
            .get(&format!("/api/v4/leads?filter[pipeline_id][]={PIPELINE}"))
            .await
            .json),
        vec![a, b, c]
    );
    assert_eq!(
        env.get("/api/v4/leads?filter[pipeline_id][]=1")
            .await
            .status,
        204
    );
    assert_eq!(
        env.get("/api/v4/leads?query=nothing-like-this")
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn post_leads_creates_a_batch_and_links_existing_contacts() {
    let env = start().await;
    let contact = env
        .post("/api/v4/contacts", json!([{ "name": "Пётр" }]))
        .await;
    let contact_id = contact.json["_embedded"]["contacts"][0]["id"]
        .as_i64()
        .unwrap();
    let a = env
        .post(
            "/api/v4/leads",
            json!([
                { "name": "A", "price": 1000, "_embedded": { "contacts": [{ "id": contact_id }] } },
                { "name": "B", "request_id": "b" }
            ]),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let created = a.json["_embedded"]["leads"].as_array().unwrap();
    assert_eq!(created[0]["request_id"], "0");
    assert_eq!(created[1]["request_id"], "b");
    let lead = env
        .get(&format!("/api/v4/leads/{}?with=contacts", created[0]["id"]))
        .await;
    assert_eq!(lead.json["price"], 1000);
    assert_eq!(lead.json["_embedded"]["contacts"][0]["id"], contact_id);
    // Without `with=contacts` the contacts are not embedded.
    let plain = env
        .get(&format!("/api/v4/leads/{}", created[0]["id"]))
        .await;
    assert!(plain.json["_embedded"].get("contacts").is_none());

    let bad = env
        .post(
            "/api/v4/leads",
            json!([{ "_embedded": { "contacts": [{ "id": 1 }] } }]),
        )
        .await;
    assert_eq!(
        bad.violations(),
        vec![(
            "NotSupportedChoice".to_string(),
            "_embedded.contacts.0.id".to_string()
        )]
    );
}

#[tokio::test]
async fn patch_updates_and_bumps_updated_at() {
    let env = start().await;
    let h = env.handle();
    let a = env.create_lead("A").await;
    let b = env.create_lead("B").await;
    let before = h.lead(a).unwrap()["updated_at"].as_i64().unwrap();
    h.advance_clock(Duration::from_secs(30));
    let res = env
        .patch(
            "/api/v4/leads",
            json!([
                { "id": a, "price": 5000, "_embedded": { "tags": [{ "name": "ТО" }] } },
                { "id": b, "status_id": 143, "pipeline_id": PIPELINE }
            ]),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let updated = res.json["_embedded"]["leads"].as_array().unwrap();
    assert_eq!(updated[0]["id"], a);
    assert_eq!(updated[0]["updated_at"].as_i64().unwrap(), before + 30);
    let lead_a = h.lead(a).unwrap();
    assert_eq!(lead_a["price"], 5000);
    assert_eq!(lead_a["updated_at"].as_i64().unwrap(), before + 30);
    assert_eq!(lead_a["_embedded"]["tags"][0]["name"], "ТО");
    let lead_b = h.lead(b).unwrap();
    assert_eq!(lead_b["status_id"], 143);
    assert!(lead_b["closed_at"].is_i64());

    // Tags are replaced as a set; null detaches them all.
    env.patch(
        &format!("/api/v4/leads/{a}"),
        json!({ "_embedded": { "tags": null } }),
    )
    .await;
    assert_eq!(h.lead(a).unwrap()["_embedded"]["tags"], json!([]));

    // Clearing a custom field.
    env.patch(&format!("/api/v4/leads/{a}"), json!({ "custom_fields_values": [{ "field_id": FIELD_SERIAL, "values": [{ "value": "X" }] }] })).await;
    assert_eq!(
        h.lead(a).unwrap()["custom_fields_values"][0]["values"][0]["value"],
        "X"
    );
    env.patch(
        &format!("/api/v4/leads/{a}"),
        json!({ "custom_fields_values": [{ "field_id": FIELD_SERIAL, "values": null }] }),
    )
    .await;
    assert_eq!(h.lead(a).unwrap()["custom_fields_values"], Value::Null);

    let single = env
        .patch(&format!("/api/v4/leads/{b}"), json!({ "name": "B2" }))
        .await;
    assert_eq!(single.status, 200);
    assert_eq!(single.json["id"], b);
    assert_eq!(
        env.patch("/api/v4/leads/999", json!({ "name": "x" }))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn patch_batches_are_checked_and_atomic() {
    let env = start().await;
    let a = env.create_lead("A").await;
    let res = env
        .patch(
            "/api/v4/leads",
            json!([{ "id": a, "price": 1 }, { "price": 2 }, { "id": 42, "price": 3 }]),
        )
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.json["validation-errors"],
        json!([
            { "request_id": "1", "errors": [{ "code": "NotBlank", "path": "id", "detail": "This value should not be blank." }] },
            { "request_id": "2", "errors": [{ "code": "NotSupportedChoice", "path": "id", "detail": "The value you selected is not a valid choice." }] }
        ])
    );
    assert_eq!(env.handle().lead(a).unwrap()["price"], 0);

    let over: Vec<Value> = (0..251).map(|_| json!({ "id": a, "price": 9 })).collect();
    assert_eq!(
        env.patch("/api/v4/leads", Value::Array(over)).await.status,
        422
    );
    let wrong_status = env
        .patch("/api/v4/leads", json!([{ "id": a, "status_id": 80953570 }]))
        .await;
    assert_eq!(
        wrong_status.status, 200,
        "a status of another pipeline moves the lead there"
    );
    assert_eq!(env.handle().lead(a).unwrap()["pipeline_id"], 10226286);
    let _ = NEW_REQUEST;
}

#[tokio::test]
async fn batches_above_the_504_threshold_change_nothing() {
    let env = start().await;
    let a = env.create_lead("A").await;
    let b = env.create_lead("B").await;
    let c = env.create_lead("C").await;
    env.handle().set_batch_504_above(Some(2));
    let body = json!([{ "id": a, "price": 1 }, { "id": b, "price": 2 }, { "id": c, "price": 3 }]);
    let res = env.patch("/api/v4/leads", body).await;
    assert_eq!(res.status, 504);
    assert!(env.handle().leads().iter().all(|l| l["price"] == 0));
    let res = env
        .patch(
            "/api/v4/leads",
            json!([{ "id": a, "price": 1 }, { "id": b, "price": 2 }]),
        )
        .await;
    assert_eq!(res.status, 200);
    let big: Vec<Value> = (0..3).map(|i| json!({ "name": format!("N{i}") })).collect();
    assert_eq!(
        env.post("/api/v4/leads/complex", Value::Array(big))
            .await
            .status,
        504
    );
    assert_eq!(env.handle().leads().len(), 3);
}

#[tokio::test]
async fn with_a_search_lag_query_misses_a_new_lead_that_filters_see_at_once() {
    let env = super::common::start().await;
    env.handle().set_search_lag_ms(30_000);
    let id = env
        .create_lead("Заявка 01JLAGLAGLAGLAGLAGLAGLAG00: сервис")
        .await;
    let by_query = env
        .get("/api/v4/leads?query=01JLAGLAGLAGLAGLAGLAGLAG00")
        .await;
    assert_eq!(by_query.status, 204, "the index has not seen it yet");
    let now = env.handle().now();
    let by_filter = env
        .get(&format!(
            "/api/v4/leads?filter[created_at][from]={}&filter[created_at][to]={}&filter[pipeline_id][]=10226282",
            now - 60,
            now + 60
        ))
        .await;
    assert_eq!(by_filter.status, 200, "{}", by_filter.text);
    assert_eq!(by_filter.json["_embedded"]["leads"][0]["id"], id);
    // 30 s later the index has it.
    env.handle()
        .advance_clock(std::time::Duration::from_secs(31));
    let later = env
        .get("/api/v4/leads?query=01JLAGLAGLAGLAGLAGLAGLAG00")
        .await;
    assert_eq!(later.status, 200);
    assert_eq!(later.json["_embedded"]["leads"][0]["id"], id);
}
