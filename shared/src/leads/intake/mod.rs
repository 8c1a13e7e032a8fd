//! Intake of a `POST /leads` body (JSON or a plain HTML form) into a validated [`LeadRequest`].
//!
//! Both body kinds become one loose JSON tree and go through ONE validator, so a wrong type is a
//! field error rather than a parse failure, both kinds give the same lead for the same input, and
//! every bad field is reported at once (paths like `phone`, `items[3].qty`, `equipment.serial`)
//! with a Russian message the site can show next to the field.

mod form;
mod money;
mod text;
mod validate;

#[cfg(test)]
mod tests;

use serde::Serialize;

use super::LeadRequest;

pub use money::{MAX_PRICE_KOPECKS, MoneyError, parse_roubles};

/// What a body turned out to be.
// Built once per request and moved straight on: boxing the lead would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    Lead(LeadRequest),
    /// The honeypot field `website` (hidden from people) was filled: a bot. Answer as if
    /// accepted, store nothing.
    Spam,
}

/// One field the customer has to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path in the body: `name`, `items[3].qty`, `equipment.serial`, `utm.source`; `contact`
    /// when none of phone, e-mail and Telegram ID is given.
    pub field: String,
    /// Russian, for the customer.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// Not JSON, not a JSON object, or a form whose keys cannot be read.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Readable, but some fields break the rules (all of them listed).
    #[error("invalid fields: {}", field_list(.0))]
    Invalid(Vec<FieldError>),
}

/// Names only: values may be personal data and stay out of logs.
fn field_list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.field.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads an `application/json` body.
pub fn parse_json(body: &[u8]) -> Result<Intake, IntakeError> {
    parse_json_from(body, None)
}

/// [`parse_json`] for a caller Telegram vouched for: `telegram_user` replaces any
/// `telegram_id` of the body.
pub fn parse_json_from(body: &[u8], telegram_user: Option<i64>) -> Result<Intake, IntakeError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| IntakeError::Malformed(format!("not JSON: {e}")))?;
    match value {
        serde_json::Value::Object(mut fields) => {
            vouched(&mut fields, telegram_user);
            validate::validate(&fields)
        }
        _ => Err(IntakeError::Malformed("JSON body is not an object".into())),
    }
}

fn vouched(fields: &mut serde_json::Map<String, serde_json::Value>, telegram_user: Option<i64>) {
    if let Some(id) = telegram_user {
        fields.insert("telegram_id".into(), id.into());
    }
}

/// Reads an `application/x-www-form-urlencoded` body.
pub fn parse_form(body: &[u8]) -> Result<Intake, IntakeError> {
    parse_form_from(body, None)
}

/// [`parse_form`] for a caller Telegram vouched for (see [`parse_json_from`]).
pub fn parse_form_from(body: &[u8], telegram_user: Option<i64>) -> Result<Intake, IntakeError> {
    let mut fields = form::parse(body).map_err(|e| IntakeError::Malformed(e.to_string()))?;
    vouched(&mut fields, telegram_user);
    validate::validate(&fields)
}
