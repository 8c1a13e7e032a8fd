//! The one lease primitive on the state table: an item that names its holder and the time its
//! hold lapses. The amoCRM token refresh (`LEASE#<name>`) and the maintenance sync
//! (`SYNC#lease`) both take theirs through it.

use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::attr::{conditional_write, n, s};
use crate::ports::StoreError;

pub(super) struct Lease<'a> {
    client: &'a Client,
    table: &'a str,
    pk: String,
}

impl<'a> Lease<'a> {
    pub(super) fn new(client: &'a Client, table: &'a str, pk: impl Into<String>) -> Self {
        Self {
            client,
            table,
            pk: pk.into(),
        }
    }

    /// Takes the lease for `owner` until `until`: granted when nobody holds it, when the last
    /// hold lapsed before `now`, or when `owner` holds it already (a retried invocation).
    /// An item without `expires_at_ms` was written before this primitive and reads as lapsed.
    pub(super) async fn acquire(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(self.table)
            .item("pk", s(&self.pk))
            .item("kind", s("lease"))
            .item("owner", s(owner))
            .item("expires_at_ms", n(until.timestamp_millis()))
            // TTL only cleans up a lease its holder never released; `expires_at_ms` decides.
            .item("expires_at", n(until.timestamp()))
            .condition_expression(
                "attribute_not_exists(pk) OR attribute_not_exists(expires_at_ms) \
                 OR expires_at_ms < :now OR #owner = :owner",
            )
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        conditional_write(put)
    }

    /// Gives the lease back if `owner` still holds it. Not written means it lapsed and was taken
    /// by someone else, or is already gone: nothing of ours to release.
    pub(super) async fn release(&self, owner: &str) -> Result<(), StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(self.table)
            .key("pk", s(&self.pk))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        conditional_write(delete).map(|_| ())
    }
}
