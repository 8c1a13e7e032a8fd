//! crm-worker: DynamoDB stream records of the leads table in, partial batch failures out.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use tracing::{Instrument, info_span, warn};

use crate::leads::deliver::{Deliverer, MailSettings, Outcome};
use crate::ports::{Crm, LeadStore, Notifier};

#[derive(Clone)]
pub struct CrmWorker {
    pub store: Arc<dyn LeadStore>,
    pub crm: Arc<dyn Crm>,
    pub notifier: Arc<dyn Notifier>,
    pub mail: MailSettings,
}

/// The lead a stream record asks us to deliver: a lead item that is (still) pending.
/// The event source mapping filters the same way; this guards local runs and filter drift.
pub fn pending_lead_id(record: &EventRecord) -> Option<String> {
    if !matches!(record.event_name.as_str(), "INSERT" | "MODIFY") {
        return None;
    }
    let image = serde_json::to_value(&record.change.new_image).ok()?;
    let attr = |name: &str| image.get(name)?.get("S")?.as_str().map(str::to_string);
    (attr("kind")?.as_str() == "lead" && attr("status")?.as_str() == "pending")
        .then(|| attr("lead_id"))
        .flatten()
}

impl CrmWorker {
    /// Delivers each pending lead of the batch in order. A failure that a retry can fix is
    /// reported for its record only; the others are delivered anyway.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let deliverer = Deliverer {
            store: self.store.as_ref(),
            crm: self.crm.as_ref(),
            notifier: self.notifier.as_ref(),
            mail: &self.mail,
        };
        let mut response = DynamoDbEventResponse::default();
        for record in &event.records {
            let Some(lead_id) = pending_lead_id(record) else {
                continue;
            };
            let span = info_span!("deliver", lead_id = %lead_id);
            let outcome = deliverer.deliver(&lead_id).instrument(span).await;
            if let Outcome::Retry { reason } = outcome {
                warn!(lead_id, reason, "record reported as a batch item failure");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number.clone();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}
