//! Bounces and complaints of the mail we send. SES publishes them through the configuration
//! set's event destination to an SNS topic; each notification is recorded on the lead whose
//! sales copy it concerns (the `lead_id` message tag) and as the latest of its kind, which
//! `GET /health` shows, and raises one alert line and metric.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::leads::phone::mask_email;
use crate::metrics::{self, Metric};
use crate::ports::StoreError;

/// The message tag that names the lead a sales copy belongs to.
pub const LEAD_TAG: &str = "lead_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    Bounce,
    Complaint,
}

impl FeedbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::Bounce => "bounce",
            FeedbackKind::Complaint => "complaint",
        }
    }
}

/// One bounce or complaint, safe to store and show (recipients masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailFeedback {
    pub kind: FeedbackKind,
    pub at: DateTime<Utc>,
    /// SES's id of the message it concerns.
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<String>,
    /// Masked addresses (`z***@example.ru`).
    pub recipients: Vec<String>,
    /// A bounce that will not go away by itself (SES: `Permanent`); complaints count as such.
    pub permanent: bool,
    /// SES's classification and the receiving server's words: `Permanent/General: smtp; 550 …`.
    pub detail: String,
}

/// Why an SES notification could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not an SES event notification: {0}")]
pub struct NotAnSesEvent(pub String);

/// Reads one SES notification (an SNS message body): the feedback for a bounce or complaint,
/// `None` for the other event types (send, delivery, …).
pub fn parse_ses_event(message: &str) -> Result<Option<MailFeedback>, NotAnSesEvent> {
    let v: Value = serde_json::from_str(message).map_err(|e| NotAnSesEvent(e.to_string()))?;
    // Configuration-set events say `eventType`; identity notifications `notificationType`.
    let kind = v
        .get("eventType")
        .or_else(|| v.get("notificationType"))
        .and_then(Value::as_str)
        .ok_or_else(|| NotAnSesEvent("no eventType".into()))?;
    let kind = match kind {
        "Bounce" => FeedbackKind::Bounce,
        "Complaint" => FeedbackKind::Complaint,
        _ => return Ok(None),
    };
    let mail = v
        .get("mail")
        .ok_or_else(|| NotAnSesEvent("no mail object".into()))?;
    let message_id = text(mail, "messageId").unwrap_or_default();
    let lead_id = mail
        .pointer(&format!("/tags/{LEAD_TAG}/0"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let (section, recipients_key) = match kind {
        FeedbackKind::Bounce => ("bounce", "bouncedRecipients"),
        FeedbackKind::Complaint => ("complaint", "complainedRecipients"),
    };
    let body = v
        .get(section)
        .ok_or_else(|| NotAnSesEvent(format!("no {section} object")))?;
    let recipients: Vec<&Value> = body
        .get(recipients_key)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let at = text(body, "timestamp")
        .or_else(|| text(mail, "timestamp"))
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    let (permanent, detail) = match kind {
        FeedbackKind::Bounce => {
            let kind = text(body, "bounceType").unwrap_or_else(|| "Undetermined".into());
            let sub = text(body, "bounceSubType").unwrap_or_default();
            let diagnostic = recipients
                .iter()
                .find_map(|r| text(r, "diagnosticCode"))
                .unwrap_or_default();
            (kind == "Permanent", format!("{kind}/{sub}: {diagnostic}"))
        }
        FeedbackKind::Complaint => {
            let feedback = text(body, "complaintFeedbackType").unwrap_or_else(|| "unknown".into());
            (true, format!("complaint: {feedback}"))
        }
    };
    Ok(Some(MailFeedback {
        kind,
        at,
        message_id,
        lead_id,
        recipients: recipients
            .iter()
            .filter_map(|r| text(r, "emailAddress"))
            .map(|a| mask_email(&a))
            .collect(),
        permanent,
        detail: mask_addresses(detail.trim_end_matches([' ', ':'])),
    }))
}

/// `text` with every e-mail address in it masked (receiving servers quote the address in
/// their diagnostic: `550 5.1.1 <zakaz@…>: Recipient address rejected`).
fn mask_addresses(text: &str) -> String {
    let part = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') {
            out.push_str(&mask_email(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if part(c) || c == '@' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Where feedback is kept: on its lead, and the latest of each kind for `GET /health`.
#[async_trait]
pub trait FeedbackLog: Send + Sync {
    /// Appends `feedback` to the lead's record; false when no such lead is stored.
    async fn record_on_lead(
        &self,
        lead_id: &str,
        feedback: &MailFeedback,
    ) -> Result<bool, StoreError>;
    /// Keeps `feedback` as the latest of its kind (unless a later one is kept already).
    async fn record_latest(&self, feedback: &MailFeedback) -> Result<(), StoreError>;
    /// The latest bounce and the latest complaint, where there were any.
    async fn latest(&self) -> Result<Vec<MailFeedback>, StoreError>;
}

/// What recording one notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// On its lead (when it named one that is stored) and as the latest.
    Feedback { on_lead: bool },
    /// A send, delivery or other event: nothing to record.
    Ignored,
}

/// The use case of the mail-events function.
pub struct FeedbackRecorder {
    pub log: Arc<dyn FeedbackLog>,
}

impl FeedbackRecorder {
    /// Records one SES notification. An unreadable one is an error for an operator, not a retry.
    pub async fn record(&self, message: &str) -> Result<Recorded, FeedbackError> {
        let Some(feedback) = parse_ses_event(message)? else {
            return Ok(Recorded::Ignored);
        };
        let on_lead = match &feedback.lead_id {
            Some(id) => self.log.record_on_lead(id, &feedback).await?,
            None => false,
        };
        self.log.record_latest(&feedback).await?;
        metrics::count(match feedback.kind {
            FeedbackKind::Bounce => Metric::MailBounces,
            FeedbackKind::Complaint => Metric::MailComplaints,
        });
        tracing::error!(
            alert = true,
            kind = feedback.kind.as_str(),
            lead_id = feedback.lead_id.as_deref().unwrap_or("-"),
            recipients = %feedback.recipients.join(","),
            permanent = feedback.permanent,
            detail = %feedback.detail,
            "mail {}", feedback.kind.as_str()
        );
        Ok(Recorded::Feedback { on_lead })
    }
}

impl FeedbackRecorder {
    /// The messages of one SNS delivery; returns how many were bounces or complaints. An
    /// unreadable message is logged and skipped (a retry cannot fix it); a store failure
    /// fails the whole delivery, so that Lambda retries it (recording twice is harmless).
    pub async fn record_all<'a>(
        &self,
        messages: impl IntoIterator<Item = &'a str>,
    ) -> Result<usize, StoreError> {
        let mut recorded = 0;
        for message in messages {
            match self.record(message).await {
                Ok(Recorded::Feedback { .. }) => recorded += 1,
                Ok(Recorded::Ignored) => {}
                Err(FeedbackError::Unreadable(e)) => {
                    tracing::error!(alert = true, error = %e, "SNS message skipped")
                }
                Err(FeedbackError::Store(e)) => return Err(e),
            }
        }
        Ok(recorded)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error(transparent)]
    Unreadable(#[from] NotAnSesEvent),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `FeedbackLog` in memory, for tests.
#[derive(Default)]
pub struct MemoryFeedbackLog {
    pub on_leads: Mutex<Vec<(String, MailFeedback)>>,
    /// Lead ids that exist.
    pub leads: Mutex<Vec<String>>,
    latest: Mutex<Vec<MailFeedback>>,
}

#[async_trait]
impl FeedbackLog for MemoryFeedbackLog {
    async fn record_on_lead(
        &self,
        lead_id: &str,
        feedback: &MailFeedback,
    ) -> Result<bool, StoreError> {
        if !self.leads.lock().unwrap().iter().any(|l| l == lead_id) {
            return Ok(false);
        }
        self.on_leads
            .lock()
            .unwrap()
            .push((lead_id.to_string(), feedback.clone()));
        Ok(true)
    }

    async fn record_latest(&self, feedback: &MailFeedback) -> Result<(), StoreError> {
        let mut latest = self.latest.lock().unwrap();
        match latest.iter_mut().find(|f| f.kind == feedback.kind) {
            Some(kept) if kept.at >= feedback.at => {}
            Some(kept) => *kept = feedback.clone(),
            None => latest.push(feedback.clone()),
        }
        Ok(())
    }

    async fn latest(&self) -> Result<Vec<MailFeedback>, StoreError> {
        Ok(self.latest.lock().unwrap().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration-set bounce event as SES publishes it (shape of the SES developer
    /// guide's "Event publishing" examples).
    pub(crate) fn bounce(lead_id: &str, at: &str) -> String {
        serde_json::json!({
            "eventType": "Bounce",
            "bounce": {
                "feedbackId": "0102017c-example",
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [{
                    "emailAddress": "zakaz@tdrusstankosbyt.ru",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                }],
                "timestamp": at,
                "reportingMTA": "dsn; a8-30.smtp-out.amazonses.com"
            },
            "mail": {
                "timestamp": at,
                "source": "noreply@td-rss.ru",
                "sendingAccountId": "123456789012",
                "messageId": "0102017c-msg",
                "destination": ["zakaz@tdrusstankosbyt.ru"],
                "tags": {"ses:configuration-set": ["rss-mail"], "lead_id": [lead_id]}
            }
        })
        .to_string()
    }

    #[test]
    fn a_bounce_names_its_lead_and_hides_the_address() {
        let f = parse_ses_event(&bounce("01JLEAD", "2026-12-06T10:00:00.000Z"))
            .unwrap()
            .unwrap();
        assert_eq!(f.kind, FeedbackKind::Bounce);
        assert_eq!(f.lead_id.as_deref(), Some("01JLEAD"));
        assert_eq!(f.recipients, ["z***@tdrusstankosbyt.ru"]);
        assert!(f.permanent);
        assert_eq!(f.detail, "Permanent/General: smtp; 550 5.1.1 user unknown");
        assert!(!serde_json::to_string(&f).unwrap().contains("zakaz@"));
        assert_eq!(
            mask_addresses("550 5.1.1 <zakaz@tdrusstankosbyt.ru>: rejected"),
            "550 5.1.1 <z***@tdrusstankosbyt.ru>: rejected"
        );
    }

    #[test]
    fn a_complaint_is_read_and_other_events_are_ignored() {
        let complaint = serde_json::json!({
            "eventType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": "Ivan@Example.ru"}],
                "timestamp": "2026-12-06T11:00:00Z",
                "complaintFeedbackType": "abuse"
            },
            "mail": {"messageId": "m2", "tags": {}}
        })
        .to_string();
        let f = parse_ses_event(&complaint).unwrap().unwrap();
        assert_eq!(
            (f.kind, f.lead_id, f.detail.as_str()),
            (FeedbackKind::Complaint, None, "complaint: abuse")
        );
        let delivery = r#"{"eventType":"Delivery","mail":{"messageId":"m3"},"delivery":{}}"#;
        assert!(parse_ses_event(delivery).unwrap().is_none());
        assert!(parse_ses_event("not json").is_err());
        assert!(parse_ses_event(r#"{"eventType":"Bounce"}"#).is_err());
    }

    #[tokio::test]
    async fn the_recorder_keeps_it_on_the_lead_and_as_the_latest_of_its_kind() {
        let log = Arc::new(MemoryFeedbackLog::default());
        log.leads.lock().unwrap().push("01JLEAD".into());
        let recorder = FeedbackRecorder { log: log.clone() };
        let first = bounce("01JLEAD", "2026-12-06T10:00:00Z");
        assert_eq!(
            recorder.record(&first).await.unwrap(),
            Recorded::Feedback { on_lead: true }
        );
        // An older notification arriving late does not replace the latest.
        let older = bounce("01JGONE", "2026-12-05T10:00:00Z");
        assert_eq!(
            recorder.record(&older).await.unwrap(),
            Recorded::Feedback { on_lead: false }
        );
        let latest = log.latest().await.unwrap();
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].lead_id.as_deref(), Some("01JLEAD"));
        assert_eq!(log.on_leads.lock().unwrap().len(), 1);
    }
}
