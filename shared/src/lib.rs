//! The library every Lambda of the РусСтанкоСбыт ↔ amoCRM integration uses. Its layers, each
//! using only those below it (`tests/layers.rs` fails when the domain reaches past `ports`):
//!
//! ```text
//! wiring        builds each function from Config; serve_http / serve_events run it
//! api, worker   HTTP (API Gateway) and stream (DynamoDB, SNS) adapters; ops: operators' tools
//! amocrm, store, mail, secrets
//!               adapters: amoCRM API v4 (reqwest), DynamoDB, SES v2, Secrets Manager
//! ports         the traits and types the domain talks through, one file per domain
//! crm_events    the webhook use case, above passport and maintenance
//! leads, passport, maintenance, notice
//!               the domain: intake, delivery, the Digital Passport, the ТО sync; no AWS,
//!               Lambda, HTTP or amoCRM type
//! config, metrics, telegram, form, observability
//!               helpers any layer may use (config reads settings into the domain's plain
//!               types, such as maintenance::model)
//! ```

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
