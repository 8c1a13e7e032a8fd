//! mail-events: SES's bounces and complaints, from the configuration set's SNS topic, recorded
//! on their lead and for `GET /health`.

use shared::config::Config;
use shared::wiring::{Aws, mail_events, serve_events};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_events("mail-events", async |config: &Config, aws: &Aws| {
        mail_events(config, aws)
    })
    .await
}
