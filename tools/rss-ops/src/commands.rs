//! Runs a command through `shared::ops` and renders its result: a table for people, JSON with
//! `--json`. The checks never see a token or secret, so nothing here needs masking beyond what
//! `ops` already does.

use chrono::Utc;
use serde_json::{Value, json};
use shared::config::Config;
use shared::ops::doctor::{Doctor, configured_fields};
use shared::ops::fields::MaintenanceFields;
use shared::ops::finding::{Finding, all_ok, render_table};
use shared::ops::parked::{self, Redriven};
use shared::ops::setup::{WebhookTarget, setup};
use shared::wiring::OperatorTools;

use crate::args::{Command, Invocation, RedriveTarget, USAGE};

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
    }
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
    let fields = MaintenanceFields { amo: &tools.amo };
    let report = setup(&tools.amo, Some(&fields), &target).await;
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
            "\nPut these into samconfig.toml (parameter_overrides) or the functions' environment:\n",
        );
        for s in &report.settings {
            text.push_str(&format!("  {}={}    # {}\n", s.var, s.value, s.note));
        }
    }
    text.push_str(if ok {
        "\nSetup complete; running it again changes nothing.\n"
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
