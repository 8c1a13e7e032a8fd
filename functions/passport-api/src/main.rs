//! passport-api: the Telegram Mini App's Digital Passport and its service requests.

use shared::wiring::{passport_api, serve_http};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve_http("passport-api", passport_api).await
}
