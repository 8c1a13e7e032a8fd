//! Account, users, pipelines: the production account's ids.

use serde_json::Value;

use super::common::{MANAGER, NEW_REQUEST, PIPELINE, start};

#[tokio::test]
async fn the_account_has_the_production_ids() {
    let env = start().await;
    let account = env
        .get("/api/v4/account?with=task_types,datetime_settings")
        .await;
    assert_eq!(account.status, 200);
    assert_eq!(account.json["id"], 31234567);
    assert_eq!(account.json["subdomain"], "new599bd9d13818a");
    assert_eq!(
        account.json["datetime_settings"]["timezone"],
        "Europe/Moscow"
    );
    let task_types: Vec<i64> = account.json["_embedded"]["task_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(task_types, vec![1, 2]);

    let users = env.get("/api/v4/users").await;
    assert!(
        users.json["_embedded"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == MANAGER)
    );
    assert_eq!(
        env.get(&format!("/api/v4/users/{MANAGER}")).await.status,
        200
    );
    assert_eq!(env.get("/api/v4/users/1").await.status, 404);

    let pipelines = env.get("/api/v4/leads/pipelines").await;
    let main = pipelines.json["_embedded"]["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == PIPELINE)
        .cloned()
        .expect("main pipeline");
    assert_eq!(main["name"], "Клиенты ООО");
    assert_eq!(main["is_main"], true);
    let statuses: Vec<(i64, String)> = main["_embedded"]["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_i64().unwrap(),
                s["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(statuses.contains(&(NEW_REQUEST, "Заявка".into())));
    assert!(statuses.contains(&(142, "Успешно реализовано".into())));
    assert!(statuses.contains(&(143, "Закрыто и не реализовано".into())));
    assert_eq!(
        env.get(&format!("/api/v4/leads/pipelines/{PIPELINE}"))
            .await
            .json["id"],
        PIPELINE
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_like_amocrm() {
    let env = start().await;
    let missing = env.get("/api/v4/nothing-here").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json["title"], "Not Found");
    let wrong_method = env
        .send(
            env.http
                .delete(env.url("/api/v4/leads"))
                .bearer_auth(&env.token),
        )
        .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json["status"], 405);
    assert_eq!(wrong_method.content_type(), "application/problem+json");
    assert_eq!(env.get("/api/v4/leads/abc").await.status, 404);
    let _: Value = missing.json;
}

#[tokio::test]
async fn an_account_with_a_past_has_won_lost_and_open_deals_typed_phones_and_the_old_webhook() {
    let env = super::common::start().await;
    let made = env
        .handle()
        .seed_history(&amocrm_sandbox::History::default());
    let won = env
        .get("/api/v4/leads?filter[statuses][0][pipeline_id]=10226282&filter[statuses][0][status_id]=142&limit=250")
        .await;
    assert_eq!(won.status, 200, "{}", won.text);
    let deals = won.json["_embedded"]["leads"].as_array().unwrap();
    assert_eq!(deals.len(), 24);
    assert!(
        deals
            .iter()
            .all(|d| d["closed_at"].as_i64() < Some(env.handle().now()))
    );
    assert_eq!(made.won.len(), 20);
    assert_eq!((made.lost.len(), made.open.len()), (5, 5));
    assert!(
        made.contacts[0].1.starts_with("8 (916) "),
        "{:?}",
        made.contacts[0]
    );
    assert!(made.contacts[0].3.contains("Example-Zavod.RU"));
    let hooks = env.get("/api/v4/webhooks").await;
    assert_eq!(
        hooks.json["_embedded"]["webhooks"][0]["destination"],
        "https://api.td-rss.ru/webhook/amocrm"
    );
}
