//! The DynamoDB adapters, one file per entity, and the in-memory twins the unit tests use.
//!
//! - `leads.rs`: the leads table. One table holds two kinds of items, told apart by `kind`:
//!   `LEAD#<ulid>` (`kind = lead`), the lead, its status and delivery progress, whose stream
//!   drives crm-worker (filtered to `kind = lead`, `status = pending`); and `IDEM#<key>`
//!   (`kind = idem`), the claim that makes repeats return the first answer, expiring through
//!   TTL on `expires_at` (reads also check it: TTL deletion is lazy).
//! - `inbox.rs`: received webhooks; `passport.rs`: the Digital Passport; `state.rs`,
//!   `sync_state.rs`, `health.rs`, `mail_feedback.rs`: records on the state table;
//!   `work.rs`: the parked-work queues over the leads and inbox tables.
//! - `attr.rs`, `status_index.rs`, `lease.rs`: the item helpers, the status-index walk and the
//!   lease every adapter above shares.

mod attr;
mod health;
mod inbox;
mod leads;
mod lease;
mod mail_feedback;
mod memory;
mod passport;
mod state;
mod status_index;
mod sync_state;
mod work;

pub use health::{DynamoHealthRecords, LAST_ERROR_KEY, LAST_OK_KEY, LAST_SYNC_KEY};
pub use inbox::{DynamoInboxStore, EVENT_PREFIX};
pub use leads::DynamoLeadStore;
pub use mail_feedback::{DynamoMailFeedback, MAIL_FEEDBACK_PREFIX};
pub use memory::MemoryLeadStore;
pub use passport::{DEAL_INDEX, DUE_INDEX, DynamoPassportStore, PUSH_INDEX, equipment_item};
pub use state::{
    DynamoStateStore, LEASE_PREFIX, MemoryStateStore, OAUTH_STATE_PREFIX, StateStore, StateTake,
    TOKEN_HEALTH_KEY, TokenHealthRecord,
};
pub use sync_state::DynamoSyncState;
pub use work::DynamoWorkQueues;

pub const LEAD_PREFIX: &str = "LEAD#";
pub const IDEM_PREFIX: &str = "IDEM#";
/// The GSI that lists leads (and inbox events) by status, oldest update first.
pub const STATUS_INDEX: &str = "status-index";
