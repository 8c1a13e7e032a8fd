//! An in-memory `LeadStore` with the DynamoDB adapter's semantics, for domain tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use crate::leads::{Delivery, Lead, LeadStatus, StoredLead};
use crate::ports::{Claim, Held, IdempotencyClaim, InsertOutcome, LeadStore, StoreError};

#[derive(Default)]
pub struct MemoryLeadStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    leads: HashMap<String, StoredLead>,
    claims: HashMap<String, (String, chrono::DateTime<Utc>)>,
    /// Delivery holds: lead id → (runner, until).
    holds: HashMap<String, (String, chrono::DateTime<Utc>)>,
}

impl MemoryLeadStore {
    /// Test fixture: a site lead `id` stored in `status` with `delivery` done so far.
    #[cfg(test)]
    pub(crate) async fn with_lead(&self, id: &str, status: LeadStatus, delivery: &Delivery) {
        let lead = Lead {
            id: id.into(),
            received_at: Utc::now(),
            request: crate::leads::LeadRequest::site_service("Иван"),
        };
        let claim = IdempotencyClaim {
            key: format!("k-{id}"),
            expires_at: Utc::now() + chrono::Duration::hours(1),
        };
        self.insert(&lead, &claim).await.unwrap();
        self.save_delivery(id, status, delivery, None)
            .await
            .unwrap();
    }

    pub fn all(&self) -> Vec<StoredLead> {
        let mut v: Vec<_> = self.inner.lock().unwrap().leads.values().cloned().collect();
        v.sort_by(|a, b| a.lead.id.cmp(&b.lead.id));
        v
    }
}

#[async_trait]
impl LeadStore for MemoryLeadStore {
    async fn insert(
        &self,
        lead: &Lead,
        claim: &IdempotencyClaim,
    ) -> Result<InsertOutcome, StoreError> {
        let mut inner = self.inner.lock().unwrap();
        if let Some((lead_id, expires)) = inner.claims.get(&claim.key)
            && *expires >= lead.received_at
        {
            return Ok(InsertOutcome::Duplicate {
                lead_id: lead_id.clone(),
            });
        }
        inner
            .claims
            .insert(claim.key.clone(), (lead.id.clone(), claim.expires_at));
        inner.leads.insert(
            lead.id.clone(),
            StoredLead {
                lead: lead.clone(),
                status: LeadStatus::Pending,
                delivery: Delivery::default(),
                updated_at: lead.received_at,
            },
        );
        Ok(InsertOutcome::Created)
    }

    async fn get(&self, lead_id: &str) -> Result<Option<StoredLead>, StoreError> {
        Ok(self.inner.lock().unwrap().leads.get(lead_id).cloned())
    }

    async fn claim_delivery(
        &self,
        lead_id: &str,
        runner: &str,
        until: chrono::DateTime<Utc>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut inner = self.inner.lock().unwrap();
        let pending = inner
            .leads
            .get(lead_id)
            .is_some_and(|l| matches!(l.status, LeadStatus::Pending | LeadStatus::Mailing));
        if !pending {
            return Ok(Claim::NotPending);
        }
        match inner.holds.get(lead_id) {
            Some((r, u)) if r != runner && *u >= now => Ok(Claim::HeldUntil(*u)),
            _ => {
                inner
                    .holds
                    .insert(lead_id.to_string(), (runner.to_string(), until));
                Ok(Claim::Claimed)
            }
        }
    }

    async fn save_delivery(
        &self,
        lead_id: &str,
        status: LeadStatus,
        delivery: &Delivery,
        held: Option<Held<'_>>,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap();
        if let Some(h) = held {
            if inner.holds.get(lead_id).map(|(r, _)| r.as_str()) != Some(h.runner) {
                return Err(StoreError::Held(lead_id.to_string()));
            }
            if h.release {
                inner.holds.remove(lead_id);
            } else {
                inner
                    .holds
                    .insert(lead_id.to_string(), (h.runner.to_string(), h.until));
            }
        }
        let stored = inner
            .leads
            .get_mut(lead_id)
            .ok_or_else(|| StoreError::Corrupt(format!("no lead {lead_id}")))?;
        stored.status = status;
        stored.delivery = delivery.clone();
        stored.updated_at = Utc::now();
        Ok(())
    }

    async fn list_by_status(
        &self,
        status: LeadStatus,
        limit: usize,
    ) -> Result<Vec<StoredLead>, StoreError> {
        let mut v: Vec<_> = self
            .inner
            .lock()
            .unwrap()
            .leads
            .values()
            .filter(|l| l.status == status)
            .cloned()
            .collect();
        v.sort_by_key(|l| l.updated_at);
        v.truncate(limit);
        Ok(v)
    }
}
