//! amocrm-webhook: `POST /webhook/amocrm` stores amoCRM's account webhooks and answers at once.
//! The same function serves the OAuth flow (`GET /oauth/start`, and amoCRM's redirect
//! `GET /webhook/amocrm?code=…`, since the redirect URI is the webhook URL) through `OAuthFlow`.
//!
//! amoCRM waits 2 s and disables a webhook after more than 100 failures in 2 hours, so this
//! handler never calls amoCRM: it authenticates, validates, stores (deduplicated) and answers.

use std::sync::Arc;

use chrono::Utc;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use tracing::{info, warn};

use super::http::{ApiError, body_bytes, header, json_response, route};
use super::oauth::OAuthFlow;
use crate::amocrm::webhook::{MAX_BODY_BYTES, dedup_key, parse_webhook};
use crate::metrics::Metric;
use crate::ports::InboxStore;
use crate::secrets::secret_matches;

pub struct WebhookReceiver {
    pub inbox: Arc<dyn InboxStore>,
    /// The app secret: its `webhook_token` is carried in the destination URL (`?token=`);
    /// re-read on rotation.
    pub secrets: Arc<crate::secrets::AppSecretsSource>,
    /// The account's subdomain and (when configured) id: hooks from elsewhere are refused.
    pub subdomain: String,
    pub account_id: Option<i64>,
    /// The OAuth code flow; `None` when the function has no state table (STATE_TABLE).
    pub oauth: Option<Arc<OAuthFlow>>,
}

impl WebhookReceiver {
    /// One API Gateway request in, its response out (never an error: API Gateway sees none).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        super::http::traced(req, |req| self.route(req)).await
    }

    async fn route(&self, req: Request) -> Response<Body> {
        match route(&req) {
            ("POST", "/webhook/amocrm") => self.receive(&req).await,
            ("GET", "/webhook/amocrm") => match &self.oauth {
                Some(flow) => flow.redirect(&req).await,
                None => oauth_not_configured(),
            },
            ("GET", "/oauth/start") => match &self.oauth {
                Some(flow) => flow.start(&req).await,
                None => oauth_not_configured(),
            },
            _ => super::routes::unrouted(&req),
        }
    }

    pub async fn receive(&self, req: &Request) -> Response<Body> {
        let query = req.query_string_parameters();
        let token = query.first("token");
        if !self
            .secrets
            .accepts(|s| s.webhook_token.as_deref(), token)
            .await
        {
            // During a rotation amoCRM still posts with the old token until `setup` moves its
            // subscription: refusing those would lose the webhooks.
            let previous = self.secrets.current().await;
            if !secret_matches(previous.webhook_token_previous.as_deref(), token) {
                warn!("webhook with a missing or wrong token refused");
                return ApiError::new(
                    401,
                    "unauthorized",
                    "Неверный или отсутствующий токен вебхука (?token=).",
                )
                .response();
            }
            warn!(
                "webhook with the previous webhook token accepted: run rss-ops setup to move \
                 amoCRM's subscription to the new one, then drop webhook_token_previous"
            );
        }
        let body = body_bytes(req);
        if body.len() > MAX_BODY_BYTES {
            return ApiError::too_large(MAX_BODY_BYTES).response();
        }
        let webhook = match parse_webhook(body) {
            Ok(w) => w,
            Err(e) => {
                return ApiError::new(400, "not_a_webhook", "Тело запроса — не вебхук amoCRM.")
                    .member("detail", e.to_string().into())
                    .response();
            }
        };
        if let Some(account) = &webhook.account {
            let wrong_subdomain = account
                .subdomain
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case(&self.subdomain));
            let wrong_id =
                matches!((account.id, self.account_id), (Some(got), Some(want)) if got != want);
            if wrong_subdomain || wrong_id {
                warn!(subdomain = ?account.subdomain, id = ?account.id, "webhook from another account refused");
                return ApiError::new(
                    401,
                    "wrong_account",
                    "Вебхук пришёл не из того аккаунта amoCRM, к которому подключена интеграция.",
                )
                .response();
            }
        }
        let key = dedup_key(header(req, "x-amocrm-requestid"), body);
        let text = String::from_utf8_lossy(body);
        match self.inbox.insert_new(&key, &text, Utc::now()).await {
            Ok(new) => {
                crate::metrics::count(if new {
                    Metric::WebhookEvents
                } else {
                    Metric::WebhookDuplicates
                });
                info!(event_id = %key, new, events = webhook.events.len(), "webhook stored");
                json_response(200, &json!({"status": "accepted", "duplicate": !new}))
            }
            Err(e) => {
                // A non-2xx makes amoCRM retry later, which is what we want when we could not store.
                tracing::error!(error = %e, "webhook could not be stored");
                ApiError::unavailable().response()
            }
        }
    }
}

fn oauth_not_configured() -> Response<Body> {
    ApiError::new(
        503,
        "oauth_not_configured",
        "Подключение amoCRM по OAuth не настроено для этой функции.",
    )
    .member(
        "hint",
        "the OAuth flow needs STATE_TABLE for this function".into(),
    )
    .response()
}
