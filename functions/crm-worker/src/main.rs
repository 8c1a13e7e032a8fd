//! crm-worker: the leads table's stream → amoCRM lead, note and sales mail per accepted lead.

use shared::config::Config;
use shared::wiring::{Aws, crm_worker, serve_events};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_events("crm-worker", async |config: &Config, aws: &Aws| {
        crm_worker(config, aws)
    })
    .await
}
