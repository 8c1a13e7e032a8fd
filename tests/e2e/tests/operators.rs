//! Operators' tools against the local stack: `setup` makes the sandbox account ready (fields,
//! webhook) idempotently, `doctor` finds a wrong field id and a revoked token with the right
//! fix, parked leads and webhook events are listed and re-driven once the cause is fixed, and
//! `GET /health` turns 503 with the reason when amoCRM refuses the token.

use std::time::Duration;

use chrono::Utc;
use e2e::*;
use local_stack::LocalStack;
use serde_json::{Value, json};
use shared::config::Config;
use shared::leads::LeadStatus;
use shared::ops::doctor::{Doctor, configured_fields};
use shared::ops::field_setup::MaintenanceFieldSetup;
use shared::ops::finding::{Finding, all_ok};
use shared::ops::parked::{self, RedriveOutcome, WorkKind};
use shared::ops::setup::{SetupReport, WebhookTarget, setup};
use shared::ports::LeadStore;
use shared::store::DynamoLeadStore;
use shared::wiring::{self, OperatorTools};

const WON: i64 = 142;

async fn tools(stack: &LocalStack, config: &Config) -> OperatorTools {
    wiring::operator_tools(config, &stack.aws)
        .await
        .expect("operator tools")
}

/// Our local webhook route, with the app secret's token added as setup does.
fn target(
    stack: &LocalStack,
    config: &Config,
    tools: &OperatorTools,
) -> Result<WebhookTarget, Finding> {
    let webhook_token = tools
        .app_secrets
        .as_ref()
        .ok()
        .and_then(|s| s.webhook_token.as_deref());
    WebhookTarget::resolve(
        Some(&format!("{}/webhook/amocrm", stack.api_url)),
        &config.amo.redirect_uri,
        webhook_token,
    )
}

async fn run_setup(stack: &LocalStack, config: &Config) -> SetupReport {
    let tools = tools(stack, config).await;
    let fields = MaintenanceFieldSetup { amo: &tools.amo };
    setup(&tools.amo, Some(&fields), &target(stack, config, &tools)).await
}

async fn run_doctor(stack: &LocalStack, config: &Config) -> Vec<Finding> {
    let tools = tools(stack, config).await;
    Doctor {
        config,
        amo: &tools.amo,
        tokens: &tools.tokens,
        app_secrets: &tools.app_secrets,
        webhook: &target(stack, config, &tools),
        fields: configured_fields(&config.amo),
        now: Utc::now(),
    }
    .run()
    .await
}

fn finding<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no finding {check}: {findings:#?}"))
}

/// The long-lived token the stack put into the token secret.
fn stack_token(stack: &LocalStack) -> String {
    serde_json::from_str::<Value>(&stack.resources.token_secret_json).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Nothing shown to an operator may carry the amoCRM token or the webhook token.
fn assert_no_secrets(stack: &LocalStack, shown: &str) {
    assert!(
        !shown.contains(&stack_token(stack)),
        "token leaked: {shown}"
    );
    assert!(
        !shown.contains(&stack.options.webhook_token),
        "webhook token leaked: {shown}"
    );
}

fn count_requests(requests: &[Value], method: &str, path: &str) -> usize {
    requests
        .iter()
        .filter(|r| r["method"] == method && r["path"] == path)
        .count()
}

#[tokio::test]
async fn setup_twice_registers_the_webhook_once_and_gives_the_same_field_ids_and_doctor_passes() {
    let stack = stack().await;
    let first = run_setup(&stack, &stack.config).await;
    assert!(all_ok(&first.findings), "{:#?}", first.findings);
    let vars: Vec<&str> = first.settings.iter().map(|s| s.var.as_str()).collect();
    assert_eq!(
        vars,
        vec![
            "AMOCRM_FIELD_NEXT_MAINTENANCE",
            "AMOCRM_FIELD_MAINTENANCE_STATUS",
            "AMOCRM_MAINTENANCE_STATUS_ENUMS"
        ]
    );
    let enums = &first.settings[2].value;
    assert!(
        enums.starts_with("ok=") && enums.contains(",overdue="),
        "{enums}"
    );

    let second = run_setup(&stack, &stack.config).await;
    assert!(all_ok(&second.findings), "{:#?}", second.findings);
    assert_eq!(
        second.settings,
        first
            .settings
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.note = s.note.replace("created now", "already there");
                s
            })
            .collect::<Vec<_>>()
    );
    assert!(
        second
            .findings
            .iter()
            .any(|f| f.detail.starts_with("already registered"))
    );

    // One subscription for our route with the app secret's token, one creation of each thing.
    let hooks = stack.sandbox.state.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(
        hooks[0]["destination"],
        format!(
            "{}/webhook/amocrm?token={}",
            stack.api_url, stack.options.webhook_token
        )
    );
    for event in ["add_lead", "update_lead", "status_lead"] {
        assert!(
            hooks[0]["settings"].to_string().contains(event),
            "{hooks:?}"
        );
    }
    let requests = sandbox_requests(&stack).await;
    assert_eq!(count_requests(&requests, "POST", "/api/v4/webhooks"), 1);
    assert_eq!(
        count_requests(&requests, "POST", "/api/v4/leads/custom_fields"),
        1
    );
    let fields = tools(&stack, &stack.config)
        .await
        .amo
        .lead_fields()
        .await
        .unwrap();
    let named = |name: &str| fields.iter().filter(|f| f.name == name).count();
    assert_eq!(
        (named("Дата следующего ТО"), named("Статус ТО")),
        (1, 1),
        "{fields:?}"
    );
    assert_no_secrets(&stack, &serde_json::to_string(&(&first, &second)).unwrap());

    let findings = run_doctor(&stack, &stack.config).await;
    assert!(all_ok(&findings), "{findings:#?}");
    for check in [
        "app secret",
        "token",
        "account",
        "pipeline",
        "status",
        "responsible user",
        "field AMOCRM_FIELD_SERIAL",
        "field AMOCRM_FIELD_MODEL",
        "field AMOCRM_FIELD_TELEGRAM_ID",
        "webhook",
    ] {
        finding(&findings, check);
    }
    assert!(
        finding(&findings, "token")
            .detail
            .contains("long-lived token"),
        "{findings:#?}"
    );
    assert_no_secrets(&stack, &serde_json::to_string(&findings).unwrap());

    // The subscription works: a lead won in amoCRM reaches our route with the right token.
    let mut body = site_lead("Иван Петров", "+79123456789");
    body["telegram_id"] = json!(4242);
    let (_, resp) = post_lead(&stack, &body).await;
    stack.deliver_pending().await.unwrap();
    let our_id = resp["lead_id"].as_str().unwrap();
    let amo_id = sandbox_list(&stack, "leads").await[0]["id"]
        .as_i64()
        .unwrap();
    assert!(
        sandbox_list(&stack, "leads").await[0]["name"]
            .as_str()
            .unwrap()
            .contains(our_id)
    );
    move_lead(&stack, amo_id, WON).await;
    let deliveries = stack
        .sandbox
        .state
        .wait_for_deliveries(1, Duration::from_secs(10))
        .await;
    assert!(!deliveries.is_empty());
    assert!(
        deliveries.iter().all(|d| d.statuses.contains(&Some(200))),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn doctor_names_a_wrong_field_id_and_the_variable_to_fix() {
    let stack = stack_with(|o| {
        o.config_overrides
            .push(("AMOCRM_FIELD_SERIAL".into(), "999999".into()))
    })
    .await;
    assert!(all_ok(&run_setup(&stack, &stack.config).await.findings));
    let findings = run_doctor(&stack, &stack.config).await;
    let serial = finding(&findings, "field AMOCRM_FIELD_SERIAL");
    assert!(!serial.ok);
    assert_eq!(
        serial.detail,
        "lead field 999999 does not exist in the account"
    );
    let fix = serial.fix.as_deref().unwrap();
    assert!(
        fix.starts_with("Set AMOCRM_FIELD_SERIAL=712629 (parameter AmoFieldSerial"),
        "{fix}"
    );
    // Only that one is wrong.
    let problems: Vec<&str> = findings
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.check.as_str())
        .collect();
    assert_eq!(problems, vec!["field AMOCRM_FIELD_SERIAL"], "{findings:#?}");
}

#[tokio::test]
async fn doctor_after_the_token_was_revoked_says_to_issue_a_new_one() {
    let stack = stack().await;
    stack.sandbox.state.revoke_integration();
    let findings = run_doctor(&stack, &stack.config).await;
    let token = finding(&findings, "token");
    assert!(!token.ok);
    assert!(
        token
            .detail
            .starts_with("long-lived token in secret local/amocrm-token"),
        "{token:?}"
    );
    assert!(token.detail.contains("401"), "{token:?}");
    let fix = token.fix.as_deref().unwrap();
    assert!(
        fix.contains("revoked or the integration was disabled")
            && fix.contains("Generate a new long-lived token")
            && fix.contains("Keys and scopes")
            && fix.contains("local/amocrm-token"),
        "{fix}"
    );
    // What needs a working token is not claimed to be fine.
    let skipped = finding(&findings, "account checks");
    assert!(!skipped.ok);
    for check in ["pipeline", "AMOCRM_FIELD_SERIAL", "webhook"] {
        assert!(skipped.detail.contains(check), "{skipped:?}");
    }
    assert_eq!(findings.len(), 3, "{findings:#?}");
    assert!(finding(&findings, "app secret").ok);
    assert_no_secrets(&stack, &serde_json::to_string(&findings).unwrap());
}

#[tokio::test]
async fn parked_leads_and_events_are_listed_and_redriven_once_the_cause_is_fixed() {
    let stack = stack_with(|o| {
        o.config_overrides
            .push(("AMOCRM_FIELD_SERIAL".into(), "999999".into()))
    })
    .await;
    let mut fixed = stack.config.clone();
    fixed.amo.field_serial = 712629;
    let fixed_worker = wiring::crm_worker(&fixed, &stack.aws).unwrap();
    let ops = tools(&stack, &stack.config).await;
    let work = ops.work.as_ref();
    assert!(all_ok(&run_setup(&stack, &fixed).await.findings));

    // amoCRM refuses the lead (unknown field): parked with the hint naming the variable.
    let mut body = site_lead("Иван Петров", "+79123456789");
    body["telegram_id"] = json!(4242);
    let (_, resp) = post_lead(&stack, &body).await;
    let lead_id = resp["lead_id"].as_str().unwrap().to_string();
    stack.deliver_pending().await.unwrap();
    let listed = parked::list(work, 100).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].kind, listed[0].id.as_str()),
        (WorkKind::Lead, lead_id.as_str())
    );
    assert_eq!(listed[0].source.as_deref(), Some("site"));
    assert!(
        listed[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("AMOCRM_FIELD_SERIAL")
    );
    let shown = parked::findings(&listed);
    assert!(
        shown[0]
            .fix
            .as_deref()
            .unwrap()
            .ends_with(&format!("Then: rss-ops parked redrive {lead_id}"))
    );
    assert!(
        !serde_json::to_string(&listed)
            .unwrap()
            .contains("79123456789")
    );

    // The configuration is fixed; one re-drive, repeated, delivers it once.
    let r = parked::redrive_one(work, &lead_id, Utc::now())
        .await
        .unwrap();
    assert_eq!(r.outcome, RedriveOutcome::Redriven);
    let again = parked::redrive_one(work, &lead_id, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        again.outcome,
        RedriveOutcome::NotParked {
            status: "pending".into()
        }
    );
    stack.deliver_pending_with(&fixed_worker).await.unwrap();
    let leads_store =
        DynamoLeadStore::new(stack.aws.dynamodb.clone(), &stack.resources.leads_table);
    let stored = leads_store.get(&lead_id).await.unwrap().unwrap();
    assert_eq!(stored.status, LeadStatus::Delivered);
    let amo_leads = sandbox_list(&stack, "leads").await;
    assert_eq!(amo_leads.len(), 1);
    assert_eq!(
        field_value(&amo_leads[0], 712629).as_deref(),
        Some("SN-1001")
    );
    assert!(parked::list(work, 100).await.unwrap().is_empty());
    let unknown = parked::redrive_one(work, "01JNOSUCHLEAD", Utc::now())
        .await
        .unwrap();
    assert_eq!(unknown.outcome, RedriveOutcome::NotFound);

    // The deal is won while amoCRM refuses reads (unpaid account): its webhooks park.
    inject(
        &stack,
        json!({"kind": "status", "status": 402, "count": 20, "path": "/api/v4/leads"}),
    )
    .await;
    let amo_id = amo_leads[0]["id"].as_i64().unwrap();
    move_lead(&stack, amo_id, WON).await;
    stack
        .sandbox
        .state
        .wait_for_deliveries(1, Duration::from_secs(10))
        .await;
    stack.deliver_pending_with(&fixed_worker).await.unwrap();
    stack.sandbox.state.clear_faults();
    let events = parked::list(work, 100).await.unwrap();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.kind == WorkKind::Event),
        "{events:?}"
    );
    assert!(
        events[0].hint.as_deref().unwrap().contains("not paid"),
        "{events:?}"
    );

    // Paid again: re-drive everything; the machine reaches the passport.
    let all = parked::redrive_all(work, Utc::now()).await.unwrap();
    assert_eq!(all.len(), events.len());
    assert!(all.iter().all(|r| r.outcome == RedriveOutcome::Redriven));
    stack.deliver_pending_with(&fixed_worker).await.unwrap();
    assert!(parked::list(work, 100).await.unwrap().is_empty());
    let (status, passport) =
        get_passport(&stack, &format!("tma {}", init_data(&stack, 4242, 10))).await;
    assert_eq!(status, 200);
    assert_eq!(
        passport["equipment"].as_array().map(Vec::len),
        Some(1),
        "{passport}"
    );
    assert!(
        parked::redrive_all(work, Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn health_needs_the_admin_key_and_is_fine_on_a_fresh_stack() {
    let stack = stack().await;
    assert_eq!(get_health(&stack, None).await.0, 401);
    assert_eq!(get_health(&stack, Some("wrong")).await.0, 401);
    let (status, body) = get_health(&stack, Some(&stack.options.admin_key)).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["reauthorization_required"], false);
    assert_eq!(body["token"]["kind"], "long_lived");
    assert!(
        body["token"]["days_left"].as_i64().unwrap() > 1800,
        "{body:#}"
    );
    assert_eq!(body["leads"], json!({"pending_stale": 0, "parked": 0}));
    assert_eq!(body["events"], json!({"pending_stale": 0, "parked": 0}));
    assert_eq!(body["last_amocrm_error"], Value::Null);
    assert_no_secrets(&stack, &body.to_string());
}

#[tokio::test]
async fn health_goes_503_with_the_reason_when_the_token_is_revoked_and_back_once_replaced() {
    let stack = stack().await;
    let key = stack.options.admin_key.clone();
    stack.sandbox.state.revoke_integration();
    let (_, resp) = post_lead(&stack, &site_lead("Иван", "+79123456789")).await;
    stack.deliver_pending().await.unwrap();

    let (status, body) = get_health(&stack, Some(&key)).await;
    assert_eq!(status, 503, "{body:#}");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["reauthorization_required"], true);
    let codes = reason_codes(&body);
    assert_eq!(
        codes,
        vec!["amocrm_token_rejected", "parked_leads"],
        "{body:#}"
    );
    let rejected = &body["reasons"][0];
    assert!(
        rejected["hint"]
            .as_str()
            .unwrap()
            .contains("Generate a new long-lived token"),
        "{rejected}"
    );
    assert_eq!(body["last_amocrm_error"]["status"], 401);
    assert_eq!(body["last_amocrm_error"]["resolved"], false);
    assert_eq!(body["leads"]["parked"], 1);
    assert_no_secrets(&stack, &body.to_string());

    // The operator puts a new token into the secret and checks the connection; the parked
    // lead is re-driven; nobody needs to act any more.
    put_new_long_lived_token(&stack).await;
    let test_crm = http()
        .get(format!("{}/ingest/test-crm", stack.api_url))
        .header("x-admin-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(test_crm.status(), 200);
    let ops = tools(&stack, &stack.config).await;
    let redriven = parked::redrive_all(ops.work.as_ref(), Utc::now())
        .await
        .unwrap();
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0].id, resp["lead_id"].as_str().unwrap());
    stack.deliver_pending().await.unwrap();

    let (status, body) = get_health(&stack, Some(&key)).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["last_amocrm_error"]["resolved"], true);
    assert_eq!(body["leads"]["parked"], 0);
}
