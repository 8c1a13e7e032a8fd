//! SES v2 adapter for the `Notifier` port, and the bounces and complaints SES reports back.

pub mod feedback;

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};

use crate::ports::{MailMessage, Notifier, NotifyError};

#[derive(Clone)]
pub struct SesNotifier {
    client: Client,
    from: String,
    /// `SES_CONFIGURATION_SET`: publishes bounces and complaints to the mail-events topic.
    configuration_set: Option<String>,
}

impl SesNotifier {
    pub fn new(client: Client, from: impl Into<String>) -> Self {
        Self {
            client,
            from: from.into(),
            configuration_set: None,
        }
    }

    /// Every message sent through `name`, so that SES reports its bounces and complaints.
    pub fn with_configuration_set(mut self, name: Option<String>) -> Self {
        self.configuration_set = name;
        self
    }
}

fn utf8(text: &str) -> Result<Content, NotifyError> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(|e| NotifyError::Rejected(e.to_string()))
}

#[async_trait]
impl Notifier for SesNotifier {
    async fn send(&self, mail: &MailMessage) -> Result<(), NotifyError> {
        let message = Message::builder()
            .subject(utf8(&mail.subject)?)
            .body(
                Body::builder()
                    .html(utf8(&mail.html)?)
                    .text(utf8(&mail.text)?)
                    .build(),
            )
            .build();
        let mut req = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(mail.to.clone()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build());
        if let Some(reply_to) = &mail.reply_to {
            req = req.reply_to_addresses(reply_to);
        }
        if let Some(set) = &self.configuration_set {
            req = req.configuration_set_name(set);
        }
        if let Some(lead_id) = &mail.lead_id {
            // Tag values allow letters, digits, `_` and `-`: a ULID is all of those.
            let tag = MessageTag::builder()
                .name(feedback::LEAD_TAG)
                .value(lead_id)
                .build()
                .map_err(|e| NotifyError::Rejected(e.to_string()))?;
            req = req.email_tags(tag);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let text = aws_sdk_sesv2::error::DisplayErrorContext(&err).to_string();
                // Throttling, network and 5xx are worth a retry; a rejected message is not.
                let transient = err
                    .raw_response()
                    .map(|r| r.status().as_u16() >= 500 || r.status().as_u16() == 429)
                    .unwrap_or(true)
                    || text.contains("Throttling")
                    || text.contains("TooManyRequests");
                Err(if transient {
                    NotifyError::Unavailable(text)
                } else {
                    NotifyError::Rejected(text)
                })
            }
        }
    }
}
