//! The library every Lambda of the РусСтанкоСбыт ↔ amoCRM integration uses.
//!
//! - `leads`: the lead domain (intake, validation, rendering, accept and deliver use cases);
//!   free of AWS and HTTP types.
//! - `ports`: the small traits the domain talks through (store, CRM, notifier, secrets).
//! - `amocrm`, `store`, `mail`, `secrets`: adapters for amoCRM (reqwest), DynamoDB, SES v2 and
//!   Secrets Manager.
//! - `api`, `worker`: the HTTP and stream adapters the function binaries hand their events to.
//! - `form`: the PHP-style bracket form reader (`a[b][0]=v`) the webhook and lead intake share.
//! - `ops`: operators' checks and actions (doctor, setup, parked work, health) behind the
//!   `rss-ops` CLI and `GET /health`.

pub mod amocrm;
pub mod api;
pub mod config;
pub mod crm_events;
mod form;
pub mod leads;
pub mod mail;
pub mod maintenance;
pub mod metrics;
pub mod notice;
pub mod observability;
pub mod ops;
pub mod passport;
pub mod ports;
pub mod secrets;
pub mod store;
pub mod telegram;
pub mod wiring;
pub mod worker;
