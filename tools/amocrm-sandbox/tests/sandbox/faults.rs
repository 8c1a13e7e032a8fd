//! Injected faults: statuses, 429 in both styles, held answers.

use std::time::Duration;

use amocrm_sandbox::{Fault, RateLimitStyle};
use serde_json::json;

use super::common::start;

#[tokio::test]
async fn status_faults_fire_in_order_on_their_path_only() {
    let env = start().await;
    let h = env.handle();
    h.inject(Fault::Status {
        status: 503,
        count: 2,
        path: Some("/api/v4/leads/complex".into()),
    });
    h.inject(Fault::Status {
        status: 500,
        count: 1,
        path: None,
    });
    // The complex fault does not match /account; the path-less one does.
    let internal = env.get("/api/v4/account").await;
    assert_eq!(internal.status, 500);
    assert_eq!(internal.json["title"], "ErrInternalServer");
    assert_eq!(env.get("/api/v4/account").await.status, 200);
    let body = json!([{ "name": "x" }]);
    let first = env.post("/api/v4/leads/complex", body.clone()).await;
    assert_eq!(first.status, 503);
    assert!(
        first.text.contains("503 Service Temporarily Unavailable")
            || first.text.contains("503 Service Unavailable")
    );
    assert_eq!(
        env.post("/api/v4/leads/complex", body.clone()).await.status,
        503
    );
    assert!(h.leads().is_empty(), "a faulted request changes nothing");
    assert_eq!(env.post("/api/v4/leads/complex", body).await.status, 200);
    assert!(h.pending_faults().is_empty());
}

#[tokio::test]
async fn rate_limit_faults_in_html_and_json() {
    let env = start().await;
    let h = env.handle();
    h.inject(Fault::RateLimit {
        count: 1,
        style: RateLimitStyle::Json,
        retry_after: Some(2),
        path: None,
    });
    h.inject(Fault::RateLimit {
        count: 1,
        style: RateLimitStyle::Html,
        retry_after: None,
        path: None,
    });
    let json_style = env.get("/api/v4/leads").await;
    assert_eq!(json_style.status, 429);
    assert_eq!(
        json_style.json,
        json!({
            "title": "Too Many Requests",
            "type": "https://httpstatus.es/429",
            "status": 429,
            "detail": "You have sent too many requests in a given amount of time. Please try again later.",
            "retry_after": 2
        })
    );
    let html = env.get("/api/v4/leads").await;
    assert_eq!(html.status, 429);
    assert!(html.text.contains("<html>"));
    assert!(html.headers.get("retry-after").is_none());
}

#[tokio::test]
async fn a_held_answer_times_the_client_out_but_the_lead_exists() {
    let env = start().await;
    env.handle().inject(Fault::Timeout {
        count: 1,
        delay_ms: 1_500,
        applied: true,
        path: Some("/api/v4/leads/complex".into()),
    });
    let err = env
        .http
        .post(env.url("/api/v4/leads/complex"))
        .bearer_auth(&env.token)
        .timeout(Duration::from_millis(300))
        .json(&json!([{ "name": "Потерянный ответ" }]))
        .send()
        .await
        .expect_err("the client gives up");
    assert!(err.is_timeout());
    assert_eq!(
        env.handle().leads().len(),
        1,
        "the effect happened although the answer was lost"
    );

    env.handle().inject(Fault::Timeout {
        count: 1,
        delay_ms: 200,
        applied: false,
        path: None,
    });
    let a = env
        .post("/api/v4/leads/complex", json!([{ "name": "x" }]))
        .await;
    assert_eq!(a.status, 504);
    assert_eq!(env.handle().leads().len(), 1);
}
