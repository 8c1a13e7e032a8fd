//! The domain's reading of a stored webhook: each lead event as a `DealChange` whose deal
//! carries the fields the way `GET /api/v4/leads` would.

use super::{LeadAction, LeadPayload, parse_webhook};
use crate::ports::{CrmDeal, CrmFieldValue, DealChange, DealChangeKind, WebhookReader};

/// amoCRM's account webhooks, read for the passport and the maintenance sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct AmoWebhookReader;

impl WebhookReader for AmoWebhookReader {
    fn deal_changes(&self, body: &str) -> Result<Vec<DealChange>, String> {
        let webhook = parse_webhook(body.as_bytes()).map_err(|e| e.to_string())?;
        Ok(webhook
            .lead_events()
            .map(|(action, lead)| DealChange {
                kind: kind_of(action),
                deal: deal_of(lead),
                old_status_id: lead.old_status_id,
            })
            .collect())
    }
}

fn kind_of(action: LeadAction) -> DealChangeKind {
    match action {
        LeadAction::Add => DealChangeKind::Added,
        LeadAction::Update => DealChangeKind::Updated,
        LeadAction::Status => DealChangeKind::StatusChanged,
        LeadAction::Restore => DealChangeKind::Restored,
        LeadAction::Responsible | LeadAction::Delete | LeadAction::Note => DealChangeKind::Other,
    }
}

fn deal_of(lead: &LeadPayload) -> CrmDeal {
    CrmDeal {
        id: lead.id,
        name: lead.name.clone().unwrap_or_default(),
        status_id: lead.status_id.unwrap_or(0),
        pipeline_id: lead.pipeline_id.unwrap_or(0),
        responsible_user_id: lead.responsible_user_id.unwrap_or(0),
        closed_at: None,
        // Older hooks carry only `last_modified`.
        updated_at: lead.updated_at.or(lead.last_modified).unwrap_or(0),
        main_contact_id: None,
        fields: (lead.custom_fields.iter())
            .map(|f| CrmFieldValue {
                field_id: f.id,
                value: f.text().map(str::to_owned),
                enum_id: f.enum_id(),
                // Hooks send dates as unix seconds, some accounts as dd.mm.yyyy text.
                unix: f.date(),
            })
            .collect(),
        tags: lead.tags.iter().filter_map(|t| t.name.clone()).collect(),
    }
}
