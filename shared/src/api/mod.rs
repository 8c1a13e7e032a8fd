//! HTTP adapters: API Gateway (HTTP API, payload 2.0) requests in, JSON responses out.
//! Every route always answers; API Gateway never sees a Lambda error from here. The contract
//! every answer keeps is `api/openapi.yaml` at the repository's top level.

mod admin;
pub mod cors;
pub mod health;
pub mod http;
pub mod ingest;
pub mod oauth;
pub mod passport;
pub mod routes;
pub mod telegram_auth;
pub mod webhook;

pub use ingest::LeadIngestApi;
