//! lead-ingest: API Gateway HTTP API → accepted leads in DynamoDB (never waits for amoCRM).

use shared::wiring::{lead_ingest, serve_http};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve_http("lead-ingest", lead_ingest).await
}
