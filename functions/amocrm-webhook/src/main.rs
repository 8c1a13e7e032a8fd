//! amocrm-webhook: stores amoCRM's webhooks and answers at once (never calls amoCRM).

use std::sync::Arc;

use lambda_http::{Error, run, service_fn};
use shared::config::Config;
use shared::wiring::{Aws, aws_from_env, webhook_receiver};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = Aws::new(&aws_from_env().await);
    let receiver = Arc::new(webhook_receiver(&config, &aws).await?);
    run(service_fn(move |req| {
        let receiver = Arc::clone(&receiver);
        async move {
            let resp = receiver.handle(req).await;
            shared::metrics::flush("amocrm-webhook");
            Ok::<_, Error>(resp)
        }
    }))
    .await
}
