//! The emulator's floor: the least DynamoDB work a sync of N changed machines must do (one
//! page read per 250 machines, one write per machine), done bare on the same moto just before
//! the run, so the wall time can be held against what the emulator alone costs.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use super::BATCH;
use crate::BenchError;

/// Writes in flight, as the sync records its accepted batches.
const IN_FLIGHT: usize = 16;

/// Time for `n` minimal UpdateItems (IN_FLIGHT at a time) and ceil(n/250) Scan pages of 250
/// on a scratch table of `n` small items, on the stack's moto.
pub async fn emulator_floor(client: &Client, n: usize) -> Result<Duration, BenchError> {
    let table = format!("bench-floor-{n}-{}", std::process::id());
    let attr = |name: &str, t| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
    };
    let key = |name: &str, k| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(k)
            .build()
    };
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .send()
        .await?;
    let started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..n {
        if pending.len() >= IN_FLIGHT {
            pending.join_next().await.transpose()?.transpose()?;
        }
        let (client, table) = (client.clone(), table.clone());
        pending.spawn(async move {
            client
                .update_item()
                .table_name(table)
                .key("pk", AttributeValue::S(format!("M#{i}")))
                .update_expression("SET v = :v")
                .expression_attribute_values(":v", AttributeValue::N("1".into()))
                .send()
                .await
                .map(|_| ())
        });
    }
    while let Some(done) = pending.join_next().await {
        done??;
    }
    let mut start = None;
    for _ in 0..(n as u64).div_ceil(BATCH) {
        let page = client
            .scan()
            .table_name(&table)
            .limit(BATCH as i32)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    let floor = started.elapsed();
    let _ = client.delete_table().table_name(&table).send().await;
    Ok(floor)
}
