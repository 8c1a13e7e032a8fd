//! Won deal → equipment in the customer's passport, exactly once; reopened deal → revoked.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::{
    Equipment, EquipmentState, Maintenance, MaintenancePolicy, MaintenanceStatus, SyncMarks,
};
use crate::leads::render::UNVERIFIED_TELEGRAM_TAG;
use crate::ports::{
    CrmDeal, CrmDeals, CrmErrorKind, CrmFailure, PassportStore, RegisterOutcome, StoreError,
};

/// amoCRM's system status «Успешно реализовано» (the same id in every pipeline).
pub const WON_STATUS_ID: i64 = 142;

/// Lead custom field ids the passport reads.
#[derive(Debug, Clone, Copy)]
pub struct PassportFields {
    pub serial: i64,
    pub model: i64,
    pub telegram_id: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PassportError {
    #[error(transparent)]
    Crm(#[from] CrmFailure),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PassportError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PassportError::Crm(e) => e.is_retryable(),
            PassportError::Store(_) => true,
        }
    }

    /// amoCRM refuses our address (whitelist or ban): parked, re-driven by the sync.
    pub fn is_blocked(&self) -> bool {
        matches!(self, PassportError::Crm(e) if e.kind == CrmErrorKind::Blocked)
    }

    pub fn hint(&self) -> String {
        match self {
            PassportError::Crm(e) => e.hint.clone(),
            PassportError::Store(_) => "DynamoDB failed; the event is retried".into(),
        }
    }
}

/// What happened to one won deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DealOutcome {
    Registered(RegisterOutcome),
    /// Not registered yet: these fields are missing (a note on the deal says so, once).
    Waiting {
        missing: Vec<&'static str>,
    },
    /// amoCRM says the deal is no longer won (a later change overtook the webhook).
    NotWon,
}

pub struct Registrar<'a> {
    pub crm: &'a dyn CrmDeals,
    pub store: &'a dyn PassportStore,
    pub policy: &'a MaintenancePolicy,
    pub fields: PassportFields,
    /// A note on a won deal that lacks data, telling the manager what to fill in (the backfill
    /// of old deals leaves them out unless asked).
    pub note_waiting: bool,
}

pub(crate) fn telegram_id(text: &str) -> Option<i64> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    digits.parse().ok().filter(|id: &i64| *id > 0)
}

/// The Russian note a manager sees on a won deal that cannot be registered yet.
pub fn missing_data_note(missing: &[&str]) -> String {
    let fields = missing
        .iter()
        .map(|f| format!("«{f}»"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "Сделка выиграна, но оборудование не добавлено в «Цифровой паспорт» клиента: \
         не заполнено {fields}. Заполните — и оборудование будет зарегистрировано автоматически."
    )
}

impl Registrar<'_> {
    /// Reads the deals in one request and registers the equipment of each won one.
    pub async fn register_won(
        &self,
        deal_ids: &[i64],
    ) -> Result<Vec<(i64, DealOutcome)>, PassportError> {
        if deal_ids.is_empty() {
            return Ok(Vec::new());
        }
        let deals = self.crm.deals(deal_ids).await?;
        let mut outcomes = Vec::with_capacity(deals.len());
        for deal in &deals {
            let outcome = self.register_deal(deal).await?;
            outcomes.push((deal.id, outcome));
        }
        Ok(outcomes)
    }

    /// Registers one won deal as read from amoCRM (the backfill's deals come from a list page).
    pub async fn register_deal(&self, deal: &CrmDeal) -> Result<DealOutcome, PassportError> {
        if deal.status_id != WON_STATUS_ID {
            return Ok(DealOutcome::NotWon);
        }
        let serial = deal.field_text(self.fields.serial);
        let owner = deal
            .field_text(self.fields.telegram_id)
            .and_then(telegram_id);
        let mut missing = Vec::new();
        if serial.is_none() {
            missing.push("Серийный номер");
        }
        if owner.is_none() {
            missing.push("Telegram ID");
        }
        let (Some(serial), Some(owner)) = (serial, owner) else {
            if self
                .store
                .mark_waiting(deal.id, &missing.join(", "))
                .await?
                && self.note_waiting
                && let Err(e) = self
                    .crm
                    .note_on_deal(deal.id, &missing_data_note(&missing))
                    .await
            {
                // The marker says "noted": without the note it must go, or the retry would
                // find it and never write the note.
                if let Err(undo) = self.store.clear_waiting(deal.id).await {
                    warn!(amo_lead_id = deal.id, error = %undo, "waiting marker kept after a failed note");
                }
                return Err(e.into());
            }
            warn!(amo_lead_id = deal.id, ?missing, "won deal waits for data");
            return Ok(DealOutcome::Waiting { missing });
        };
        if deal.tags.iter().any(|t| t == UNVERIFIED_TELEGRAM_TAG) {
            // The ID came from a public form; the manager was asked to check it before winning.
            warn!(
                amo_lead_id = deal.id,
                owner_unverified = true,
                "machine registered to a Telegram ID that came from an unverified lead"
            );
        }
        let purchased_at = deal
            .closed_at
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .unwrap_or_else(Utc::now);
        let model = deal.field_text(self.fields.model).map(str::to_string);
        let now = Utc::now();
        let equipment = Equipment {
            owner_telegram_id: owner,
            amo_contact_id: deal.main_contact_id,
            serial: serial.to_string(),
            maintenance: Maintenance {
                status: MaintenanceStatus::Ok,
                next_due: self.policy.next_due(purchased_at, model.as_deref()),
            },
            model,
            purchased_at,
            amo_lead_id: deal.id,
            state: EquipmentState::Active,
            updated_at: now,
            // The computed due date is our change as of the purchase: the sync writes it to
            // the deal, and a manager's later edit there wins over it.
            sync: SyncMarks {
                local_changed_at: Some(purchased_at),
                ..SyncMarks::default()
            },
        };
        let outcome = self.store.register(&equipment).await?;
        self.store.clear_waiting(deal.id).await?;
        info!(
            amo_lead_id = deal.id,
            ?outcome,
            "equipment registered in the passport"
        );
        Ok(DealOutcome::Registered(outcome))
    }

    /// A deal moved out of «won»: its equipment is marked revoked, never deleted.
    pub async fn revoke(&self, deal_id: i64) -> Result<usize, PassportError> {
        let mut n = 0;
        for eq in self.store.by_deal(deal_id).await? {
            if eq.state == EquipmentState::Active {
                self.store
                    .set_state(eq.owner_telegram_id, &eq.serial, EquipmentState::Revoked)
                    .await?;
                n += 1;
            }
        }
        if n > 0 {
            info!(
                amo_lead_id = deal_id,
                revoked = n,
                "deal reopened; equipment revoked"
            );
        }
        Ok(n)
    }
}
