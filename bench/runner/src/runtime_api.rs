//! A minimal Lambda Runtime API on 127.0.0.1 for one invocation: the first
//! `GET …/invocation/next` hands out the event with the headers the runtimes read, later ones
//! wait forever (the process is killed after its answer), and the answer's arrival time is
//! reported. Enough for the Rust `lambda_runtime` client and the Python baseline's loop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::mpsc;

/// How the invocation ended, as the runtime reported it.
#[derive(Debug)]
pub struct Answer {
    pub at: Instant,
    /// `true` for `…/response`, `false` for `…/error` or `init/error`.
    pub ok: bool,
    pub body: String,
}

struct Shared {
    event: Mutex<Option<String>>,
    request_id: String,
    answers: mpsc::UnboundedSender<Answer>,
}

pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    pub answers: mpsc::UnboundedReceiver<Answer>,
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
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            event: Mutex::new(Some(event)),
            request_id: uuid::Uuid::new_v4().to_string(),
            answers: tx,
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
            answers: rx,
            server,
        })
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let event = shared.event.lock().expect("event lock").take();
    let Some(event) = event else {
        // One invocation per process: the next poll parks until the process is killed.
        std::future::pending::<()>().await;
        unreachable!("a pending future never resolves");
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 30_000)
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("content-type", "application/json".into());
    put("lambda-runtime-aws-request-id", shared.request_id.clone());
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
    if id != shared.request_id {
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
