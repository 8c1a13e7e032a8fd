//! amoCRM sandbox: an HTTP server that behaves like amoCRM API v4 in everything this project
//! uses, as strictly as amoCRM — bearer auth, 7 requests/s then 429 then a 403 ban, exact
//! error bodies, `/leads/complex`, lists with filters and 204 when empty, OAuth2 with
//! single-use refresh tokens, and form-encoded webhooks sent like amoCRM sends them.
//!
//! Start one in-process with [`Sandbox::start`]; steer it with [`SandboxHandle`] or the
//! `/_sandbox` HTTP control API. State lives in memory only.

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod control;
pub mod errors;
pub mod faults;
pub mod form;
pub mod handle;
pub mod history;
pub mod limits;
pub mod model;
pub mod oauth;
pub mod seed;
pub mod server;
pub mod state;
pub mod webhooks;

pub use auth::{AuthKind, mint_long_lived_token};
pub use config::SandboxConfig;
pub use faults::{Fault, RateLimitStyle};
pub use handle::{ControlError, SandboxHandle, TokenInfo};
pub use history::{History, Made};
pub use server::{RunningSandbox, Sandbox};
pub use state::RequestLog;
pub use webhooks::Delivery;
