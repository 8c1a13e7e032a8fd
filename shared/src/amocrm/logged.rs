//! The amoCRM client the functions use, behind the domain's ports, with every call recorded
//! in the call log `GET /health` reads.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::call_log::{CallLog, CallRecorder};
use super::client::AmoClient;
use crate::leads::Lead;
use crate::ports::{
    ContactLink, Crm, CrmDeal, CrmDeals, CrmFailure, CrmLeadRef, CrmProbe, CrmReachability,
};

/// The functions' amoCRM client behind the domain's ports. Its calls are recorded by the
/// client's `CallRecorder` (when the state table is configured), not here.
pub struct LoggedAmo {
    inner: AmoClient,
}

impl LoggedAmo {
    /// `inner` with `log` attached, so every call through it (and its clones) is recorded, and
    /// with the shared circuit breaker of `breaker`'s window after a 403 (when given).
    pub fn new(
        inner: AmoClient,
        log: Option<Arc<dyn CallLog>>,
        breaker: Option<chrono::Duration>,
    ) -> Self {
        let inner = match log {
            Some(log) => {
                let mut recorder = CallRecorder::new(log);
                if let Some(window) = breaker {
                    recorder = recorder.with_breaker(window);
                }
                inner.with_recorder(Arc::new(recorder))
            }
            None => inner,
        };
        LoggedAmo { inner }
    }

    pub fn client(&self) -> &AmoClient {
        &self.inner
    }
}

#[async_trait]
impl Crm for LoggedAmo {
    async fn find_contact(&self, query: &str) -> Result<Option<i64>, CrmFailure> {
        self.inner.find_contact(query).await
    }

    async fn find_lead_for(
        &self,
        lead: &Lead,
        create_started_at: DateTime<Utc>,
    ) -> Result<Option<CrmLeadRef>, CrmFailure> {
        self.inner.find_lead_for(lead, create_started_at).await
    }

    async fn create_lead(
        &self,
        lead: &Lead,
        contact: ContactLink,
    ) -> Result<CrmLeadRef, CrmFailure> {
        self.inner.create_lead(lead, contact).await
    }

    async fn find_note(&self, amo_lead_id: i64, marker: &str) -> Result<Option<i64>, CrmFailure> {
        self.inner.find_note(amo_lead_id, marker).await
    }

    async fn add_note(&self, amo_lead_id: i64, text: &str) -> Result<i64, CrmFailure> {
        self.inner.add_note(amo_lead_id, text).await
    }
}

#[async_trait]
impl CrmDeals for LoggedAmo {
    async fn deals(&self, ids: &[i64]) -> Result<Vec<CrmDeal>, CrmFailure> {
        self.inner.deals(ids).await
    }

    async fn note_on_deal(&self, deal_id: i64, text: &str) -> Result<i64, CrmFailure> {
        self.inner.note_on_deal(deal_id, text).await
    }
}

#[async_trait]
impl CrmProbe for LoggedAmo {
    async fn create_test_lead(&self) -> Result<i64, CrmFailure> {
        crate::ports::CrmProbe::create_test_lead(&self.inner).await
    }
}

#[async_trait]
impl CrmReachability for LoggedAmo {
    async fn reachable(&self) -> Result<(), CrmFailure> {
        Ok(self.inner.account().await.map(|_| ())?)
    }
}
