//! `make run`: starts the whole system locally and prints how to use it. Ctrl-C stops it.

use std::time::Duration;

use local_stack::{LocalStack, StackOptions};

#[tokio::main]
async fn main() -> Result<(), shared::wiring::InitError> {
    shared::observability::init_json_logs();
    let mut options = StackOptions::from_env();
    // The sandbox account has a past, as the real one does (`LOCAL_HISTORY=0`: a fresh one):
    // `make ops ARGS='backfill --dry-run'` and `setup` have something to show.
    if std::env::var("LOCAL_HISTORY").as_deref() != Ok("0") {
        options.history = Some(amocrm_sandbox::History::default());
    }
    let stack = LocalStack::start(options).await?;
    stack.register_webhook().await?;
    let ops_env = std::path::Path::new(".local/ops.env");
    stack.write_ops_env(ops_env)?;
    let _worker = stack.spawn_stream_worker(Duration::from_millis(500));
    // The EventBridge schedule's stand-in (hourly in AWS).
    let _sync = stack.spawn_sync_schedule(Duration::from_secs(30));
    let o = &stack.options;
    println!(
        "\nРусСтанкоСбыт ↔ amoCRM, running locally\n\
         \n  API (API Gateway routes)  {api}\n  amoCRM sandbox            {sandbox}   (state: {sandbox}/_sandbox/state)\n  moto (AWS)                {moto}   (sent mail: {moto}/moto-api/data.json)\n  maintenance sync          every 30 s (hourly in AWS)\n  reference page            {page}/   (the site's lead form and the Mini App preview; bot key {bot_key})\n\
         \nOperators' commands against this stack: make ops ARGS=doctor (setup, backfill --dry-run, parked list)\n\nTry:\n  curl -s {api}/leads -H 'content-type: application/json' \\\n    -d '{{\"source\":\"site\",\"intent\":\"service\",\"name\":\"Иван Петров\",\"phone\":\"8 (912) 345-67-89\",\"message\":\"Нужна диагностика станка\"}}'\n  curl -s {api}/ingest/test-crm -H 'X-Admin-Key: {admin}'\n  curl -s {api}/health -H 'X-Admin-Key: {admin}'\n\
         \nCtrl-C stops everything.\n",
        api = stack.api_url,
        sandbox = stack.sandbox.url,
        moto = stack.moto.url,
        admin = o.admin_key,
        page = stack.page_url,
        bot_key = o.bot_api_key,
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
