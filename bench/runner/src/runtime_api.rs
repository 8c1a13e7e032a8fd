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
    /// When the process first asked for an event: its init was over.
    first_next: Mutex<Option<Instant>>,
}

pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    pub answers: mpsc::UnboundedReceiver<Answer>,
    events: mpsc::UnboundedSender<String>,
    server: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
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
            first_next: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
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
            shared,
        })
    }

    /// When the process first called `…/invocation/next`: the end of its init (runtime and
    /// handler set up, ready for an event).
    pub fn ready_at(&self) -> Option<Instant> {
        *self.shared.first_next.lock().expect("first next lock")
    }

    /// Queues one more invocation with `event` (JSON text).
    pub fn invoke(&self, event: String) {
        // The receiver lives as long as the server task, which lives as long as `self`.
        let _ = self.events.send(event);
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared
        .first_next
        .lock()
        .expect("first next lock")
        .get_or_insert_with(Instant::now);
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn next_event(http: &reqwest::Client, api: &RuntimeApi) -> (String, u128, String) {
        let resp = http
            .get(format!(
                "http://{}/2018-06-01/runtime/invocation/next",
                api.address
            ))
            .send()
            .await
            .unwrap();
        let header = |name: &str| resp.headers()[name].to_str().unwrap().to_string();
        let id = header("lambda-runtime-aws-request-id");
        let deadline: u128 = header("lambda-runtime-deadline-ms").parse().unwrap();
        (id, deadline, resp.text().await.unwrap())
    }

    async fn respond(http: &reqwest::Client, api: &RuntimeApi, id: &str, body: &str) -> u16 {
        http.post(format!(
            "http://{}/2018-06-01/runtime/invocation/{id}/response",
            api.address
        ))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
    }

    #[tokio::test]
    async fn queued_events_are_invoked_in_turn_each_with_its_own_request_id() {
        let mut api = RuntimeApi::serve(Duration::from_secs(900)).await.unwrap();
        let http = reqwest::Client::new();
        api.invoke(r#"{"n":1}"#.into());
        api.invoke(r#"{"n":2}"#.into());

        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let (first, deadline, event) = next_event(&http, &api).await;
        assert_eq!(event, r#"{"n":1}"#);
        // The function's timeout, not the cold start's 30 s.
        assert!(deadline >= now_ms + 890_000, "{deadline} vs {now_ms}");
        assert_eq!(respond(&http, &api, &first, "one").await, 202);
        assert_eq!(api.answers.recv().await.unwrap().body, "one");

        let (second, _, event) = next_event(&http, &api).await;
        assert_eq!(event, r#"{"n":2}"#);
        assert_ne!(first, second);
        // An answer to the finished invocation is refused; the current one is taken.
        assert_eq!(respond(&http, &api, &first, "late").await, 400);
        assert_eq!(respond(&http, &api, &second, "two").await, 202);
        let answer = api.answers.recv().await.unwrap();
        assert!(answer.ok && answer.body == "two", "{answer:?}");
    }
}
