//! The one walk over a table's `status-index` (hash `status`, range `updated_at`): leads and
//! webhook events by status, oldest update first, page after page.

use std::collections::HashMap;
use std::ops::ControlFlow;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::Select;
use chrono::{DateTime, Utc};

use super::STATUS_INDEX;
use super::attr::{Item, s, time_text, unavailable};
use crate::ports::StoreError;

/// Why a walk over the index did not finish.
#[derive(Debug)]
pub(super) enum IndexWalkError {
    /// The table was created without the index (an old deployment).
    NoIndex(StoreError),
    Store(StoreError),
}

impl From<IndexWalkError> for StoreError {
    fn from(e: IndexWalkError) -> Self {
        match e {
            IndexWalkError::NoIndex(e) | IndexWalkError::Store(e) => e,
        }
    }
}

/// Items in one status, optionally only those last updated before a time.
pub(super) struct StatusQuery<'a> {
    client: &'a Client,
    table: &'a str,
    status: &'a str,
    before: Option<DateTime<Utc>>,
}

impl<'a> StatusQuery<'a> {
    pub(super) fn new(client: &'a Client, table: &'a str, status: &'a str) -> Self {
        Self {
            client,
            table,
            status,
            before: None,
        }
    }

    pub(super) fn updated_before(mut self, before: Option<DateTime<Utc>>) -> Self {
        self.before = before;
        self
    }

    /// At most `limit` items, oldest update first.
    pub(super) async fn items(&self, limit: usize) -> Result<Vec<Item>, IndexWalkError> {
        let mut items = Vec::new();
        self.walk(Some(limit), |page| {
            for item in page.items.unwrap_or_default() {
                items.push(item);
                if items.len() >= limit {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })
        .await?;
        Ok(items)
    }

    /// How many items there are, counted by DynamoDB (no item is read out).
    pub(super) async fn count(&self) -> Result<u64, IndexWalkError> {
        let mut total = 0u64;
        self.walk(None, |page| {
            total += page.count.max(0) as u64;
            ControlFlow::Continue(())
        })
        .await?;
        Ok(total)
    }

    /// `#status = :status [AND updated_at < :before]` with its values: the key condition of the
    /// query, and the filter of the scan that stands in for it on a table without the index.
    pub(super) fn condition(&self) -> (String, Item) {
        let mut values = HashMap::from([(":status".to_string(), s(self.status))]);
        let mut expr = "#status = :status".to_string();
        if let Some(before) = self.before {
            expr.push_str(" AND updated_at < :before");
            values.insert(":before".into(), s(time_text(before)));
        }
        (expr, values)
    }

    /// Pages through the query, reading items when `limit` is given and counting them when not,
    /// until the last page or until `each` breaks.
    async fn walk(
        &self,
        limit: Option<usize>,
        mut each: impl FnMut(QueryOutput) -> ControlFlow<()>,
    ) -> Result<(), IndexWalkError> {
        let (key_condition, values) = self.condition();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(self.table)
                .index_name(STATUS_INDEX)
                .key_condition_expression(&key_condition)
                .expression_attribute_names("#status", "status")
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start);
            query = match limit {
                Some(limit) => query.limit(limit.clamp(1, 1000) as i32),
                None => query.select(Select::Count),
            };
            let page = match query.send().await {
                Ok(page) => page,
                Err(e) if index_missing(&e) => return Err(IndexWalkError::NoIndex(unavailable(e))),
                Err(e) => return Err(IndexWalkError::Store(unavailable(e))),
            };
            start = page.last_evaluated_key.clone();
            if each(page).is_break() || start.is_none() {
                return Ok(());
            }
        }
    }
}

/// The answer to a query on an index the table does not have: DynamoDB says
/// `ValidationException: The table does not have the specified index`, moto
/// `ResourceNotFoundException: Invalid index`.
fn index_missing<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().is_some_and(|se| {
        matches!(
            se.code(),
            Some("ValidationException" | "ResourceNotFoundException")
        ) && se
            .message()
            .is_some_and(|m| m.to_ascii_lowercase().contains("index"))
    })
}
