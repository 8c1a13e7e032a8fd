//! A minimal Lambda Runtime API on 127.0.0.1: each `GET …/invocation/next` hands out the next
//! queued event with the headers the runtimes read (a fresh request id, the deadline), and
//! waits while the queue is empty (a cold-start process is killed after its one answer); each
//! answer's arrival time is reported. Enough for the Rust `lambda_runtime` client and the
//! Python baseline's loop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::mpsc;

/// The deadline a cold-start invocation gets (the HTTP functions' timeouts are shorter).
pub const COLD_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the invocation ended, as the runtime reported it.
#[derive(Debug)]
pub struct Answer {
    pub at: Instant,
    /// `true` for `…/response`, `false` for `…/error` or `init/error`.
    pub ok: bool,
    pub body: String,
}

struct Shared {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    /// The request id of the invocation in flight.
    current: Mutex<Option<String>>,
    /// The function's timeout: each event's deadline is this far from when it is handed out.
    timeout: Duration,
    answers: mpsc::UnboundedSender<Answer>,
}

pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    pub answers: mpsc::UnboundedReceiver<Answer>,
    events: mpsc::UnboundedSender<String>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serves `event` (JSON text) once, on a free loopback port.
    pub async fn serve_once(event: String) -> std::io::Result<Self> {
        let api = Self::serve(COLD_START_TIMEOUT).await?;
        api.invoke(event);
        Ok(api)
    }

    /// Serves the events queued with `invoke`, in order, each with `timeout` to answer.
    pub async fn serve(timeout: Duration) -> std::io::Result<Self> {
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(events_rx),
            current: Mutex::new(None),
            timeout,
            answers: answers_tx,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            answers,
            events,
            server,
        })
    }

    /// Queues one more invocation with `event` (JSON text).
    pub fn invoke(&self, event: String) {
        // The receiver lives as long as the server task, which lives as long as `self`.
        let _ = self.events.send(event);
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    // Parks while nothing is queued: a cold-start process is killed in that wait.
    let Some(event) = shared.events.lock().await.recv().await else {
        std::future::pending::<()>().await;
        unreachable!("a pending future never resolves");
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    *shared.current.lock().expect("request id lock") = Some(request_id.clone());
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d + shared.timeout).as_millis())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("content-type", "application/json".into());
    put("lambda-runtime-aws-request-id", request_id);
    put("lambda-runtime-deadline-ms", deadline.to_string());
    put(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:eu-central-1:123456789012:function:bench".into(),
    );
    put(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
    );
    (StatusCode::OK, headers, event).into_response()
}

fn report(shared: &Shared, ok: bool, body: String) -> StatusCode {
    let _ = shared.answers.send(Answer {
        at: Instant::now(),
        ok,
        body,
    });
    StatusCode::ACCEPTED
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    if shared.current.lock().expect("request id lock").as_deref() != Some(id.as_str()) {
        return StatusCode::BAD_REQUEST;
    }
    report(&shared, true, body)
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(_id): Path<String>,
    body: String,
) -> StatusCode {
    report(&shared, false, body)
}

async fn init_error(State(shared): State<Arc<Shared>>, body: String) -> StatusCode {
    report(&shared, false, body)
}
