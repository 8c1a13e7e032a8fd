//! The small pieces every DynamoDB adapter here uses to build and read items.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::ports::StoreError;

pub(super) type Item = HashMap<String, AttributeValue>;

/// An SDK failure as the retryable store error, with the SDK's full context.
pub(super) fn unavailable(e: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Times are stored as RFC 3339 with milliseconds in UTC, so they also sort as text (GSI keys).
pub(super) fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(super) fn text(item: &Item, key: &str) -> Option<String> {
    get_s(item, key).map(str::to_string)
}

pub(super) fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> Option<T> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn time(item: &Item, key: &str) -> Option<DateTime<Utc>> {
    get_s(item, key)
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The outcome of a conditional `PutItem`: true when written, false when the condition failed
/// (the item was already there), an error otherwise.
pub(super) fn conditional_put<R: std::fmt::Debug>(
    result: Result<
        aws_sdk_dynamodb::operation::put_item::PutItemOutput,
        aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError, R>,
    >,
) -> Result<bool, StoreError> {
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(PutItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(unavailable(e)),
    }
}
