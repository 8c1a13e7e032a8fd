//! The state a sync benchmark starts from: `n` won deals in the sandbox, the sync's pull cursor
//! already past them (an earlier run read them), and one machine per deal in the passport
//! whose maintenance values our side changed and amoCRM does not hold yet (pending push).
//! None of this is timed.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use chrono::{NaiveDate, Utc};
use local_stack::LocalStack;
use serde_json::Value;
use shared::amocrm::Pacer;
use shared::config::AmoConfig;
use shared::passport::{Equipment, EquipmentState, Maintenance, MaintenanceStatus, SyncMarks};
use shared::ports::SyncStateStore;
use shared::store::{DynamoSyncState, equipment_item};

use crate::BenchError;

/// Deals per `POST /api/v4/leads`: amoCRM's batch limit.
const DEALS_PER_REQUEST: usize = 250;
/// Seeding uses a token of its own under the 7 req/s limit. The sandbox counts requests per
/// integration, as amoCRM does, so more tokens would only meet 429s and, past 30, its IP ban
/// (at 100 000 deals: 400 requests at 24/s did).
const SEED_TOKENS: usize = 1;
const SEED_RATE: u32 = 6;
/// Items per BatchWriteItem (DynamoDB's limit) and requests in flight to moto.
const ITEMS_PER_BATCH: usize = 25;
const PARALLEL_WRITES: usize = 4;
/// How far the sandbox clock moves after seeding: well past the sync's 300 s overlap, so the
/// pull finds the seeded deals older than its cursor, as deals sold long ago are.
pub const AGE_OF_DEALS: Duration = Duration::from_secs(3600);

/// What was seeded: one deal per machine, and the values every machine waits to push.
pub struct Seeded {
    pub deals: Vec<i64>,
    pub maintenance: Maintenance,
}

fn owner_of(i: usize) -> i64 {
    1_000_000 + i as i64
}

fn serial_of(i: usize) -> String {
    format!("BENCH-{i:06}")
}

/// One `POST /api/v4/leads` of deals `range`; retried on a 429. Returns the ids in order.
async fn create_deals(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    pacer: &Pacer,
    amo: &AmoConfig,
    range: std::ops::Range<usize>,
) -> Result<Vec<i64>, BenchError> {
    let body: Vec<Value> = range
        .clone()
        .map(|i| local_stack::won_deal(amo, i, owner_of(i), &serial_of(i)))
        .collect();
    for _ in 0..5 {
        pacer.wait().await;
        let resp = http.post(url).bearer_auth(token).json(&body).send().await?;
        let status = resp.status().as_u16();
        if status == 429 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let answer: Value = resp.json().await?;
        if status != 200 {
            return Err(format!("seeding deals {range:?}: HTTP {status}: {answer}").into());
        }
        let ids: Vec<i64> = answer["_embedded"]["leads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["id"].as_i64())
            .collect();
        if ids.len() != range.len() {
            return Err(format!("seeding deals {range:?}: {} ids back", ids.len()).into());
        }
        return Ok(ids);
    }
    Err(format!("seeding deals {range:?}: still 429 after 5 tries").into())
}

/// `n` won deals in the sandbox through its API; returns their ids in order.
async fn won_deals(stack: &LocalStack, n: usize) -> Result<Vec<i64>, BenchError> {
    let url = format!("{}/api/v4/leads", stack.sandbox.url);
    let chunks: Vec<std::ops::Range<usize>> = (0..n)
        .step_by(DEALS_PER_REQUEST)
        .map(|start| start..(start + DEALS_PER_REQUEST).min(n))
        .collect();
    let chunks = Arc::new(chunks);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..SEED_TOKENS {
        let token = stack
            .sandbox
            .state
            .new_long_lived_token(stack.sandbox.state.now() + 86_400);
        let (url, chunks, amo) = (url.clone(), Arc::clone(&chunks), stack.config.amo.clone());
        workers.spawn(async move {
            let http = reqwest::Client::new();
            let pacer = Pacer::new(SEED_RATE);
            let mut made = Vec::new();
            for (i, range) in chunks.iter().enumerate().skip(worker).step_by(SEED_TOKENS) {
                made.push((
                    i,
                    create_deals(&http, &url, &token, &pacer, &amo, range.clone()).await?,
                ));
            }
            Ok::<_, BenchError>(made)
        });
    }
    let mut by_chunk = Vec::new();
    while let Some(done) = workers.join_next().await {
        by_chunk.extend(done??);
    }
    by_chunk.sort_unstable_by_key(|(i, _)| *i);
    Ok(by_chunk.into_iter().flat_map(|(_, ids)| ids).collect())
}

/// A machine as registration writes it: its values wait to be pushed.
fn machine(amo_lead_id: i64, i: usize, maintenance: Maintenance) -> Equipment {
    let purchased = Utc::now() - chrono::Duration::days(300);
    Equipment {
        owner_telegram_id: owner_of(i),
        amo_contact_id: None,
        serial: serial_of(i),
        model: Some("16К20".into()),
        purchased_at: purchased,
        amo_lead_id,
        maintenance,
        state: EquipmentState::Active,
        updated_at: purchased,
        sync: SyncMarks {
            local_changed_at: Some(purchased),
            ..SyncMarks::default()
        },
    }
}

/// Writes `machines` to the passport table with BatchWriteItem, a few requests in flight.
async fn register(stack: &LocalStack, machines: Vec<Equipment>) -> Result<(), BenchError> {
    let table = stack.resources.passport_table.clone();
    let batches: Vec<Vec<WriteRequest>> = machines
        .chunks(ITEMS_PER_BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|e| {
                    PutRequest::builder()
                        .set_item(Some(equipment_item(e)))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    let batches = Arc::new(std::sync::Mutex::new(batches));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..PARALLEL_WRITES {
        let (dynamodb, table, batches) = (
            stack.aws.dynamodb.clone(),
            table.clone(),
            Arc::clone(&batches),
        );
        writers.spawn(async move {
            loop {
                let Some(mut pending) = batches.lock().expect("batches lock").pop() else {
                    return Ok::<_, BenchError>(());
                };
                while !pending.is_empty() {
                    let out = dynamodb
                        .batch_write_item()
                        .request_items(&table, pending)
                        .send()
                        .await?;
                    pending = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&table))
                        .unwrap_or_default();
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    Ok(())
}

/// Seeds `n` changed passports (see the module comment).
pub async fn changed_passports(stack: &LocalStack, n: usize) -> Result<Seeded, BenchError> {
    let ids = won_deals(stack, n).await?;
    // An earlier run read every deal: the cursor stands at "now", an hour after their changes.
    stack.sandbox.state.advance_clock(AGE_OF_DEALS);
    DynamoSyncState::new(stack.aws.dynamodb.clone(), &stack.resources.state_table)
        .save_cursor(stack.sandbox.state.now())
        .await?;
    let due = stack
        .config
        .sync
        .zone
        .today(Utc::now())
        .checked_add_days(chrono::Days::new(200))
        .unwrap_or(NaiveDate::MAX);
    let maintenance = Maintenance {
        status: MaintenanceStatus::Ok,
        next_due: due,
    };
    let machines: Vec<Equipment> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| machine(*id, i, maintenance))
        .collect();
    register(stack, machines).await?;
    Ok(Seeded {
        deals: ids,
        maintenance,
    })
}
