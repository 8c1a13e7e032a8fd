//! A process the benchmark started and measures: its CPU time and peak RSS while it lives,
//! the tail of its stderr for a failure's message, and, where it is held to a CPU share, its
//! cgroup. Killed and cleaned up when dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::cold_start::{peak_rss_kb, stderr_tail};
use crate::cpu_share::CpuCap;
use crate::sync::cpu::cpu_time;

pub struct Spawned {
    child: Child,
    pid: u32,
    /// Just before the spawn.
    pub started: Instant,
    label: String,
    stderr_path: PathBuf,
    // Dropped after `drop` has killed the child: a cgroup can only be removed once empty.
    _cap: Option<CpuCap>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

impl Spawned {
    /// Spawns `command`, whose stderr goes to `stderr_path`, inside `cap` from its first
    /// instruction when there is one.
    pub fn spawn(
        label: &str,
        mut command: Command,
        cap: Option<CpuCap>,
        stderr_path: PathBuf,
    ) -> Result<Self, String> {
        if let Some(cap) = &cap {
            cap.confine(&mut command);
        }
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| format!("{label}: could not start: {e}"))?;
        let pid = child.id().ok_or_else(|| format!("{label}: no pid"))?;
        Ok(Self {
            child,
            pid,
            started,
            label: label.to_string(),
            stderr_path,
            _cap: cap,
        })
    }

    /// Polls `ready` (when the process was up, if it is) every millisecond until it answers:
    /// the time from the spawn. Fails when the process exits first or `timeout` passes.
    pub async fn wait_ready<F, Fut>(
        &mut self,
        timeout: Duration,
        mut ready: F,
    ) -> Result<Duration, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<Instant>>,
    {
        let label = &self.label;
        loop {
            if let Some(at) = ready().await {
                return Ok(at.duration_since(self.started));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{label}: exited at start ({status}): {}",
                    stderr_tail(&self.stderr_path)
                ));
            }
            if self.started.elapsed() > timeout {
                return Err(format!("{label}: not ready within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn cpu(&self) -> Duration {
        cpu_time(self.pid).unwrap_or_default()
    }

    pub fn peak_rss_kb(&self) -> Option<u64> {
        peak_rss_kb(self.pid)
    }

    pub fn stderr_tail(&self) -> String {
        stderr_tail(&self.stderr_path)
    }
}
