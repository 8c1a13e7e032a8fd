//! maintenance-sync: on the EventBridge schedule, one run of the two-way maintenance sync,
//! reminders and re-drive, stopping in time before the invocation's deadline.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::config::Config;
use shared::maintenance::{Budget, RunOutcome};
use shared::wiring::{Aws, aws_from_env, maintenance_sync};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = Aws::new(&aws_from_env().await);
    let sync = Arc::new(maintenance_sync(&config, &aws)?);
    // A request may take its whole timeout; a few seconds more write the report.
    let per_request = Duration::from_millis(config.amo.timeout_ms) + Duration::from_secs(5);
    run(service_fn(move |event: LambdaEvent<EventBridgeEvent>| {
        let sync = Arc::clone(&sync);
        async move {
            let budget = Budget::until_unix_ms(event.context.deadline, per_request);
            let report = sync.run(chrono::Utc::now(), &budget).await;
            report.count_metrics();
            shared::metrics::flush("maintenance-sync");
            if report.outcome == RunOutcome::Failed {
                // Counted by the errors alarm; the report is kept in the state table.
                return Err(Error::from(report.error.unwrap_or_default()));
            }
            Ok::<_, Error>(serde_json::to_value(&report)?)
        }
    }))
    .await
}
