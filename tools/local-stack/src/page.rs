//! The reference page for the site's and the Mini App's developers, served by `make run` on an
//! origin of its own (so CORS is as real as on td-rss.ru). Local only: nothing here is
//! deployed. Besides the files of `page/` it answers `config.js` (the API's address) and
//! `local/init-data?user=<id>`, initData signed with the local bot token the way Telegram signs
//! a Mini App's launch data.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

const INDEX: &str = include_str!("../page/index.html");
const LEAD_FORM: &str = include_str!("../page/lead-form.js");
const MINI_APP: &str = include_str!("../page/mini-app.js");
const STYLE: &str = include_str!("../page/style.css");

struct PageState {
    api_url: String,
    bot_token: String,
}

/// A bound listener: its origin goes into the functions' CORS lists before the page serves.
pub struct PageListener {
    listener: tokio::net::TcpListener,
    pub origin: String,
}

impl PageListener {
    pub async fn bind(port: Option<u16>) -> std::io::Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let origin = format!("http://{}", listener.local_addr()?);
        Ok(PageListener { listener, origin })
    }

    /// Serves the page until the task is aborted.
    pub fn serve(self, api_url: &str, bot_token: &str) -> tokio::task::JoinHandle<()> {
        let state = Arc::new(PageState {
            api_url: api_url.to_string(),
            bot_token: bot_token.to_string(),
        });
        let app = Router::new()
            .route(
                "/",
                get(|| async { file("text/html; charset=utf-8", INDEX) }),
            )
            .route("/lead-form.js", get(|| async { file(JS, LEAD_FORM) }))
            .route("/mini-app.js", get(|| async { file(JS, MINI_APP) }))
            .route(
                "/style.css",
                get(|| async { file("text/css; charset=utf-8", STYLE) }),
            )
            .route("/config.js", get(config))
            .route("/local/init-data", get(init_data))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(self.listener, app).await;
        })
    }
}

const JS: &str = "text/javascript; charset=utf-8";

fn file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn config(State(state): State<Arc<PageState>>) -> Response {
    let api = serde_json::to_string(&state.api_url).expect("a string");
    (
        [(header::CONTENT_TYPE, JS)],
        format!("window.RSS_API = {api};\n"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct InitDataQuery {
    user: String,
}

async fn init_data(
    State(state): State<Arc<PageState>>,
    Query(q): Query<InitDataQuery>,
) -> Response {
    let Ok(id) = q.user.trim().parse::<i64>() else {
        return (StatusCode::BAD_REQUEST, "user: a Telegram ID (digits)").into_response();
    };
    let user = serde_json::json!({"id": id, "first_name": "Покупатель", "last_name": "Тестовый"})
        .to_string();
    let auth_date = chrono::Utc::now().timestamp().to_string();
    let signed = shared::telegram::sign_init_data(
        &[
            ("auth_date", &auth_date),
            ("query_id", "AAHlocalpreview"),
            ("user", &user),
        ],
        &state.bot_token,
    );
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        signed,
    )
        .into_response()
}
