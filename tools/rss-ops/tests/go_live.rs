//! The go-live rehearsal: the runbook of README "Go-live", step by step, through the real
//! `rss-ops` binary, the real handlers and worker, against a sandbox account that has a past —
//! machines sold before the integration, lost and open deals, hand-typed phones, the old
//! system's token-less webhook — and an API IP whitelist that does not list our address yet.

mod common;

use std::collections::BTreeSet;

use common::rss_ops;
use e2e::{eventually, get_health, http, post_lead, post_webhook, read, reason_codes, site_lead};
use local_stack::{LocalStack, StackOptions};
use serde_json::{Value, json};
use shared::leads::LeadStatus;
use shared::ports::{LeadStore, PassportStore};
use shared::store::{DynamoLeadStore, DynamoPassportStore};

/// The address our functions leave from (`AmoEgressIp`); the whitelist starts with the old
/// backend's address only.
const EGRESS_IP: &str = "127.0.0.1";
const OLD_BACKEND_IP: &str = "127.0.0.2";

/// Exit status and stdout of rss-ops; its stderr (warnings) goes to the test's output.
async fn ops(env: &[(String, String)], args: &[&str]) -> (i32, String) {
    let (code, out, err) = rss_ops(env, args).await;
    eprint!("{err}");
    (code, out)
}

async fn health(stack: &LocalStack) -> (u16, Value) {
    get_health(stack, Some(&stack.options.admin_key)).await
}

async fn mail_subjects(stack: &LocalStack) -> Vec<String> {
    stack
        .moto
        .sent_mail()
        .await
        .iter()
        .filter_map(|m| m["subject"].as_str().map(str::to_string))
        .collect()
}

/// A deal moved to «won», as amoCRM posts it.
fn won_hook(deal: i64) -> String {
    format!(
        "account%5Bsubdomain%5D=new599bd9d13818a&account%5Bid%5D=31234567\
         &leads%5Bstatus%5D%5B0%5D%5Bid%5D={deal}&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142\
         &leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=80953554&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=10226282"
    )
}

fn count(out: &Value, key: &str) -> u64 {
    out["counts"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no count {key}: {out}"))
}

#[tokio::test]
async fn the_runbook_takes_a_real_account_live_without_losing_a_lead_a_passport_or_the_webhook() {
    let stack = LocalStack::start(StackOptions {
        config_overrides: vec![("AMOCRM_EGRESS_IP".into(), EGRESS_IP.into())],
        ..StackOptions::real_account(&[OLD_BACKEND_IP])
    })
    .await
    .unwrap_or_else(|e| panic!("local stack did not start: {e}"));
    let env = stack.ops_env();
    let made = stack.history.clone().expect("the account has a past");
    let leads = DynamoLeadStore::new(stack.aws.dynamodb.clone(), &stack.resources.leads_table);
    let passport =
        DynamoPassportStore::new(stack.aws.dynamodb.clone(), &stack.resources.passport_table);

    // Before step 1: deployed, but amoCRM does not list our address. A customer's lead is
    // accepted, waits pending (marked blocked), and nobody is told to re-authorize.
    let (status, accepted) = post_lead(&stack, &site_lead("Иван Петров", "+79161234567")).await;
    assert_eq!(status, 202, "{accepted}");
    let lead_id = accepted["lead_id"].as_str().unwrap().to_string();
    stack.deliver_pending().await.unwrap();
    let waiting = leads.get(&lead_id).await.unwrap().unwrap();
    assert_eq!(waiting.status, LeadStatus::Pending);
    assert!(waiting.delivery.blocked, "{:?}", waiting.delivery);
    let hint = waiting.delivery.hint.clone().unwrap();
    assert!(
        hint.contains("whitelist") && hint.contains(EGRESS_IP),
        "{hint}"
    );
    // A won deal's webhook (posted by hand to our route: the old subscription has no token)
    // waits the same way: amoCRM refuses to give us the deal.
    let early_deal = made.won[0].0;
    let (status, _) = post_webhook(
        &stack,
        &stack.options.webhook_token,
        &won_hook(early_deal),
        Some("rehearsal-1"),
    )
    .await;
    assert_eq!(status, 200);
    stack.deliver_pending().await.unwrap();
    assert!(passport.by_deal(early_deal).await.unwrap().is_empty());
    let (code, h) = health(&stack).await;
    assert_eq!(code, 503, "{h}");
    assert!(
        reason_codes(&h).contains(&"amocrm_refuses_our_address".to_string()),
        "{h}"
    );
    assert_eq!(h["reauthorization_required"], false);
    let (code, out) = ops(&env, &["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("amoCRM refuses our address (403)"),
        "doctor says so in one line:\n{out}"
    );
    assert!(
        !mail_subjects(&stack)
            .await
            .iter()
            .any(|s| s.contains("авторизац")),
        "no mail asks to re-authorize"
    );

    // 1. The AmoEgressIp output goes into amoCRM's whitelist.
    stack.sandbox.state.set_ip_allowlist(vec![
        OLD_BACKEND_IP.parse().unwrap(),
        EGRESS_IP.parse().unwrap(),
    ]);
    // The circuit breaker's window after the last 403 passes (a second locally, ten minutes
    // in AWS): until then no function calls amoCRM.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    // The schedule runs meanwhile: the blocked lead goes out by itself; without the
    // maintenance fields the run still does that, and /health asks for setup.
    let report = stack.sync_once().await;
    assert_eq!(
        report.redrive.unblocked, 2,
        "the lead and the webhook: {report:?}"
    );
    assert!(report.fields_missing, "{report:?}");
    let delivered = eventually(&stack, "the blocked lead delivered", || async {
        let l = leads.get(&lead_id).await.unwrap().unwrap();
        (l.status == LeadStatus::Delivered).then_some(l)
    })
    .await;
    assert!(delivered.delivery.amo_lead_id.is_some());
    eventually(&stack, "the early webhook's machine registered", || async {
        let m = passport.by_deal(early_deal).await.unwrap();
        (!m.is_empty()).then_some(m)
    })
    .await;
    let (code, h) = health(&stack).await;
    assert_eq!(code, 503, "{h}");
    assert_eq!(reason_codes(&h), vec!["maintenance_fields_missing"], "{h}");

    // 2. The secrets are in place (the local stack put them). 3. setup: fields, our webhook,
    // the old one removed.
    let (code, out) = ops(&env, &["setup"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("old webhook"), "{out}");
    assert!(out.contains("removed (id"), "{out}");
    let hooks = stack.sandbox.state.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let ours = hooks[0]["destination"].as_str().unwrap().to_string();
    assert!(
        ours.starts_with(&format!("{}/webhook/amocrm?token=", stack.api_url)),
        "{ours}"
    );
    let (code, out) = ops(&env, &["setup"]).await;
    assert_eq!(code, 0, "a second setup changes nothing:\n{out}");
    assert!(!out.contains("removed (id"), "{out}");

    // 4. backfill --dry-run reads and reports, writes nothing; then the real one.
    let (code, out) = ops(&env, &["backfill", "--dry-run", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let dry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(count(&dry, "registered"), made.won.len() as u64 - 1);
    assert_eq!(count(&dry, "already_there"), 1, "the webhook's deal");
    assert_eq!(count(&dry, "waiting_for_serial"), 2);
    assert_eq!(count(&dry, "waiting_for_telegram_id"), 2);
    for (deal, _, _) in &made.won[1..] {
        assert!(
            passport.by_deal(*deal).await.unwrap().is_empty(),
            "dry run wrote"
        );
    }
    let notes_before = stack.sandbox.state.notes().len();
    let (code, out) = ops(&env, &["backfill", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let real: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        count(&real, "registered"),
        made.won.len() as u64 - 1,
        "{real}"
    );
    assert_eq!(count(&real, "already_there"), 1);
    assert_eq!(count(&real, "requests"), 1, "24 won deals: one page");
    for (deal, serial, owner) in &made.won {
        let machines = passport.by_deal(*deal).await.unwrap();
        assert_eq!(machines.len(), 1, "deal {deal}");
        assert_eq!(
            (&machines[0].serial, machines[0].owner_telegram_id),
            (serial, *owner)
        );
    }
    for deal in made.lost.iter().chain(&made.open) {
        assert!(passport.by_deal(*deal).await.unwrap().is_empty());
    }
    assert_eq!(
        stack.sandbox.state.notes().len(),
        notes_before,
        "no notes on old deals without --notes"
    );
    let (code, out) = ops(&env, &["backfill", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(count(&again, "registered"), 0, "{again}");
    assert_eq!(count(&again, "already_there"), made.won.len() as u64);

    // 5. doctor green, then the connectivity check.
    let (code, out) = ops(&env, &["doctor"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, body) = read(
        http()
            .get(format!("{}/ingest/test-crm", stack.api_url))
            .header("x-admin-key", &stack.options.admin_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("success")),
        "{body}"
    );

    // 6. The domain points at us: amoCRM's webhooks now reach our route. A manager fills in
    // the serial of an old deal that waited: it is registered.
    let waited = made.won_without_serial[0];
    stack
        .sandbox
        .state
        .update_lead_as_manager(
            waited,
            json!({"custom_fields_values": [{"field_id": 712629, "values": [{"value": "SN-FILLED-1"}]}]}),
        )
        .unwrap();
    eventually(&stack, "the waiting deal registered", || async {
        let m = passport.by_deal(waited).await.unwrap();
        (!m.is_empty()).then_some(m)
    })
    .await;

    // 7. /health: the sync runs with the fields setup made, without a redeploy.
    let report = stack.sync_once().await;
    assert!(!report.fields_missing, "{report:?}");
    assert_eq!(report.error, None, "{report:?}");
    let (code, h) = health(&stack).await;
    assert_eq!(code, 200, "{h}");

    // Nothing was lost: the lead delivered once, every complete old deal in a passport once.
    let amo_leads: BTreeSet<String> = stack
        .sandbox
        .state
        .leads()
        .iter()
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .filter(|n| n.contains(&lead_id))
        .collect();
    assert_eq!(amo_leads.len(), 1, "{amo_leads:?}");
}
