//! `make bench`: the performance figures on this machine, printed as one report (Markdown
//! tables). Starts a local stack (moto, amoCRM sandbox, HTTP front), then runs the sections:
//! cold start vs the Python baseline, arm64 artifact sizes, accept latency under load, our
//! functions beside the seed's FastAPI stack, the maintenance sync against the sandbox's rate
//! limit, the backfill. Not part of `make test`.

mod artifacts;
mod backfill;
mod cold_start;
mod cpu_share;
mod events;
mod instances;
mod load;
mod options;
mod report;
mod runtime_api;
mod sections;
mod seed_stack;
mod side_by_side;
mod spawned;
mod stack_env;
mod sync;

use local_stack::{LocalStack, StackOptions};

use crate::options::Options;

pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(options).await {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

async fn run(options: Options) -> Result<(), BenchError> {
    println!("{}", sections::machine());
    let stack = LocalStack::start(StackOptions::for_tests()).await?;
    eprintln!(
        "bench: local stack up (API {}, moto {})",
        stack.api_url, stack.moto.url
    );
    let mut report = Vec::new();
    if options.runs_section("cold") {
        report.push(sections::cold_start(&options, &stack).await?);
    }
    if options.runs_section("artifacts") {
        report.push(sections::artifacts(&options));
    }
    if options.runs_section("load") {
        report.extend(sections::latency(&options, &stack).await?);
    }
    if options.runs_section("seed") {
        report.extend(side_by_side::side_by_side(&options).await?);
    }
    if options.runs_section("sync") {
        report.extend(sections::sync(&options).await);
    }
    if options.runs_section("backfill") {
        report.push(sections::backfill(&options).await);
    }
    for table in report {
        println!("{}", table.render());
    }
    Ok(())
}
