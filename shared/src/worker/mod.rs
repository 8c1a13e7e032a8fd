//! crm-worker: DynamoDB stream records of the leads and inbox tables in, partial batch
//! failures out. Leads are delivered to amoCRM; webhooks update the passport.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use tracing::{Instrument, info_span, warn};

use crate::crm_events::{EventOutcome, EventProcessor};
use crate::leads::deliver::{Deliverer, LeadDelivery, Outcome};

#[derive(Clone)]
pub struct CrmWorker {
    /// Lead delivery (the leads table's stream); the sync's re-drive runs the same one.
    pub delivery: LeadDelivery,
    /// Webhook events (the inbox table's stream); `None` where no inbox is configured.
    pub events: Option<Arc<EventProcessor>>,
}

/// What a stream record asks crm-worker to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    DeliverLead(String),
    ApplyWebhook(String),
}

/// The work in a stream record: a lead or webhook event that just became pending (inserted,
/// or re-driven by an operator). Progress saves keep the status pending and must not wake the
/// worker again. The event source mappings filter the same way; this guards local runs and
/// filter drift.
pub fn work_of(record: &EventRecord) -> Option<Work> {
    fn image(img: &impl serde::Serialize) -> Option<serde_json::Value> {
        serde_json::to_value(img).ok()
    }
    let new = image(&record.change.new_image)?;
    let attr =
        |v: &serde_json::Value, name: &str| v.get(name)?.get("S")?.as_str().map(str::to_string);
    let became_pending = match record.event_name.as_str() {
        "INSERT" => true,
        "MODIFY" => {
            let old = image(&record.change.old_image)?;
            attr(&old, "status").as_deref() != Some("pending")
        }
        _ => false,
    };
    if !became_pending || attr(&new, "status")?.as_str() != "pending" {
        return None;
    }
    match attr(&new, "kind")?.as_str() {
        "lead" => attr(&new, "lead_id").map(Work::DeliverLead),
        "webhook" => attr(&new, "event_id").map(Work::ApplyWebhook),
        _ => None,
    }
}

/// The lead a stream record asks us to deliver, if it is a pending lead.
pub fn pending_lead_id(record: &EventRecord) -> Option<String> {
    match work_of(record)? {
        Work::DeliverLead(id) => Some(id),
        Work::ApplyWebhook(_) => None,
    }
}

impl CrmWorker {
    /// The lead delivery this worker runs.
    pub fn deliverer(&self) -> Deliverer<'_> {
        self.delivery.deliverer()
    }

    /// Delivers each pending lead of the batch in order. A failure that a retry can fix is
    /// reported for its record only; the others are delivered anyway.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let deliverer = self.deliverer();
        let mut response = DynamoDbEventResponse::default();
        for record in &event.records {
            let retry = match work_of(record) {
                None => None,
                Some(Work::DeliverLead(lead_id)) => {
                    let span = info_span!("deliver", lead_id = %lead_id);
                    match deliverer.deliver(&lead_id).instrument(span).await {
                        Outcome::Retry { reason } => Some(reason),
                        // The holder may still die: the retry finds it delivered, or takes over.
                        Outcome::Busy => Some("another runner is delivering the lead".into()),
                        _ => None,
                    }
                }
                Some(Work::ApplyWebhook(event_id)) => match &self.events {
                    None => Some("no inbox processor configured".to_string()),
                    Some(events) => {
                        let span = info_span!("webhook", event_id = %event_id);
                        match events.process(&event_id).instrument(span).await {
                            EventOutcome::Retry { reason } => Some(reason),
                            _ => None,
                        }
                    }
                },
            };
            if let Some(reason) = retry {
                warn!(reason, "record reported as a batch item failure");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number.clone();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}
