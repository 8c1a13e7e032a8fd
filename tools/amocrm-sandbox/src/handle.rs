//! `SandboxHandle`: what a test (or the local stack) does to a running sandbox in-process —
//! read what the API would show, inject faults, manage tokens, play the manager who moves a
//! lead, and watch webhook deliveries. The HTTP control API (`control`) mirrors it.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{leads, notes, render, subscriptions, tasks};
use crate::auth::{GrantKind, mask, mint_long_lived_token};
use crate::config::SandboxConfig;
use crate::errors::{ApiError, Violation};
use crate::faults::Fault;
use crate::oauth;
use crate::state::{RequestLog, Sb};
use crate::webhooks::{self, Delivery};

/// Why a control action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("lead {0} not found")]
    LeadNotFound(i64),
    #[error("rejected as amoCRM would: {0:?}")]
    Rejected(Vec<Violation>),
    #[error("{0}")]
    Invalid(String),
}

/// An API refusal as a control error.
fn refusal(e: ApiError) -> ControlError {
    match e {
        ApiError::Validation(items) => {
            ControlError::Rejected(items.into_iter().flat_map(|i| i.errors).collect())
        }
        other => ControlError::Invalid(format!("{other:?}")),
    }
}

/// A token grant as shown to operators (the token itself masked).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub token: String,
    pub kind: GrantKind,
    pub expires_at: i64,
    pub revoked: bool,
}

/// Cheap to clone; every clone controls the same sandbox.
#[derive(Clone)]
pub struct SandboxHandle {
    sb: Sb,
}

impl SandboxHandle {
    pub(crate) fn new(sb: Sb) -> SandboxHandle {
        SandboxHandle { sb }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.sb.cfg
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.sb.base_url().to_string()
    }

    /// The sandbox clock, unix seconds.
    pub fn now(&self) -> i64 {
        self.sb.clock.now()
    }

    /// Moves the sandbox clock forward (expires tokens and codes, empties rate windows).
    pub fn advance_clock(&self, by: Duration) {
        self.sb.clock.advance_ms(by.as_millis() as u64);
    }

    /// Every lead as `GET /api/v4/leads?with=contacts` renders it, by id.
    pub fn leads(&self) -> Vec<Value> {
        let st = self.sb.lock();
        st.leads
            .values()
            .map(|l| render::lead(&st, self.sb.cfg.account_id, self.sb.base_url(), l, true))
            .collect()
    }

    pub fn lead(&self, id: i64) -> Option<Value> {
        let st = self.sb.lock();
        st.leads
            .get(&id)
            .map(|l| render::lead(&st, self.sb.cfg.account_id, self.sb.base_url(), l, true))
    }

    /// Every contact as `GET /api/v4/contacts/{id}?with=leads` renders it.
    pub fn contacts(&self) -> Vec<Value> {
        let st = self.sb.lock();
        st.contacts
            .values()
            .map(|c| render::contact(&st, self.sb.cfg.account_id, self.sb.base_url(), c, true))
            .collect()
    }

    pub fn notes(&self) -> Vec<Value> {
        let st = self.sb.lock();
        st.notes
            .values()
            .map(|n| notes::render(self.sb.cfg.account_id, self.sb.base_url(), n))
            .collect()
    }

    pub fn tasks(&self) -> Vec<Value> {
        let st = self.sb.lock();
        st.tasks
            .values()
            .map(|t| tasks::render(self.sb.cfg.account_id, self.sb.base_url(), t))
            .collect()
    }

    /// Webhook subscriptions (`destination`, `settings`).
    pub fn webhooks(&self) -> Vec<Value> {
        let st = self.sb.lock();
        st.subscriptions
            .iter()
            .map(|s| json!({ "id": s.id, "destination": s.destination, "settings": s.settings }))
            .collect()
    }

    /// Subscribes `destination` to `settings`, checked as `POST /api/v4/webhooks` checks them.
    pub fn subscribe(&self, destination: &str, settings: &[&str]) -> Result<(), ControlError> {
        let item = json!({ "destination": destination, "settings": settings });
        subscriptions::register(&self.sb, &item)
            .map(|_| ())
            .map_err(refusal)
    }

    /// Every webhook delivery so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.sb.lock().deliveries.clone()
    }

    /// Waits until at least `count` deliveries are finished (delivered or given up), or the
    /// timeout passes; returns the finished ones.
    pub async fn wait_for_deliveries(&self, count: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done: Vec<Delivery> = self
                .deliveries()
                .into_iter()
                .filter(|d| d.finished)
                .collect();
            if done.len() >= count || tokio::time::Instant::now() >= deadline {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Requests answered so far (API and token endpoint; control calls are not logged).
    pub fn requests(&self) -> Vec<RequestLog> {
        self.sb.lock().requests.iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        self.sb.lock().requests.clear();
    }

    /// Queues a fault (FIFO).
    pub fn inject(&self, fault: Fault) {
        self.sb.lock().faults.push(fault);
    }

    pub fn pending_faults(&self) -> Vec<Fault> {
        self.sb.lock().faults.pending()
    }

    pub fn clear_faults(&self) {
        self.sb.lock().faults.clear();
    }

    /// Accepts `token` as a long-lived token until `expires_at` (unix seconds).
    pub fn add_long_lived_token(&self, token: &str, expires_at: i64) {
        let now = self.now();
        self.sb
            .lock()
            .add_grant(token, GrantKind::LongLived, now, expires_at);
    }

    /// Mints a JWT-shaped long-lived token, registers it and returns it.
    pub fn new_long_lived_token(&self, expires_at: i64) -> String {
        let token = mint_long_lived_token(&self.sb.cfg, expires_at);
        self.add_long_lived_token(&token, expires_at);
        token
    }

    /// Revokes one bearer token (long-lived or access token); false if unknown.
    pub fn revoke_token(&self, token: &str) -> bool {
        match self.sb.lock().grants.get_mut(token) {
            Some(g) => {
                g.revoked = true;
                true
            }
            None => false,
        }
    }

    pub fn tokens(&self) -> Vec<TokenInfo> {
        self.sb
            .lock()
            .grants
            .iter()
            .map(|(t, g)| TokenInfo {
                token: mask(t),
                kind: g.kind,
                expires_at: g.expires_at,
                revoked: g.revoked,
            })
            .collect()
    }

    /// How many times the token endpoint was called.
    pub fn token_endpoint_calls(&self) -> usize {
        self.sb
            .lock()
            .requests
            .iter()
            .filter(|r| r.path == "/oauth2/access_token")
            .count()
    }

    /// An authorization code, as if a user approved the integration (bound to
    /// `redirect_uri`, the registered one by default).
    pub fn issue_auth_code(&self, redirect_uri: Option<&str>) -> String {
        oauth::issue_code(&self.sb, redirect_uri)
    }

    /// The admin revokes the integration: every token and refresh token stops working, and
    /// the signed "access revoked" hook is sent if `revoke_hook_url` is configured.
    pub fn revoke_integration(&self) {
        let mut st = self.sb.lock();
        st.integration_revoked = true;
        st.grants.values_mut().for_each(|g| g.revoked = true);
        st.refresh_tokens
            .values_mut()
            .for_each(|r| r.revoked = true);
        webhooks::integration_revoked(&self.sb, &mut st);
    }

    /// A manager moves a lead to another stage in amoCRM (sets `closed_at` for 142/143 and
    /// sends `status_lead`/`update_lead` hooks).
    pub fn set_lead_status(
        &self,
        lead_id: i64,
        status_id: i64,
        pipeline_id: i64,
    ) -> Result<(), ControlError> {
        self.update_lead_as_manager(
            lead_id,
            json!({ "status_id": status_id, "pipeline_id": pipeline_id }),
        )
    }

    /// A manager edits a lead in amoCRM: `patch` is a `PATCH /api/v4/leads/{id}` body, checked
    /// the same way; the change is attributed to the lead's responsible user.
    pub fn update_lead_as_manager(&self, lead_id: i64, patch: Value) -> Result<(), ControlError> {
        let user = self
            .sb
            .lock()
            .leads
            .get(&lead_id)
            .map(|l| l.responsible_user_id)
            .ok_or(ControlError::LeadNotFound(lead_id))?;
        leads::update_single(&self.sb, lead_id, &patch, user)
            .map(|_| ())
            .map_err(|e| match e {
                ApiError::NotFound => ControlError::LeadNotFound(lead_id),
                other => refusal(other),
            })
    }

    /// Batch lead writes above `max` leads answer 504 (`None` turns it off).
    pub fn set_batch_504_above(&self, max: Option<usize>) {
        self.sb.lock().batch_504_above = max;
    }

    /// Adds an account's past: won, lost and open deals, contacts, the old webhook.
    pub fn seed_history(&self, spec: &crate::history::History) -> crate::history::Made {
        crate::history::seed(&self.sb, spec)
    }

    /// How long `query=` search lags behind creates and changes.
    pub fn set_search_lag_ms(&self, lag: u64) {
        self.sb.lock().search_lag_ms = lag;
    }

    /// The account's API IP whitelist (empty turns it off).
    pub fn set_ip_allowlist(&self, allowed: Vec<std::net::IpAddr>) {
        self.sb.lock().ip_allowlist = allowed;
    }

    pub fn ip_allowlist(&self) -> Vec<std::net::IpAddr> {
        self.sb.lock().ip_allowlist.clone()
    }

    pub fn is_banned(&self) -> bool {
        let now = self.sb.clock.now_ms();
        self.sb.lock().limiter.is_banned(now)
    }

    pub fn unban(&self) {
        self.sb.lock().limiter.unban();
    }

    /// Back to the seeded account (entities, tokens from the config, no faults, no logs).
    pub fn reset(&self) {
        self.sb.reset();
    }

    /// Everything at once, as `GET /_sandbox/state` shows it.
    pub fn snapshot(&self) -> Value {
        let banned_until_ms = self.sb.lock().limiter.banned_until_ms();
        let (refresh_tokens, codes) = {
            let st = self.sb.lock();
            (st.refresh_tokens.len(), st.codes.len())
        };
        json!({
            "now": self.now(),
            "leads": self.leads(),
            "contacts": self.contacts(),
            "notes": self.notes(),
            "tasks": self.tasks(),
            "webhooks": self.webhooks(),
            "deliveries": self.deliveries(),
            "tokens": self.tokens(),
            "refresh_tokens_issued": refresh_tokens,
            "auth_codes_issued": codes,
            "faults": self.pending_faults(),
            "banned_until_ms": banned_until_ms,
        })
    }
}
