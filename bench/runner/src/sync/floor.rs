//! The emulator's floor: the least DynamoDB work a sync of N changed machines must do (one
//! page read per 250 machines, one write per machine), done bare on the same moto just before
//! the run, so the wall time can be held against what the emulator alone costs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TransactWriteItem, Update,
};

use super::BATCH;
use crate::BenchError;

/// Writes in flight, as the sync records its accepted batches.
const IN_FLIGHT: usize = 16;

/// Time for `n` minimal updates and ceil(n/250) Scan pages of 250 on a scratch table of `n`
/// small items, on the stack's moto: one UpdateItem each (IN_FLIGHT at a time), or
/// TransactWriteItems of `per_write` when the run groups its records so.
pub async fn emulator_floor(
    client: &Client,
    n: usize,
    per_write: usize,
) -> Result<Duration, BenchError> {
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
    let per_write = per_write.max(1);
    let in_flight = (IN_FLIGHT / per_write).max(1);
    let mut pending = tokio::task::JoinSet::new();
    let groups: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(per_write)
        .map(<[usize]>::to_vec)
        .collect();
    for group in groups {
        if pending.len() >= in_flight {
            pending.join_next().await.transpose()?.transpose()?;
        }
        let (client, table) = (client.clone(), table.clone());
        pending.spawn(async move { minimal_write(&client, &table, &group).await });
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

/// One minimal update of each item of `group`: an UpdateItem, or one transaction for several.
async fn minimal_write(client: &Client, table: &str, group: &[usize]) -> Result<(), BenchError> {
    let key = |i: usize| HashMap::from([("pk".to_string(), AttributeValue::S(format!("M#{i}")))]);
    let one = AttributeValue::N("1".into());
    if let [i] = group {
        client
            .update_item()
            .table_name(table)
            .set_key(Some(key(*i)))
            .update_expression("SET v = :v")
            .expression_attribute_values(":v", one)
            .send()
            .await?;
        return Ok(());
    }
    let mut items = Vec::with_capacity(group.len());
    for &i in group {
        let update = Update::builder()
            .table_name(table)
            .set_key(Some(key(i)))
            .update_expression("SET v = :v")
            .expression_attribute_values(":v", one.clone())
            .build()?;
        items.push(TransactWriteItem::builder().update(update).build());
    }
    client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await?;
    Ok(())
}
