//! mail-events: SES's bounces and complaints, from the configuration set's SNS topic, recorded
//! on their lead and for `GET /health`.

use std::sync::Arc;

use aws_lambda_events::event::sns::SnsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::config::Config;
use shared::wiring::{Aws, aws_from_env, mail_events};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = Aws::new(&aws_from_env().await);
    let recorder = Arc::new(mail_events(&config, &aws)?);
    run(service_fn(move |event: LambdaEvent<SnsEvent>| {
        let recorder = Arc::clone(&recorder);
        async move {
            let messages = event.payload.records.iter().map(|r| r.sns.message.as_str());
            let result = recorder.record_all(messages).await;
            shared::metrics::flush("mail-events");
            // A store failure: Lambda retries the delivery, then its failure destination keeps it.
            result.map(|_| ()).map_err(Error::from)
        }
    }))
    .await
}
