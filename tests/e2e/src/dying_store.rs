//! A lead store that dies with its process, for the crash-between-create-and-record tests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared::leads::{Delivery, Lead, LeadStatus, StoredLead};
use shared::ports::{Claim, Held, IdempotencyClaim, InsertOutcome, LeadStore, StoreError};
use shared::store::DynamoLeadStore;

/// In one "process", the first write that records an amoCRM lead id for a chosen lead fails,
/// and so does every write after it (the process is gone before the id was kept). Each chosen
/// lead dies this way once, however many processes share `died_for`.
pub struct DyingStore {
    inner: DynamoLeadStore,
    /// `None`: whichever lead gets its amoCRM id first.
    victims: Option<HashSet<String>>,
    died_for: Arc<Mutex<HashSet<String>>>,
    dead: AtomicBool,
}

impl DyingStore {
    /// Dies on the first lead that gets its amoCRM id.
    pub fn on_first_create(inner: DynamoLeadStore) -> Self {
        Self {
            inner,
            victims: None,
            died_for: Arc::default(),
            dead: AtomicBool::new(false),
        }
    }

    /// Dies on each of `victims` once; `died_for` is shared by the processes of one test.
    pub fn on_victims(
        inner: DynamoLeadStore,
        victims: HashSet<String>,
        died_for: Arc<Mutex<HashSet<String>>>,
    ) -> Self {
        Self {
            inner,
            victims: Some(victims),
            died_for,
            dead: AtomicBool::new(false),
        }
    }

    fn dies_now(&self, id: &str, d: &Delivery) -> bool {
        d.amo_lead_id.is_some()
            && self.victims.as_ref().is_none_or(|v| v.contains(id))
            && self.died_for.lock().unwrap().insert(id.to_string())
    }
}

#[async_trait]
impl LeadStore for DyingStore {
    async fn insert(&self, l: &Lead, c: &IdempotencyClaim) -> Result<InsertOutcome, StoreError> {
        self.inner.insert(l, c).await
    }
    async fn get(&self, id: &str) -> Result<Option<StoredLead>, StoreError> {
        self.inner.get(id).await
    }
    async fn claim_delivery(
        &self,
        id: &str,
        runner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        // Passed through even when dead, as the tests were written against.
        self.inner.claim_delivery(id, runner, until, now).await
    }
    async fn save_delivery(
        &self,
        id: &str,
        status: LeadStatus,
        d: &Delivery,
        held: Option<Held<'_>>,
    ) -> Result<(), StoreError> {
        if self.dies_now(id, d) {
            self.dead.store(true, Ordering::SeqCst);
        }
        if self.dead.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the process died".into()));
        }
        self.inner.save_delivery(id, status, d, held).await
    }
    async fn list_by_status(
        &self,
        s: LeadStatus,
        limit: usize,
    ) -> Result<Vec<StoredLead>, StoreError> {
        self.inner.list_by_status(s, limit).await
    }
}
