//! A stand-in for Lambda's DynamoDB event source mapping: reads the table's stream from moto
//! and hands the records to crm-worker as real `DynamoDbEvent`s, with the mapping's rules:
//! the template's filter, batches of up to 10, and partial batch failures retried from the
//! failed record up to `max_retries` times, after which the record goes to the on-failure
//! list (the SQS destination in AWS).

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::Event;
use serde_json::{Value, json};
use shared::wiring::{Aws, InitError};
use shared::worker::{CrmWorker, work_of};
use tokio::sync::Mutex;

const BATCH_SIZE: usize = 10;

pub struct StreamPump {
    http: reqwest::Client,
    moto_url: String,
    stream_arn: String,
    max_retries: u32,
    shards: Mutex<HashMap<String, ShardCursor>>,
    failed: Mutex<Vec<Value>>,
}

#[derive(Default)]
struct ShardCursor {
    iterator: Option<String>,
    /// Read but not yet successfully processed (filtered already).
    buffer: Vec<Value>,
    /// Retries of the record at the head of `buffer`.
    head_retries: u32,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PumpStats {
    pub records_read: usize,
    pub records_delivered: usize,
    pub batch_failures: usize,
    pub sent_to_failure_destination: usize,
}

impl PumpStats {
    pub fn add(&mut self, other: PumpStats) {
        self.records_read += other.records_read;
        self.records_delivered += other.records_delivered;
        self.batch_failures += other.batch_failures;
        self.sent_to_failure_destination += other.sent_to_failure_destination;
    }
}

impl StreamPump {
    pub async fn new(
        moto_url: &str,
        aws: &Aws,
        table: &str,
        max_retries: u32,
    ) -> Result<Self, InitError> {
        let described = aws
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or("the table has no stream")?
            .to_string();
        Ok(Self {
            http: reqwest::Client::new(),
            moto_url: moto_url.to_string(),
            stream_arn,
            max_retries,
            shards: Mutex::new(HashMap::new()),
            failed: Mutex::new(Vec::new()),
        })
    }

    /// The DynamoDB Streams API on moto. (The streams SDK crate would be one more AWS SDK to
    /// build for a local tool; the wire format is small and stable.)
    async fn streams(&self, op: &str, body: Value) -> Result<Value, InitError> {
        let resp = self
            .http
            .post(&self.moto_url)
            .header("x-amz-target", format!("DynamoDBStreams_20120810.{op}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/eu-central-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await?;
        let status = resp.status();
        let value: Value = resp.json().await?;
        if !status.is_success() {
            return Err(format!("streams {op}: {status} {value}").into());
        }
        Ok(value)
    }

    async fn refresh_shards(&self) -> Result<(), InitError> {
        let described = self
            .streams("DescribeStream", json!({"StreamArn": self.stream_arn}))
            .await?;
        let mut shards = self.shards.lock().await;
        for shard in described["StreamDescription"]["Shards"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(id) = shard["ShardId"].as_str() else {
                continue;
            };
            if !shards.contains_key(id) {
                let it = self
                    .streams(
                        "GetShardIterator",
                        json!({"StreamArn": self.stream_arn, "ShardId": id, "ShardIteratorType": "TRIM_HORIZON"}),
                    )
                    .await?;
                shards.insert(
                    id.to_string(),
                    ShardCursor {
                        iterator: it["ShardIterator"].as_str().map(str::to_string),
                        ..Default::default()
                    },
                );
            }
        }
        Ok(())
    }

    /// One pass over every shard: read new records, deliver filtered batches.
    pub async fn pump_once(&self, worker: &CrmWorker) -> Result<PumpStats, InitError> {
        self.refresh_shards().await?;
        let mut stats = PumpStats::default();
        let mut shards = self.shards.lock().await;
        for cursor in shards.values_mut() {
            if let Some(iterator) = cursor.iterator.clone() {
                let got = self
                    .streams(
                        "GetRecords",
                        json!({"ShardIterator": iterator, "Limit": 1000}),
                    )
                    .await?;
                cursor.iterator = got["NextShardIterator"].as_str().map(str::to_string);
                for mut record in got["Records"].as_array().cloned().unwrap_or_default() {
                    stats.records_read += 1;
                    record["eventSourceARN"] = json!(self.stream_arn);
                    if passes_filter(&record) {
                        cursor.buffer.push(record);
                    }
                }
            }
            self.drain_buffer(cursor, worker, &mut stats).await?;
        }
        Ok(stats)
    }

    async fn drain_buffer(
        &self,
        cursor: &mut ShardCursor,
        worker: &CrmWorker,
        stats: &mut PumpStats,
    ) -> Result<(), InitError> {
        while !cursor.buffer.is_empty() {
            let n = cursor.buffer.len().min(BATCH_SIZE);
            let batch: Vec<Value> = cursor.buffer[..n].to_vec();
            let event: Event = serde_json::from_value(json!({ "Records": batch }))?;
            let response = worker.handle(event).await;
            let failed: Vec<String> = response
                .batch_item_failures
                .iter()
                .filter_map(|f| f.item_identifier.clone())
                .collect();
            let first_failed = batch.iter().position(|r| {
                r["dynamodb"]["SequenceNumber"]
                    .as_str()
                    .is_some_and(|s| failed.iter().any(|f| f == s))
            });
            match first_failed {
                None => {
                    stats.records_delivered += n;
                    cursor.buffer.drain(..n);
                    cursor.head_retries = 0;
                }
                Some(i) => {
                    // Lambda checkpoints before the first failed record and retries from it.
                    stats.records_delivered += i;
                    stats.batch_failures += 1;
                    cursor.buffer.drain(..i);
                    if i > 0 {
                        cursor.head_retries = 0;
                    }
                    cursor.head_retries += 1;
                    if cursor.head_retries > self.max_retries {
                        let record = cursor.buffer.remove(0);
                        tracing::error!(alert = true, sequence = %record["dynamodb"]["SequenceNumber"], "stream record sent to the on-failure destination");
                        self.failed.lock().await.push(record);
                        stats.sent_to_failure_destination += 1;
                        cursor.head_retries = 0;
                        continue;
                    }
                    // Retried on the next pass, like the mapping's back-off.
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Records that exhausted their retries (the on-failure destination).
    pub async fn failure_destination(&self) -> Vec<Value> {
        self.failed.lock().await.clone()
    }
}

/// The templates FilterCriteria: pending leads and pending webhook events.
fn passes_filter(record: &Value) -> bool {
    serde_json::from_value::<Event>(json!({"Records": [record]}))
        .ok()
        .and_then(|e| e.records.first().and_then(work_of))
        .is_some()
}
