//! The one shape every function binary has: JSON logs, config and AWS clients built once at
//! cold start, then the runtime's loop handing each event to the library and flushing the
//! metrics it counted. A `main` names its function and its builder; nothing else.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sns::SnsEvent;
use lambda_http::{Body, Error, Request, Response};
use lambda_runtime::LambdaEvent;

use super::{Aws, InitError, aws_from_env};
use crate::api::LeadIngestApi;
use crate::api::passport::PassportApi;
use crate::api::webhook::WebhookReceiver;
use crate::config::Config;
use crate::mail::feedback::FeedbackRecorder;
use crate::maintenance::{Budget, MaintenanceSync, RunOutcome};
use crate::worker::CrmWorker;

/// An API Gateway route's handler: every failure is already an HTTP answer.
pub trait HttpFunction: Send + Sync + 'static {
    fn handle(&self, req: Request) -> impl Future<Output = Response<Body>> + Send;
}

/// A handler of one event source's payloads.
pub trait EventFunction: Send + Sync + 'static {
    type Event: serde::de::DeserializeOwned + Send + 'static;
    type Output: serde::Serialize + Send;
    fn handle(
        &self,
        event: LambdaEvent<Self::Event>,
    ) -> impl Future<Output = Result<Self::Output, Error>> + Send;
}

/// Runs an HTTP function: `serve_http("lead-ingest", lead_ingest).await`.
pub async fn serve_http<F, B>(function: &'static str, build: B) -> Result<(), Error>
where
    F: HttpFunction,
    B: AsyncFnOnce(&Config, &Aws) -> Result<F, InitError>,
{
    let handler = start(build).await?;
    lambda_http::run(lambda_http::service_fn(move |req| {
        let handler = Arc::clone(&handler);
        async move {
            let resp = handler.handle(req).await;
            crate::metrics::flush(function);
            Ok::<_, Error>(resp)
        }
    }))
    .await
}

/// Runs an event-driven function: `serve_events("crm-worker", crm_worker).await`.
pub async fn serve_events<F, B>(function: &'static str, build: B) -> Result<(), Error>
where
    F: EventFunction,
    B: AsyncFnOnce(&Config, &Aws) -> Result<F, InitError>,
{
    let handler = start(build).await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<F::Event>| {
            let handler = Arc::clone(&handler);
            async move {
                let result = handler.handle(event).await;
                crate::metrics::flush(function);
                result
            }
        },
    ))
    .await
}

async fn start<F, B>(build: B) -> Result<Arc<F>, Error>
where
    B: AsyncFnOnce(&Config, &Aws) -> Result<F, InitError>,
{
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = Aws::new(&aws_from_env().await);
    Ok(Arc::new(build(&config, &aws).await?))
}

impl HttpFunction for LeadIngestApi {
    fn handle(&self, req: Request) -> impl Future<Output = Response<Body>> + Send {
        LeadIngestApi::handle(self, req)
    }
}

impl HttpFunction for WebhookReceiver {
    fn handle(&self, req: Request) -> impl Future<Output = Response<Body>> + Send {
        WebhookReceiver::handle(self, req)
    }
}

impl HttpFunction for PassportApi {
    fn handle(&self, req: Request) -> impl Future<Output = Response<Body>> + Send {
        PassportApi::handle(self, req)
    }
}

impl EventFunction for CrmWorker {
    type Event = StreamEvent;
    type Output = aws_lambda_events::event::streams::DynamoDbEventResponse;
    async fn handle(&self, event: LambdaEvent<StreamEvent>) -> Result<Self::Output, Error> {
        Ok(CrmWorker::handle(self, event.payload).await)
    }
}

impl EventFunction for FeedbackRecorder {
    type Event = SnsEvent;
    type Output = ();
    async fn handle(&self, event: LambdaEvent<SnsEvent>) -> Result<(), Error> {
        let messages: Vec<&str> = (event.payload.records.iter())
            .map(|r| r.sns.message.as_str())
            .collect();
        // A store failure: Lambda retries the delivery, then its failure destination keeps it.
        self.record_all(messages).await?;
        Ok(())
    }
}

/// The scheduled sync with the time its invocation has left.
pub struct ScheduledSync {
    pub sync: MaintenanceSync,
    /// A request may take its whole timeout; a few seconds more write the report.
    pub per_request: Duration,
}

impl EventFunction for ScheduledSync {
    type Event = EventBridgeEvent;
    type Output = serde_json::Value;
    async fn handle(&self, event: LambdaEvent<EventBridgeEvent>) -> Result<Self::Output, Error> {
        let budget = Budget::until_unix_ms(event.context.deadline, self.per_request);
        let report = self.sync.run(chrono::Utc::now(), &budget).await;
        report.count_metrics();
        if report.outcome == RunOutcome::Failed {
            // Counted by the errors alarm; the report is kept in the state table.
            return Err(Error::from(report.error.unwrap_or_default()));
        }
        Ok(serde_json::to_value(&report)?)
    }
}
