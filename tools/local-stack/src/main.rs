//! `make run`: starts the whole system locally and prints how to use it. Ctrl-C stops it.

use std::time::Duration;

use local_stack::{LocalStack, StackOptions};

#[tokio::main]
async fn main() -> Result<(), shared::wiring::InitError> {
    shared::observability::init_json_logs();
    let stack = LocalStack::start(StackOptions::from_env()).await?;
    stack.register_webhook().await?;
    let _worker = stack.spawn_stream_worker(Duration::from_millis(500));
    // The EventBridge schedule's stand-in (hourly in AWS).
    let _sync = stack.spawn_sync_schedule(Duration::from_secs(30));
    let o = &stack.options;
    println!(
        "\nРусСтанкоСбыт ↔ amoCRM, running locally\n\
         \n  API (API Gateway routes)  {api}\n  amoCRM sandbox            {sandbox}   (state: {sandbox}/_sandbox/state)\n  moto (AWS)                {moto}   (sent mail: {moto}/moto-api/data.json)\n  maintenance sync          every 30 s (hourly in AWS)\n\
         \nTry:\n  curl -s {api}/leads -H 'content-type: application/json' \\\n    -d '{{\"source\":\"site\",\"intent\":\"service\",\"name\":\"Иван Петров\",\"phone\":\"8 (912) 345-67-89\",\"message\":\"Нужна диагностика станка\"}}'\n  curl -s {api}/ingest/test-crm -H 'X-Admin-Key: {admin}'\n  curl -s {api}/health -H 'X-Admin-Key: {admin}'\n\
         \nCtrl-C stops everything.\n",
        api = stack.api_url,
        sandbox = stack.sandbox.url,
        moto = stack.moto.url,
        admin = o.admin_key,
    );
    // Ctrl-C or a plain `kill`: return normally so moto (a child) is stopped on drop.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    println!("stopping");
    Ok(())
}
