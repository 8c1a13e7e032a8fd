//! amoCRM API v4: the HTTP client, its errors with operator hints, request pacing, the token
//! sources (long-lived and OAuth with refresh) and the `Crm` port implementation used by lead
//! delivery.

pub mod account_pacing;
pub mod admin;
pub mod call_log;
pub mod client;
pub mod deals;
pub mod error;
mod hints;
pub mod leads;
pub mod logged;
pub mod maintenance;
pub mod maintenance_fields;
pub mod oauth;
pub mod pacing;
mod problem;
pub mod token;
pub mod webhook;

#[cfg(test)]
pub(crate) mod testkit;

pub use account_pacing::{AccountPacer, RequestPacing, SlotClaims};
pub use client::{AmoClient, CallOptions, RetryPolicy};
pub use error::{CrmError, CrmErrorKind, ValidationError, oauth_error};
pub use oauth::{TokenHealth, TokenProvider};
pub use pacing::Pacer;
pub use token::{LongLivedToken, TokenInfo, TokenKind, TokenSource, jwt_expiry};
