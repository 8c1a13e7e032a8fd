//! The HTTP API keeps `api/openapi.yaml`: its routes are template.yaml's, its examples are the
//! sample events' bodies, and every error case of every route answers a documented status with
//! the one error body (the front of every stack checks each answer; this file drives the cases
//! no other test reaches). CORS: each route group admits its own origins and nothing else.

use std::collections::BTreeSet;

use e2e::*;
use local_stack::contract::{Answer, CONTRACT};
use serde_json::{Value, json};

/// `(METHOD, path)` of every HttpApi event in template.yaml; `$default` for one without both.
fn template_routes() -> BTreeSet<(String, String)> {
    let template: serde_norway::Value =
        serde_norway::from_str(&repo_file("template.yaml")).expect("template.yaml parses");
    let mut routes = BTreeSet::new();
    let resources = template["Resources"].as_mapping().expect("Resources");
    for (_, resource) in resources {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let props = &event["Properties"];
            match (props["Method"].as_str(), props["Path"].as_str()) {
                (Some(m), Some(p)) => routes.insert((m.to_ascii_uppercase(), p.to_string())),
                _ => routes.insert(("ANY".into(), "$default".into())),
            };
        }
    }
    routes
}

#[test]
fn the_documents_routes_are_the_templates() {
    let mut documented: BTreeSet<(String, String)> = CONTRACT.routes().into_iter().collect();
    // API Gateway's `$default` route is the document's `x-unrouted` (404 and 405).
    assert!(CONTRACT.document()["x-unrouted"]["404"].is_object());
    assert!(CONTRACT.document()["x-unrouted"]["405"].is_object());
    documented.insert(("ANY".into(), "$default".into()));
    assert_eq!(documented, template_routes());
    assert!(documented.len() >= 12, "{documented:?}");
}

/// Each request example is the body of the sample event it names, and fits its schema.
#[test]
fn the_examples_are_the_sample_events_and_fit_the_request_schemas() {
    let doc = CONTRACT.document();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let json_body = &op["requestBody"]["content"]["application/json"];
            for (name, example) in json_body["examples"].as_object().into_iter().flatten() {
                let event: Value = serde_json::from_str(&repo_file(&format!(
                    "events/{}",
                    example["x-event"].as_str().unwrap()
                )))
                .unwrap();
                let body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
                assert_eq!(example["value"], body, "{method} {path} example {name}");
                let pointer = format!(
                    "/paths/{}/{method}/requestBody/content/application~1json/schema",
                    path.replace('/', "~1")
                );
                CONTRACT
                    .fits(&pointer, &body)
                    .unwrap_or_else(|e| panic!("{method} {path} example {name}: {e}"));
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 4);
    // The invalid sample is invalid by the schema too (intent and name).
    let invalid: Value =
        serde_json::from_str(&repo_file("events/lead-ingest-post-leads-invalid.json")).unwrap();
    let body: Value = serde_json::from_str(invalid["body"].as_str().unwrap()).unwrap();
    assert!(
        CONTRACT
            .fits(
                "/paths/~1leads/post/requestBody/content/application~1json/schema",
                &body
            )
            .is_err()
    );
}

/// The check itself refuses what breaks the document.
#[test]
fn the_check_refuses_an_undocumented_status_a_wrong_body_and_a_missing_header() {
    let json_headers = || {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h
    };
    let answer = |status, headers: &'static http::HeaderMap, body: &'static str| Answer {
        method: "POST",
        path: "/leads",
        status,
        headers,
        body: body.as_bytes(),
    };
    let headers: &'static http::HeaderMap = Box::leak(Box::new(json_headers()));
    let good = r#"{"error":"validation_failed","message":"Проверьте поля","fields":[{"field":"phone","message":"Неверный телефон"}],"correlation_id":"01JDQ5Z8W3M4N5P6Q7R8S9T0V1"}"#;
    CONTRACT.check(answer(400, headers, good)).unwrap();
    for (status, body, why) in [
        (418, good, "status not documented"),
        (
            400,
            r#"{"error":"validation_failed","fields":[]}"#,
            "no message, empty fields",
        ),
        (
            400,
            r#"{"error":"x","message":"in English","correlation_id":"01JDQ5Z8W3M4N5P6Q7R8S9T0V1"}"#,
            "message not Russian",
        ),
        (503, good, "503 without Retry-After"),
        (
            202,
            r#"{"lead_id":"nope","status":"accepted"}"#,
            "not a ULID",
        ),
    ] {
        assert!(
            CONTRACT.check(answer(status, headers, body)).is_err(),
            "{why}"
        );
    }
}

struct Case {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    error: Option<&'static str>,
}

fn case(
    method: &'static str,
    path: &'static str,
    status: u16,
    error: Option<&'static str>,
) -> Case {
    Case {
        method,
        path,
        headers: Vec::new(),
        body: Vec::new(),
        status,
        error,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn json(self, body: Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string().into_bytes())
    }

    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

/// Every error case of every route, through the front (which checks each answer against the
/// document); here the status and the error code are checked too.
#[tokio::test]
async fn every_route_answers_its_errors_in_the_one_documented_body() {
    let stack = stack().await;
    let admin = stack.options.admin_key.clone();
    let webhook_token = stack.options.webhook_token.clone();
    let tma = format!("tma {}", init_data(&stack, 4711, 0));
    let lead = site_lead("Иван Петров", "+79123456789");
    let cases = vec![
        case("POST", "/leads", 202, None).json(lead.clone()),
        case("POST", "/leads", 400, Some("validation_failed"))
            .json(json!({"source": "site", "name": "Иван", "phone": "12"})),
        case("POST", "/leads", 400, Some("malformed_body"))
            .header("content-type", "application/json")
            .body(b"{not json".to_vec()),
        case("POST", "/leads", 400, Some("validation_failed"))
            .json(lead.clone())
            .header("idempotency-key", "x".repeat(201)),
        case("POST", "/leads", 401, Some("telegram_auth_required"))
            .json(json!({"source": "tma", "name": "Сергей", "telegram_id": 5})),
        case("POST", "/leads", 401, Some("unauthorized"))
            .json(lead.clone())
            .header("authorization", "tma hash=forged"),
        case("POST", "/leads", 403, Some("origin_not_allowed"))
            .json(lead.clone())
            .header("origin", "https://evil.example"),
        case("POST", "/leads", 413, Some("payload_too_large"))
            .header("content-type", "application/json")
            .body(vec![b' '; 70 * 1024]),
        case("POST", "/leads", 415, Some("unsupported_media_type"))
            .header("content-type", "text/plain")
            .body(b"hi".to_vec()),
        case("OPTIONS", "/leads", 204, None).header("origin", "https://td-rss.ru"),
        case("OPTIONS", "/leads", 403, Some("origin_not_allowed"))
            .header("origin", "https://evil.example"),
        case("PUT", "/leads", 405, Some("method_not_allowed")),
        case("GET", "/no-such-route", 404, Some("not_found")),
        case("GET", "/ingest/test-crm", 200, None).header("x-admin-key", admin.clone()),
        case("GET", "/ingest/test-crm", 401, Some("unauthorized")),
        case("GET", "/health", 401, Some("unauthorized")).header("x-admin-key", "wrong"),
        case("POST", "/webhook/amocrm", 401, Some("unauthorized"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b"a=b".to_vec()),
        case("GET", "/oauth/start", 401, Some("unauthorized")),
        case("GET", "/oauth/start", 302, None).header("x-admin-key", admin.clone()),
        case("GET", "/webhook/amocrm", 400, None),
        case("DELETE", "/webhook/amocrm", 405, Some("method_not_allowed")),
        case("GET", "/passport", 200, None).header("authorization", tma.clone()),
        case("GET", "/passport", 401, Some("unauthorized")),
        case("GET", "/passport", 403, Some("origin_not_allowed"))
            .header("authorization", tma.clone())
            .header("origin", "https://td-rss.ru.evil.example"),
        case("OPTIONS", "/passport", 204, None).header("origin", "https://tma.td-rss.ru"),
        case(
            "OPTIONS",
            "/passport/service-requests",
            403,
            Some("origin_not_allowed"),
        )
        .header("origin", "https://evil.example"),
        case(
            "POST",
            "/passport/service-requests",
            400,
            Some("malformed_body"),
        )
        .header("authorization", tma.clone())
        .body(b"[]".to_vec()),
        case(
            "POST",
            "/passport/service-requests",
            400,
            Some("validation_failed"),
        )
        .header("authorization", tma.clone())
        .json(json!({"message": "ТО"})),
        case(
            "POST",
            "/passport/service-requests",
            404,
            Some("unknown_serial"),
        )
        .header("authorization", tma.clone())
        .json(json!({"serial": "NOPE-1"})),
        case(
            "POST",
            "/passport/service-requests",
            413,
            Some("payload_too_large"),
        )
        .header("authorization", tma.clone())
        .body(vec![b' '; 17 * 1024]),
        case(
            "POST",
            "/passport/service-requests",
            400,
            Some("validation_failed"),
        )
        .header("authorization", tma.clone())
        .header("idempotency-key", " ")
        .json(json!({"serial": "X"})),
        case("PATCH", "/passport", 405, Some("method_not_allowed")),
    ];
    let mut webhook_body = Vec::new();
    webhook_body
        .extend_from_slice(b"leads%5Bstatus%5D%5B0%5D%5Bid%5D=1&account%5Bsubdomain%5D=other");
    let cases = cases.into_iter().chain([
        case("POST", "/webhook/amocrm", 401, Some("wrong_account"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(webhook_body),
        case("POST", "/webhook/amocrm", 400, Some("not_a_webhook"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b"hello=world".to_vec()),
    ]);
    // The 302 of /oauth/start is the answer, not a page to follow.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut checked = 0;
    for c in cases {
        let method: reqwest::Method = c.method.parse().unwrap();
        let mut url = format!("{}{}", stack.api_url, c.path);
        if c.path == "/webhook/amocrm" && c.method == "POST" && c.error != Some("unauthorized") {
            url.push_str(&format!("?token={webhook_token}"));
        }
        let mut req = client.request(method, &url).body(c.body.clone());
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let what = format!("{} {} {:?}", c.method, c.path, c.error);
        assert_eq!(status, c.status, "{what}: {text}");
        if let Some(code) = c.error {
            let body: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
            assert_eq!(body["error"], code, "{what}");
            assert_eq!(
                body["correlation_id"].as_str(),
                headers
                    .get("x-correlation-id")
                    .and_then(|v| v.to_str().ok()),
                "{what}: the body's id is the header's"
            );
        }
        if status == 405 {
            assert!(headers.contains_key("allow"), "{what}");
        }
        checked += 1;
    }
    assert_eq!(checked, 34);
    let log = stack
        .contract
        .as_ref()
        .expect("the stack checks the contract");
    assert!(
        log.violations.lock().unwrap().is_empty(),
        "{:?}",
        log.violations.lock().unwrap()
    );
}

/// 503 with Retry-After when the lead cannot be stored (the leads table is gone).
#[tokio::test]
async fn a_lead_that_cannot_be_stored_is_503_with_retry_after() {
    let stack = stack().await;
    stack
        .aws
        .dynamodb
        .delete_table()
        .table_name(&stack.resources.leads_table)
        .send()
        .await
        .unwrap();
    let resp = http()
        .post(format!("{}/leads", stack.api_url))
        .header("content-type", "application/json")
        .body(site_lead("Иван Петров", "+79123456789").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body["message"].as_str().unwrap().contains("Повторите"));
}

/// Each group admits its own origins: the site's may post leads but not read passports, the
/// Mini App's the other way round; allowed origins may read Retry-After and the correlation id.
#[tokio::test]
async fn cors_admits_each_route_groups_own_origins_only() {
    let stack = stack_with(|o| {
        o.config_overrides = vec![
            (
                "SITE_ORIGINS".into(),
                "https://td-rss.ru,https://www.td-rss.ru".into(),
            ),
            ("TMA_ORIGINS".into(), "https://tma.td-rss.ru".into()),
        ];
    })
    .await;
    let client = http();
    let preflight = |path: &str, origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", stack.api_url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let site = preflight("/leads", "https://www.td-rss.ru").await.unwrap();
    assert_eq!(site.status().as_u16(), 204);
    let h = site.headers();
    assert_eq!(h["access-control-allow-origin"], "https://www.td-rss.ru");
    assert_eq!(h["access-control-max-age"], "7200");
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    assert_eq!(
        h["access-control-expose-headers"],
        "Retry-After, X-Correlation-Id"
    );
    for (path, origin) in [
        ("/leads", "https://tma.td-rss.ru"),
        ("/passport", "https://td-rss.ru"),
        ("/passport/service-requests", "https://www.td-rss.ru"),
        ("/leads", "https://td-rss.ru.evil.example"),
    ] {
        let refused = preflight(path, origin).await.unwrap();
        assert_eq!(refused.status().as_u16(), 403, "{path} from {origin}");
        assert!(
            !refused
                .headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{path} from {origin}: {:?}",
            refused.headers()
        );
    }
    let tma = preflight("/passport/service-requests", "https://tma.td-rss.ru")
        .await
        .unwrap();
    assert_eq!(tma.status().as_u16(), 204);
    assert_eq!(
        tma.headers()["access-control-allow-origin"],
        "https://tma.td-rss.ru"
    );

    let posted = client
        .post(format!("{}/leads", stack.api_url))
        .header("origin", "https://td-rss.ru")
        .header("content-type", "application/json")
        .body(site_lead("Иван Петров", "+79123456789").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 202);
    assert_eq!(
        posted.headers()["access-control-allow-origin"],
        "https://td-rss.ru"
    );
    assert_eq!(
        posted.headers()["access-control-expose-headers"],
        "Retry-After, X-Correlation-Id"
    );
    assert!(posted.headers().contains_key("x-correlation-id"));
    let before = table_items(&stack).await;
    let foreign = client
        .post(format!("{}/leads", stack.api_url))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("source=site&name=X&phone=%2B79123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(
        foreign.status().as_u16(),
        403,
        "a form posted from another site"
    );
    assert_eq!(table_items(&stack).await, before, "and nothing stored");
}
