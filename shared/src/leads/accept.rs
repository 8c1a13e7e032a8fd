//! Accepting a lead: store it durably (with its idempotency claim) before anyone answers.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use ulid::Ulid;

use super::{Lead, LeadRequest};
use crate::ports::{IdempotencyClaim, InsertOutcome, LeadStore, StoreError};

/// How long repeats are recognised.
#[derive(Debug, Clone, Copy)]
pub struct RepeatPolicy {
    /// Same body from the same source, without an `Idempotency-Key`.
    pub body_window: Duration,
    /// With an `Idempotency-Key`.
    pub key_ttl: Duration,
}

impl Default for RepeatPolicy {
    fn default() -> Self {
        Self {
            body_window: Duration::minutes(10),
            key_ttl: Duration::hours(24),
        }
    }
}

/// The answer to give the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub lead_id: String,
    /// True when this was a repeat and nothing new was created.
    pub repeat: bool,
}

/// The idempotency claim for a request: the header key when given, else the body itself.
pub fn claim_for(
    request: &LeadRequest,
    idempotency_key: Option<&str>,
    now: DateTime<Utc>,
    policy: RepeatPolicy,
) -> IdempotencyClaim {
    let digest = |parts: &[&[u8]]| {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
            h.update([0u8]);
        }
        hex::encode(h.finalize())
    };
    match idempotency_key {
        Some(key) => IdempotencyClaim {
            key: format!("key:{}", digest(&[key.as_bytes()])),
            expires_at: now + policy.key_ttl,
        },
        None => {
            // The validated request serialises deterministically (fixed field order, sorted
            // UTM map), so formatting differences of the same submission collapse to one key.
            let canonical = serde_json::to_vec(request).unwrap_or_default();
            IdempotencyClaim {
                key: format!(
                    "body:{}:{}",
                    request.source.as_str(),
                    digest(&[request.source.as_str().as_bytes(), &canonical])
                ),
                expires_at: now + policy.body_window,
            }
        }
    }
}

/// Stores a new lead, or recognises a repeat and returns the first lead's id.
pub async fn accept_lead(
    store: &dyn LeadStore,
    request: LeadRequest,
    idempotency_key: Option<&str>,
    now: DateTime<Utc>,
    policy: RepeatPolicy,
) -> Result<Accepted, StoreError> {
    let claim = claim_for(&request, idempotency_key, now, policy);
    let lead = Lead {
        id: new_lead_id(),
        received_at: now,
        request,
    };
    match store.insert(&lead, &claim).await? {
        InsertOutcome::Created => Ok(Accepted {
            lead_id: lead.id,
            repeat: false,
        }),
        InsertOutcome::Duplicate { lead_id } => Ok(Accepted {
            lead_id,
            repeat: true,
        }),
    }
}

pub fn new_lead_id() -> String {
    Ulid::generate().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryLeadStore;

    fn request(name: &str) -> LeadRequest {
        LeadRequest::site_service(name)
    }

    #[tokio::test]
    async fn same_body_within_the_window_is_one_lead_and_after_it_a_new_one() {
        let store = MemoryLeadStore::default();
        let t0 = Utc::now();
        let policy = RepeatPolicy::default();
        let first = accept_lead(&store, request("Иван"), None, t0, policy)
            .await
            .unwrap();
        let again = accept_lead(
            &store,
            request("Иван"),
            None,
            t0 + Duration::minutes(9),
            policy,
        )
        .await
        .unwrap();
        assert_eq!(
            again,
            Accepted {
                lead_id: first.lead_id.clone(),
                repeat: true
            }
        );
        let other = accept_lead(&store, request("Пётр"), None, t0, policy)
            .await
            .unwrap();
        assert!(!other.repeat);
        let later = accept_lead(
            &store,
            request("Иван"),
            None,
            t0 + Duration::minutes(11),
            policy,
        )
        .await
        .unwrap();
        assert!(!later.repeat);
        assert_eq!(store.all().len(), 3);
    }

    #[tokio::test]
    async fn idempotency_key_wins_over_body_differences() {
        let store = MemoryLeadStore::default();
        let now = Utc::now();
        let p = RepeatPolicy::default();
        let a = accept_lead(&store, request("Иван"), Some("k-1"), now, p)
            .await
            .unwrap();
        let b = accept_lead(&store, request("Иван И."), Some("k-1"), now, p)
            .await
            .unwrap();
        assert_eq!(a.lead_id, b.lead_id);
        assert!(b.repeat);
        assert_eq!(store.all().len(), 1);
    }
}
