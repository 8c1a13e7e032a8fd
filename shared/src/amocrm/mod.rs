//! amoCRM API v4: the HTTP client, its errors with operator hints, request pacing and the
//! `Crm` port implementation used by lead delivery.

pub mod client;
pub mod error;
pub mod leads;
pub mod pacing;
pub mod token;
pub mod webhook;

pub use client::AmoClient;
pub use error::{CrmError, CrmErrorKind, ValidationError};
