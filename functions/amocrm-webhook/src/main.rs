//! amocrm-webhook: stores amoCRM's webhooks and answers at once (never calls amoCRM).

use shared::wiring::{serve_http, webhook_receiver};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve_http("amocrm-webhook", webhook_receiver).await
}
