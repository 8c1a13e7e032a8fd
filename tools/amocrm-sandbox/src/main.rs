//! `amocrm-sandbox [--port 3001] [--host 127.0.0.1]`: runs the amoCRM imitation until Ctrl-C.
//! Long-lived tokens come from `SANDBOX_LONG_LIVED_TOKEN` (comma list), the client secret
//! from `SANDBOX_CLIENT_SECRET`, the revoke hook URL from `SANDBOX_REVOKE_HOOK_URL`.

use std::net::{IpAddr, SocketAddr};

use amocrm_sandbox::{Sandbox, SandboxConfig};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs go to stderr so that stdout carries only the URL (scripts read its first line).
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = arg(&args, "--port")
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(3001);
    let host: IpAddr = arg(&args, "--host")
        .map(|h| h.parse())
        .transpose()?
        .unwrap_or([127, 0, 0, 1].into());
    let mut cfg = SandboxConfig::default();
    if let Ok(tokens) = std::env::var("SANDBOX_LONG_LIVED_TOKEN") {
        cfg.long_lived_tokens = tokens
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
    }
    if let Ok(secret) = std::env::var("SANDBOX_CLIENT_SECRET") {
        cfg.client_secret = secret;
    }
    cfg.revoke_hook_url = std::env::var("SANDBOX_REVOKE_HOOK_URL").ok();
    if let Ok(list) = std::env::var("SANDBOX_IP_ALLOWLIST") {
        cfg.ip_allowlist = SandboxConfig::parse_allowlist(&list)
            .map_err(|e| format!("SANDBOX_IP_ALLOWLIST: {e}"))?;
    }
    if cfg.long_lived_tokens.is_empty() {
        tracing::warn!(
            "no long-lived token configured: set SANDBOX_LONG_LIVED_TOKEN or POST /_sandbox/tokens"
        );
    }
    let running = Sandbox::start(cfg, SocketAddr::new(host, port)).await?;
    // `SANDBOX_HISTORY=1`: the account starts with a past, as a real one does.
    if std::env::var("SANDBOX_HISTORY").is_ok_and(|v| v == "1") {
        let made = running
            .state
            .seed_history(&amocrm_sandbox::History::default());
        tracing::info!(won = made.won.len(), "account history seeded");
    }
    println!("{}", running.url);
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}
