//! The library every Lambda of the РусСтанкоСбыт ↔ amoCRM integration uses.
//!
//! - `leads`: the lead domain (intake, validation, rendering, accept and deliver use cases);
//!   free of AWS and HTTP types.
//! - `ports`: the small traits the domain talks through (store, CRM, notifier, secrets).
//! - `amocrm`, `store`, `mail`, `secrets`: adapters for amoCRM (reqwest), DynamoDB, SES v2 and
//!   Secrets Manager.
//! - `api`, `worker`: the HTTP and stream adapters the function binaries hand their events to.

pub mod amocrm;
pub mod api;
pub mod config;
pub mod leads;
pub mod mail;
pub mod maintenance;
pub mod observability;
pub mod passport;
pub mod ports;
pub mod secrets;
pub mod store;
pub mod telegram;
pub mod wiring;
pub mod worker;
