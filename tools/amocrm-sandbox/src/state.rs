//! Everything the sandbox remembers, in memory, behind one mutex (never held across an
//! `.await`). `Shared` is what handlers, the webhook sender and the handle all hold.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::auth::{Grant, GrantKind, jwt_exp};
use crate::clock::Clock;
use crate::config::SandboxConfig;
use crate::faults::FaultQueue;
use crate::limits::Limiter;
use crate::model::{
    Company, Contact, CustomField, Entity, Lead, Note, Pipeline, Subscription, Tag, Task, User,
};
use crate::seed;
use crate::webhooks::{Delivery, Outgoing};

/// One request the sandbox answered (control calls are not logged).
#[derive(Debug, Clone, Serialize)]
pub struct RequestLog {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub at_ms: i64,
    pub authorization_kind: crate::auth::AuthKind,
}

/// A refresh token: single use, rotated on every refresh.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshGrant {
    pub expires_at: i64,
    pub used: bool,
    pub revoked: bool,
}

/// An authorization code issued to the integration (as if a user had clicked "allow").
#[derive(Debug, Clone, Serialize)]
pub struct AuthCode {
    pub redirect_uri: String,
    pub expires_at: i64,
    pub used: bool,
}

/// Next ids, one counter per entity, starting where real accounts have them.
#[derive(Debug, Clone)]
pub struct Ids {
    pub lead: i64,
    pub contact: i64,
    pub company: i64,
    pub note: i64,
    pub task: i64,
    pub tag: i64,
    pub field: i64,
    pub field_enum: i64,
    pub subscription: i64,
    pub delivery: i64,
}

impl Default for Ids {
    fn default() -> Self {
        Ids {
            lead: 30_000_001,
            contact: 50_000_001,
            company: 60_000_001,
            note: 200_000_001,
            task: 40_000_001,
            tag: 500_001,
            field: 713_001,
            field_enum: 1_600_001,
            subscription: 1,
            delivery: 1,
        }
    }
}

/// Hands out the next value of a counter.
pub fn next(counter: &mut i64) -> i64 {
    let id = *counter;
    *counter += 1;
    id
}

const MAX_LOGGED_REQUESTS: usize = 20_000;

#[derive(Debug)]
pub struct State {
    pub users: Vec<User>,
    pub pipelines: Vec<Pipeline>,
    pub fields: BTreeMap<i64, CustomField>,
    pub leads: BTreeMap<i64, Lead>,
    pub contacts: BTreeMap<i64, Contact>,
    pub companies: BTreeMap<i64, Company>,
    pub notes: BTreeMap<i64, Note>,
    pub tasks: BTreeMap<i64, Task>,
    pub tags: BTreeMap<i64, Tag>,
    pub subscriptions: Vec<Subscription>,
    /// Bearer tokens by their full text.
    pub grants: HashMap<String, Grant>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    pub codes: HashMap<String, AuthCode>,
    /// The admin revoked the integration: nothing authenticates until new grants are made.
    pub integration_revoked: bool,
    pub requests: VecDeque<RequestLog>,
    pub faults: FaultQueue,
    pub limiter: Limiter,
    pub deliveries: Vec<Delivery>,
    pub batch_504_above: Option<usize>,
    /// The API IP whitelist; empty = off.
    pub ip_allowlist: Vec<std::net::IpAddr>,
    /// `query=` sees only entities last created or changed at least this long ago.
    pub search_lag_ms: u64,
    pub ids: Ids,
}

/// Five years: the longest life amoCRM gives a long-lived token.
const LONG_LIVED_DEFAULT_SECS: i64 = 5 * 365 * 86_400;

impl State {
    pub fn seeded(cfg: &SandboxConfig, now: i64) -> State {
        let mut state = State {
            users: seed::users(),
            pipelines: seed::pipelines(),
            fields: seed::custom_fields()
                .into_iter()
                .map(|f| (f.id, f))
                .collect(),
            leads: BTreeMap::new(),
            contacts: BTreeMap::new(),
            companies: BTreeMap::new(),
            notes: BTreeMap::new(),
            tasks: BTreeMap::new(),
            tags: BTreeMap::new(),
            subscriptions: Vec::new(),
            grants: HashMap::new(),
            refresh_tokens: HashMap::new(),
            codes: HashMap::new(),
            integration_revoked: false,
            requests: VecDeque::new(),
            faults: FaultQueue::default(),
            limiter: Limiter::default(),
            deliveries: Vec::new(),
            batch_504_above: cfg.batch_504_above,
            ip_allowlist: cfg.ip_allowlist.clone(),
            search_lag_ms: cfg.search_lag_ms,
            ids: Ids::default(),
        };
        for token in &cfg.long_lived_tokens {
            let expires_at = jwt_exp(token).unwrap_or(now + LONG_LIVED_DEFAULT_SECS);
            state.add_grant(token, GrantKind::LongLived, now, expires_at);
        }
        state
    }

    pub fn add_grant(&mut self, token: &str, kind: GrantKind, now: i64, expires_at: i64) {
        self.grants.insert(
            token.to_string(),
            Grant {
                kind,
                expires_at,
                revoked: false,
                issued_at: now,
            },
        );
    }

    pub fn log_request(&mut self, entry: RequestLog) {
        if self.requests.len() >= MAX_LOGGED_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back(entry);
    }

    pub fn pipeline(&self, id: i64) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.id == id)
    }

    pub fn main_pipeline(&self) -> &Pipeline {
        self.pipelines
            .iter()
            .find(|p| p.is_main)
            .unwrap_or(&self.pipelines[0])
    }

    /// The pipeline that owns a (non-closing) status id.
    pub fn pipeline_of_status(&self, status_id: i64) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.has_status(status_id))
    }

    pub fn is_user(&self, id: i64) -> bool {
        self.users.iter().any(|u| u.id == id)
    }

    pub fn field(&self, id: i64, entity: Entity) -> Option<&CustomField> {
        self.fields.get(&id).filter(|f| f.entity == entity)
    }

    pub fn field_by_code(&self, code: &str, entity: Entity) -> Option<&CustomField> {
        self.fields
            .values()
            .find(|f| f.entity == entity && f.code.as_deref() == Some(code))
    }

    /// The tag with this name, created if new (amoCRM creates tags on first use).
    pub fn tag_named(&mut self, name: &str) -> i64 {
        if let Some(tag) = self.tags.values().find(|t| t.name == name) {
            return tag.id;
        }
        let id = next(&mut self.ids.tag);
        self.tags.insert(
            id,
            Tag {
                id,
                name: name.to_string(),
            },
        );
        id
    }

    /// The earliest deadline among a lead's open tasks.
    pub fn closest_task_at(&self, entity_type: &str, entity_id: i64) -> Option<i64> {
        self.tasks
            .values()
            .filter(|t| t.entity_type == entity_type && t.entity_id == entity_id && !t.is_completed)
            .map(|t| t.complete_till)
            .min()
    }
}

/// What every part of the running sandbox shares.
pub struct Shared {
    pub cfg: SandboxConfig,
    pub clock: Clock,
    state: Mutex<State>,
    /// Webhook deliveries go to a background sender through this channel.
    pub hooks: mpsc::UnboundedSender<Outgoing>,
    /// `http://127.0.0.1:PORT`, known once the listener is bound (used in `_links`).
    pub base_url: OnceLock<String>,
}

pub type Sb = Arc<Shared>;

impl Shared {
    pub fn new(cfg: SandboxConfig, hooks: mpsc::UnboundedSender<Outgoing>) -> Shared {
        let clock = Clock::default();
        let state = State::seeded(&cfg, clock.now());
        Shared {
            cfg,
            clock,
            state: Mutex::new(state),
            hooks,
            base_url: OnceLock::new(),
        }
    }

    /// Locks the state; a panic elsewhere never makes the sandbox unusable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn base_url(&self) -> &str {
        self.base_url.get().map(String::as_str).unwrap_or("")
    }

    /// Back to the seeded account: entities, tokens, faults, logs, bans and clock.
    pub fn reset(&self) {
        self.clock.reset();
        let mut st = self.lock();
        // Deliveries still in flight find their record by id: never hand an old id out again.
        let next_delivery = st.ids.delivery;
        *st = State::seeded(&self.cfg, self.clock.now());
        st.ids.delivery = next_delivery;
    }
}
