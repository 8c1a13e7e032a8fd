//! Running the `rss-ops` binary as an operator's shell would: only the given environment.

use std::process::Output;

/// Exit status, stdout and stderr of `rss-ops ARGS` with exactly `env` (and PATH).
pub async fn rss_ops(env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rss-ops"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().await.expect("rss-ops runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}
