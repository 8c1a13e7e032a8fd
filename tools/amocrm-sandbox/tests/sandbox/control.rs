//! The `/_sandbox` HTTP control API.

use serde_json::{Value, json};

use super::common::{PIPELINE, start};

async fn control(
    env: &super::common::Env,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> super::common::Answer {
    env.send(env.http.request(method, env.url(path)).json(&body))
        .await
}

#[tokio::test]
async fn faults_tokens_and_status_changes_over_http() {
    let env = start().await;
    let post = reqwest::Method::POST;

    let f = control(
        &env,
        post.clone(),
        "/_sandbox/faults",
        json!({ "kind": "status", "status": 503, "count": 1, "path": "/api/v4/account" }),
    )
    .await;
    assert_eq!(f.status, 200, "{}", f.text);
    assert_eq!(env.get("/api/v4/account").await.status, 503);
    assert_eq!(env.get("/api/v4/account").await.status, 200);
    let bad = control(
        &env,
        post.clone(),
        "/_sandbox/faults",
        json!({ "kind": "status", "status": 200 }),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.json["error"].as_str().unwrap().starts_with("status"));
    let unknown = control(
        &env,
        post.clone(),
        "/_sandbox/faults",
        json!({ "kind": "explode" }),
    )
    .await;
    assert_eq!(unknown.status, 400);

    let t = control(
        &env,
        post.clone(),
        "/_sandbox/tokens",
        json!({ "token": "manual-token", "expires_at": env.handle().now() + 60 }),
    )
    .await;
    assert_eq!(t.status, 200);
    let with_manual = env
        .send(
            env.http
                .get(env.url("/api/v4/account"))
                .bearer_auth("manual-token"),
        )
        .await;
    assert_eq!(with_manual.status, 200);
    control(
        &env,
        post.clone(),
        "/_sandbox/tokens/revoke",
        json!({ "token": "manual-token" }),
    )
    .await;
    let revoked = env
        .send(
            env.http
                .get(env.url("/api/v4/account"))
                .bearer_auth("manual-token"),
        )
        .await;
    assert_eq!(revoked.status, 401);

    let created = env
        .post(
            "/api/v4/leads/complex",
            json!([{ "name": "Сделка", "responsible_user_id": 12380450 }]),
        )
        .await;
    let lead = created.json[0]["id"].as_i64().unwrap();
    let moved = control(
        &env,
        post.clone(),
        &format!("/_sandbox/leads/{lead}/status"),
        json!({ "status_id": 142, "pipeline_id": PIPELINE }),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(moved.json["status_id"], 142);
    assert!(moved.json["closed_at"].is_i64());
    assert_eq!(
        moved.json["updated_by"], 12380450,
        "the responsible manager moved it"
    );
    let wrong = control(
        &env,
        post.clone(),
        &format!("/_sandbox/leads/{lead}/status"),
        json!({ "status_id": 80953570, "pipeline_id": PIPELINE }),
    )
    .await;
    assert_eq!(wrong.status, 400);
    let missing = control(
        &env,
        post.clone(),
        "/_sandbox/leads/1/status",
        json!({ "status_id": 142, "pipeline_id": PIPELINE }),
    )
    .await;
    assert_eq!(missing.status, 404);

    let state = env.send(env.http.get(env.url("/_sandbox/state"))).await;
    assert_eq!(state.json["leads"][0]["id"], lead);
    let tokens = state.json["tokens"].as_array().unwrap();
    assert!(
        tokens
            .iter()
            .all(|t| t["token"].as_str().unwrap().starts_with('…')),
        "tokens are masked"
    );
    let requests = env.send(env.http.get(env.url("/_sandbox/requests"))).await;
    assert!(
        requests.json["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["path"].as_str().unwrap().starts_with("/_sandbox"))
    );

    let reset = control(&env, post, "/_sandbox/reset", json!({})).await;
    assert_eq!(reset.status, 200);
    assert!(env.handle().leads().is_empty());
    assert_eq!(
        env.get("/api/v4/account").await.status,
        401,
        "tokens added at run time are gone"
    );
}

#[tokio::test]
async fn codes_clock_settings_and_manager_edits_over_http() {
    let env = start().await;
    let post = reqwest::Method::POST;
    let code = control(&env, post.clone(), "/_sandbox/oauth/codes", json!({})).await;
    let exchanged = env
        .send(env.http.post(env.url("/oauth2/access_token")).json(&json!({
            "client_id": "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd",
            "client_secret": amocrm_sandbox::config::DEFAULT_CLIENT_SECRET,
            "grant_type": "authorization_code",
            "code": code.json["code"],
            "redirect_uri": "https://api.td-rss.ru/webhook/amocrm",
        })))
        .await;
    assert_eq!(exchanged.status, 200, "{}", exchanged.text);

    let before = env.handle().now();
    let clock = control(
        &env,
        post.clone(),
        "/_sandbox/clock",
        json!({ "advance_secs": 3600 }),
    )
    .await;
    assert!(clock.json["now"].as_i64().unwrap() >= before + 3600);

    let a = env.create_lead("A").await;
    let b = env.create_lead("B").await;
    control(
        &env,
        post.clone(),
        "/_sandbox/settings",
        json!({ "batch_504_above": 1 }),
    )
    .await;
    let batch = json!([{ "id": a, "price": 1 }, { "id": b, "price": 1 }]);
    assert_eq!(env.patch("/api/v4/leads", batch.clone()).await.status, 504);
    control(
        &env,
        post,
        "/_sandbox/settings",
        json!({ "batch_504_above": null }),
    )
    .await;
    assert_eq!(env.patch("/api/v4/leads", batch).await.status, 200);

    let edit = control(
        &env,
        reqwest::Method::PATCH,
        &format!("/_sandbox/leads/{a}"),
        json!({ "custom_fields_values": [
            { "field_id": 712631, "values": [{ "value": "16К20" }] }
        ]}),
    )
    .await;
    assert_eq!(edit.status, 200, "{}", edit.text);
    assert_eq!(
        edit.json["custom_fields_values"][0]["values"][0]["value"],
        "16К20"
    );
    let refused = control(
        &env,
        reqwest::Method::PATCH,
        &format!("/_sandbox/leads/{a}"),
        json!({ "price": "дорого" }),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json["violations"][0]["code"], "InvalidType");
}
