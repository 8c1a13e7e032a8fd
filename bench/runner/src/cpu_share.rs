//! Lambda's CPU share on this machine: "at 1,769 MB, a function has the equivalent of one
//! vCPU", so a function of `MemorySize` M gets M / 1769 of a CPU. A cgroup (v1 `cpu`
//! controller) with `cpu.cfs_quota_us` = share × `cpu.cfs_period_us` holds a function process
//! to that share from its first instruction on.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;

use tokio::process::Command;

/// Memory (MB) that buys one vCPU (AWS Lambda developer guide, "Configure Lambda function memory").
pub const MB_PER_VCPU: f64 = 1769.0;
const PERIOD_US: u64 = 100_000;
const CPU_ROOT: &str = "/sys/fs/cgroup/cpu";

/// The `MemorySize` the template gives the function built from `binary`: its own, else the
/// `Globals` one.
pub fn memory_mb(template: &str, binary: &str) -> Option<u32> {
    let size = |line: &str| {
        line.trim()
            .strip_prefix("MemorySize:")
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    let global = template
        .lines()
        .skip_while(|l| l.trim_end() != "Globals:")
        .take_while(|l| !l.starts_with("Resources:"))
        .find_map(size);
    // A function's block runs from its `Binary:` line to the next top-level resource.
    let own = template
        .split('\n')
        .skip_while(|l| l.trim() != format!("Binary: {binary}"))
        .skip(1)
        .take_while(|l| {
            !(l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':'))
        })
        .find_map(size);
    own.or(global)
}

/// The share of one CPU that `memory_mb` buys.
pub fn share_of(memory_mb: u32) -> f64 {
    (f64::from(memory_mb) / MB_PER_VCPU).min(1.0)
}

/// A cgroup holding its processes to a CPU share; removed when dropped (its processes must
/// have exited by then).
pub struct CpuCap {
    dir: PathBuf,
    procs: File,
    pub share: f64,
}

impl CpuCap {
    /// Creates the cgroup, or says why it cannot (not root, no v1 `cpu` controller).
    pub fn new(label: &str, share: f64) -> Result<Self, String> {
        let dir = PathBuf::from(CPU_ROOT).join(format!("rss-bench-{}-{label}", std::process::id()));
        let fail = |what: &str, e: std::io::Error| {
            format!(
                "no CPU cap ({what} {}: {e}); figures are at full speed",
                dir.display()
            )
        };
        if !PathBuf::from(CPU_ROOT).join("cpu.cfs_quota_us").is_file() {
            return Err(format!(
                "no cgroup v1 cpu controller at {CPU_ROOT}; figures are at full speed"
            ));
        }
        std::fs::create_dir_all(&dir).map_err(|e| fail("creating", e))?;
        let quota = ((share * PERIOD_US as f64) as u64).max(1_000);
        std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())
            .and_then(|()| std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()))
            .map_err(|e| fail("configuring", e))?;
        let procs = File::options()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| fail("opening cgroup.procs of", e))?;
        Ok(Self { dir, procs, share })
    }

    /// Makes `command`'s process join the cgroup between fork and exec, so its start-up
    /// already runs at the share.
    pub fn confine(&self, command: &mut Command) {
        let fd = self.procs.as_raw_fd();
        // SAFETY: between fork and exec the closure makes one write(2) on an fd the child
        // inherited, allocating nothing; the ManuallyDrop keeps the parent's fd open.
        unsafe {
            command.pre_exec(move || {
                let mut procs = std::mem::ManuallyDrop::new(File::from_raw_fd(fd));
                // In cgroup v1, writing 0 moves the writing process itself.
                procs.write_all(b"0")
            });
        }
    }

    /// How often the cgroup's processes were throttled, and for how long in total.
    pub fn throttled(&self) -> Option<(u64, std::time::Duration)> {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
        let value = |key: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
        };
        Some((
            value("nr_throttled ")?,
            std::time::Duration::from_nanos(value("throttled_time ")?),
        ))
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!(
            "bench: cgroup {} left behind (still busy)",
            self.dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "Globals:\n  Function:\n    MemorySize: 256\n    Timeout: 10\nResources:\n  A:\n    Type: AWS::Serverless::Function\n    Metadata:\n      BuildProperties:\n        Binary: small\n    Properties:\n      Timeout: 5\n  B:\n    Type: AWS::Serverless::Function\n    Metadata:\n      BuildProperties:\n        Binary: big\n    Properties:\n      MemorySize: 1024\n";

    #[test]
    fn a_function_has_its_own_memory_size_or_the_global_one() {
        assert_eq!(memory_mb(TEMPLATE, "small"), Some(256));
        assert_eq!(memory_mb(TEMPLATE, "big"), Some(1024));
    }

    #[test]
    fn the_share_is_memory_over_1769_mb_capped_at_one_cpu() {
        assert!((share_of(256) - 0.1447).abs() < 0.001);
        assert_eq!(share_of(4096), 1.0);
    }

    #[test]
    fn the_repository_template_gives_every_function_a_size() {
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
                .unwrap();
        for f in crate::sections::FUNCTIONS {
            assert!(memory_mb(&template, f).is_some(), "{f}");
        }
    }
}
