//! Command line of the bench runner (`make bench` passes the paths; the rest has defaults).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    /// Where the host binaries of the functions are (`<target>/bench-fast`).
    pub bin_dir: PathBuf,
    /// Where `cargo lambda build` put the arm64 zips (`<target>/lambda`).
    pub lambda_dir: PathBuf,
    /// The Python 3.11 with boto3 for the baseline (`.venv/bin/python3`).
    pub python: PathBuf,
    pub repo_root: PathBuf,
    pub runs: usize,
    pub load_duration: Duration,
    pub concurrency: Vec<usize>,
    pub skip: Vec<String>,
    /// Changed passports per maintenance sync benchmark.
    pub sync_sizes: Vec<usize>,
    /// Won deals in the sandbox for the backfill section.
    pub backfill_sizes: Vec<usize>,
    /// Also measure each function at the CPU share its memory buys on Lambda (cgroup quota).
    pub lambda_share: bool,
    /// Sync sizes also run with 100 machines recorded per transaction (the deployed default);
    /// the others record one per UpdateItem, since moto copies the table per transaction item.
    pub transaction_sizes: Vec<usize>,
}

pub const USAGE: &str = "usage: bench-runner [--bin-dir DIR] [--lambda-dir DIR] [--python PATH] \
[--runs N] [--seconds S] [--concurrency 1,10,50] [--sync-sizes 1000,10000,100000] \
[--backfill-sizes 5000] [--skip cold,artifacts,load,seed,sync,backfill] [--full-speed-only] [--transaction-sizes 1000] [--quick]";

impl Options {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root.join("target"));
        let mut o = Options {
            bin_dir: target.join("bench-fast"),
            lambda_dir: target.join("lambda"),
            python: repo_root.join(".venv/bin/python3"),
            repo_root,
            runs: 20,
            load_duration: Duration::from_secs(10),
            concurrency: vec![1, 10, 50],
            skip: Vec::new(),
            sync_sizes: vec![1_000, 10_000, 100_000],
            backfill_sizes: vec![5_000],
            lambda_share: true,
            transaction_sizes: vec![1_000],
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            let number = |v: String| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag}: not a positive integer: {v:?}"))
            };
            match flag.as_str() {
                "--bin-dir" => o.bin_dir = value()?.into(),
                "--lambda-dir" => o.lambda_dir = value()?.into(),
                "--python" => o.python = value()?.into(),
                "--runs" => o.runs = number(value()?)? as usize,
                "--seconds" => o.load_duration = Duration::from_secs(number(value()?)?),
                "--concurrency" => o.concurrency = list(value()?, number)?,
                "--sync-sizes" => o.sync_sizes = list(value()?, number)?,
                "--backfill-sizes" => o.backfill_sizes = list(value()?, number)?,
                "--full-speed-only" => o.lambda_share = false,
                "--transaction-sizes" => o.transaction_sizes = list(value()?, number)?,
                "--quick" => {
                    // A change checked in minutes: the main rows only.
                    o.runs = 5;
                    o.load_duration = Duration::from_secs(3);
                    o.concurrency = vec![10];
                    o.sync_sizes = vec![1_000];
                    o.backfill_sizes = vec![1_000];
                }
                "--skip" => o.skip = value()?.split(',').map(|s| s.trim().into()).collect(),
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown option {other:?}\n{USAGE}")),
            }
        }
        Ok(o)
    }

    pub fn runs_section(&self, name: &str) -> bool {
        !self.skip.iter().any(|s| s == name)
    }
}

/// A comma-separated list of what `number` accepts.
fn list(
    value: String,
    number: impl Fn(String) -> Result<u64, String>,
) -> Result<Vec<usize>, String> {
    value
        .split(',')
        .map(|c| number(c.trim().to_string()).map(|n| n as usize))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_override_the_issue_defaults() {
        let d = parse(&[]).unwrap();
        assert_eq!(
            (d.runs, d.load_duration, d.concurrency.clone()),
            (20, Duration::from_secs(10), vec![1, 10, 50])
        );
        let o = parse(&[
            "--runs",
            "3",
            "--concurrency",
            "2, 4",
            "--skip",
            "sync,load",
            "--sync-sizes",
            "1000,10000",
        ])
        .unwrap();
        assert_eq!((o.runs, o.concurrency.clone()), (3, vec![2, 4]));
        assert_eq!(o.sync_sizes, vec![1_000, 10_000]);
        assert_eq!(d.sync_sizes, vec![1_000, 10_000, 100_000]);
        assert!(!o.runs_section("load") && o.runs_section("cold"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert!(parse(&["--runs", "0"]).unwrap_err().contains("--runs"));
        assert!(parse(&["--seconds"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--nope"]).unwrap_err().contains("--nope"));
        assert!(
            parse(&["--sync-sizes", "1000,x"])
                .unwrap_err()
                .contains("--sync-sizes")
        );
    }
}
