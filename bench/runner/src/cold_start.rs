//! Cold start: a fresh process per run, from spawn to its first answer posted to the local
//! Runtime API, and the process's peak RSS (VmHWM) read just before it is killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::cpu_share::CpuCap;
use crate::runtime_api::RuntimeApi;

/// One program measured: a function binary or the Python baseline.
#[derive(Debug, Clone)]
pub struct Subject {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Builds the first event afresh for each run (unique ids, fresh signatures).
    pub event: fn(&crate::events::EventContext) -> String,
}

#[derive(Debug, Clone)]
pub struct Sample {
    /// Spawn → first answer.
    pub elapsed: Duration,
    /// Spawn → first `…/invocation/next` (the process is ready for its first event).
    pub init: Option<Duration>,
    pub peak_rss_kb: Option<u64>,
    /// `statusCode` of an HTTP answer, or a short form of the answer.
    pub answer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ColdStartError {
    #[error("{0}: could not start: {1}")]
    Spawn(String, std::io::Error),
    #[error("{0}: exited before answering ({1}); stderr tail: {2}")]
    Exited(String, String, String),
    #[error("{0}: reported an error: {1}")]
    Failed(String, String),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("runtime API: {0}")]
    Io(#[from] std::io::Error),
}

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// `subject` as the Lambda service starts it: only `env` and the runtime variables, pointed
/// at the Runtime API at `address`; stdout dropped, stderr to `stderr`; killed when dropped.
pub fn function_command(
    subject: &Subject,
    env: &[(String, String)],
    address: &str,
    stderr: std::fs::File,
) -> Command {
    let mut command = Command::new(&subject.program);
    command
        .args(&subject.args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", address)
        .env("AWS_LAMBDA_FUNCTION_NAME", &subject.name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    command
}

/// Starts `subject` once with `env` and waits for its answer to the one event.
pub async fn measure_once(
    subject: &Subject,
    env: &[(String, String)],
    ctx: &crate::events::EventContext,
    cap: Option<&CpuCap>,
) -> Result<Sample, ColdStartError> {
    let mut api = RuntimeApi::serve_once((subject.event)(ctx)).await?;
    let stderr_path = std::env::temp_dir().join(format!(
        "bench-{}-{}.stderr",
        subject.name.replace(['/', ' '], "_"),
        std::process::id()
    ));
    let stderr = std::fs::File::create(&stderr_path)?;
    let mut command = function_command(subject, env, &api.address, stderr);
    if let Some(cap) = cap {
        cap.confine(&mut command);
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| ColdStartError::Spawn(subject.name.clone(), e))?;
    let pid = child.id();
    let outcome = tokio::select! {
        answer = api.answers.recv() => Ok(answer),
        status = child.wait() => Err(status),
        _ = tokio::time::sleep(RUN_TIMEOUT) => Ok(None),
    };
    let result = match outcome {
        Ok(Some(answer)) => {
            let peak_rss_kb = pid.and_then(peak_rss_kb);
            if answer.ok {
                Ok(Sample {
                    elapsed: answer.at.duration_since(started),
                    init: api.ready_at().map(|t| t.duration_since(started)),
                    peak_rss_kb,
                    answer: short_answer(&answer.body),
                })
            } else {
                Err(ColdStartError::Failed(
                    subject.name.clone(),
                    answer.body.chars().take(300).collect(),
                ))
            }
        }
        Ok(None) => Err(ColdStartError::Timeout(subject.name.clone(), RUN_TIMEOUT)),
        Err(status) => Err(ColdStartError::Exited(
            subject.name.clone(),
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            stderr_tail(&stderr_path),
        )),
    };
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&stderr_path);
    result
}

/// The peak resident set size of a live process, in KiB (Linux `/proc/<pid>/status` VmHWM).
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `statusCode` of an API Gateway answer, else the first characters of the answer.
pub fn short_answer(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v.get("statusCode").is_some() => format!("HTTP {}", v["statusCode"]),
        _ => body.chars().take(40).collect(),
    }
}

pub fn stderr_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(600);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_of_this_process_is_read_from_proc() {
        let kb = peak_rss_kb(std::process::id()).expect("VmHWM of a live process");
        // Any test binary maps more than a megabyte; a parse of the wrong field gives 0 or None.
        assert!(kb > 1024, "{kb} KiB");
    }

    #[test]
    fn answers_are_shortened_to_their_http_status() {
        assert_eq!(
            short_answer(r#"{"statusCode":202,"body":"{}"}"#),
            "HTTP 202"
        );
        assert_eq!(
            short_answer(r#"{"batchItemFailures":[]}"#),
            r#"{"batchItemFailures":[]}"#
        );
    }
}
