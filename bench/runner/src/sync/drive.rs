//! One sync benchmark: a fresh local stack, `n` changed passports seeded (untimed), then the
//! real `maintenance-sync` binary started once against a local Runtime API and invoked with
//! the schedule's event until its report says `complete` — as EventBridge would invoke it
//! again while runs end `incomplete`. Measured: process start → the complete answer, the
//! process's peak RSS (VmHWM, the whole process over all its invocations), and every request
//! the sandbox answered meanwhile.

use std::time::{Duration, Instant};

use amocrm_sandbox::RequestLog;
use local_stack::{LocalStack, StackOptions};
use serde_json::Value;
use shared::maintenance::{RunOutcome, RunReport};
use shared::ports::PassportStore;

use super::cpu;
use super::seed::{self, Seeded};
use crate::BenchError;
use crate::cold_start::{Subject, function_command, peak_rss_kb, stderr_tail};
use crate::cpu_share::CpuCap;
use crate::events::{self, EventContext};
use crate::options::Options;
use crate::runtime_api::RuntimeApi;
use crate::stack_env::function_env;

/// The function's timeout in template.yaml (MaintenanceSyncFunction): each invocation's deadline.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(900);
/// A run that needs more invocations than this is reported as failed, not waited for.
const MAX_INVOCATIONS: usize = 20;

/// What one sync benchmark measured.
pub struct SyncRun {
    pub changed: u64,
    /// The CPU the process had: `full`, or its Lambda share (`0.145 vCPU`).
    pub speed: String,
    /// Machines recorded per DynamoDB write after a push (`SYNC_RECORD_TRANSACTION`).
    pub record_transaction: usize,
    pub seeding: Duration,
    pub invocations: usize,
    /// Process start → the answer whose report says `complete`.
    pub wall: Duration,
    pub peak_rss_kb: Option<u64>,
    pub reports: Vec<RunReport>,
    /// Every request the sandbox answered from the first invocation to the last answer.
    pub requests: Vec<RequestLog>,
    /// Every seeded deal holds the pushed values and no machine waits any more.
    pub verified: Result<(), String>,
    /// CPU time of the function process over the whole run.
    pub function_cpu: Option<Duration>,
    /// CPU time moto spent from the process start to the complete answer.
    pub moto_cpu: Option<Duration>,
    /// Unix ms of the process start, on the sandbox's clock (its log's time line).
    pub started_at_ms: i64,
    /// The same count of minimal DynamoDB writes and page reads, bare on the same moto just
    /// before the run (`floor::emulator_floor`).
    pub emulator_floor: Option<Duration>,
}

/// Where the wall time went, cut at the requests the sandbox logged (arrival times).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phases {
    /// Process start → the first amoCRM request: init, secrets, lease, cursor.
    pub before_first_request: Duration,
    /// The first request → the last `GET /api/v4/leads` (the pull).
    pub pull: Duration,
    /// The last pull request → the last `PATCH /api/v4/leads`.
    pub push: Duration,
    /// The last PATCH → the complete answer: its batch's records, reminders, re-drive, report.
    pub after_last_patch: Duration,
}

impl SyncRun {
    pub fn with_status(&self, status: u16) -> usize {
        self.requests.iter().filter(|r| r.status == status).count()
    }

    fn arrivals(&self, method: &str) -> Vec<i64> {
        self.requests
            .iter()
            .filter(|r| r.method == method && r.path == "/api/v4/leads")
            .map(|r| r.at_ms)
            .collect()
    }

    /// First to last `PATCH /api/v4/leads` arrival at the sandbox.
    pub fn patch_span(&self) -> Option<Duration> {
        let at = self.arrivals("PATCH");
        let (first, last) = (at.iter().min()?, at.iter().max()?);
        Some(millis(last - first))
    }

    pub fn phases(&self) -> Option<Phases> {
        let first = self.requests.iter().map(|r| r.at_ms).min()?;
        let last_get = self.arrivals("GET").into_iter().max()?;
        let last_patch = self.arrivals("PATCH").into_iter().max()?;
        let finished = self.started_at_ms + self.wall.as_millis() as i64;
        Some(Phases {
            before_first_request: millis(first - self.started_at_ms),
            pull: millis(last_get - first),
            push: millis(last_patch - last_get),
            after_last_patch: millis(finished - last_patch),
        })
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the benchmark for `n` changed passports with the binary in `options.bin_dir`.
pub async fn measure(
    options: &Options,
    n: usize,
    cap: Option<&CpuCap>,
    record_transaction: usize,
) -> Result<SyncRun, BenchError> {
    let program = options.bin_dir.join("maintenance-sync");
    if !program.is_file() {
        return Err(format!("no binary at {}", program.display()).into());
    }
    let stack = LocalStack::start(StackOptions::for_tests()).await?;
    eprintln!("bench: sync {n}: seeding {n} deals and changed passports (not timed)");
    let seeding_started = Instant::now();
    let seeded = seed::changed_passports(&stack, n).await?;
    let seeding = seeding_started.elapsed();
    eprintln!("bench: sync {n}: seeded in {seeding:.1?}; running maintenance-sync");
    let emulator_floor =
        match super::floor::emulator_floor(&stack.aws.dynamodb, n, record_transaction).await {
            Ok(floor) => Some(floor),
            Err(e) => {
                eprintln!("bench: sync {n}: emulator floor not measured: {e}");
                None
            }
        };
    stack.sandbox.state.clear_requests();

    let subject = Subject {
        name: "maintenance-sync".into(),
        program,
        args: Vec::new(),
        event: events::maintenance_sync,
    };
    let ctx = EventContext::new(
        options.repo_root.clone(),
        stack.options.webhook_token.clone(),
        stack.options.telegram_bot_token.clone(),
    );
    let logs = std::env::temp_dir().join(format!("bench-sync-{n}-{}.log", std::process::id()));
    let mut api = RuntimeApi::serve(FUNCTION_TIMEOUT).await?;
    let log = std::fs::File::create(&logs)?;
    let mut command = function_command(
        &subject,
        &function_env(&stack),
        &api.address,
        log.try_clone()?,
    );
    // The function logs JSON lines to stdout: kept with stderr for a failed run's message.
    command.stdout(log);
    command.env("SYNC_RECORD_TRANSACTION", record_transaction.to_string());
    if let Some(cap) = cap {
        cap.confine(&mut command);
    }
    let moto = cpu::moto_pid(&stack.moto.url);
    let moto_cpu_before = moto.and_then(cpu::cpu_time);
    let started = Instant::now();
    let started_at_ms = unix_ms() + seed::AGE_OF_DEALS.as_millis() as i64;
    let mut child = command.spawn()?;
    let pid = child.id();

    let mut reports = Vec::new();
    let mut finished = None;
    while reports.len() < MAX_INVOCATIONS {
        api.invoke((subject.event)(&ctx));
        let answer = tokio::select! {
            answer = api.answers.recv() => answer.ok_or("the runtime API stopped")?,
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                return Err(format!(
                    "maintenance-sync exited ({status}); log tail: {}",
                    stderr_tail(&logs)
                ).into());
            }
        };
        if !answer.ok {
            return Err(format!("maintenance-sync reported an error: {}", answer.body).into());
        }
        let report: RunReport = serde_json::from_str(&answer.body)?;
        let outcome = report.outcome;
        eprintln!(
            "bench: sync {n}: invocation {} ended {} (pushed {}, {} PATCH requests)",
            reports.len() + 1,
            outcome.as_str(),
            report.push.written,
            report.push.requests
        );
        reports.push(report);
        match outcome {
            RunOutcome::Complete => {
                finished = Some(answer.at);
                break;
            }
            RunOutcome::Incomplete => continue,
            RunOutcome::Failed | RunOutcome::Skipped => {
                return Err(format!(
                    "maintenance-sync run ended {}: {:?}",
                    outcome.as_str(),
                    reports.last().and_then(|r| r.error.clone())
                )
                .into());
            }
        }
    }
    let finished = finished.ok_or_else(|| {
        format!("maintenance-sync did not complete in {MAX_INVOCATIONS} invocations")
    })?;
    let peak_rss_kb = pid.and_then(peak_rss_kb);
    let function_cpu = pid.and_then(cpu::cpu_time);
    let moto_cpu = moto
        .and_then(cpu::cpu_time)
        .zip(moto_cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&logs);
    let requests = stack.sandbox.state.requests();
    let verified = verify(&stack, &seeded).await;
    Ok(SyncRun {
        changed: n as u64,
        speed: cap.map_or_else(|| "full".into(), |c| format!("{:.3} vCPU", c.share)),
        record_transaction,
        seeding,
        invocations: reports.len(),
        wall: finished.duration_since(started),
        peak_rss_kb,
        reports,
        requests,
        verified,
        function_cpu,
        moto_cpu,
        started_at_ms,
        emulator_floor,
    })
}

/// Every seeded deal carries the pushed status and date, and no machine waits for a push.
async fn verify(stack: &LocalStack, seeded: &Seeded) -> Result<(), String> {
    let ids = stack
        .config
        .sync
        .field_ids()
        .ok_or("the stack has no maintenance field ids")?;
    let status = ids.status_enums.enum_id(seeded.maintenance.status);
    let date = stack
        .config
        .sync
        .zone
        .midnight(seeded.maintenance.next_due)
        .timestamp();
    let field = |lead: &Value, id: i64| -> Option<Value> {
        lead["custom_fields_values"]
            .as_array()?
            .iter()
            .find(|f| f["field_id"] == id)
            .map(|f| f["values"][0].clone())
    };
    let wrong = seeded
        .deals
        .iter()
        .filter(|id| {
            let Some(lead) = stack.sandbox.state.lead(**id) else {
                return true;
            };
            field(&lead, ids.status).and_then(|v| v["enum_id"].as_i64()) != Some(status)
                || field(&lead, ids.next_maintenance).and_then(|v| v["value"].as_i64())
                    != Some(date)
        })
        .count();
    if wrong > 0 {
        return Err(format!(
            "{wrong} of {} deals lack the pushed values",
            seeded.deals.len()
        ));
    }
    let passport = shared::store::DynamoPassportStore::new(
        stack.aws.dynamodb.clone(),
        &stack.resources.passport_table,
    );
    let waiting = passport
        .pending_push(1, None)
        .await
        .map_err(|e| e.to_string())?;
    if !waiting.items.is_empty() {
        return Err("machines still wait for a push".into());
    }
    Ok(())
}
