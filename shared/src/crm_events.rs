//! The webhook use case, above the passport and the maintenance sync: what crm-worker does with
//! a stored CRM webhook. Won deals → passport, reopened deals → revoked equipment, maintenance
//! values → the passport through the sync's own merge. One list request per webhook for all
//! the deals it names.

use std::collections::BTreeSet;
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::maintenance::apply::Applier;
use crate::maintenance::deal_fields::MaintenanceFields;
use crate::metrics::{self, Metric};
use crate::passport::register::{
    DealOutcome, PassportError, PassportFields, Registrar, WON_STATUS_ID,
};
use crate::passport::{EquipmentState, MaintenancePolicy};
use crate::ports::{CrmDeals, DealChange, InboxStatus, InboxStore, PassportStore, WebhookReader};

/// Deals a webhook reports as won, and deals it reports as moved out of «won».
pub fn won_and_reopened(changes: &[DealChange]) -> (Vec<i64>, Vec<i64>) {
    let mut won = BTreeSet::new();
    let mut reopened = BTreeSet::new();
    for change in changes.iter().filter(|c| c.kind.carries_state()) {
        let deal = &change.deal;
        if deal.status_id == WON_STATUS_ID {
            won.insert(deal.id);
        } else if change.old_status_id == Some(WON_STATUS_ID) && deal.status_id != 0 {
            reopened.insert(deal.id);
        }
    }
    (won.into_iter().collect(), reopened.into_iter().collect())
}

/// What became of one inbox event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    Done,
    /// Kept for later data or an operator (e.g. a won deal without a serial).
    Parked {
        reason: String,
    },
    Retry {
        reason: String,
    },
    Skipped,
}

/// Maintenance values carried by deal webhooks, applied like the sync's pull applies them.
#[derive(Debug, Clone)]
pub struct MaintenanceHook {
    pub fields: MaintenanceFields,
    pub pipelines: Vec<i64>,
}

pub struct EventProcessor {
    pub inbox: Arc<dyn InboxStore>,
    /// Reads the stored bodies (the CRM's webhook format).
    pub webhooks: Arc<dyn WebhookReader>,
    pub crm: Arc<dyn CrmDeals>,
    pub passport: Arc<dyn PassportStore>,
    pub policy: MaintenancePolicy,
    pub fields: PassportFields,
    /// `None` where the maintenance fields are not configured.
    pub maintenance: Option<MaintenanceHook>,
}

impl EventProcessor {
    pub async fn process(&self, event_id: &str) -> EventOutcome {
        let event = match self.inbox.get(event_id).await {
            Ok(Some(e)) => e,
            Ok(None) => return EventOutcome::Skipped,
            Err(e) => {
                return EventOutcome::Retry {
                    reason: e.to_string(),
                };
            }
        };
        if event.status != InboxStatus::Pending {
            return EventOutcome::Skipped;
        }
        let attempts = event.attempts + 1;
        let changes = match self.webhooks.deal_changes(&event.body) {
            Ok(changes) => changes,
            Err(e) => {
                // The webhook function validated it before storing; this is a bug or drift.
                let reason = format!("stored webhook no longer parses: {e}");
                error!(event_id, alert = true, %reason, "webhook parked");
                let _ = self
                    .inbox
                    .set_status(
                        event_id,
                        InboxStatus::Parked,
                        attempts,
                        Some(&reason),
                        None,
                        false,
                    )
                    .await;
                return EventOutcome::Parked { reason };
            }
        };
        let outcome = self.apply(&changes).await;
        let (status, error, hint) = match &outcome {
            Ok(None) => (InboxStatus::Done, None, None),
            Ok(Some(reason)) => (InboxStatus::Parked, Some(reason.clone()), None),
            Err(e) if e.is_retryable() => {
                (InboxStatus::Pending, Some(e.to_string()), Some(e.hint()))
            }
            Err(e) => (InboxStatus::Parked, Some(e.to_string()), Some(e.hint())),
        };
        if let Err(e) = self
            .inbox
            .set_status(
                event_id,
                status,
                attempts,
                error.as_deref(),
                hint.as_deref(),
                matches!(&outcome, Err(e) if e.is_blocked()),
            )
            .await
        {
            return EventOutcome::Retry {
                reason: e.to_string(),
            };
        }
        match (outcome, status) {
            (Ok(None), _) => {
                metrics::count(Metric::WebhooksApplied);
                EventOutcome::Done
            }
            (Ok(Some(reason)), _) => {
                metrics::count(Metric::WebhooksParked);
                EventOutcome::Parked { reason }
            }
            (Err(e), InboxStatus::Pending) => {
                warn!(event_id, error = %e, "webhook processing failed, will retry");
                EventOutcome::Retry {
                    reason: e.to_string(),
                }
            }
            (Err(e), _) => {
                error!(event_id, alert = true, error = %e, hint = %e.hint(), "webhook parked");
                EventOutcome::Parked {
                    reason: e.to_string(),
                }
            }
        }
    }

    /// Applies the webhook; `Ok(Some(reason))` when part of it must wait.
    async fn apply(&self, changes: &[DealChange]) -> Result<Option<String>, PassportError> {
        let (won, reopened) = won_and_reopened(changes);
        let registrar = Registrar {
            crm: self.crm.as_ref(),
            store: self.passport.as_ref(),
            policy: &self.policy,
            fields: self.fields,
            note_waiting: true,
        };
        // A reopening hook may be older than the deal's state (won again since, the hooks
        // out of order): only deals amoCRM no longer shows as won lose their equipment.
        for chunk in reopened.chunks(250) {
            let still_won: BTreeSet<i64> = self
                .crm
                .deals(chunk)
                .await?
                .iter()
                .filter(|d| d.status_id == WON_STATUS_ID)
                .map(|d| d.id)
                .collect();
            for deal in chunk.iter().filter(|d| !still_won.contains(d)) {
                registrar.revoke(*deal).await?;
            }
        }
        // Deals already in the passport need no amoCRM call (edits of won deals are frequent).
        let mut to_read = Vec::new();
        for deal in won {
            let known = self.passport.by_deal(deal).await?;
            if !known.iter().any(|e| e.state == EquipmentState::Active) {
                to_read.push(deal);
            }
        }
        let mut waiting = Vec::new();
        for chunk in to_read.chunks(250) {
            for (deal, outcome) in registrar.register_won(chunk).await? {
                if let DealOutcome::Waiting { missing } = outcome {
                    waiting.push(format!("deal {deal}: missing {}", missing.join(", ")));
                }
            }
        }
        self.apply_maintenance(changes).await?;
        if waiting.is_empty() {
            info!(deal_changes = changes.len(), "webhook applied");
            Ok(None)
        } else {
            Ok(Some(waiting.join("; ")))
        }
    }

    /// Maintenance values of changed deals → passport, through the sync's own code.
    async fn apply_maintenance(&self, changes: &[DealChange]) -> Result<(), PassportError> {
        let Some(hook) = &self.maintenance else {
            return Ok(());
        };
        let readings: Vec<_> = (changes.iter())
            .filter(|c| c.kind.carries_state())
            .map(|c| hook.fields.read_deal(&c.deal))
            .filter(|r| r.carries_values())
            .collect();
        if readings.is_empty() {
            return Ok(());
        }
        let applier = Applier {
            store: self.passport.as_ref(),
            pipelines: &hook.pipelines,
        };
        let (stats, _) = applier.apply(&readings).await?;
        info!(
            applied = stats.applied,
            unchanged = stats.unchanged,
            conflicts = stats.conflicts,
            "maintenance values from the webhook"
        );
        Ok(())
    }
}
