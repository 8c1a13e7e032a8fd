//! Starting a sandbox for a test and talking to it.

use std::net::SocketAddr;

use amocrm_sandbox::{RunningSandbox, Sandbox, SandboxConfig, SandboxHandle};
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const PIPELINE: i64 = 10226282;
pub const NEW_REQUEST: i64 = 80953554;
pub const MANAGER: i64 = 12380450;
pub const FIELD_SERIAL: i64 = 712629;
pub const FIELD_MODEL: i64 = 712631;
pub const FIELD_TELEGRAM: i64 = 712633;

pub struct Env {
    pub running: RunningSandbox,
    pub token: String,
    pub http: reqwest::Client,
}

/// An answer: status, headers, raw body and the body as JSON (Null when empty or not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `(code, path)` of every validation error.
    pub fn violations(&self) -> Vec<(String, String)> {
        self.json["validation-errors"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|item| item["errors"].as_array().cloned().unwrap_or_default())
            .map(|e| {
                (
                    e["code"].as_str().unwrap_or("").to_string(),
                    e["path"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// Test settings: generous rate limit (tests of limits set their own), fast webhook retries.
pub fn test_config() -> SandboxConfig {
    SandboxConfig {
        requests_per_second: 10_000,
        webhook_retry_delays_ms: vec![50, 50, 50],
        webhook_timeout_ms: 500,
        ..SandboxConfig::default()
    }
}

pub async fn start() -> Env {
    start_with(test_config()).await
}

pub async fn start_with(cfg: SandboxConfig) -> Env {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let running = Sandbox::start(cfg, addr).await.expect("sandbox starts");
    let token = running
        .state
        .new_long_lived_token(running.state.now() + 365 * 86_400);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Env {
        running,
        token,
        http,
    }
}

impl Env {
    pub fn handle(&self) -> &SandboxHandle {
        &self.running.state
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.running.url, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.expect("request reaches the sandbox");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(self.url(path)).bearer_auth(&self.token))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.http
                .patch(self.url(path))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> Answer {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// Creates one lead through `/leads/complex` and returns its id.
    pub async fn create_lead(&self, name: &str) -> i64 {
        let a = self
            .post(
                "/api/v4/leads/complex",
                serde_json::json!([{ "name": name, "pipeline_id": PIPELINE, "status_id": NEW_REQUEST }]),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json[0]["id"].as_i64().unwrap()
    }
}
