//! rss-ops: operators' CLI for setup and diagnosis (doctor, setup, parked work). It reads the
//! same configuration as the functions (`Config::from_env`, the AWS SDK's environment) and
//! prints what `shared::ops` finds; `rss-ops help` explains the commands.

mod args;
mod commands;

use std::process::ExitCode;

use shared::config::Config;
use shared::wiring::{Aws, aws_from_env, operator_tools};

#[tokio::main]
async fn main() -> ExitCode {
    // Warnings (amoCRM retries, a table without its index) on stderr; RUST_LOG=info shows more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let invocation = match args::parse(&argv) {
        Ok(i) => i,
        Err(e) => return fail(&e.to_string()),
    };
    if invocation.command == args::Command::Help {
        print!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&format!("{e} (rss-ops reads the functions' environment)")),
    };
    let aws = Aws::new(&aws_from_env().await);
    let tools = match operator_tools(&config, &aws).await {
        Ok(t) => t,
        Err(e) => return fail(&e.to_string()),
    };
    let out = commands::run(&invocation, &config, &tools).await;
    print!("{}", out.text);
    ExitCode::from(out.status)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("rss-ops: {message}");
    ExitCode::from(2)
}
