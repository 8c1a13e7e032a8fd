//! The report's sections, each measured against the one local stack and returned as a table.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use local_stack::LocalStack;
use serde_json::Value;
use shared::leads::Lead;
use shared::ports::{IdempotencyClaim, LeadStore};
use shared::store::DynamoLeadStore;

use crate::cold_start::{self, Sample, Subject};
use crate::cpu_share::{self, CpuCap};
use crate::events::{self, EventContext};
use crate::load::{self, LoadResult};
use crate::options::Options;
use crate::report::{Table, mb, mib_of_kib, ms, opt_ms};
use crate::stack_env::function_env;
use crate::{BenchError, artifacts, sync};

pub const FUNCTIONS: [&str; 5] = [
    "lead-ingest",
    "crm-worker",
    "amocrm-webhook",
    "passport-api",
    "maintenance-sync",
];
const BASELINE: &str = "python-baseline";

/// One line about the machine: the figures mean little without it.
pub fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let loadavg = read("/proc/loadavg");
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    format!(
        "Machine: {cpus} × {cpu}, Linux {}, load average at start {}",
        read("/proc/sys/kernel/osrelease").trim(),
        load.join(" ")
    )
}

fn subjects(options: &Options) -> (Vec<Subject>, Vec<String>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let event_of: [fn(&EventContext) -> String; 5] = [
        events::lead_ingest,
        events::crm_worker,
        events::amocrm_webhook,
        events::passport_api,
        events::maintenance_sync,
    ];
    for (name, event) in FUNCTIONS.iter().zip(event_of) {
        let program = options.bin_dir.join(name);
        if program.is_file() {
            found.push(Subject {
                name: name.to_string(),
                program,
                args: Vec::new(),
                event,
            });
        } else {
            missing.push(format!("{name}: no binary at {}", program.display()));
        }
    }
    let runtime = options.repo_root.join("bench/baseline/runtime.py");
    if options.python.is_file() {
        found.push(Subject {
            name: BASELINE.into(),
            program: options.python.clone(),
            args: vec![runtime.display().to_string()],
            event: events::lead_ingest,
        });
    } else {
        missing.push(format!(
            "{BASELINE}: no Python at {}",
            options.python.display()
        ));
    }
    (found, missing)
}

/// Puts the crm-worker sample's lead back as pending, so every run delivers it afresh.
async fn reseed_worker_lead(stack: &LocalStack, ctx: &EventContext) -> Result<(), BenchError> {
    let event: Value = serde_json::from_str(&events::crm_worker(ctx))?;
    let payload = event["Records"][0]["dynamodb"]["NewImage"]["payload"]["S"]
        .as_str()
        .ok_or("crm-worker sample event: no NewImage.payload")?;
    let lead: Lead = serde_json::from_str(payload)?;
    stack
        .aws
        .dynamodb
        .delete_item()
        .table_name(&stack.resources.leads_table)
        .key("pk", AttributeValue::S(format!("LEAD#{}", lead.id)))
        .send()
        .await?;
    store_pending_lead(stack, &lead).await?;
    Ok(())
}

/// Stores `lead` as lead-ingest would (pending, with an idempotency claim of its own), for
/// crm-worker to deliver.
pub async fn store_pending_lead(stack: &LocalStack, lead: &Lead) -> Result<(), BenchError> {
    let store = DynamoLeadStore::new(stack.aws.dynamodb.clone(), &stack.resources.leads_table);
    let claim = IdempotencyClaim {
        key: uuid::Uuid::new_v4().to_string(),
        expires_at: chrono::Utc::now() + chrono::Duration::days(1),
    };
    store.insert(lead, &claim).await?;
    Ok(())
}

pub fn median<T: Copy + Ord>(values: &mut [T]) -> Option<T> {
    values.sort_unstable();
    values.get(values.len().saturating_sub(1) / 2).copied()
}

/// How fast a function runs: the whole machine, or the CPU share its `MemorySize` buys on Lambda.
pub enum Speed {
    Full,
    /// One cgroup per subject, each at its function's share.
    LambdaShare(Vec<CpuCap>),
}

impl Speed {
    fn label(&self, i: usize) -> String {
        match self {
            Speed::Full => "full".into(),
            Speed::LambdaShare(caps) => format!("{:.3} vCPU", caps[i].share),
        }
    }
    fn cap(&self, i: usize) -> Option<&CpuCap> {
        match self {
            Speed::Full => None,
            Speed::LambdaShare(caps) => caps.get(i),
        }
    }
}

/// The speeds to measure at: full, and each subject's Lambda share where this machine can
/// cap a process (else a note says why not).
pub fn speeds(options: &Options, names: &[&str], notes: &mut Vec<String>) -> Vec<Speed> {
    let mut speeds = vec![Speed::Full];
    if !options.lambda_share {
        return speeds;
    }
    let template =
        std::fs::read_to_string(options.repo_root.join("template.yaml")).unwrap_or_default();
    let mut caps = Vec::new();
    for name in names {
        // The Python baseline stands in for lead-ingest: it gets lead-ingest's memory.
        let binary = if *name == BASELINE {
            "lead-ingest"
        } else {
            name
        };
        let memory = cpu_share::memory_mb(&template, binary).unwrap_or(256);
        match CpuCap::new(name, cpu_share::share_of(memory)) {
            Ok(cap) => caps.push(cap),
            Err(why) => {
                notes.push(why);
                return speeds;
            }
        }
    }
    speeds.push(Speed::LambdaShare(caps));
    speeds
}

pub async fn cold_start(options: &Options, stack: &LocalStack) -> Result<Table, BenchError> {
    let ctx = EventContext::new(
        options.repo_root.clone(),
        stack.options.webhook_token.clone(),
        stack.options.telegram_bot_token.clone(),
    );
    let env = function_env(stack);
    let (subjects, missing) = subjects(options);
    let names: Vec<&str> = subjects.iter().map(|s| s.name.as_str()).collect();
    let mut notes = Vec::new();
    let speeds = speeds(options, &names, &mut notes);
    let cells = speeds.len() * subjects.len();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cells];
    let mut failures: Vec<Vec<String>> = vec![Vec::new(); cells];
    // Interleaved: run i of every subject at every speed before run i+1 of any, so load
    // drifts hit all alike.
    for run in 0..options.runs {
        eprintln!("bench: cold start run {}/{}", run + 1, options.runs);
        for (k, speed) in speeds.iter().enumerate() {
            for (i, subject) in subjects.iter().enumerate() {
                if subject.name == "crm-worker" {
                    reseed_worker_lead(stack, &ctx).await?;
                }
                let cell = k * subjects.len() + i;
                match cold_start::measure_once(subject, &env, &ctx, speed.cap(i)).await {
                    Ok(sample) => samples[cell].push(sample),
                    Err(e) => failures[cell].push(e.to_string()),
                }
            }
        }
    }
    let mut table = Table::new(
        &format!(
            "Cold start: process start → ready for its first event (init) and → its first \
             answer, through a local Runtime API (median of {} runs)",
            options.runs
        ),
        &[
            "Function",
            "CPU",
            "Init",
            "Init vs Python",
            "First answer",
            "Min",
            "Max",
            "vs Python",
            "Peak RSS (median)",
            "Peak RSS (max)",
            "Answer",
            "Runs ok",
        ],
    );
    let ratio = |m: Option<Duration>, b: Option<Duration>| match (m, b) {
        (Some(m), Some(b)) => format!("{:.2}×", m.as_secs_f64() / b.as_secs_f64()),
        _ => "–".into(),
    };
    for (k, speed) in speeds.iter().enumerate() {
        let cell = |i: usize| k * subjects.len() + i;
        let baseline = subjects.iter().position(|s| s.name == BASELINE);
        let base_answer = baseline.and_then(|i| {
            median(
                &mut samples[cell(i)]
                    .iter()
                    .map(|s| s.elapsed)
                    .collect::<Vec<_>>(),
            )
        });
        let base_init = baseline.and_then(|i| {
            median(
                &mut samples[cell(i)]
                    .iter()
                    .filter_map(|s| s.init)
                    .collect::<Vec<_>>(),
            )
        });
        for (i, subject) in subjects.iter().enumerate() {
            let runs = &samples[cell(i)];
            let mut times: Vec<Duration> = runs.iter().map(|s| s.elapsed).collect();
            let mut inits: Vec<Duration> = runs.iter().filter_map(|s| s.init).collect();
            let mut rss: Vec<u64> = runs.iter().filter_map(|s| s.peak_rss_kb).collect();
            let med = median(&mut times);
            let init = median(&mut inits);
            table.row(vec![
                subject.name.clone(),
                speed.label(i),
                opt_ms(init),
                ratio(init, base_init),
                opt_ms(med),
                opt_ms(times.first().copied()),
                opt_ms(times.last().copied()),
                ratio(med, base_answer),
                median(&mut rss)
                    .map(mib_of_kib)
                    .unwrap_or_else(|| "–".into()),
                rss.last()
                    .copied()
                    .map(mib_of_kib)
                    .unwrap_or_else(|| "–".into()),
                runs.first()
                    .map(|s| s.answer.clone())
                    .unwrap_or_else(|| "–".into()),
                format!("{}/{}", runs.len(), options.runs),
            ]);
            if let Some(first) = failures[cell(i)].first() {
                table.note(format!(
                    "{} at {}: {} failed runs; first: {first}",
                    subject.name,
                    speed.label(i),
                    failures[cell(i)].len()
                ));
            }
        }
    }
    table.note(
        "Init = spawn → the process's first GET …/invocation/next (runtime, clients and secret \
         read done; for crm-worker this separates start-up from its first delivery). First \
         answer = spawn → its answer to the one event. vs Python = ÷ the Python 3.11 + boto3 \
         baseline's median at the same CPU (bench/baseline: same clients and secret read at \
         init, one PutItem per event). CPU \"0.145 vCPU\" = the function's template MemorySize \
         ÷ 1769 MB, enforced by a cgroup v1 CPU quota from the process's first instruction. \
         Peak RSS = VmHWM after the first answer. Host (x86_64) release binaries; the local \
         moto and sandbox answer the AWS and amoCRM calls.",
    );
    for speed in &speeds {
        if let Speed::LambdaShare(caps) = speed {
            let throttled: Vec<String> = caps
                .iter()
                .zip(&subjects)
                .filter_map(|(cap, s)| {
                    cap.throttled()
                        .map(|(n, t)| format!("{} {n}× ({})", s.name, ms(t)))
                })
                .collect();
            table.note(format!(
                "The cgroup quota held the capped runs back (throttled periods, total time): {}",
                throttled.join(", ")
            ));
        }
    }
    for n in notes {
        table.note(n);
    }
    for m in missing {
        table.note(format!("skipped {m}"));
    }
    Ok(table)
}

pub fn artifacts(options: &Options) -> Table {
    let mut table = Table::new(
        "Artifact size: arm64 release (cargo lambda build --release --arm64 --output-format zip)",
        &["Function", "bootstrap", "bootstrap.zip"],
    );
    let sizes = artifacts::sizes(&options.lambda_dir, &FUNCTIONS);
    for s in &sizes {
        table.row(vec![
            s.function.clone(),
            s.bootstrap_bytes.map(mb).unwrap_or_else(|| "–".into()),
            mb(s.zip_bytes),
        ]);
    }
    if sizes.is_empty() {
        table.note(format!(
            "not available: no bootstrap.zip under {} (cargo-lambda missing or build skipped)",
            options.lambda_dir.display()
        ));
    } else {
        table.note(format!("read from {}", options.lambda_dir.display()));
    }
    table
}

/// The load generator's client: keep-alive, enough idle connections for the highest
/// concurrency, and `timeout` per request.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client")
}

fn http() -> reqwest::Client {
    http_client(Duration::from_secs(30))
}

/// `POST /leads` as the site sends it, a new lead each time.
async fn lead_load(stack: &LocalStack, concurrency: usize, duration: Duration) -> LoadResult {
    let (client, url) = (http(), format!("{}/leads", stack.api_url));
    load::run(concurrency, duration, move |n| {
        let request = client
            .post(&url)
            .json(&events::site_lead(1_000_000 + n))
            .send();
        async move { matches!(request.await, Ok(r) if r.status().as_u16() == 202) }
    })
    .await
}

/// `POST /webhook/amocrm` as amoCRM sends it (form body, its request id), a new deal each time.
async fn webhook_load(stack: &LocalStack, concurrency: usize, duration: Duration) -> LoadResult {
    let client = http();
    let url = format!(
        "{}/webhook/amocrm?token={}",
        stack.api_url, stack.options.webhook_token
    );
    let account = stack.options.sandbox.account_id;
    load::run(concurrency, duration, move |n| {
        let body = format!(
            "account%5Bsubdomain%5D=new599bd9d13818a&account%5Bid%5D={account}\
             &leads%5Bstatus%5D%5B0%5D%5Bid%5D={}&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142\
             &leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=80953554\
             &leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=10226282",
            5_000_000 + n
        );
        let request = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", "amoCRM-Webhooks/3.0")
            .header("x-amocrm-requestid", uuid::Uuid::new_v4().to_string())
            .body(body)
            .send();
        async move { matches!(request.await, Ok(r) if r.status().is_success()) }
    })
    .await
}

/// The bare PutItem's own table, so its items do not grow the leads table the handlers write.
const PUT_TABLE: &str = "bench-putitem";

async fn create_put_table(stack: &LocalStack) -> Result<(), BenchError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    stack
        .aws
        .dynamodb
        .create_table()
        .table_name(PUT_TABLE)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .send()
        .await?;
    Ok(())
}

/// A bare PutItem of a lead-sized item to the same moto: the floor under both handlers.
async fn put_item_load(stack: &LocalStack, concurrency: usize, duration: Duration) -> LoadResult {
    let dynamodb = stack.aws.dynamodb.clone();
    load::run(concurrency, duration, move |n| {
        let request = dynamodb
            .put_item()
            .table_name(PUT_TABLE)
            .item("pk", AttributeValue::S(format!("BENCH#{n}")))
            .item("kind", AttributeValue::S("bench".into()))
            .item("payload", AttributeValue::S("x".repeat(600)))
            .send();
        async move { request.await.is_ok() }
    })
    .await
}

/// A bare TransactWriteItems of the same shape as lead-ingest's (idempotency claim + lead,
/// both conditional) into the leads table: moto's transactions copy the whole table per call,
/// so this is the fair floor under POST /leads on moto.
async fn transact_load(stack: &LocalStack, concurrency: usize, duration: Duration) -> LoadResult {
    use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
    let (dynamodb, table) = (
        stack.aws.dynamodb.clone(),
        stack.resources.leads_table.clone(),
    );
    load::run(concurrency, duration, move |n| {
        let put = |pk: String| {
            Put::builder()
                .table_name(&table)
                .item("pk", AttributeValue::S(pk))
                .item("kind", AttributeValue::S("bench".into()))
                .item("payload", AttributeValue::S("x".repeat(600)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
        };
        let items = [
            put(format!("BENCH-IDEM#{n}")),
            put(format!("BENCH-LEAD#{n}")),
        ];
        let request = items
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map(|items| {
                dynamodb
                    .transact_write_items()
                    .set_transact_items(Some(items))
                    .send()
            });
        async move {
            match request {
                Ok(request) => request.await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64()),
        _ => "–".into(),
    }
}

/// One concurrency level: the route, the bare PutItem, and (for leads) the bare transaction.
struct Level {
    concurrency: usize,
    route: LoadResult,
    put: LoadResult,
    transact: Option<LoadResult>,
}

fn latency_table(title: &str, rows: &[Level], seconds: u64) -> Table {
    let with_transact = rows.iter().any(|r| r.transact.is_some());
    let mut header = vec![
        "Concurrency",
        "Requests",
        "Req/s",
        "p50",
        "p99",
        "Errors",
        "PutItem p50",
        "PutItem p99",
        "p50 ÷ PutItem",
        "p99 ÷ PutItem",
    ];
    if with_transact {
        header.extend(["Txn p50", "Txn p99", "p50 ÷ Txn", "p99 ÷ Txn"]);
    }
    let mut table = Table::new(title, &header);
    for level in rows {
        let (route, put) = (&level.route, &level.put);
        let mut row = vec![
            level.concurrency.to_string(),
            route.requests().to_string(),
            format!("{:.0}", route.per_second()),
            opt_ms(route.p50()),
            opt_ms(route.p99()),
            route.errors.to_string(),
            opt_ms(put.p50()),
            opt_ms(put.p99()),
            ratio(route.p50(), put.p50()),
            ratio(route.p99(), put.p99()),
        ];
        if let Some(txn) = &level.transact {
            row.extend([
                opt_ms(txn.p50()),
                opt_ms(txn.p99()),
                ratio(route.p50(), txn.p50()),
                ratio(route.p99(), txn.p99()),
            ]);
        }
        table.row(row);
    }
    table.note(format!(
        "{seconds} s per level, closed loop over HTTP/1.1 keep-alive to the local front (the \
         handlers run in its process, as in `make run`). PutItem = a bare DynamoDB PutItem to the \
         same moto at the same concurrency (own table); moto serves one request at a time, so at \
         higher concurrency every column is dominated by its queue."
    ));
    if with_transact {
        table.note(
            "Txn = a bare TransactWriteItems of lead-ingest's shape (claim + lead, conditional) \
             into the leads table, measured just before the route. moto deep-copies the whole \
             table for every item of a transaction, so its cost grows with the rows already \
             written: this, not the handler, is most of POST /leads on moto.",
        );
    }
    table
}

pub async fn latency(options: &Options, stack: &LocalStack) -> Result<Vec<Table>, BenchError> {
    create_put_table(stack).await?;
    let d = options.load_duration;
    let mut leads = Vec::new();
    let mut hooks = Vec::new();
    for &concurrency in &options.concurrency {
        eprintln!("bench: latency at concurrency {concurrency}");
        let put = put_item_load(stack, concurrency, d).await;
        let transact = transact_load(stack, concurrency, d).await;
        leads.push(Level {
            concurrency,
            route: lead_load(stack, concurrency, d).await,
            put: put.clone(),
            transact: Some(transact),
        });
        hooks.push(Level {
            concurrency,
            route: webhook_load(stack, concurrency, d).await,
            put,
            transact: None,
        });
    }
    Ok(vec![
        latency_table(
            "Lead accept latency: POST /leads → 202",
            &leads,
            d.as_secs(),
        ),
        latency_table(
            "Webhook ack latency: POST /webhook/amocrm → 200",
            &hooks,
            d.as_secs(),
        ),
    ])
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The sync benchmark at each size, each on a fresh stack: the figures, then the requests.
pub async fn sync(options: &Options) -> Vec<Table> {
    let mut table = Table::new(
        "Maintenance sync: N passports changed on our side, pushed by the maintenance-sync \
         binary to the sandbox at 7 req/s",
        &[
            "Changed passports",
            "CPU",
            "Records per write",
            "Invocations",
            "Wall time",
            "Function CPU / machine",
            "PATCH span",
            "amoCRM requests",
            "429s",
            "Peak RSS",
            "Floor ceil(N/250)/7",
            "Emulator floor",
            "Wall ÷ larger floor",
            "Span ÷ floor",
            "All pushed",
        ],
    );
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    let speeds = speeds(options, &["maintenance-sync"], &mut notes);
    let mut plans = Vec::new();
    for &n in &options.sync_sizes {
        plans.push((n, 1));
        if options.transaction_sizes.contains(&n) {
            plans.push((n, 100));
        }
    }
    for &(n, record_transaction) in &plans {
        for speed in &speeds {
            let floor = Duration::from_secs_f64(sync::floor_secs(n as u64));
            match sync::drive::measure(options, n, speed.cap(0), record_transaction).await {
                Ok(run) => {
                    let span = run.patch_span();
                    table.row(vec![
                        n.to_string(),
                        run.speed.clone(),
                        run.record_transaction.to_string(),
                        run.invocations.to_string(),
                        seconds(run.wall),
                        run.function_cpu
                            .map(|c| format!("{:.3} ms", c.as_secs_f64() * 1e3 / n as f64))
                            .unwrap_or_else(|| "–".into()),
                        span.map(seconds).unwrap_or_else(|| "–".into()),
                        run.requests.len().to_string(),
                        run.with_status(429).to_string(),
                        run.peak_rss_kb
                            .map(mib_of_kib)
                            .unwrap_or_else(|| "–".into()),
                        seconds(floor),
                        run.emulator_floor
                            .map(seconds)
                            .unwrap_or_else(|| "–".into()),
                        format!(
                            "{:.2}×",
                            run.wall.as_secs_f64()
                                / run
                                    .emulator_floor
                                    .map_or(floor, |e| e.max(floor))
                                    .as_secs_f64()
                        ),
                        span.map(|s| format!("{:.2}×", s.as_secs_f64() / floor.as_secs_f64()))
                            .unwrap_or_else(|| "–".into()),
                        match &run.verified {
                            Ok(()) => "yes".into(),
                            Err(e) => format!("no: {e}"),
                        },
                    ]);
                    table.note(format!(
                        "N = {n} at {}: seeding (not counted) took {}; {}",
                        run.speed,
                        seconds(run.seeding),
                        phase_note(&run)
                    ));
                    runs.push(run);
                }
                Err(e) => {
                    table.row(vec![
                        n.to_string(),
                        speed.label(0),
                        record_transaction.to_string(),
                        "–".into(),
                        "–".into(),
                        "–".into(),
                        "–".into(),
                        "–".into(),
                        "–".into(),
                        "–".into(),
                        seconds(floor),
                        "–".into(),
                        "–".into(),
                        "–".into(),
                        "–".into(),
                    ]);
                    table.note(format!("N = {n} at {}: not measured: {e}", speed.label(0)));
                }
            }
        }
    }
    for n in notes {
        table.note(n);
    }
    table.note(
        "Each size on a fresh local stack: N won deals in the sandbox that an earlier run already \
         read (the pull cursor stands an hour after them), one machine per deal whose values our \
         side changed (pending push). Wall time = the maintenance-sync process's start → the \
         answer whose report says `complete`: init, lease, the pull (nothing new), the push, \
         reminders, re-drive and the report write. PATCH span = first → last PATCH arrival at \
         the sandbox (K requests at exactly 7/s span (K−1)/7 s). Peak RSS = VmHWM of that process. \
         The function paces its amoCRM calls at 7/s less a 15 ms margin (about 6.3/s). Each \
         accepted batch is recorded machine by machine (a conditional UpdateItem each, 16 in \
         flight) before the next index page is read: on moto, which serves one request at a time, \
         those writes, not amoCRM, set most of the wall time.",
    );
    let mut tables = vec![table];
    if !runs.is_empty() {
        tables.push(phases_table(&runs));
        tables.push(requests_table(&runs));
    }
    tables
}

/// The wall time cut at the requests the sandbox logged.
fn phases_table(runs: &[sync::drive::SyncRun]) -> Table {
    let mut table = Table::new(
        "Maintenance sync: where the wall time went (cut at amoCRM request arrivals)",
        &[
            "Changed passports",
            "CPU",
            "Records per write",
            "Start → first request",
            "Pull",
            "Push (last GET → last PATCH)",
            "After the last PATCH",
            "Wall time",
            "Function CPU",
            "moto CPU",
        ],
    );
    for run in runs {
        let cells = match run.phases() {
            Some(p) => vec![
                ms(p.before_first_request),
                seconds(p.pull),
                seconds(p.push),
                seconds(p.after_last_patch),
            ],
            None => vec!["–".into(); 4],
        };
        let mut row = vec![
            run.changed.to_string(),
            run.speed.clone(),
            run.record_transaction.to_string(),
        ];
        row.extend(cells);
        row.push(seconds(run.wall));
        for cpu in [run.function_cpu, run.moto_cpu] {
            row.push(cpu.map(seconds).unwrap_or_else(|| "–".into()));
        }
        table.row(row);
    }
    table.note(
        "Start → first request: process init, secrets, lease, cursor. Pull: the first request to \
         the last GET /api/v4/leads. Push: from there to the last PATCH, i.e. all but the last \
         batch's records. After the last PATCH: that batch's records, reminders, re-drive and \
         the report write. Function CPU: user + system time of the maintenance-sync process. moto \
         CPU: the same for the moto server over the run; it serves one request at a time, so \
         this is how long the run's DynamoDB calls (index pages, one conditional UpdateItem per \
         machine pushed) kept it busy.",
    );
    table
}

/// Where the wall time went, from the sandbox's request log and the run reports.
fn phase_note(run: &sync::drive::SyncRun) -> String {
    let pushed: u64 = run.reports.iter().map(|r| r.push.written).sum();
    let batches: u64 = run.reports.iter().map(|r| r.push.requests).sum();
    let pulled: u64 = run.reports.iter().map(|r| r.pull.deals).sum();
    format!(
        "{pushed} machines pushed in {batches} PATCH requests, {pulled} deals pulled, \
         {} invocation(s)",
        run.invocations
    )
}

/// amoCRM requests of each run by method, path and status.
fn requests_table(runs: &[sync::drive::SyncRun]) -> Table {
    let counts: Vec<Vec<(String, usize)>> = runs
        .iter()
        .map(|run| {
            sync::by_endpoint(
                run.requests
                    .iter()
                    .map(|r| (r.method.as_str(), r.path.as_str(), r.status)),
            )
        })
        .collect();
    let mut endpoints: Vec<String> = counts
        .iter()
        .flat_map(|c| c.iter().map(|(e, _)| e.clone()))
        .collect();
    endpoints.sort();
    endpoints.dedup();
    let names: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "N = {} ({}, {}/write)",
                r.changed, r.speed, r.record_transaction
            )
        })
        .collect();
    let mut header = vec!["amoCRM request → status"];
    header.extend(names.iter().map(String::as_str));
    let mut table = Table::new(
        "Maintenance sync: amoCRM requests by method, path and status (the sandbox's log)",
        &header,
    );
    for endpoint in endpoints {
        let mut row = vec![endpoint.clone()];
        for c in &counts {
            let n = c
                .iter()
                .find(|(e, _)| *e == endpoint)
                .map_or(0, |(_, n)| *n);
            row.push(n.to_string());
        }
        table.row(row);
    }
    table
}

/// The backfill of deals won before go-live, at each size, each on a fresh stack.
pub async fn backfill(options: &Options) -> Table {
    let mut table = Table::new(
        "Backfill: N deals already won, registered by `rss-ops backfill` against the sandbox",
        &[
            "Won deals",
            "Registered",
            "List requests",
            "Floor ceil(N/250)",
            "429s",
            "Wall time",
            "Floor (K−1)/2 s",
            "Peak RSS",
        ],
    );
    for &n in &options.backfill_sizes {
        match crate::backfill::measure(options, n).await {
            Ok(run) => table.row(vec![
                n.to_string(),
                run.registered.to_string(),
                run.list_requests.to_string(),
                run.floor_requests().to_string(),
                run.too_many.to_string(),
                seconds(run.wall),
                seconds(run.floor_time()),
                run.peak_rss_kb
                    .map(mib_of_kib)
                    .unwrap_or_else(|| "–".into()),
            ]),
            Err(e) => table.note(format!("N = {n}: not measured: {e}")),
        }
    }
    table.note(
        "Each size on a fresh local stack whose sandbox holds N won deals with serial and \
         Telegram ID, and N/10 lost and N/10 open ones (never read: the list filters status \
         142). Wall time = the rss-ops process's start → exit: its set-up, every page of 250 \
         deals (`order[id]=asc`, `with=contacts`) at rss-ops' 2 requests/s, and per deal the \
         webhook path's conditional PutItem of the machine and the DeleteItem of its waiting \
         marker on moto, plus the cursor after each page. Peak RSS = VmHWM of that process, \
         sampled every 20 ms.",
    );
    table
}
