//! crm-worker: the leads table's stream → amoCRM lead, note and sales mail per accepted lead.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::config::Config;
use shared::wiring::{Aws, aws_from_env, crm_worker};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = Aws::new(&aws_from_env().await);
    let worker = Arc::new(crm_worker(&config, &aws)?);
    run(service_fn(move |event: LambdaEvent<Event>| {
        let worker = Arc::clone(&worker);
        async move {
            let resp = worker.handle(event.payload).await;
            shared::metrics::flush("crm-worker");
            Ok::<_, Error>(resp)
        }
    }))
    .await
}
