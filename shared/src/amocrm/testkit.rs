//! Test helpers for the amoCRM adapter: an in-memory `SecretStore`, a canned amoCRM HTTP server
//! on 127.0.0.1 that records what it was sent, and a client wired to both.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, to_bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tokio::time::Instant;

use super::client::{AmoClient, RetryPolicy};
use super::token::LongLivedToken;
use crate::config::AmoConfig;
use crate::ports::{SecretError, SecretStore};

/// The production account's ids (subdomain, pipeline, statuses, fields), pointed at `base_url`.
pub fn test_config(base_url: &str) -> AmoConfig {
    AmoConfig {
        subdomain: "new599bd9d13818a".into(),
        base_url: base_url.trim_end_matches('/').into(),
        pipeline_id: 10226282,
        status_id: 80953554,
        responsible_user_id: 12380450,
        field_serial: 712629,
        field_model: 712631,
        field_telegram_id: 712633,
        client_id: "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd".into(),
        redirect_uri: "https://api.td-rss.ru/webhook/amocrm".into(),
        // Fast enough for tests, still exercising the pacer.
        requests_per_second: 50,
        timeout_ms: 2_000,
        egress_ip: None,
    }
}

/// An unsigned JWT-shaped token whose payload carries `exp`.
pub fn fake_jwt(exp: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"aud":"x","exp":{exp},"sub":"1"}}"#));
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

/// Secrets in memory; counts reads and can pretend Secrets Manager is down.
#[derive(Default)]
pub struct MemorySecrets {
    values: Mutex<HashMap<String, String>>,
    reads: AtomicUsize,
    unavailable: AtomicBool,
}

impl MemorySecrets {
    pub fn with(id: &str, value: &str) -> Arc<Self> {
        let s = Arc::new(Self::default());
        s.put(id, value);
        s
    }

    pub fn put(&self, id: &str, value: &str) {
        self.values.lock().unwrap().insert(id.into(), value.into());
    }

    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    pub fn fail_with_unavailable(&self, on: bool) {
        self.unavailable.store(on, Ordering::SeqCst);
    }
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn read(&self, secret_id: &str) -> Result<String, SecretError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(SecretError::Unavailable {
                id: secret_id.into(),
                reason: "connection refused".into(),
            });
        }
        self.values
            .lock()
            .unwrap()
            .get(secret_id)
            .cloned()
            .ok_or_else(|| SecretError::Invalid {
                id: secret_id.into(),
                reason: "not found".into(),
            })
    }

    async fn write(&self, secret_id: &str, value: &str) -> Result<(), SecretError> {
        self.put(secret_id, value);
        Ok(())
    }
}

/// One reply the canned server gives, in order.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: &str) -> Self {
        let content_type = if (200..300).contains(&status) {
            "application/hal+json"
        } else {
            "application/problem+json"
        };
        Canned {
            status,
            content_type,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn html(status: u16, body: &str) -> Self {
        Canned {
            status,
            content_type: "text/html",
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn no_content() -> Self {
        Canned {
            status: 204,
            content_type: "",
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request as the canned server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub bearer: Option<String>,
    pub body: Option<Value>,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<Canned>>,
    recorded: Mutex<Vec<Recorded>>,
}

/// An amoCRM stand-in: answers with the canned replies in order (418 when they run out).
pub struct CannedServer {
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl CannedServer {
    pub async fn start(replies: Vec<Canned>) -> Self {
        let shared = Arc::new(Shared {
            replies: Mutex::new(replies.into()),
            recorded: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        CannedServer {
            base_url,
            shared,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let query = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let body = (!bytes.is_empty())
        .then(|| serde_json::from_slice(&bytes).expect("the client sent a body that is not JSON"));
    shared.recorded.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query,
        bearer,
        body,
        at,
    });
    let reply = shared.replies.lock().unwrap().pop_front();
    let reply = reply.unwrap_or_else(|| Canned::html(418, "no canned reply left"));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = Response::new(Body::from(reply.body));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    if !reply.content_type.is_empty() {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(reply.content_type),
        );
    }
    resp
}

/// A client with the fast retry policy talking to `server`, its token in secret `amocrm-token`.
pub fn client_for(server: &CannedServer, token: &str) -> (AmoClient, Arc<MemorySecrets>) {
    let secrets = MemorySecrets::with(
        "amocrm-token",
        &format!(r#"{{"kind":"long_lived","access_token":"{token}"}}"#),
    );
    let tokens = Arc::new(LongLivedToken::new(secrets.clone(), "amocrm-token".into()));
    let client = AmoClient::new(&test_config(&server.base_url), tokens)
        .unwrap()
        .with_retry_policy(RetryPolicy::fast());
    (client, secrets)
}

/// Everything logged while the guard lives, as text (for "never logs X" assertions).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Captures this thread's logs (use a current-thread runtime) until the guard is dropped.
    pub fn start() -> (Self, CaptureGuard) {
        // With a single dispatcher alive, tracing caches a callsite's interest as seen by the
        // thread that first hits it, so a parallel test thread without a subscriber would
        // silence our callsites. A second, idle dispatcher makes tracing ask every live one.
        let idle = tracing::Dispatch::new(tracing_subscriber::registry());
        let capture = LogCapture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(capture.clone())
            .finish();
        let guard = CaptureGuard {
            _default: tracing::subscriber::set_default(subscriber),
            _idle: idle,
        };
        (capture, guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Keeps the capturing subscriber installed on this thread.
pub struct CaptureGuard {
    _default: tracing::subscriber::DefaultGuard,
    _idle: tracing::Dispatch,
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
