//! Our functions beside the seed's stack, doing the same work through the same moto and the
//! same sandbox, at full speed and at the Lambda CPU share:
//! - accepting a lead (validate, one transactional write, 202) and acknowledging a webhook:
//!   warm Lambda-style instances (one process per concurrent request, each at its own share)
//!   against one FastAPI process;
//! - delivering one lead (contact, lead, note, mail): crm-worker against FastAPI's
//!   background task with aiohttp.

use std::sync::Arc;
use std::time::Duration;

use local_stack::{LocalStack, StackOptions};
use serde_json::Value;

use crate::cold_start::Subject;
use crate::cpu_share::{self, CpuCap};
use crate::events::{self, EventContext};
use crate::instances::{Instance, PoolRun, run_pool};
use crate::load::{self, LoadResult, percentile};
use crate::options::Options;
use crate::report::{Table, mib_of_kib, opt_ms};
use crate::seed_stack::{SeedApp, post_lead};
use crate::stack_env::function_env;
use crate::{BenchError, sections};

/// What the worker answers when its one record was delivered.
const WORKER_DONE: &str = r#"{"batchItemFailures":[]}"#;

/// One speed: full, or each process at its function's share (`None` share = full).
#[derive(Clone, Copy)]
struct Shares {
    accept: Option<f64>,
    worker: Option<f64>,
}

impl Shares {
    fn label(&self) -> String {
        match self.accept {
            None => "full".into(),
            Some(s) => format!("{s:.3} vCPU"),
        }
    }
}

fn subject(options: &Options, name: &str, event: fn(&EventContext) -> String) -> Subject {
    Subject {
        name: name.into(),
        program: options.bin_dir.join(name),
        args: Vec::new(),
        event,
    }
}

/// Full speed, and the Lambda share where this machine can cap a process (else a note).
fn speeds(options: &Options, notes: &mut Vec<String>) -> Vec<Shares> {
    let mut speeds = vec![Shares {
        accept: None,
        worker: None,
    }];
    if !options.lambda_share {
        return speeds;
    }
    if let Err(why) = CpuCap::new("probe", 0.5) {
        notes.push(why);
        return speeds;
    }
    let template =
        std::fs::read_to_string(options.repo_root.join("template.yaml")).unwrap_or_default();
    let share = |f: &str| cpu_share::share_of(cpu_share::memory_mb(&template, f).unwrap_or(256));
    speeds.push(Shares {
        accept: Some(share("lead-ingest")),
        worker: Some(share("crm-worker")),
    });
    speeds
}

/// Request numbers of the seed's leads, apart from every other section's phones.
static SEED_LEADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(3_000_000);

fn next_seed_lead() -> Value {
    events::site_lead(SEED_LEADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// The seed answers slowly at the share under load (p99 over 30 s at concurrency 50).
fn http() -> reqwest::Client {
    sections::http_client(Duration::from_secs(60))
}

/// One row of the accept table.
struct AcceptRow {
    stack: &'static str,
    route: &'static str,
    concurrency: usize,
    processes: usize,
    load: LoadResult,
    cpu: Duration,
    peak_rss_kb: Option<u64>,
    init: Option<Duration>,
    first_answer: Option<Duration>,
    error: Option<String>,
}

impl AcceptRow {
    fn cpu_per_request(&self) -> Option<Duration> {
        let n = self.load.latencies.len() as u32;
        (n > 0).then(|| self.cpu / n)
    }
}

fn rust_row(stack: &'static str, route: &'static str, c: usize, run: PoolRun) -> AcceptRow {
    AcceptRow {
        stack,
        route,
        concurrency: c,
        processes: c,
        load: run.load,
        cpu: run.cpu,
        peak_rss_kb: run.peak_rss_kb,
        init: run.init,
        first_answer: run.first_answer,
        error: run.first_error,
    }
}

fn failed_row(stack: &'static str, route: &'static str, c: usize, why: String) -> AcceptRow {
    AcceptRow {
        stack,
        route,
        concurrency: c,
        processes: c,
        load: LoadResult::default(),
        cpu: Duration::ZERO,
        peak_rss_kb: None,
        init: None,
        first_answer: None,
        error: Some(why),
    }
}

/// The seed's `POST /leads` at concurrency `c` for `d`, in one fresh process.
async fn seed_accept(
    options: &Options,
    env: &[(String, String)],
    share: Option<f64>,
    c: usize,
    d: Duration,
) -> AcceptRow {
    let client = http();
    let app = match SeedApp::start(
        &options.python,
        &options.repo_root,
        env,
        false,
        share,
        &client,
        &next_seed_lead(),
    )
    .await
    {
        Ok(app) => app,
        Err(why) => return failed_row("FastAPI (seed)", "POST /leads", c, why),
    };
    let cpu_before = app.cpu();
    let url = app.url.clone();
    let result = load::run(c, d, move |_| {
        let request = post_lead_owned(client.clone(), url.clone());
        async move { request.await == Some(202) }
    })
    .await;
    AcceptRow {
        stack: "FastAPI (seed)",
        route: "POST /leads",
        concurrency: c,
        processes: 1,
        cpu: app.cpu().saturating_sub(cpu_before),
        peak_rss_kb: app.peak_rss_kb(),
        init: Some(app.init),
        first_answer: Some(app.first_answer),
        error: (result.errors > 0).then(|| app.stderr_tail()),
        load: result,
    }
}

async fn post_lead_owned(client: reqwest::Client, url: String) -> Option<u16> {
    post_lead(&client, &url, &next_seed_lead()).await
}

/// Empties the tables the rows write (leads, webhook inbox): moto copies its tables for every
/// transaction item, so each row starts from the same empty tables instead of paying for the
/// rows before it.
async fn clear_written_tables(stack: &LocalStack) -> Result<(), String> {
    use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
    let dynamodb = &stack.aws.dynamodb;
    for table in [&stack.resources.leads_table, &stack.resources.inbox_table] {
        loop {
            let page = dynamodb
                .scan()
                .table_name(table)
                .projection_expression("pk")
                .limit(25)
                .send()
                .await
                .map_err(|e| format!("clearing {table}: {e}"))?;
            let deletes = page
                .items()
                .iter()
                .filter_map(|i| i.get("pk").cloned())
                .map(|pk| {
                    DeleteRequest::builder()
                        .key("pk", pk)
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            if deletes.is_empty() {
                break;
            }
            dynamodb
                .batch_write_item()
                .request_items(table.as_str(), deletes)
                .send()
                .await
                .map_err(|e| format!("clearing {table}: {e}"))?;
        }
    }
    Ok(())
}

async fn accept_rows(
    options: &Options,
    stack: &LocalStack,
    env: &[(String, String)],
    ctx: &Arc<EventContext>,
    shares: Shares,
) -> Vec<AcceptRow> {
    let d = options.load_duration;
    let ingest = subject(options, "lead-ingest", events::lead_ingest);
    let webhook = subject(options, "amocrm-webhook", events::amocrm_webhook);
    let mut rows = Vec::new();
    let clear = || async {
        if let Err(e) = clear_written_tables(stack).await {
            eprintln!("bench: {e}");
        }
    };
    for &c in &options.concurrency {
        eprintln!(
            "bench: side by side, accept at concurrency {c}, {}",
            shares.label()
        );
        clear().await;
        rows.push(
            match run_pool(&ingest, env, ctx, c, shares.accept, d, "HTTP 202").await {
                Ok(run) => rust_row("Rust lead-ingest", "POST /leads", c, run),
                Err(why) => failed_row("Rust lead-ingest", "POST /leads", c, why),
            },
        );
        clear().await;
        rows.push(seed_accept(options, env, shares.accept, c, d).await);
        clear().await;
        rows.push(
            match run_pool(&webhook, env, ctx, c, shares.accept, d, "HTTP 200").await {
                Ok(run) => rust_row("Rust amocrm-webhook", "POST /webhook/amocrm", c, run),
                Err(why) => failed_row("Rust amocrm-webhook", "POST /webhook/amocrm", c, why),
            },
        );
    }
    rows
}

/// One row of the delivery table.
struct DeliveryRow {
    stack: &'static str,
    leads: usize,
    latencies: Vec<Duration>,
    failed: u64,
    /// CPU of the delivering process over the leads.
    cpu: Duration,
    peak_rss_kb: Option<u64>,
    error: Option<String>,
}

/// crm-worker delivering `m` leads one after another, each its own stream event (after one
/// unmeasured lead, so the instance is warm).
async fn rust_delivery(
    options: &Options,
    stack: &LocalStack,
    env: &[(String, String)],
    ctx: &EventContext,
    share: Option<f64>,
    m: usize,
) -> Result<DeliveryRow, String> {
    let worker = subject(options, "crm-worker", events::crm_worker);
    let mut instance = Instance::start(&worker, env, 0, share).await?;
    let mut row = DeliveryRow {
        stack: "Rust crm-worker",
        leads: m,
        latencies: Vec::new(),
        failed: 0,
        cpu: Duration::ZERO,
        peak_rss_kb: None,
        error: None,
    };
    let mut cpu_before = Duration::ZERO;
    for i in 0..=m {
        if i == 1 {
            cpu_before = instance.cpu();
        }
        let (lead, event) = events::new_worker_lead(ctx, 4_000_000 + i as u64);
        sections::store_pending_lead(stack, &lead)
            .await
            .map_err(|e| format!("storing a lead: {e}"))?;
        match instance.invoke(event).await {
            Ok((latency, answer)) if answer == WORKER_DONE => {
                if i > 0 {
                    row.latencies.push(latency);
                }
            }
            Ok((_, answer)) => {
                row.failed += 1;
                row.error.get_or_insert(answer);
            }
            Err(e) => {
                row.failed += 1;
                row.error.get_or_insert(e);
            }
        }
    }
    row.cpu = instance.cpu().saturating_sub(cpu_before);
    row.peak_rss_kb = instance.peak_rss_kb();
    Ok(row)
}

/// The seed delivering `m` leads one after another: each posted once the one before was
/// delivered (after one unmeasured lead, so the process is warm).
async fn seed_delivery(
    options: &Options,
    env: &[(String, String)],
    share: Option<f64>,
    m: usize,
) -> Result<DeliveryRow, String> {
    let client = http();
    let app = SeedApp::start(
        &options.python,
        &options.repo_root,
        env,
        true,
        share,
        &client,
        &next_seed_lead(),
    )
    .await?;
    app.deliveries(&client, 1).await?;
    let cpu_before = app.cpu();
    for i in 0..m {
        if post_lead(&client, &app.url, &next_seed_lead()).await != Some(202) {
            return Err(format!("seed app refused a lead: {}", app.stderr_tail()));
        }
        app.deliveries(&client, i as u64 + 2).await?;
    }
    let cpu = app.cpu().saturating_sub(cpu_before);
    let stats = app.deliveries(&client, 0).await?;
    let latencies = stats["durations_ms"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(1)
        .filter_map(Value::as_f64)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    let failed = stats["failed"].as_u64().unwrap_or(0);
    Ok(DeliveryRow {
        stack: "FastAPI (seed) BackgroundTasks",
        leads: m,
        latencies,
        failed,
        cpu,
        peak_rss_kb: app.peak_rss_kb(),
        error: (failed > 0).then(|| {
            stats["last_error"]
                .as_str()
                .map_or_else(|| app.stderr_tail(), str::to_string)
        }),
    })
}

/// One at a time, a lead after the other: 1 ÷ the mean delivery time.
fn leads_per_second(latencies: &[Duration]) -> String {
    let total: Duration = latencies.iter().sum();
    if latencies.is_empty() || total.is_zero() {
        return "–".into();
    }
    format!("{:.2}", latencies.len() as f64 / total.as_secs_f64())
}

fn per_request(d: Duration, n: usize) -> String {
    if n == 0 {
        return "–".into();
    }
    format!("{:.2} ms", d.as_secs_f64() * 1000.0 / n as f64)
}

/// On a stack of its own: the earlier sections' rows would slow moto's transactions down.
pub async fn side_by_side(options: &Options) -> Result<Vec<Table>, BenchError> {
    let stack = &LocalStack::start(StackOptions::for_tests()).await?;
    let env = function_env(stack);
    let ctx = Arc::new(EventContext::new(
        options.repo_root.clone(),
        stack.options.webhook_token.clone(),
        stack.options.telegram_bot_token.clone(),
    ));
    let mut notes = Vec::new();
    let speeds = speeds(options, &mut notes);
    let mut accept = Table::new(
        "Side by side, accepting: our functions as warm Lambda instances vs the seed's FastAPI \
         (same validation, one transactional write, 202)",
        &[
            "Stack",
            "Route",
            "CPU",
            "Concurrency",
            "Processes",
            "Req/s",
            "p50",
            "p99",
            "Errors",
            "CPU per request",
            "Peak RSS",
            "Init",
            "First answer",
        ],
    );
    let mut deliver = Table::new(
        "Side by side, delivering one lead (contact search, lead with contact, note, mail copy, \
         lead marked delivered): crm-worker vs the seed's BackgroundTasks + aiohttp",
        &[
            "Stack",
            "CPU",
            "Leads",
            "Leads/s (one at a time)",
            "p50",
            "p99",
            "Failed",
            "CPU per lead",
            "Peak RSS",
            "amoCRM requests per lead",
            "amoCRM 429s",
        ],
    );
    let m = if options.runs < 20 { 5 } else { 20 };
    for shares in &speeds {
        for row in accept_rows(options, stack, &env, &ctx, *shares).await {
            if let Some(e) = &row.error {
                accept.note(format!(
                    "{} at {}, concurrency {}: {}",
                    row.stack,
                    shares.label(),
                    row.concurrency,
                    e.chars().take(300).collect::<String>()
                ));
            }
            accept.row(vec![
                row.stack.into(),
                row.route.into(),
                shares.label(),
                row.concurrency.to_string(),
                row.processes.to_string(),
                format!("{:.0}", row.load.per_second()),
                opt_ms(row.load.p50()),
                opt_ms(row.load.p99()),
                row.load.errors.to_string(),
                row.cpu_per_request()
                    .map(|d| per_request(d, 1))
                    .unwrap_or_else(|| "–".into()),
                row.peak_rss_kb
                    .map(mib_of_kib)
                    .unwrap_or_else(|| "–".into()),
                opt_ms(row.init),
                opt_ms(row.first_answer),
            ]);
        }
        eprintln!(
            "bench: side by side, delivering {m} leads, {}",
            shares.label()
        );
        // The sandbox's own log: every amoCRM request and answer of each run (warm-up included).
        stack.sandbox.state.clear_requests();
        let rust = rust_delivery(options, stack, &env, &ctx, shares.worker, m).await;
        let rust_log = stack.sandbox.state.requests();
        stack.sandbox.state.clear_requests();
        let seed = seed_delivery(options, &env, shares.worker, m).await;
        let seed_log = stack.sandbox.state.requests();
        for (row, log) in [(rust, rust_log), (seed, seed_log)] {
            let rate_limited = log.iter().filter(|r| r.status == 429).count();
            let row = match row {
                Ok(row) => row,
                Err(why) => {
                    deliver.note(format!("{}: {why}", shares.label()));
                    continue;
                }
            };
            if let Some(e) = &row.error {
                deliver.note(format!(
                    "{} at {}: {}",
                    row.stack,
                    shares.label(),
                    e.chars().take(300).collect::<String>()
                ));
            }
            deliver.row(vec![
                row.stack.into(),
                shares.label(),
                row.leads.to_string(),
                leads_per_second(&row.latencies),
                opt_ms(percentile(&row.latencies, 50.0)),
                opt_ms(percentile(&row.latencies, 99.0)),
                row.failed.to_string(),
                per_request(row.cpu, row.leads),
                row.peak_rss_kb
                    .map(mib_of_kib)
                    .unwrap_or_else(|| "–".into()),
                format!("{:.1}", log.len() as f64 / (row.leads + 1) as f64),
                rate_limited.to_string(),
            ]);
        }
    }
    accept.note(
        "Ours: one warm process per concurrent request, as Lambda scales (Processes), each \
         taking one event at a time from its own Runtime API and, at the share, each in its own \
         cgroup at its MemorySize ÷ 1769 MB; latency = event handed over → answer. The seed: one \
         uvicorn process (as it ran), latency = HTTP request → 202 over loopback keep-alive, at \
         the share held to one instance's CPU. Both write the idempotency claim and the lead in \
         one TransactWriteItems to the same moto, into a leads table emptied before each row (moto \
         copies the whole table per transaction, so a fuller table is slower). CPU per request = the processes' user + system \
         time ÷ answered requests. Init = spawn → ready (first …/next; the seed: port \
         accepting); First answer = spawn → the first answer (each process answers one before \
         the timed load).",
    );
    deliver.note(format!(
        "{m} leads each, one at a time after one unmeasured lead; Leads/s = 1 ÷ the mean delivery \
         time. amoCRM requests and 429s from the sandbox's log (the unmeasured lead included). \
         Latency: ours = stream event \
         handed over → the worker's answer (lead claimed, contact searched, lead created with its \
         contact, note, SES copy, delivery saved), the seed = 202 → its background task done (the \
         same steps). The seed's CPU per lead includes its accept (same process); ours is \
         crm-worker's alone: add lead-ingest's CPU per request above. Both pace amoCRM under 7 \
         requests/s (the seed had no pacing; added so its leads are not lost to 429)."
    ));
    for n in notes {
        accept.note(n);
    }
    Ok(vec![accept, deliver])
}
