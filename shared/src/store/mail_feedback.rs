//! Bounces and complaints on DynamoDB: appended to the lead item (`mail_feedback`, a list of
//! JSON texts) and kept as the latest of each kind in the state table (`MAIL_FEEDBACK#bounce`,
//! `MAIL_FEEDBACK#complaint`) for `GET /health`.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::LEAD_PREFIX;
use super::attr::{conditional_write, s, text, time_text, unavailable};
use crate::mail::feedback::{FeedbackKind, FeedbackLog, MailFeedback};
use crate::ports::StoreError;

pub const MAIL_FEEDBACK_PREFIX: &str = "MAIL_FEEDBACK#";

#[derive(Clone)]
pub struct DynamoMailFeedback {
    client: Client,
    leads_table: String,
    state_table: String,
}

impl DynamoMailFeedback {
    pub fn new(
        client: Client,
        leads_table: impl Into<String>,
        state_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            leads_table: leads_table.into(),
            state_table: state_table.into(),
        }
    }
}

fn json(feedback: &MailFeedback) -> Result<String, StoreError> {
    serde_json::to_string(feedback).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl FeedbackLog for DynamoMailFeedback {
    async fn record_on_lead(
        &self,
        lead_id: &str,
        feedback: &MailFeedback,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.leads_table)
            .key("pk", s(format!("{LEAD_PREFIX}{lead_id}")))
            // Only the feedback attribute: the delivery's own saves never touch it.
            .update_expression(
                "SET mail_feedback = list_append(if_not_exists(mail_feedback, :none), :one)",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":one", AttributeValue::L(vec![s(json(feedback)?)]))
            .send()
            .await;
        conditional_write(update)
    }

    async fn record_latest(&self, feedback: &MailFeedback) -> Result<(), StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.state_table)
            .key(
                "pk",
                s(format!("{MAIL_FEEDBACK_PREFIX}{}", feedback.kind.as_str())),
            )
            .update_expression("SET kind = :kind, #at = :at, feedback = :feedback")
            // SNS may deliver an older notification after a newer one.
            .condition_expression("attribute_not_exists(#at) OR #at < :at")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":kind", s("mail_feedback"))
            .expression_attribute_values(":at", s(time_text(feedback.at)))
            .expression_attribute_values(":feedback", s(json(feedback)?))
            .send()
            .await;
        // Not written: a later feedback of this kind is already recorded.
        conditional_write(update).map(|_| ())
    }

    async fn latest(&self) -> Result<Vec<MailFeedback>, StoreError> {
        let mut keys = KeysAndAttributes::builder().consistent_read(true);
        for kind in [FeedbackKind::Bounce, FeedbackKind::Complaint] {
            keys = keys.keys(std::collections::HashMap::from([(
                "pk".to_string(),
                s(format!("{MAIL_FEEDBACK_PREFIX}{}", kind.as_str())),
            )]));
        }
        let keys = keys
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.state_table, keys)
            .send()
            .await
            .map_err(unavailable)?;
        let mut found: Vec<MailFeedback> = out
            .responses
            .and_then(|mut r| r.remove(&self.state_table))
            .unwrap_or_default()
            .iter()
            .filter_map(|item| text(item, "feedback"))
            .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect::<Result<_, _>>()?;
        found.sort_by_key(|f| f.kind.as_str());
        Ok(found)
    }
}
