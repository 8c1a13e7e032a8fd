//! The integration state table: the small records that coordinate the amoCRM authorization
//! across Lambda instances.
//!
//! Items (key `pk` only; TTL on `expires_at`, which reads check too because TTL is lazy):
//! - `OAUTH_STATE#<state>`: a nonce handed out by `GET /oauth/start`, taken once by the redirect.
//! - `LEASE#<name>`: who may refresh the amoCRM token right now (refresh tokens are single-use).
//! - `TOKEN_HEALTH`: whether the token needs re-authorization, why, and when it last refreshed.
//! - `RATE#<slot>`: an amoCRM request slot taken by one caller (the account-wide rate limit).
//! - `NOTICE#<key>`: a warning that was mailed (e.g. a long-lived token's expiry 7 days ahead),
//!   so each goes out once however many runs see its reason.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};

use super::attr::{Item, conditional, conditional_write, n, s, time_text, unavailable};
use super::lease::Lease;
use crate::amocrm::SlotClaims;
use crate::ports::StoreError;
pub use crate::ports::{StateStore, StateTake, TokenHealthRecord};

pub const OAUTH_STATE_PREFIX: &str = "OAUTH_STATE#";
pub const LEASE_PREFIX: &str = "LEASE#";
pub const TOKEN_HEALTH_KEY: &str = "TOKEN_HEALTH";
pub const NOTICE_PREFIX: &str = "NOTICE#";
pub const RATE_PREFIX: &str = "RATE#";

/// `StateStore` on DynamoDB.
#[derive(Clone)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
}

impl DynamoStateStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn health_item(h: &TokenHealthRecord) -> Item {
    let mut item = HashMap::from([
        ("pk".to_string(), s(TOKEN_HEALTH_KEY)),
        ("kind".to_string(), s("token_health")),
        (
            "state".to_string(),
            s(if h.reauthorization_required {
                "reauthorization_required"
            } else {
                "ok"
            }),
        ),
        ("updated_at".to_string(), s(time_text(Utc::now()))),
    ]);
    let texts = [
        ("hint", h.hint.clone()),
        ("last_error", h.last_error.clone()),
        ("refused_refresh_token", h.refused_refresh_token.clone()),
        ("since", h.since.map(time_text)),
        ("last_refresh_at", h.last_refresh_at.map(time_text)),
        ("last_authorized_at", h.last_authorized_at.map(time_text)),
    ];
    for (k, v) in texts {
        if let Some(v) = v {
            item.insert(k.to_string(), s(v));
        }
    }
    item
}

fn health_from_item(item: &Item) -> Result<TokenHealthRecord, StoreError> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let time = |k: &str| {
        text(k)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let reauthorization_required = match text("state").as_deref() {
        Some("reauthorization_required") => true,
        Some("ok") => false,
        other => {
            return Err(StoreError::Corrupt(format!(
                "{TOKEN_HEALTH_KEY} has state {other:?}, expected ok or reauthorization_required"
            )));
        }
    };
    Ok(TokenHealthRecord {
        reauthorization_required,
        hint: text("hint"),
        since: time("since"),
        last_refresh_at: time("last_refresh_at"),
        last_authorized_at: time("last_authorized_at"),
        last_error: text("last_error"),
        refused_refresh_token: text("refused_refresh_token"),
    })
}

#[async_trait]
impl StateStore for DynamoStateStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Lease::new(&self.client, &self.table, format!("{LEASE_PREFIX}{name}"))
            .acquire(owner, now, until)
            .await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        Lease::new(&self.client, &self.table, format!("{LEASE_PREFIX}{name}"))
            .release(owner)
            .await
    }

    async fn put_oauth_state(
        &self,
        state: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{OAUTH_STATE_PREFIX}{state}")))
            .item("kind", s("oauth_state"))
            .item("created_at", s(time_text(Utc::now())))
            .item("expires_at", n(expires_at.timestamp()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn take_oauth_state(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<StateTake, StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("{OAUTH_STATE_PREFIX}{state}")))
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        let Some(out) = conditional(delete)? else {
            return Ok(StateTake::Unknown);
        };
        let old = out.attributes.unwrap_or_default();
        let expires_at = old
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| StoreError::Corrupt("OAuth state item without expires_at".into()))?;
        Ok(if now.timestamp() < expires_at {
            StateTake::Taken
        } else {
            StateTake::Expired
        })
    }

    async fn token_health(&self) -> Result<Option<TokenHealthRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(TOKEN_HEALTH_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.as_ref().map(health_from_item).transpose()
    }

    async fn put_token_health(&self, health: &TokenHealthRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(health_item(health)))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn mark_reauthorization_required(
        &self,
        health: &TokenHealthRecord,
    ) -> Result<bool, StoreError> {
        let record = TokenHealthRecord {
            reauthorization_required: true,
            ..health.clone()
        };
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(health_item(&record)))
            .condition_expression("attribute_not_exists(pk) OR #state <> :required")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":required", s("reauthorization_required"))
            .send()
            .await;
        conditional_write(put)
    }

    async fn claim_notice(&self, key: &str, keep_until: DateTime<Utc>) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{NOTICE_PREFIX}{key}")))
            .item("kind", s("notice"))
            .item("sent_at", s(time_text(Utc::now())))
            .item("expires_at", n(keep_until.timestamp()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional_write(put)
    }

    async fn release_notice(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("{NOTICE_PREFIX}{key}")))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

/// One conditional write per amoCRM request: the slot is this caller's unless it exists.
#[async_trait]
impl SlotClaims for DynamoStateStore {
    async fn claim_slot(&self, index: i64, keep_secs: i64) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{RATE_PREFIX}{index}")))
            .item("expires_at", n(Utc::now().timestamp() + keep_secs))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional_write(put)
    }
}

/// `StateStore` in memory, with the DynamoDB adapter's conditions; shared between several
/// providers it plays several Lambda instances.
#[derive(Default)]
pub struct MemoryStateStore {
    inner: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    leases: HashMap<String, (String, DateTime<Utc>)>,
    oauth_states: HashMap<String, DateTime<Utc>>,
    health: Option<TokenHealthRecord>,
    lease_grants: usize,
    notices: HashMap<String, DateTime<Utc>>,
}

impl MemoryStateStore {
    /// How many times a lease was granted (each grant allows one refresh).
    pub fn lease_grants(&self) -> usize {
        self.inner.lock().unwrap().lease_grants
    }

    /// Who holds lease `name` now, if anyone.
    pub fn lease_holder(&self, name: &str) -> Option<String> {
        self.inner
            .lock()
            .unwrap()
            .leases
            .get(name)
            .map(|(owner, _)| owner.clone())
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().unwrap();
        if inner
            .leases
            .get(name)
            .is_some_and(|(holder, expires)| holder != owner && *expires >= now)
        {
            return Ok(false);
        }
        inner
            .leases
            .insert(name.to_string(), (owner.to_string(), until));
        inner.lease_grants += 1;
        Ok(true)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap();
        if inner.leases.get(name).is_some_and(|(o, _)| o == owner) {
            inner.leases.remove(name);
        }
        Ok(())
    }

    async fn put_oauth_state(
        &self,
        state: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner
            .lock()
            .unwrap()
            .oauth_states
            .insert(state.to_string(), expires_at);
        Ok(())
    }

    async fn take_oauth_state(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<StateTake, StoreError> {
        Ok(
            match self.inner.lock().unwrap().oauth_states.remove(state) {
                None => StateTake::Unknown,
                Some(expires) if now.timestamp() < expires.timestamp() => StateTake::Taken,
                Some(_) => StateTake::Expired,
            },
        )
    }

    async fn token_health(&self) -> Result<Option<TokenHealthRecord>, StoreError> {
        Ok(self.inner.lock().unwrap().health.clone())
    }

    async fn put_token_health(&self, health: &TokenHealthRecord) -> Result<(), StoreError> {
        self.inner.lock().unwrap().health = Some(health.clone());
        Ok(())
    }

    async fn mark_reauthorization_required(
        &self,
        health: &TokenHealthRecord,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().unwrap();
        if inner
            .health
            .as_ref()
            .is_some_and(|h| h.reauthorization_required)
        {
            return Ok(false);
        }
        inner.health = Some(TokenHealthRecord {
            reauthorization_required: true,
            ..health.clone()
        });
        Ok(true)
    }

    async fn claim_notice(&self, key: &str, keep_until: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().unwrap();
        if inner.notices.contains_key(key) {
            return Ok(false);
        }
        inner.notices.insert(key.to_string(), keep_until);
        Ok(true)
    }

    async fn release_notice(&self, key: &str) -> Result<(), StoreError> {
        self.inner.lock().unwrap().notices.remove(key);
        Ok(())
    }
}

/// The memory twin's rules, and the DynamoDB item mapping. The DynamoDB conditions themselves
/// (lease takeover after expiry, single-use state, first-mark-wins) need moto: tests/e2e covers them.
#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + secs, 0).unwrap()
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_until_it_is_released_or_expires() {
        let store = MemoryStateStore::default();
        assert!(store.acquire_lease("r", "a", at(0), at(30)).await.unwrap());
        assert!(!store.acquire_lease("r", "b", at(10), at(40)).await.unwrap());
        // Its holder may take it again (a retried invocation), as on DynamoDB.
        assert!(store.acquire_lease("r", "a", at(5), at(30)).await.unwrap());
        // Releasing someone else's lease does nothing.
        store.release_lease("r", "b").await.unwrap();
        assert_eq!(store.lease_holder("r").as_deref(), Some("a"));
        store.release_lease("r", "a").await.unwrap();
        assert!(store.acquire_lease("r", "b", at(11), at(41)).await.unwrap());
        // b crashed without releasing: after expiry the lease can be taken again.
        assert!(!store.acquire_lease("r", "c", at(41), at(71)).await.unwrap());
        assert!(store.acquire_lease("r", "c", at(42), at(72)).await.unwrap());
        assert_eq!(store.lease_grants(), 4);
    }

    #[tokio::test]
    async fn an_oauth_state_is_single_use_and_expires() {
        let store = MemoryStateStore::default();
        store
            .put_oauth_state("s1", at(0) + Duration::minutes(20))
            .await
            .unwrap();
        store
            .put_oauth_state("s2", at(0) + Duration::minutes(20))
            .await
            .unwrap();
        assert_eq!(
            store.take_oauth_state("s1", at(60)).await.unwrap(),
            StateTake::Taken
        );
        assert_eq!(
            store.take_oauth_state("s1", at(61)).await.unwrap(),
            StateTake::Unknown
        );
        assert_eq!(
            store.take_oauth_state("s2", at(20 * 60)).await.unwrap(),
            StateTake::Expired
        );
        assert_eq!(
            store.take_oauth_state("never", at(0)).await.unwrap(),
            StateTake::Unknown
        );
    }

    #[tokio::test]
    async fn only_the_first_mark_of_an_incident_reports_the_transition() {
        let store = MemoryStateStore::default();
        let h = TokenHealthRecord {
            hint: Some("re-authorize".into()),
            ..Default::default()
        };
        assert!(store.mark_reauthorization_required(&h).await.unwrap());
        assert!(!store.mark_reauthorization_required(&h).await.unwrap());
        assert!(
            store
                .token_health()
                .await
                .unwrap()
                .unwrap()
                .reauthorization_required
        );
        store
            .put_token_health(&TokenHealthRecord::default())
            .await
            .unwrap();
        assert!(store.mark_reauthorization_required(&h).await.unwrap());
    }

    #[test]
    fn the_dynamo_item_round_trips_and_a_bad_state_is_corrupt() {
        let h = TokenHealthRecord {
            reauthorization_required: true,
            hint: Some("do this".into()),
            since: Some(at(5)),
            last_refresh_at: Some(at(1)),
            last_authorized_at: None,
            last_error: Some("amoCRM token endpoint answered 401".into()),
            refused_refresh_token: Some("abcd".into()),
        };
        let item = health_item(&h);
        assert_eq!(item["pk"].as_s().unwrap(), TOKEN_HEALTH_KEY);
        assert_eq!(health_from_item(&item).unwrap(), h);
        let mut bad = item.clone();
        bad.insert("state".into(), s("weird"));
        assert!(matches!(
            health_from_item(&bad),
            Err(StoreError::Corrupt(_))
        ));
    }
}
