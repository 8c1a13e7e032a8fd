//! HTTP adapters: API Gateway (HTTP API, payload 2.0) requests in, JSON responses out.
//! Every route always answers; API Gateway never sees a Lambda error from here.

pub mod health;
pub mod http;
pub mod ingest;
pub mod oauth;
pub mod passport;
pub mod webhook;

pub use ingest::LeadIngestApi;
