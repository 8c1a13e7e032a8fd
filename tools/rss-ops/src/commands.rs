//! Runs a command through `shared::ops` and renders its result: a table for people, JSON with
//! `--json`. The checks never see a token or secret, so nothing here needs masking beyond what
//! `ops` already does.

use chrono::Utc;
use serde_json::{Value, json};
use shared::config::Config;
use shared::ops::doctor::{Doctor, configured_fields};
use shared::ops::field_setup::MaintenanceFieldSetup;
use shared::ops::finding::{Finding, all_ok, render_table};
use shared::ops::parked::{self, Redriven};
use shared::ops::setup::{WebhookTarget, remember_fields, setup};
use shared::wiring::OperatorTools;

use shared::passport::backfill::{Backfill, BackfillOptions};
use shared::passport::register::Registrar;

use crate::args::{BackfillArgs, Command, Invocation, RedriveTarget, USAGE};

/// What to print and the exit status.
pub struct Output {
    pub text: String,
    pub status: u8,
}

impl Output {
    fn new(text: String, ok: bool) -> Self {
        Output {
            text,
            status: if ok { 0 } else { 1 },
        }
    }
}

pub async fn run(inv: &Invocation, config: &Config, tools: &OperatorTools) -> Output {
    match &inv.command {
        Command::Help => Output::new(USAGE.to_string(), true),
        Command::Doctor {
            webhook_destination,
        } => doctor(inv.json, config, tools, webhook_destination.as_deref()).await,
        Command::Setup {
            webhook_destination,
        } => run_setup(inv.json, config, tools, webhook_destination.as_deref()).await,
        Command::ParkedList { limit } => parked_list(inv.json, tools, *limit).await,
        Command::Redrive(target) => redrive(inv.json, tools, target).await,
        Command::Backfill(args) => backfill(inv.json, tools, args).await,
    }
}

async fn backfill(json: bool, tools: &OperatorTools, args: &BackfillArgs) -> Output {
    let (Some(passport), Some(state)) = (&tools.passport, &tools.sync_state) else {
        let f = Finding::problem(
            "backfill",
            "PASSPORT_TABLE and STATE_TABLE are not both set",
            "Run rss-ops with the functions' environment (make ops locally; the stack's table \
             names in AWS).",
        );
        return findings_output(json, vec![f]);
    };
    let run = Backfill {
        deals: &tools.amo,
        registrar: Registrar {
            crm: &tools.amo,
            store: passport.as_ref(),
            policy: &tools.policy,
            fields: tools.passport_fields,
            note_waiting: args.notes,
        },
        cursor: state.as_ref(),
    }
    .run(&BackfillOptions {
        pipelines: tools.pipelines.clone(),
        since: args.since,
        dry_run: args.dry_run,
    })
    .await;
    let (report, error) = match run {
        Ok(r) => (r, None),
        Err((r, e)) => (r, Some(e)),
    };
    let ok = error.is_none();
    if json {
        let mut v = json!({
            "ok": ok,
            "dry_run": report.dry_run,
            "counts": report.counts,
            "resumed_from_page": report.resumed_from_page,
        });
        if let Some(e) = &error {
            v["error"] = json!(e.to_string());
            v["hint"] = json!(e.hint());
        }
        return Output::new(pretty(&v), ok);
    }
    let c = &report.counts;
    let verb = if report.dry_run {
        "would be registered"
    } else {
        "registered"
    };
    let mut text = report
        .resumed_from_page
        .map(|p| format!("Resumed an interrupted backfill at page {p}.\n"))
        .unwrap_or_default();
    text.push_str(&format!(
        "Won deals read: {}\n  {verb}: {}\n  already there: {}\n  waiting for serial: {}\n  \
         waiting for Telegram ID: {}\n  skipped: {}\n(amoCRM list requests: {})\n",
        c.read,
        c.registered,
        c.already_there,
        c.waiting_for_serial,
        c.waiting_for_telegram_id,
        c.skipped,
        c.requests,
    ));
    if c.waiting_for_serial + c.waiting_for_telegram_id > 0 {
        text.push_str(
            "Deals waiting for data are registered as soon as a manager fills in the field \
             (the deal's webhook).\n",
        );
    }
    if let Some(e) = error {
        text.push_str(&render_table(&[Finding::problem(
            "backfill",
            e.to_string(),
            e.hint(),
        )]));
        text.push_str("Run backfill again once fixed: it resumes where it stopped.\n");
    } else if report.dry_run {
        text.push_str("Dry run: nothing was written.\n");
    }
    Output::new(text, ok)
}

fn findings_output(json: bool, findings: Vec<Finding>) -> Output {
    let ok = all_ok(&findings);
    if json {
        return Output::new(pretty(&json!({ "ok": ok, "findings": findings })), ok);
    }
    Output::new(render_table(&findings), ok)
}

/// `--webhook-destination`, else `WEBHOOK_DESTINATION`, else the redirect URI.
fn webhook_target(
    config: &Config,
    tools: &OperatorTools,
    flag: Option<&str>,
) -> Result<WebhookTarget, Finding> {
    let env = std::env::var("WEBHOOK_DESTINATION").ok();
    let token = tools
        .app_secrets
        .as_ref()
        .ok()
        .and_then(|s| s.webhook_token.as_deref());
    WebhookTarget::resolve(flag.or(env.as_deref()), &config.amo.redirect_uri, token)
}

async fn doctor(json: bool, config: &Config, tools: &OperatorTools, flag: Option<&str>) -> Output {
    let target = webhook_target(config, tools, flag);
    let findings = Doctor {
        config,
        amo: &tools.amo,
        tokens: &tools.tokens,
        app_secrets: &tools.app_secrets,
        webhook: &target,
        fields: configured_fields(&config.amo),
        now: Utc::now(),
    }
    .run()
    .await;
    let ok = all_ok(&findings);
    if json {
        return Output::new(pretty(&json!({ "ok": ok, "findings": findings })), ok);
    }
    let problems = findings.iter().filter(|f| !f.ok).count();
    let summary = if ok {
        format!("All {} checks passed.", findings.len())
    } else {
        format!("{problems} problem(s) found: apply the fixes above, then run doctor again.")
    };
    Output::new(format!("{}\n{summary}\n", render_table(&findings)), ok)
}

async fn run_setup(
    json: bool,
    config: &Config,
    tools: &OperatorTools,
    flag: Option<&str>,
) -> Output {
    let target = webhook_target(config, tools, flag);
    let fields = MaintenanceFieldSetup { amo: &tools.amo };
    let mut report = setup(&tools.amo, Some(&fields), &target).await;
    if let Some(state) = &tools.sync_state {
        report
            .findings
            .push(remember_fields(&tools.amo, state.as_ref()).await);
    }
    let ok = all_ok(&report.findings);
    if json {
        return Output::new(
            pretty(&json!({ "ok": ok, "findings": report.findings, "settings": report.settings })),
            ok,
        );
    }
    let mut text = render_table(&report.findings);
    if !report.settings.is_empty() {
        text.push_str(
            "\nThe sync reads these ids from the state table; to pin them instead, put them into \
             samconfig.toml (parameter_overrides) or the functions' environment:\n",
        );
        for s in &report.settings {
            text.push_str(&format!("  {}={}    # {}\n", s.var, s.value, s.note));
        }
    }
    text.push_str(if ok {
        "\nSetup complete; the maintenance sync uses the fields from its next run (the variables \
         above only override it). Running setup again changes nothing.\n"
    } else {
        "\nSetup incomplete: apply the fixes above and run it again.\n"
    });
    Output::new(text, ok)
}

async fn parked_list(json: bool, tools: &OperatorTools, limit: usize) -> Output {
    let items = match parked::list(tools.work.as_ref(), limit).await {
        Ok(items) => items,
        Err(e) => return store_failed(json, &e),
    };
    if json {
        return Output::new(pretty(&json!({ "parked": items })), true);
    }
    let mut text = render_table(&parked::findings(&items));
    if items.len() >= limit {
        text.push_str(&format!(
            "\nShowing the first {limit} of each; --limit shows more.\n"
        ));
    }
    Output::new(text, true)
}

async fn redrive(json: bool, tools: &OperatorTools, target: &RedriveTarget) -> Output {
    let now = Utc::now();
    let results: Vec<Redriven> = match target {
        RedriveTarget::One(id) => match parked::redrive_one(tools.work.as_ref(), id, now).await {
            Ok(r) => vec![r],
            Err(e) => return store_failed(json, &e),
        },
        RedriveTarget::All => match parked::redrive_all(tools.work.as_ref(), now).await {
            Ok(r) => r,
            Err(e) => return store_failed(json, &e),
        },
    };
    let findings: Vec<Finding> = results.iter().map(Redriven::finding).collect();
    let ok = all_ok(&findings);
    if json {
        return Output::new(pretty(&json!({ "ok": ok, "redriven": results })), ok);
    }
    if findings.is_empty() {
        return Output::new("Nothing is parked.\n".into(), true);
    }
    Output::new(render_table(&findings), ok)
}

fn store_failed(json: bool, e: &shared::ports::StoreError) -> Output {
    let f = Finding::problem(
        "tables",
        format!("DynamoDB: {e}"),
        "Check LEADS_TABLE/INBOX_TABLE, the AWS credentials and region (AWS_PROFILE, \
         AWS_REGION), and the permission dynamodb:Query/UpdateItem on the tables and their \
         status-index.",
    );
    if json {
        return Output::new(pretty(&json!({ "ok": false, "findings": [f] })), false);
    }
    Output::new(render_table(&[f]), false)
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}
