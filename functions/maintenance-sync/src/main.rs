//! maintenance-sync: on the EventBridge schedule, one run of the two-way maintenance sync,
//! reminders and re-drive, stopping in time before the invocation's deadline.

use shared::wiring::{scheduled_sync, serve_events};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_events("maintenance-sync", scheduled_sync).await
}
