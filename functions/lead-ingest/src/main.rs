//! lead-ingest: API Gateway HTTP API → accepted leads in DynamoDB (never waits for amoCRM).

use std::sync::Arc;

use lambda_http::{Error, run, service_fn};
use shared::config::Config;
use shared::wiring::{Aws, aws_from_env, lead_ingest};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = Aws::new(&aws_from_env().await);
    let api = Arc::new(lead_ingest(&config, &aws).await?);
    run(service_fn(move |req| {
        let api = Arc::clone(&api);
        async move {
            let resp = api.handle(req).await;
            shared::metrics::flush("lead-ingest");
            Ok::<_, Error>(resp)
        }
    }))
    .await
}
