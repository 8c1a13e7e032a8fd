//! `POST /oauth2/access_token` as amoCRM answers it: authorization-code and refresh-token
//! grants (JSON or form body), single-use rotated refresh tokens, and the error bodies of
//! amocrm-api.md §1.5 (cause in `hint`, generic Russian `title`/`detail`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::{GrantKind, mint_jwt, random_secret};
use crate::errors::ordered_json;
use crate::form;
use crate::state::{AuthCode, RefreshGrant, Sb, State as Account};

const OAUTH_PROBLEM: &str = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson";

/// A refusal of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// 400 (or 401) "Некорректный запрос" with a hint naming the cause.
    Invalid { status: u16, hint: String },
    /// 401 "Некорректный клиент": the client could not be authenticated at all.
    IncorrectClient,
}

fn invalid(hint: &str) -> OAuthError {
    OAuthError::Invalid {
        status: 400,
        hint: hint.into(),
    }
}

fn invalid_401(hint: &str) -> OAuthError {
    OAuthError::Invalid {
        status: 401,
        hint: hint.into(),
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            OAuthError::Invalid { status, hint } => (
                status,
                ordered_json(&[
                    ("hint", json!(hint)),
                    ("title", json!("Некорректный запрос")),
                    ("type", json!(OAUTH_PROBLEM)),
                    ("status", json!(status)),
                    (
                        "detail",
                        json!("В запросе отсутствует ряд параметров или параметры невалидны"),
                    ),
                ]),
            ),
            OAuthError::IncorrectClient => (
                401,
                ordered_json(&[
                    ("title", json!("Некорректный клиент")),
                    ("type", json!(OAUTH_PROBLEM)),
                    ("status", json!(401)),
                    ("detail", json!("Авторизация клиента не прошла")),
                ]),
            ),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}

/// The body's parameters, whether sent as JSON or as a form.
fn parameters(headers: &HeaderMap, body: &Bytes) -> Vec<(String, String)> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if is_json || body.first() == Some(&b'{') {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            return map
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k, text)
                })
                .collect();
        }
        return Vec::new();
    }
    form::decode_pairs(&String::from_utf8_lossy(body))
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The token pair handed out on success.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// Checks a token request and, if it is good, issues a new pair.
pub fn exchange(sb: &Sb, params: &[(String, String)]) -> Result<TokenPair, OAuthError> {
    let cfg = &sb.cfg;
    let grant_type =
        param(params, "grant_type").ok_or_else(|| invalid("Check the `grant_type` parameter"))?;
    if grant_type != "authorization_code" && grant_type != "refresh_token" {
        return Err(invalid(
            "The authorization grant type is not supported by the authorization server.",
        ));
    }
    if param(params, "client_id") != Some(cfg.client_id.as_str()) {
        return Err(invalid("Check the `client_id` parameter"));
    }
    let secret = param(params, "client_secret").ok_or(OAuthError::IncorrectClient)?;
    if secret != cfg.client_secret {
        return Err(invalid("Check the `client_secret` parameter"));
    }
    if param(params, "redirect_uri") != Some(cfg.redirect_uri.as_str()) {
        return Err(invalid("Redirect URI is not associated with client"));
    }
    let now = sb.clock.now();
    let mut st = sb.lock();
    if grant_type == "authorization_code" {
        let code = param(params, "code").ok_or_else(|| invalid("Check the `code` parameter"))?;
        redeem_code(&mut st, code, &cfg.redirect_uri, now)?;
        // A fresh consent re-enables an integration the admin had revoked.
        st.integration_revoked = false;
    } else {
        let token = param(params, "refresh_token")
            .ok_or_else(|| invalid("Check the `refresh_token` parameter"))?;
        redeem_refresh(&mut st, token, now)?;
    }
    let expires_in = cfg.access_token_ttl_secs;
    let access_token = mint_jwt(cfg, grant_type, now, now + expires_in as i64);
    st.add_grant(
        &access_token,
        GrantKind::OAuth,
        now,
        now + expires_in as i64,
    );
    let refresh_token = random_secret();
    st.refresh_tokens.insert(
        refresh_token.clone(),
        RefreshGrant {
            expires_at: now + cfg.refresh_token_ttl_secs as i64,
            used: false,
            revoked: false,
        },
    );
    Ok(TokenPair {
        access_token,
        refresh_token,
        expires_in,
    })
}

fn redeem_code(
    st: &mut Account,
    code: &str,
    redirect_uri: &str,
    now: i64,
) -> Result<(), OAuthError> {
    let entry: &mut AuthCode = st
        .codes
        .get_mut(code)
        .ok_or_else(|| invalid("Cannot decrypt the authorization code"))?;
    // A code issued for another redirect URI cannot be decrypted with this one.
    if entry.redirect_uri != redirect_uri {
        return Err(invalid("Cannot decrypt the authorization code"));
    }
    if entry.used {
        return Err(invalid("Authorization code has been revoked"));
    }
    if entry.expires_at <= now {
        return Err(invalid("Authorization code has expired"));
    }
    entry.used = true;
    Ok(())
}

fn redeem_refresh(st: &mut Account, token: &str, now: i64) -> Result<(), OAuthError> {
    let entry = st
        .refresh_tokens
        .get_mut(token)
        .ok_or_else(|| invalid("Invalid refresh token"))?;
    if entry.used || entry.revoked {
        return Err(invalid_401("Token has been revoked"));
    }
    if entry.expires_at <= now {
        return Err(invalid_401("Token has expired"));
    }
    entry.used = true;
    Ok(())
}

/// `POST /oauth2/access_token`.
pub async fn token(State(sb): State<Sb>, headers: HeaderMap, body: Bytes) -> Response {
    let params = parameters(&headers, &body);
    match exchange(&sb, &params) {
        Ok(pair) => {
            let body = ordered_json(&[
                ("token_type", json!("Bearer")),
                ("expires_in", json!(pair.expires_in)),
                ("access_token", json!(pair.access_token)),
                ("refresh_token", json!(pair.refresh_token)),
            ]);
            let mut res = (StatusCode::OK, body).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => e.into_response(),
    }
}

/// Issues an authorization code, as if a user had approved the integration; it is bound to
/// `redirect_uri` (the registered one by default) and lives 20 minutes.
pub fn issue_code(sb: &Sb, redirect_uri: Option<&str>) -> String {
    let code = random_secret();
    let now = sb.clock.now();
    sb.lock().codes.insert(
        code.clone(),
        AuthCode {
            redirect_uri: redirect_uri.unwrap_or(&sb.cfg.redirect_uri).to_string(),
            expires_at: now + sb.cfg.auth_code_ttl_secs as i64,
            used: false,
        },
    );
    code
}
