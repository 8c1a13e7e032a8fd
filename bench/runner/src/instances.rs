//! Warm instances of one function, as Lambda runs them under load: one process per concurrent
//! request, each with its own Runtime API, taking one event at a time. Each process may be held
//! to its Lambda CPU share by its own cgroup (on Lambda every instance has its own share).

use std::time::{Duration, Instant};

use crate::cold_start::{Subject, function_command, short_answer};
use crate::cpu_share::CpuCap;
use crate::events::EventContext;
use crate::load::LoadResult;
use crate::runtime_api::RuntimeApi;
use crate::sections::median;
use crate::spawned::Spawned;

/// How long one invocation may take before it counts as failed.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Instance {
    api: RuntimeApi,
    process: Spawned,
    /// Spawn → its first `…/invocation/next`.
    pub init: Duration,
}

impl Instance {
    /// Starts `subject` and waits until it asks for its first event. `share`: its own cgroup
    /// at this CPU share.
    pub async fn start(
        subject: &Subject,
        env: &[(String, String)],
        index: usize,
        share: Option<f64>,
    ) -> Result<Self, String> {
        let label = format!("{}-{index}", subject.name);
        let cap = share.map(|s| CpuCap::new(&label, s)).transpose()?;
        let api = RuntimeApi::serve(INVOKE_TIMEOUT)
            .await
            .map_err(|e| format!("runtime API: {e}"))?;
        let stderr_path = std::env::temp_dir().join(format!(
            "bench-instance-{label}-{}.stderr",
            std::process::id()
        ));
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let command = function_command(subject, env, &api.address, stderr);
        let mut process = Spawned::spawn(&label, command, cap, stderr_path)?;
        let init = process
            .wait_ready(START_TIMEOUT, || std::future::ready(api.ready_at()))
            .await?;
        Ok(Self { api, process, init })
    }

    /// One invocation: hands `event` over and waits for the answer. Returns the latency and
    /// the answer in short (`HTTP 202`, or the body's start), or why it failed.
    pub async fn invoke(&mut self, event: String) -> Result<(Duration, String), String> {
        let sent = Instant::now();
        self.api.invoke(event);
        match tokio::time::timeout(INVOKE_TIMEOUT, self.api.answers.recv()).await {
            Ok(Some(answer)) if answer.ok => {
                Ok((answer.at.duration_since(sent), short_answer(&answer.body)))
            }
            Ok(Some(answer)) => Err(answer.body.chars().take(300).collect()),
            Ok(None) => Err("runtime API closed".into()),
            Err(_) => Err(format!("no answer within {INVOKE_TIMEOUT:?}")),
        }
    }

    pub fn cpu(&self) -> Duration {
        self.process.cpu()
    }

    pub fn peak_rss_kb(&self) -> Option<u64> {
        self.process.peak_rss_kb()
    }
}

/// A closed-loop load over warm instances: what it measured and what the instances used.
pub struct PoolRun {
    pub load: LoadResult,
    /// CPU time of all the instances during the load.
    pub cpu: Duration,
    /// The largest instance's peak RSS.
    pub peak_rss_kb: Option<u64>,
    /// The median instance's init.
    pub init: Option<Duration>,
    /// The median instance's spawn → answer to its first (unmeasured) event.
    pub first_answer: Option<Duration>,
    pub first_error: Option<String>,
}

/// Starts `count` instances of `subject` and, once all are ready, keeps each busy for
/// `duration` with events from `event`; an answer other than `expect` counts as an error.
pub async fn run_pool(
    subject: &Subject,
    env: &[(String, String)],
    ctx: &std::sync::Arc<EventContext>,
    count: usize,
    share: Option<f64>,
    duration: Duration,
    expect: &'static str,
) -> Result<PoolRun, String> {
    let mut instances = Vec::with_capacity(count);
    for i in 0..count {
        instances.push(Instance::start(subject, env, i, share).await?);
    }
    let mut inits: Vec<Duration> = instances.iter().map(|i| i.init).collect();
    let mut firsts = Vec::with_capacity(count);
    for instance in &mut instances {
        let (latency, answer) = instance.invoke((subject.event)(ctx)).await?;
        if answer != expect {
            return Err(format!("{}: first answer {answer}", subject.name));
        }
        firsts.push(instance.init + latency);
    }
    let cpu_before: Duration = instances.iter().map(Instance::cpu).sum();
    let started = Instant::now();
    let deadline = started + duration;
    let event = subject.event;
    let tasks: Vec<_> = instances
        .into_iter()
        .map(|mut instance| {
            let ctx = std::sync::Arc::clone(ctx);
            tokio::spawn(async move {
                let mut result = LoadResult::default();
                let mut first_error = None;
                while Instant::now() < deadline {
                    match instance.invoke(event(&ctx)).await {
                        Ok((latency, answer)) if answer == expect => result.latencies.push(latency),
                        Ok((_, answer)) => {
                            result.errors += 1;
                            first_error.get_or_insert(answer);
                        }
                        Err(e) => {
                            result.errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (instance, result, first_error)
            })
        })
        .collect();
    let mut run = PoolRun {
        load: LoadResult::default(),
        cpu: Duration::ZERO,
        peak_rss_kb: None,
        init: median(&mut inits),
        first_answer: median(&mut firsts),
        first_error: None,
    };
    let mut finished = Vec::new();
    for task in tasks {
        let (instance, result, error) = task.await.map_err(|e| e.to_string())?;
        run.load.latencies.extend(result.latencies);
        run.load.errors += result.errors;
        run.first_error = run.first_error.or(error);
        finished.push(instance);
    }
    run.load.elapsed = started.elapsed();
    run.cpu = finished
        .iter()
        .map(Instance::cpu)
        .sum::<Duration>()
        .saturating_sub(cpu_before);
    run.peak_rss_kb = finished.iter().filter_map(Instance::peak_rss_kb).max();
    Ok(run)
}
