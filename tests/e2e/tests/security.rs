//! The security pass, through the routes of template.yaml: every protected endpoint refuses
//! missing and wrong credentials and changes nothing; every route with a body refuses one over
//! its limit; what customers type cannot inject markup or headers into the sales mail, the
//! amoCRM lead or the OAuth pages.

use e2e::*;
use local_stack::LocalStack;
use serde_json::{Value, json};

const WON: i64 = 142;
const NEW_REQUEST: i64 = 80953554;

/// Everything a request could have changed: items per table, the sandbox's entities, the
/// token endpoint, the mail sent.
async fn footprint(stack: &LocalStack) -> Value {
    let r = &stack.resources;
    let mut tables = serde_json::Map::new();
    for table in [
        &r.leads_table,
        &r.inbox_table,
        &r.passport_table,
        &r.state_table,
    ] {
        let out = stack
            .aws
            .dynamodb
            .scan()
            .table_name(table)
            .send()
            .await
            .expect("scan");
        tables.insert(table.clone(), json!(out.count()));
    }
    let sb = &stack.sandbox.state;
    json!({
        "tables": tables,
        "amo_leads": sb.leads().len(),
        "amo_contacts": sb.contacts().len(),
        "amo_notes": sb.notes().len(),
        "amo_webhooks": sb.webhooks().len(),
        "token_endpoint_calls": sb.token_endpoint_calls(),
        "mail": stack.moto.sent_mail().await.len(),
    })
}

/// One request as a test case: what it is, how to send it.
struct Case {
    what: String,
    req: reqwest::RequestBuilder,
    expected: &'static [u16],
}

fn case(what: impl Into<String>, req: reqwest::RequestBuilder) -> Case {
    Case {
        what: what.into(),
        req,
        expected: &[401, 403],
    }
}

#[tokio::test]
async fn every_protected_endpoint_refuses_missing_and_wrong_credentials_and_changes_nothing() {
    let stack = stack().await;
    // Some state to protect: a delivered lead whose deal is won, so a passport exists.
    let mut body = site_lead("Иван Петров", "+79123456789");
    body["telegram_id"] = json!(4242);
    assert_eq!(post_lead(&stack, &body).await.0, 202);
    stack.deliver_pending().await.unwrap();
    let amo_id = stack.sandbox.state.leads()[0]["id"].as_i64().unwrap();
    move_lead(&stack, amo_id, WON).await;
    let hook = format!(
        "account%5Bsubdomain%5D=new599bd9d13818a&account%5Bid%5D={}\
         &leads%5Bstatus%5D%5B0%5D%5Bid%5D={amo_id}&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D={WON}\
         &leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D={NEW_REQUEST}&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=10226282",
        stack.options.sandbox.account_id
    );
    let token = stack.options.webhook_token.clone();
    assert_eq!(post_webhook(&stack, &token, &hook, None).await.0, 200);
    stack.deliver_pending().await.unwrap();
    let good_auth = format!("tma {}", init_data(&stack, 4242, 10));
    assert_eq!(get_passport(&stack, &good_auth).await.0, 200);

    let before = footprint(&stack).await;
    let api = &stack.api_url;
    let admin = stack.options.admin_key.clone();
    let client = http();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = good_auth.replace("4242", "4243");
    let other_bot = format!(
        "tma {}",
        shared::telegram::sign_init_data(
            &[
                ("auth_date", &chrono_now().to_string()),
                ("user", &json!({"id": 4242, "first_name": "X"}).to_string()),
            ],
            "999:another-bot",
        )
    );
    let expired = format!("tma {}", init_data(&stack, 4242, 25 * 3600));
    let service_body = json!({"serial": "SN-1001", "message": "Стучит шпиндель"}).to_string();

    let mut cases = Vec::new();
    // Admin-key routes: no key, a wrong one, the right one in the wrong place or with extra bytes.
    for (route, method) in [
        ("/ingest/test-crm", "GET"),
        ("/health", "GET"),
        ("/oauth/start", "GET"),
    ] {
        let url = format!("{api}{route}");
        let m: reqwest::Method = method.parse().unwrap();
        cases.push(case(
            format!("{route} without a key"),
            no_redirects.request(m.clone(), &url),
        ));
        for wrong in [
            "wrong".to_string(),
            String::new(),
            format!("{admin}x"),
            admin[..admin.len() - 1].to_string(),
            admin.to_uppercase(),
        ] {
            cases.push(case(
                format!("{route} with key {wrong:?}"),
                no_redirects
                    .request(m.clone(), &url)
                    .header("x-admin-key", wrong),
            ));
        }
        cases.push(case(
            format!("{route} with the key as a bearer"),
            no_redirects.request(m.clone(), &url).bearer_auth(&admin),
        ));
        cases.push(case(
            format!("{route} with the key in the query"),
            no_redirects
                .request(m.clone(), &url)
                .query(&[("admin_key", &admin), ("key", &admin)]),
        ));
    }
    // The webhook: no token, wrong ones, the token as a header instead of the query.
    let webhook = format!("{api}/webhook/amocrm");
    let form = |req: reqwest::RequestBuilder| {
        req.header("content-type", "application/x-www-form-urlencoded")
            .body(hook.clone())
    };
    cases.push(case("webhook without a token", form(client.post(&webhook))));
    for wrong in [
        "wrong".to_string(),
        String::new(),
        format!("{token}x"),
        token[..token.len() - 1].to_string(),
    ] {
        cases.push(case(
            format!("webhook with token {wrong:?}"),
            form(client.post(&webhook).query(&[("token", &wrong)])),
        ));
    }
    cases.push(case(
        "webhook with the token as a header",
        form(client.post(&webhook).header("x-webhook-token", &token)),
    ));
    // The Mini App routes: no initData, forged, expired, another bot's, the wrong scheme.
    for (what, auth) in [
        ("no initData", None),
        ("forged initData", Some(format!("tma {forged}"))),
        ("another bot's initData", Some(other_bot.clone())),
        ("expired initData", Some(expired.clone())),
        (
            "initData as a bearer",
            Some(good_auth.replace("tma ", "Bearer ")),
        ),
        ("garbage", Some("tma a=b&hash=00".into())),
    ] {
        let with = |req: reqwest::RequestBuilder| match &auth {
            Some(a) => req.header("authorization", a),
            None => req,
        };
        cases.push(case(
            format!("GET /passport with {what}"),
            with(client.get(format!("{api}/passport"))),
        ));
        cases.push(case(
            format!("POST /passport/service-requests with {what}"),
            with(
                client
                    .post(format!("{api}/passport/service-requests"))
                    .header("content-type", "application/json")
                    .body(service_body.clone()),
            ),
        ));
    }

    let mut failures = Vec::new();
    for c in cases {
        let resp = c.req.send().await.expect(&c.what);
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !c.expected.contains(&status) {
            failures.push(format!("{}: {status} {text}", c.what));
        }
        for secret in [&admin, &token, &stack.options.telegram_bot_token] {
            assert!(
                !text.contains(secret.as_str()),
                "{}: echoed a secret",
                c.what
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    stack.deliver_pending().await.unwrap();
    assert_eq!(
        footprint(&stack).await,
        before,
        "a refused call changed something"
    );
}

#[tokio::test]
async fn every_route_with_a_body_refuses_one_over_its_limit_and_stores_nothing() {
    let stack = stack().await;
    let before = footprint(&stack).await;
    let api = &stack.api_url;
    let client = http();
    let auth = format!("tma {}", init_data(&stack, 4242, 10));
    // Each body is valid in form, just larger than the route's limit.
    let lead = format!(
        r#"{{"source":"site","name":"Иван","phone":"+79123456789","message":"{}"}}"#,
        "a".repeat(64 * 1024)
    );
    let hook = format!(
        "account%5Bsubdomain%5D=new599bd9d13818a&account%5Bid%5D=31234567&leads%5Bstatus%5D%5B0%5D%5Bid%5D=1&pad={}",
        "a".repeat(1024 * 1024)
    );
    let service = format!(
        r#"{{"serial":"SN-1","message":"{}"}}"#,
        "a".repeat(16 * 1024)
    );
    let token = stack.options.webhook_token.clone();
    for (what, req, limit) in [
        (
            "POST /leads",
            client
                .post(format!("{api}/leads"))
                .header("content-type", "application/json")
                .body(lead),
            64 * 1024,
        ),
        (
            "POST /webhook/amocrm",
            client
                .post(format!("{api}/webhook/amocrm"))
                .query(&[("token", &token)])
                .header("content-type", "application/x-www-form-urlencoded")
                .body(hook),
            1024 * 1024,
        ),
        (
            "POST /passport/service-requests",
            client
                .post(format!("{api}/passport/service-requests"))
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(service),
            16 * 1024,
        ),
    ] {
        let (status, body) = read(req.send().await.expect(what)).await;
        assert_eq!(status, 413, "{what}: {body}");
        assert_eq!(body["limit_bytes"], limit, "{what}: {body}");
    }
    stack.deliver_pending().await.unwrap();
    assert_eq!(footprint(&stack).await, before);
}

#[tokio::test]
async fn markup_quotes_and_line_breaks_from_customers_inject_nothing() {
    let stack = stack().await;
    let hostile_name = "Иван\r\nBcc: victim@example.com\r\n<script>alert(\"x\")</script>";
    let mut body = site_lead(hostile_name, "+79123456789");
    body["message"] =
        json!("</td></tr><img src=x onerror=alert(1)>\r\nSubject: взлом\n' OR '1'='1 \"кавычки\"");
    body["email"] = json!("ivan@example.ru");
    body["equipment"] = json!({"model": "<b>16К20</b>", "serial": "SN-1\r\nX-Evil: 1"});
    let (status, resp) = post_lead(&stack, &body).await;
    assert_eq!(status, 202, "{resp}");
    let lead_id = resp["lead_id"].as_str().unwrap().to_string();
    stack.deliver_pending().await.unwrap();

    let mail = stack.moto.sent_mail().await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    let m = &mail[0];
    let subject = m["subject"].as_str().unwrap_or_default();
    assert!(subject.contains(&lead_id), "{subject}");
    assert!(
        !subject.contains('\r') && !subject.contains('\n'),
        "line break in the subject: {subject:?}"
    );
    // The only recipient is the sales mailbox, however the name was written.
    let recipients = m["destinations"].to_string() + &m["destination"].to_string();
    assert!(!recipients.contains("victim"), "{m}");
    assert!(recipients.contains("zakaz@tdrusstankosbyt.ru"), "{m}");
    let html = m["body"].as_str().unwrap_or_default();
    for raw in ["<script>", "<img src=x", "</td></tr><img", "<b>16К20"] {
        assert!(
            !html.contains(raw),
            "raw markup {raw:?} in the mail: {html}"
        );
    }
    assert!(
        html.contains("&lt;script&gt;") && html.contains("&lt;img"),
        "{html}"
    );

    // amoCRM: the lead name is one line; the note is plain text (shown as text by amoCRM).
    let leads = stack.sandbox.state.leads();
    assert_eq!(leads.len(), 1);
    let name = leads[0]["name"].as_str().unwrap();
    assert!(
        !name.contains('\r') && !name.contains('\n'),
        "line break in the amoCRM lead name: {name:?}"
    );
    assert!(name.contains(&lead_id));
    let notes = stack.sandbox.state.notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].to_string().contains(&format!("Заявка {lead_id}")),
        "{}",
        notes[0]
    );
    // No header-shaped line the customer wrote reaches any header of ours: the sandbox saw
    // nothing but our own requests.
    for r in stack.sandbox.state.requests() {
        assert!(!r.path.contains('\n') && !r.path.contains('\r'), "{r:?}");
    }
}

#[tokio::test]
async fn the_oauth_pages_escape_hostile_parameters() {
    let stack = stack().await;
    let hostile = "<script>alert(document.cookie)</script>\"'><img src=x onerror=alert(1)>";
    for query in [
        vec![("error", hostile), ("error_description", hostile)],
        vec![("error", "access_denied"), ("state", hostile)],
        vec![("code", hostile), ("state", hostile), ("referer", hostile)],
        vec![
            ("code", "abc"),
            ("state", "s"),
            ("referer", "new599bd9d13818a.amocrm.ru"),
            ("client_id", hostile),
        ],
    ] {
        let resp = http()
            .get(format!("{}/webhook/amocrm", stack.api_url))
            .query(&query)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let page = resp.text().await.unwrap();
        assert!((400..500).contains(&status), "{query:?}: {status} {page}");
        for raw in ["<script>", "<img src=x", "\"'><"] {
            assert!(
                !page.contains(raw),
                "{query:?}: raw {raw:?} in the page: {page}"
            );
        }
        if ctype.starts_with("text/html") {
            assert!(
                page.contains("<html") || page.contains("<!DOCTYPE"),
                "{page}"
            );
        }
    }
    // Nothing was exchanged or stored for any of them.
    assert_eq!(stack.sandbox.state.token_endpoint_calls(), 0);
}

#[tokio::test]
async fn rotated_secrets_take_effect_on_warm_functions_without_a_restart() {
    let stack = stack().await;
    let hook = "account%5Bsubdomain%5D=new599bd9d13818a&account%5Bid%5D=31234567\
                &leads%5Bstatus%5D%5B0%5D%5Bid%5D=1&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=80953554\
                &leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=10226282";
    let old = stack.options.clone();
    // Warm: every function has read the app secret and served a request with it.
    assert_eq!(
        post_webhook(&stack, &old.webhook_token, hook, Some("r1"))
            .await
            .0,
        200
    );
    assert_eq!(get_health(&stack, Some(&old.admin_key)).await.0, 200);
    assert_eq!(
        get_passport(&stack, &format!("tma {}", init_data(&stack, 1, 0)))
            .await
            .0,
        200
    );

    // The operator rotates all three in Secrets Manager.
    let bot = "654321:rotated-telegram-bot-token";
    stack
        .aws
        .secrets
        .put_secret_value()
        .secret_id(&stack.resources.app_secret_id)
        .secret_string(
            json!({
                "admin_key": "rotated-admin-key",
                "webhook_token": "rotated-webhook-token",
                "telegram_bot_token": bot,
                "amocrm_client_secret": stack.options.sandbox.client_secret,
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();

    // The new ones work at once; after them the old ones are refused.
    assert_eq!(
        post_webhook(&stack, "rotated-webhook-token", hook, Some("r2"))
            .await
            .0,
        200
    );
    assert_eq!(
        post_webhook(&stack, &old.webhook_token, hook, Some("r3"))
            .await
            .0,
        401
    );
    assert_eq!(get_health(&stack, Some("rotated-admin-key")).await.0, 200);
    assert_eq!(get_health(&stack, Some(&old.admin_key)).await.0, 401);
    let signed_with = |token: &str| {
        let user = json!({"id": 1, "first_name": "Иван"}).to_string();
        let auth_date = chrono_now().to_string();
        format!(
            "tma {}",
            shared::telegram::sign_init_data(&[("auth_date", &auth_date), ("user", &user)], token)
        )
    };
    assert_eq!(get_passport(&stack, &signed_with(bot)).await.0, 200);
    assert_eq!(
        get_passport(&stack, &signed_with(&old.telegram_bot_token))
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn a_webhook_token_rotated_with_its_predecessor_kept_loses_no_webhook_meanwhile() {
    let stack = stack().await;
    let hook = "account%5Bsubdomain%5D=new599bd9d13818a&account%5Bid%5D=31234567\
                &leads%5Bstatus%5D%5B0%5D%5Bid%5D=1&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=80953554\
                &leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=10226282";
    let old = stack.options.webhook_token.clone();
    assert_eq!(
        post_webhook(&stack, &old, hook, Some("rotation-g1"))
            .await
            .0,
        200
    );
    let rotate = |previous: &str| {
        let mut secret = json!({
            "admin_key": stack.options.admin_key,
            "webhook_token": "rotated-webhook-token",
            "telegram_bot_token": stack.options.telegram_bot_token,
            "amocrm_client_secret": stack.options.sandbox.client_secret,
        });
        secret["webhook_token_previous"] = json!(previous);
        let secrets = stack.aws.secrets.clone();
        let id = stack.resources.app_secret_id.clone();
        async move {
            secrets
                .put_secret_value()
                .secret_id(id)
                .secret_string(secret.to_string())
                .send()
                .await
                .unwrap();
        }
    };
    // Rotated with the old token kept as the previous one: amoCRM, still posting with the
    // old token until `setup` moves its subscription, is accepted, and so is the new token.
    rotate(&old).await;
    assert_eq!(
        post_webhook(&stack, "rotated-webhook-token", hook, Some("rotation-g2"))
            .await
            .0,
        200
    );
    assert_eq!(
        post_webhook(&stack, &old, hook, Some("rotation-g3"))
            .await
            .0,
        200
    );
    assert_eq!(
        post_webhook(&stack, "guess", hook, Some("rotation-g4"))
            .await
            .0,
        401
    );
    let stored = stack
        .aws
        .dynamodb
        .scan()
        .table_name(&stack.resources.inbox_table)
        .send()
        .await
        .unwrap()
        .count;
    assert_eq!(stored, 3, "g1, g2 and g3 stored, g4 not");
}
