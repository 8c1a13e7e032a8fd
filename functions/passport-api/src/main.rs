//! passport-api: the Telegram Mini App's Digital Passport and its service requests.

use std::sync::Arc;

use lambda_http::{Error, run, service_fn};
use shared::config::Config;
use shared::wiring::{Aws, aws_from_env, passport_api};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = Aws::new(&aws_from_env().await);
    let api = Arc::new(passport_api(&config, &aws).await?);
    run(service_fn(move |req| {
        let api = Arc::clone(&api);
        async move {
            let resp = api.handle(req).await;
            shared::metrics::flush("passport-api");
            Ok::<_, Error>(resp)
        }
    }))
    .await
}
