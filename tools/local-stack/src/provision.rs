//! Creates locally what template.yaml creates in AWS: the leads table (stream, TTL, status
//! index), the inbox (stream, status index), the passport (deal, push and due-date indexes),
//! the state table, the two secrets and the SES sender identity. Keep in step with
//! template.yaml.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use shared::store::{DEAL_INDEX, DUE_INDEX, PUSH_INDEX, STATUS_INDEX};
use shared::wiring::{Aws, InitError};

/// Names and values of everything provisioned locally.
#[derive(Debug, Clone)]
pub struct LocalResources {
    pub leads_table: String,
    pub inbox_table: String,
    pub passport_table: String,
    pub state_table: String,
    pub app_secret_id: String,
    pub token_secret_id: String,
    pub mail_from: String,
    /// The SES configuration set every message goes through (moto keeps it; it publishes no
    /// events, so bounces are fed to mail-events by the tests).
    pub configuration_set: String,
    /// JSON of the app secret (admin key, webhook token, bot token, client secret).
    pub app_secret_json: String,
    /// JSON of the amoCRM token secret.
    pub token_secret_json: String,
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, InitError> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()?)
}

fn attr(name: &str) -> Result<AttributeDefinition, InitError> {
    typed_attr(name, ScalarAttributeType::S)
}

fn typed_attr(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, InitError> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()?)
}

fn stream() -> Result<StreamSpecification, InitError> {
    Ok(StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()?)
}

async fn ttl(aws: &Aws, table: &str) -> Result<(), InitError> {
    aws.dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()?,
        )
        .send()
        .await?;
    Ok(())
}

fn all_attributes() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}

/// An index by `hash` (and `range`), projecting every attribute.
fn index(name: &str, hash: &str, range: Option<&str>) -> Result<GlobalSecondaryIndex, InitError> {
    let mut builder = GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .projection(all_attributes());
    if let Some(range) = range {
        builder = builder.key_schema(key(range, KeyType::Range)?);
    }
    Ok(builder.build()?)
}

/// Received webhooks; the stream drives crm-worker, the status index serves the re-drive.
pub async fn inbox_table(aws: &Aws, table: &str) -> Result<(), InitError> {
    streamed_status_table(aws, table).await
}

/// The Digital Passport: owner + serial; indexes by deal, by "waits for a push" (sparse) and
/// by due date (sparse).
pub async fn passport_table(aws: &Aws, table: &str) -> Result<(), InitError> {
    aws.dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .attribute_definitions(typed_attr("amo_lead_id", ScalarAttributeType::N)?)
        .attribute_definitions(attr("push_pending")?)
        .attribute_definitions(attr("due_watch")?)
        .attribute_definitions(attr("next_due")?)
        .global_secondary_indexes(index(DEAL_INDEX, "amo_lead_id", None)?)
        .global_secondary_indexes(index(PUSH_INDEX, "push_pending", None)?)
        .global_secondary_indexes(index(DUE_INDEX, "due_watch", Some("next_due"))?)
        .send()
        .await?;
    Ok(())
}

/// Integration state: OAuth state nonces, the refresh lease, token health (TTL on expires_at).
pub async fn state_table(aws: &Aws, table: &str) -> Result<(), InitError> {
    aws.dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .attribute_definitions(attr("pk")?)
        .send()
        .await?;
    ttl(aws, table).await
}

/// Leads and idempotency claims: the stream drives crm-worker, the status index serves the
/// re-drive, TTL drops expired claims.
pub async fn leads_table(aws: &Aws, table: &str) -> Result<(), InitError> {
    streamed_status_table(aws, table).await?;
    ttl(aws, table).await
}

/// A table keyed by `pk` with a stream and the `status-index` (the leads and inbox tables).
async fn streamed_status_table(aws: &Aws, table: &str) -> Result<(), InitError> {
    aws.dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("status")?)
        .attribute_definitions(attr("updated_at")?)
        .global_secondary_indexes(index(STATUS_INDEX, "status", Some("updated_at"))?)
        .stream_specification(stream()?)
        .send()
        .await?;
    Ok(())
}

pub async fn secret(aws: &Aws, id: &str, value: &str) -> Result<(), InitError> {
    aws.secrets
        .create_secret()
        .name(id)
        .secret_string(value)
        .send()
        .await?;
    Ok(())
}

pub async fn all(aws: &Aws, r: &LocalResources) -> Result<(), InitError> {
    leads_table(aws, &r.leads_table).await?;
    inbox_table(aws, &r.inbox_table).await?;
    passport_table(aws, &r.passport_table).await?;
    state_table(aws, &r.state_table).await?;
    secret(aws, &r.app_secret_id, &r.app_secret_json).await?;
    secret(aws, &r.token_secret_id, &r.token_secret_json).await?;
    aws.ses
        .create_email_identity()
        .email_identity(&r.mail_from)
        .send()
        .await?;
    aws.ses
        .create_configuration_set()
        .configuration_set_name(&r.configuration_set)
        .send()
        .await?;
    Ok(())
}
