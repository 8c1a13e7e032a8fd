//! amoCRM account webhooks ("legacy" format): the `application/x-www-form-urlencoded` body with
//! PHP bracket keys (`leads[status][0][id]=…`) parsed into typed events, and the key that
//! recognises a repeated delivery.
//!
//! Pure code: the HTTP adapter hands over the raw body and the `X-Amocrm-Requestid` header.

mod custom_fields;
mod events;
mod form;
mod model;
mod reader;

#[cfg(test)]
mod tests;

use sha2::{Digest, Sha256};

pub use custom_fields::{CustomField, FieldValue};
pub use events::KNOWN_ENTITIES;
pub use model::{
    Account, ContactAction, ContactKind, ContactPayload, Event, LeadAction, LeadPayload,
    NotePayload, SkippedEvent, Tag, Webhook,
};
pub use reader::AmoWebhookReader;

use form::{FormError, Node, shorten};

/// Largest body accepted. Real hooks are a few KiB; a lead with long notes stays far below.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a body is not a webhook we can read. Any of these is final: retrying the same body
/// cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body is empty")]
    Empty,
    #[error("webhook body is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("webhook body is not form-encoded: {0}")]
    NotFormEncoded(&'static str),
    #[error("webhook key `{key}` is nested {depth} levels deep, over the limit of {limit}")]
    TooDeep {
        key: String,
        depth: usize,
        limit: usize,
    },
    #[error("not an amoCRM webhook: {0}")]
    NotAWebhook(String),
}

/// Parses an account webhook body. Tolerates what real captures contain: percent-encoded or
/// literal brackets and Cyrillic, `+` for spaces, a trailing newline, ids used as keys.
/// An entry without a numeric id lands in [`Webhook::skipped`], not in an error.
pub fn parse_webhook(body: &[u8]) -> Result<Webhook, WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge {
            size: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    let body = body.trim_ascii();
    check_form_encoded(body)?;
    let tree = Node::parse(body).map_err(|e| match e {
        FormError::TooDeep { key, depth } => WebhookError::TooDeep {
            key,
            depth,
            limit: form::MAX_DEPTH,
        },
    })?;
    events::read_webhook(&tree).ok_or_else(|| WebhookError::NotAWebhook(describe_keys(&tree)))
}

fn check_form_encoded(body: &[u8]) -> Result<(), WebhookError> {
    let Some(&first) = body.first() else {
        return Err(WebhookError::Empty);
    };
    if first == b'{' || first == b'[' {
        return Err(WebhookError::NotFormEncoded("it looks like JSON"));
    }
    if first == b'<' {
        return Err(WebhookError::NotFormEncoded("it looks like XML/HTML"));
    }
    if body
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n'))
    {
        return Err(WebhookError::NotFormEncoded(
            "it contains binary control bytes",
        ));
    }
    if !body.contains(&b'=') {
        return Err(WebhookError::NotFormEncoded("it has no key=value pairs"));
    }
    Ok(())
}

/// "found only: account, foo" — top-level names only, never values (they may be personal).
fn describe_keys(tree: &Node) -> String {
    let keys: Vec<String> = tree
        .entries()
        .iter()
        .take(5)
        .map(|(k, _)| shorten(k, 30))
        .collect();
    if keys.is_empty() {
        return "no keys at all".to_owned();
    }
    format!(
        "no `leads`, `contacts` or other entity key; top-level keys: {}",
        keys.join(", ")
    )
}

/// A key for recognising a repeated delivery of the same webhook: `rid:<request id>` when
/// amoCRM sent a sane `X-Amocrm-Requestid`, else `sha256:<hex of the body>`.
pub fn dedup_key(request_id_header: Option<&str>, body: &[u8]) -> String {
    match request_id_header
        .map(str::trim)
        .filter(|id| is_sane_request_id(id))
    {
        Some(id) => format!("rid:{}", id.to_ascii_lowercase()),
        None => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    }
}

/// UUID-like: 8 to 128 characters of letters, digits, `-`, `_`, `.`, `:`.
fn is_sane_request_id(id: &str) -> bool {
    (8..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}
