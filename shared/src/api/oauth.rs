//! The OAuth code flow over HTTP: `GET /oauth/start` (admin only) sends the browser to amoCRM's
//! consent page with a single-use `state`; amoCRM redirects back to `GET /webhook/amocrm` with
//! a code, which is exchanged at the account (`referer`) and stored as the token secret.
//!
//! The redirect answers a small Russian HTML page for the person in the browser: success, or
//! what went wrong and what to do. Pages never carry a code, token or secret.

use std::sync::Arc;

use chrono::{Duration, Utc};
use html_escape::{encode_double_quoted_attribute, encode_text};
use lambda_http::{Body, Request, RequestExt, Response};
use tracing::{error, info, warn};
use ulid::Ulid;

use super::admin::admin_refused;
use super::http::ApiError;
use crate::amocrm::CrmError;
use crate::amocrm::oauth::{
    ClientSecretSource, Refusal, TokenEndpoint, TokenError, account_host, account_subdomain,
    authorize_url, start_url,
};
use crate::config::AmoConfig;
use crate::ports::SecretStore;
use crate::ports::TokenWorked;
use crate::secrets::AppSecretsSource;
use crate::store::{StateStore, StateTake};

/// How long a `state` handed out by `/oauth/start` is accepted (amoCRM's codes live as long).
pub const STATE_LIFETIME_MINUTES: i64 = 20;

pub struct OAuthFlow {
    pub state: Arc<dyn StateStore>,
    pub secrets: Arc<dyn SecretStore>,
    /// Where the token pair goes (`AMOCRM_TOKEN_SECRET_ID`).
    pub token_secret_id: String,
    pub client_secret: ClientSecretSource,
    pub endpoint: TokenEndpoint,
    /// amoCRM's consent page (`AMOCRM_AUTHORIZE_URL`).
    pub authorize_url: String,
    /// The app secret: its `admin_key` authorises `/oauth/start` (without one it refuses
    /// everyone); re-read on rotation.
    pub app_secrets: Arc<AppSecretsSource>,
}

/// One answer page.
struct Page {
    status: u16,
    title: &'static str,
    /// Russian text for the person in the browser.
    text: Vec<String>,
    /// The operator hint (English), when there is something to fix.
    hint: Option<String>,
    /// Offer to start again.
    restart: bool,
}

impl Page {
    fn new(status: u16, title: &'static str, text: impl Into<String>) -> Self {
        Page {
            status,
            title,
            text: vec![text.into()],
            hint: None,
            restart: false,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn restart(mut self) -> Self {
        self.restart = true;
        self
    }
}

impl OAuthFlow {
    /// `GET /oauth/start`: 302 to amoCRM's consent page with a fresh `state`.
    pub async fn start(&self, req: &Request) -> Response<Body> {
        if let Some(refused) = admin_refused(&self.app_secrets, req, "oauth-start").await {
            return refused;
        }
        let state = Ulid::generate().to_string();
        let expires_at = Utc::now() + Duration::minutes(STATE_LIFETIME_MINUTES);
        if let Err(e) = self.state.put_oauth_state(&state, expires_at).await {
            error!(error = %e, "OAuth state could not be stored");
            return ApiError::unavailable().response();
        }
        let cfg = self.endpoint.config();
        let location = authorize_url(&self.authorize_url, &cfg.client_id, &state);
        info!("OAuth authorization started");
        let body = format!(
            "<!doctype html><meta charset=\"utf-8\"><p>Откройте <a href=\"{}\">страницу \
             авторизации amoCRM</a>.</p>",
            encode_double_quoted_attribute(&location)
        );
        Response::builder()
            .status(302)
            .header("location", location)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .body(Body::Text(body))
            .expect("static response parts are valid")
    }

    /// `GET /webhook/amocrm?code=…&state=…&referer=…&client_id=…[&from_widget=1]`.
    pub async fn redirect(&self, req: &Request) -> Response<Body> {
        let page = self.complete(req).await;
        info!(
            status = page.status,
            outcome = page.title,
            "OAuth redirect answered"
        );
        self.render(&page)
    }

    async fn complete(&self, req: &Request) -> Page {
        let query = req.query_string_parameters();
        let param = |k: &str| query.first(k).map(str::trim).filter(|v| !v.is_empty());
        let cfg = self.endpoint.config();

        if let Some(err) = param("error") {
            return if err == "access_denied" {
                Page::new(
                    400,
                    "Доступ не предоставлен",
                    "В amoCRM отказались предоставить интеграции доступ к аккаунту, поэтому \
                     подключение не выполнено. Если это ошибка, начните заново и нажмите \
                     «Разрешить».",
                )
                .restart()
            } else {
                Page::new(
                    400,
                    "amoCRM не выдал код авторизации",
                    format!("amoCRM вернул ошибку «{err}»."),
                )
                .restart()
            };
        }
        if param("client_id") != Some(cfg.client_id.as_str()) {
            return Page::new(
                400,
                "Код выдан не для этой интеграции",
                "В ответе amoCRM нет ID нашей интеграции (client_id) или он другой. Код не \
                 использован.",
            )
            .hint(format!(
                "The redirect's client_id differs from AMOCRM_CLIENT_ID ({}). Start the \
                 authorization from this integration (GET /oauth/start) or fix \
                 AMOCRM_CLIENT_ID to the integration id in amoCRM → Keys and scopes.",
                cfg.client_id
            ))
            .restart();
        }
        let Some(code) = param("code") else {
            return Page::new(
                400,
                "Нет кода авторизации",
                "В адресе нет кода авторизации (code). Откройте эту страницу через \
                 авторизацию amoCRM, а не напрямую.",
            )
            .restart();
        };
        let Some(host) = param("referer").and_then(account_host) else {
            warn!(referer = ?param("referer"), "OAuth redirect with a referer that is not an amoCRM account refused");
            return Page::new(
                400,
                "Неизвестный адрес аккаунта",
                "Адрес аккаунта (referer) не похож на аккаунт amoCRM (*.amocrm.ru, *.kommo.com, \
                 *.amocrm.com). Код не использован: секрет интеграции отправляется только в \
                 amoCRM.",
            );
        };
        if !account_subdomain(&host).eq_ignore_ascii_case(&cfg.subdomain) {
            warn!(referer = %host, "OAuth redirect from another amoCRM account refused");
            return Page::new(
                400,
                "Другой аккаунт amoCRM",
                format!(
                    "Авторизация пришла из аккаунта {host}, а интеграция настроена на аккаунт \
                     {}. Войдите в нужный аккаунт amoCRM и начните заново.",
                    cfg.subdomain
                ),
            )
            .hint(format!(
                "The code was issued by account {host}; AMOCRM_SUBDOMAIN is {}. If the \
                 integration really moved, change AMOCRM_SUBDOMAIN first.",
                cfg.subdomain
            ))
            .restart();
        }
        // amoCRM's own SDK skips the state check for the widget-install redirect: it carries none.
        if param("from_widget").is_none()
            && let Some(page) = self.check_state(param("state")).await
        {
            return page;
        }

        let client_secret = match self.client_secret.get().await {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e.message, "OAuth code not exchanged: no client secret");
                return Page::new(
                    500,
                    "Интеграция не настроена",
                    "Не удалось прочитать секретный ключ интеграции, код не обменян.",
                )
                .hint(e.hint)
                .restart();
            }
        };
        let pair = match self
            .endpoint
            .exchange_code(&host, code, &client_secret)
            .await
        {
            Ok(pair) => pair,
            Err(e) => {
                error!(error = %e.error.message, hint = %e.error.hint, "OAuth code exchange failed");
                return exchange_failed(&e, cfg);
            }
        };
        if let Err(e) = self
            .secrets
            .write(&self.token_secret_id, &pair.secret_json())
            .await
        {
            error!(error = %e, alert = true, "exchanged OAuth tokens could not be stored");
            return Page::new(
                503,
                "Токен получен, но не сохранён",
                "amoCRM выдал токен, но сохранить его не удалось, а код одноразовый. Начните \
                 заново через минуту.",
            )
            .hint(format!(
                "Secrets Manager refused the write to {} ({e}). Check the function's \
                 permission secretsmanager:PutSecretValue, then start again.",
                self.token_secret_id
            ))
            .restart();
        }
        self.record_authorized().await;
        info!(account = %host, expires_at = %pair.expires_at, "amoCRM authorized; token pair stored");
        let mut page = Page::new(
            200,
            "Интеграция с amoCRM подключена",
            format!("Доступ к аккаунту {host} получен, токен сохранён."),
        );
        page.text.push(format!(
            "Токен доступа действует до {} и будет обновляться автоматически. Эту страницу \
             можно закрыть.",
            pair.expires_at.format("%d.%m.%Y %H:%M UTC")
        ));
        page
    }

    /// `None` when `state` is a valid, unused nonce from `/oauth/start` (taken now).
    async fn check_state(&self, state: Option<&str>) -> Option<Page> {
        let stale = |title| {
            Page::new(
                400,
                title,
                "Ссылка авторизации недействительна: она устарела (действует 20 минут), уже \
                 использована или выдана не нами. Код не использован.",
            )
            .restart()
        };
        let Some(state) = state else {
            return Some(stale("Нет параметра state"));
        };
        match self.state.take_oauth_state(state, Utc::now()).await {
            Ok(StateTake::Taken) => None,
            Ok(StateTake::Expired) => Some(stale("Ссылка авторизации устарела")),
            Ok(StateTake::Unknown) => Some(stale("Неизвестная ссылка авторизации")),
            Err(e) => {
                error!(error = %e, "OAuth state could not be checked");
                Some(
                    Page::new(
                        503,
                        "Временная ошибка",
                        "Не удалось проверить ссылку авторизации. Попробуйте через минуту.",
                    )
                    .restart(),
                )
            }
        }
    }

    /// A successful exchange ends any re-authorization incident.
    async fn record_authorized(&self) {
        let recorded = self
            .state
            .record_token_working(TokenWorked::Authorized, Utc::now())
            .await;
        if let Err(e) = recorded {
            // The new refresh token differs from the refused one, so the incident is over anyway.
            warn!(error = %e, "token health not recorded after the authorization");
        }
    }

    fn render(&self, page: &Page) -> Response<Body> {
        let start = start_url(&self.endpoint.config().redirect_uri);
        let mut html = String::from(
            "<!doctype html>\n<html lang=\"ru\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        );
        html.push_str(&format!("<title>{}</title>", encode_text(page.title)));
        html.push_str(
            "<style>body{font-family:system-ui,sans-serif;max-width:42em;margin:2em auto;\
             padding:0 1em;line-height:1.5;color:#222}.hint{background:#f4f4f4;padding:.75em 1em;\
             border-left:4px solid #c60;font-size:.9em}</style></head><body>",
        );
        html.push_str(&format!("<h1>{}</h1>", encode_text(page.title)));
        for p in &page.text {
            html.push_str(&format!("<p>{}</p>", encode_text(p)));
        }
        if let Some(hint) = &page.hint {
            html.push_str(&format!(
                "<p class=\"hint\"><b>Для инженера:</b> {}</p>",
                encode_text(hint)
            ));
        }
        if page.restart {
            html.push_str(&format!(
                "<p>Начать заново: запросите <a href=\"{}\">{}</a> с заголовком X-Admin-Key \
                 (ключ администратора) и откройте ссылку из ответа в браузере, где вы вошли в \
                 amoCRM как администратор.</p>",
                encode_double_quoted_attribute(&start),
                encode_text(&start)
            ));
        }
        html.push_str("</body></html>\n");
        Response::builder()
            .status(page.status)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            // The page's URL holds the code: never hand it on as a Referer.
            .header("referrer-policy", "no-referrer")
            .header("x-content-type-options", "nosniff")
            .header(
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'",
            )
            .body(Body::Text(html))
            .expect("static response parts are valid")
    }
}

/// The page for a failed code exchange: amoCRM's refusal in plain Russian plus the hint.
fn exchange_failed(e: &TokenError, cfg: &AmoConfig) -> Page {
    let redirect = &cfg.redirect_uri;
    let client_id = &cfg.client_id;
    let (title, text) = match e.refusal {
        Some(Refusal::CannotDecryptCode) => (
            "amoCRM не смог расшифровать код",
            format!(
                "Redirect URI в настройках интеграции в amoCRM отличается от {redirect}. \
                 Исправьте его в amoCRM → Настройки → Интеграции → эта интеграция (должен быть \
                 ровно {redirect}) и начните заново."
            ),
        ),
        Some(Refusal::WrongClientSecret) => (
            "amoCRM не принял секретный ключ",
            "Секретный ключ в Secrets Manager (amocrm_client_secret) не от этой интеграции. \
             Скопируйте секретный ключ из amoCRM → Настройки → Интеграции → эта интеграция → \
             «Ключи и доступы» в секрет приложения и начните заново."
                .to_string(),
        ),
        Some(Refusal::WrongClientId) => (
            "amoCRM не знает эту интеграцию",
            format!(
                "ID интеграции {client_id} не найден в amoCRM. Проверьте AMOCRM_CLIENT_ID и \
                 начните заново."
            ),
        ),
        Some(Refusal::CodeRevoked) => (
            "Код авторизации уже использован",
            "Код одноразовый и уже был обменян. Начните заново.".to_string(),
        ),
        Some(Refusal::CodeExpired) => (
            "Код авторизации устарел",
            "Код действует 20 минут и уже истёк. Начните заново.".to_string(),
        ),
        Some(Refusal::RedirectUriMismatch) => (
            "Redirect URI не совпадает",
            format!(
                "Redirect URI интеграции в amoCRM и в нашей настройке должны быть ровно \
                 {redirect}. Исправьте и начните заново."
            ),
        ),
        Some(Refusal::InvalidAccount) => (
            "Код выдан для другого аккаунта",
            "amoCRM не принял код для этого аккаунта. Войдите в нужный аккаунт amoCRM и \
             начните заново."
                .to_string(),
        ),
        Some(_) => (
            "amoCRM отказал в выдаче токена",
            "amoCRM не выдал токен по этому коду. Начните заново.".to_string(),
        ),
        None if e.error.kind == crate::amocrm::CrmErrorKind::Blocked => (
            "amoCRM не принимает запросы с нашего адреса",
            "amoCRM ответил 403: адреса, с которого работает интеграция, нет в списке \
             разрешённых IP аккаунта (или он заблокирован). Добавьте адрес из вывода AmoEgressIp \
             в amoCRM → Настройки → Безопасность и начните заново. Повторная авторизация сама \
             по себе не поможет."
                .to_string(),
        ),
        None => (
            "amoCRM не ответил",
            "amoCRM сейчас недоступен или ответил ошибкой. Код живёт 20 минут, поэтому лучше \
             начать заново чуть позже."
                .to_string(),
        ),
    };
    let err: &CrmError = &e.error;
    Page::new(502, title, text).hint(err.hint.clone()).restart()
}

#[cfg(test)]
mod tests;
