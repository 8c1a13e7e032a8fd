//! The backfill benchmark: an account with N deals won before go-live (plus lost and open
//! ones), registered by the real `rss-ops backfill` binary against the sandbox, compared with
//! its floor: ceil(N/250) list requests at rss-ops' share of the rate limit.

use std::time::{Duration, Instant};

use amocrm_sandbox::History;
use local_stack::{LocalStack, StackOptions};
use serde_json::Value;
use shared::wiring::OPERATOR_RPS;

use crate::BenchError;
use crate::cold_start::peak_rss_kb;
use crate::options::Options;

/// amoCRM's page: the backfill reads won deals 250 at a time.
const PAGE: u64 = 250;

/// What one backfill of `won` deals cost.
pub struct BackfillRun {
    pub won: usize,
    pub wall: Duration,
    /// List requests the backfill made (`GET /api/v4/leads`, as the sandbox logged them).
    pub list_requests: usize,
    /// Every amoCRM request of the run, by status class: 429s must be 0.
    pub too_many: usize,
    pub registered: u64,
    pub peak_rss_kb: Option<u64>,
}

impl BackfillRun {
    /// ceil(N/250): the least list requests that read N won deals.
    pub fn floor_requests(&self) -> u64 {
        (self.won as u64).div_ceil(PAGE)
    }

    /// K requests paced at rss-ops' r/s: the first leaves at once, the last (K−1)/r s later.
    pub fn floor_time(&self) -> Duration {
        Duration::from_secs_f64(
            self.floor_requests().saturating_sub(1) as f64 / f64::from(OPERATOR_RPS),
        )
    }
}

/// Starts a stack whose sandbox holds `won` won deals (and a tenth as many lost and open ones),
/// then runs `rss-ops backfill --json` against it, sampling its peak RSS every 20 ms.
pub async fn measure(options: &Options, won: usize) -> Result<BackfillRun, BenchError> {
    let mut stack_options = StackOptions::for_tests();
    stack_options.history = Some(History {
        won,
        won_without_serial: 0,
        won_without_telegram: 0,
        lost: won / 10,
        open: won / 10,
        old_webhook: false,
        span_days: 700,
    });
    let stack = LocalStack::start(stack_options).await?;
    stack.sandbox.state.clear_requests();
    let binary = options.bin_dir.join("rss-ops");
    let mut cmd = tokio::process::Command::new(&binary);
    cmd.args(["backfill", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    for (k, v) in stack.ops_env() {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("{}: {e} (make bench builds it)", binary.display()))?;
    let pid = child.id().unwrap_or_default();
    let sampler = tokio::spawn(async move {
        let mut peak = None;
        while let Some(kb) = peak_rss_kb(pid) {
            peak = Some(peak.map_or(kb, |p: u64| p.max(kb)));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    let out = child.wait_with_output().await?;
    let wall = started.elapsed();
    let peak_rss_kb = sampler.await.ok().flatten();
    if !out.status.success() {
        return Err(format!(
            "rss-ops backfill failed: {}",
            String::from_utf8_lossy(&out.stdout)
        )
        .into());
    }
    let report: Value = serde_json::from_slice(&out.stdout)?;
    let requests = stack.sandbox.state.requests();
    Ok(BackfillRun {
        won,
        wall,
        list_requests: requests
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/api/v4/leads")
            .count(),
        too_many: requests.iter().filter(|r| r.status == 429).count(),
        registered: report["counts"]["registered"].as_u64().unwrap_or(0),
        peak_rss_kb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_whole_pages_at_the_operators_rate() {
        let run = |won| BackfillRun {
            won,
            wall: Duration::ZERO,
            list_requests: 0,
            too_many: 0,
            registered: 0,
            peak_rss_kb: None,
        };
        assert_eq!(run(5_000).floor_requests(), 20);
        assert_eq!(run(5_001).floor_requests(), 21);
        assert_eq!(run(5_000).floor_time(), Duration::from_secs_f64(19.0 / 2.0));
        assert_eq!(run(100).floor_time(), Duration::ZERO);
    }
}
