//! Operators' tools: `doctor` (is the configuration right for this amoCRM account?), `setup`
//! (create what the integration needs there, idempotently), parked work (list and re-drive)
//! and the health report behind `GET /health`. The checks return structured findings; the
//! `rss-ops` CLI and the HTTP route only present them.

pub mod doctor;
pub mod field_setup;
pub mod finding;
pub mod health;
pub mod parked;
pub mod setup;

pub use finding::Finding;
