//! What an operator should do about each amoCRM refusal: the prose of `CrmError::hint`,
//! apart from the mapping of answers to errors in `error.rs`.

use serde_json::Value;

use super::problem::{IP_NOT_ALLOWED_CODE, Problem, ResponseContext, ValidationError};
use crate::config::AmoConfig;
use crate::ports::CrmErrorKind;

/// The kind of an amoCRM error answer and the operator's next step, by its HTTP status.
pub(super) fn status_hint(
    status: u16,
    problem: Option<&Problem>,
    is_html: bool,
    validation: &[ValidationError],
    ctx: &ResponseContext<'_>,
) -> (CrmErrorKind, String) {
    let cfg = ctx.config;
    match status {
        401 => (
            CrmErrorKind::Unauthorized,
            format!(
                "amoCRM rejected the access token (invalid, expired or revoked, or the \
                 integration was disabled) and re-reading/refreshing it did not help. \
                 Long-lived token: generate a new one in amoCRM → Settings → Integrations → \
                 this integration → Keys and scopes → \"Generate long-lived token\" and put it \
                 into the token secret (AMOCRM_TOKEN_SECRET_ID) as \
                 {{\"kind\":\"long_lived\",\"access_token\":\"<token>\"}}. OAuth: the refresh \
                 failed; re-authorize the integration so amoCRM sends a new code to {}.",
                cfg.redirect_uri
            ),
        ),
        402 => (
            CrmErrorKind::Permanent,
            "The amoCRM account is not paid (402 Payment Required): amoCRM blocks writes at \
             once and reads later. Ask the account owner to pay the subscription, then \
             re-drive the parked leads; they are kept meanwhile."
                .to_string(),
        ),
        403 => (CrmErrorKind::Blocked, blocked_hint(cfg, problem, is_html)),
        404 => (
            CrmErrorKind::Permanent,
            format!(
                "Not found (404): either the base URL is wrong — AMOCRM_BASE_URL / \
                 AMOCRM_SUBDOMAIN give {} — or the entity id in {} no longer exists (deleted \
                 or merged in amoCRM). Check the subdomain in the account's address bar and \
                 the id in amoCRM.",
                cfg.base_url, ctx.endpoint
            ),
        ),
        400 if !validation.is_empty() => {
            (CrmErrorKind::Permanent, validation_hint(validation, ctx))
        }
        400 => (
            CrmErrorKind::Permanent,
            "amoCRM rejected the request as malformed (400) without naming a field. A retry \
             will not help: this is a bug in the integration or a bad configuration value; \
             report it with the lead id and the message above."
                .to_string(),
        ),
        422 => (
            CrmErrorKind::Permanent,
            "amoCRM refused the batch as too large (422; at most 250 entities per request, 50 \
             per complex request). This integration sends one lead at a time, so this is a \
             bug: report it with the lead id."
                .to_string(),
        ),
        429 => (
            CrmErrorKind::RateLimited,
            "amoCRM's rate limit was hit (7 requests/s per integration, 50 per account). The \
             client waits and retries by itself; if this keeps happening, find what else \
             uses the same integration or account API at the same time — repeated excess \
             ends in an IP ban (HTML 403)."
                .to_string(),
        ),
        s if s >= 500 => (
            CrmErrorKind::Transient,
            format!(
                "amoCRM had a server error ({s}); retried automatically. If it lasts for hours, \
                 contact amoCRM support with the time{} and the subdomain ({}).",
                if problem.is_some_and(|p| p.trace_id.is_some()) {
                    ", the trace_id above"
                } else {
                    ""
                },
                cfg.subdomain
            ),
        ),
        s => (
            CrmErrorKind::Permanent,
            format!(
                "amoCRM answered {s} to {}, which a retry will not fix. Report it with the \
                 lead id and the message above.",
                ctx.endpoint
            ),
        ),
    }
}

/// What to do when amoCRM answers 403: it refuses the address we call from (its API IP
/// whitelist, code 113), has banned it (nginx's HTML page, after too many requests), or the
/// token's user lacks a right. None of these is solved by a new token.
pub(super) fn blocked_hint(cfg: &AmoConfig, problem: Option<&Problem>, is_html: bool) -> String {
    let address = match &cfg.egress_ip {
        Some(ip) => format!(
            "The functions call amoCRM from {ip} (the stack output AmoEgressIp); add it to \
             amoCRM → Settings → Security → the API IP whitelist."
        ),
        None => "The functions have no fixed address (AmoEgress=Direct): redeploy with \
                 AmoEgress=StaticIp (or ExistingSubnets) and add the stack output AmoEgressIp \
                 to amoCRM → Settings → Security → the API IP whitelist."
            .to_string(),
    };
    let after = "No re-authorization is needed: the token is fine. Leads and webhook events \
                 wait (parked as blocked) and the next maintenance sync re-drives them by \
                 itself once amoCRM answers again (up to 5 attempts each); `rss-ops parked \
                 redrive --all` does it at once.";
    if problem.and_then(|p| p.code) == Some(IP_NOT_ALLOWED_CODE) {
        format!(
            "amoCRM refuses our IP address (error 113: the account's API IP whitelist). {address} {after}"
        )
    } else if is_html || problem.is_none() {
        format!(
            "amoCRM refuses our address: either the account's API IP whitelist does not list \
             it, or amoCRM banned it (an HTML 403 is its ban page, usually after too many \
             requests; every further request prolongs a ban). {address} If the address is \
             listed, ask amoCRM support to lift the ban, naming the address, the subdomain ({}) \
             and the account id. {after}",
            cfg.subdomain
        )
    } else {
        format!(
            "amoCRM refused the action (403): our address is not in the account's API IP \
             whitelist, or the user who issued the token lacks the rights for it. {address} \
             Otherwise check the user's rights for leads, contacts and notes, or issue the \
             token as an administrator. {after}"
        )
    }
}

/// The hint for a 400 with `validation-errors`: each rejected path named by its env variable.
fn validation_hint(errors: &[ValidationError], ctx: &ResponseContext<'_>) -> String {
    let mut lines: Vec<String> = Vec::new();
    for e in errors {
        let line = match config_behind_path(e, ctx) {
            Some((var, value)) => format!(
                "`{}` was rejected ({}): it comes from {var}={value}; check in the amoCRM account \
                 that this id exists and fits (status in the pipeline, user active, custom field \
                 of leads), then fix {var} and re-drive the parked leads",
                e.path, e.code
            ),
            None => format!(
                "`{}` was rejected ({}: {}): the value comes from the customer's request or the \
                 integration itself; report it with the lead id",
                e.path, e.code, e.detail
            ),
        };
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    format!(
        "amoCRM rejected the data (400 validation). {}.",
        lines.join("; ")
    )
}

/// Which configuration variable produced the value at a validation path, and its value.
fn config_behind_path(
    e: &ValidationError,
    ctx: &ResponseContext<'_>,
) -> Option<(&'static str, i64)> {
    let cfg = ctx.config;
    let last = e.path.rsplit('.').next().unwrap_or("");
    match last {
        "pipeline_id" => return Some(("AMOCRM_PIPELINE_ID", cfg.pipeline_id)),
        "status_id" => return Some(("AMOCRM_STATUS_ID", cfg.status_id)),
        "responsible_user_id" => {
            return Some(("AMOCRM_RESPONSIBLE_USER_ID", cfg.responsible_user_id));
        }
        _ => {}
    }
    // `custom_fields_values.N.field_id` (maybe `….values.0.value`): find the field id we sent.
    let segments: Vec<&str> = e.path.split('.').collect();
    let cf = segments.iter().position(|s| *s == "custom_fields_values")?;
    let index: usize = segments.get(cf + 1)?.parse().ok()?;
    let field_id = sent_item(ctx.request_body?, e.request_id.as_deref())
        .and_then(|item| pointer_by_segments(item, &segments[..cf]))
        .and_then(|owner| {
            owner
                .get("custom_fields_values")?
                .get(index)?
                .get("field_id")?
                .as_i64()
        });
    match field_id {
        Some(id) if id == cfg.field_serial => Some(("AMOCRM_FIELD_SERIAL", id)),
        Some(id) if id == cfg.field_model => Some(("AMOCRM_FIELD_MODEL", id)),
        Some(id) if id == cfg.field_telegram_id => Some(("AMOCRM_FIELD_TELEGRAM_ID", id)),
        _ => None,
    }
}

/// The array item a validation error is about: by our `request_id`, else by index.
fn sent_item<'a>(body: &'a Value, request_id: Option<&str>) -> Option<&'a Value> {
    let Some(items) = body.as_array() else {
        return Some(body);
    };
    if let Some(rid) = request_id {
        if let Some(item) = items
            .iter()
            .find(|i| i.get("request_id").and_then(Value::as_str) == Some(rid))
        {
            return Some(item);
        }
        if let Ok(i) = rid.parse::<usize>() {
            return items.get(i);
        }
    }
    items.first()
}

/// Follows `_embedded.contacts.0`-style segments inside a JSON value.
fn pointer_by_segments<'a>(mut v: &'a Value, segments: &[&str]) -> Option<&'a Value> {
    for s in segments {
        v = match s.parse::<usize>() {
            Ok(i) if v.is_array() => v.get(i)?,
            _ => v.get(*s)?,
        };
    }
    Some(v)
}

/// What to do about a token-endpoint refusal, by amoCRM's `hint` (or `title` when it has none).
pub fn oauth_hint(status: u16, cause: &str, title: &str, cfg: &AmoConfig) -> String {
    let reauthorize = format!(
        "re-authorize the integration in amoCRM so a new authorization code is sent to {}",
        cfg.redirect_uri
    );
    let cause_lc = cause.to_ascii_lowercase();
    if cause_lc.contains("cannot decrypt the authorization code") {
        format!(
            "The redirect URI of the code and of the integration differ. In amoCRM → \
             Integrations → this integration, the redirect URI must be exactly \
             https://api.td-rss.ru/webhook/amocrm, and AMOCRM_REDIRECT_URI must be the same \
             (now {}); then {reauthorize}.",
            cfg.redirect_uri
        )
    } else if cause_lc.contains("authorization code has been revoked") {
        format!("The authorization code was already used (codes are single-use); {reauthorize}.")
    } else if cause_lc.contains("authorization code has expired") {
        format!(
            "The authorization code expired (codes live 20 minutes) before it was exchanged; \
             {reauthorize} and let the integration exchange it at once."
        )
    } else if cause_lc.contains("client_id") {
        format!(
            "amoCRM does not know the client id. AMOCRM_CLIENT_ID (now {}) must be the \
             integration id shown in amoCRM → Integrations → this integration → Keys and scopes.",
            cfg.client_id
        )
    } else if cause_lc.contains("client_secret") {
        "The client secret is wrong. Copy the secret key from amoCRM → Integrations → this \
         integration → Keys and scopes into `amocrm_client_secret` of the app secret \
         (APP_SECRET_ID). If the key was regenerated, old refresh tokens are void: re-authorize."
            .to_string()
    } else if cause_lc.contains("redirect uri is not associated") {
        format!(
            "The redirect URI sent does not match the integration's. AMOCRM_REDIRECT_URI (now {}) \
             must equal the integration's redirect URI exactly: https://api.td-rss.ru/webhook/amocrm.",
            cfg.redirect_uri
        )
    } else if cause_lc.contains("invalid account") {
        format!(
            "The token request went to the wrong account. AMOCRM_SUBDOMAIN/AMOCRM_BASE_URL (now \
             {}) must be the account the integration is installed in (the `referer` of the \
             redirect).",
            cfg.base_url
        )
    } else if cause_lc.contains("token has been revoked") {
        format!(
            "The refresh token was revoked: already used once (refresh tokens are single-use), \
             or the integration was re-authorized or disabled. Never run two refreshes at once; \
             {reauthorize}."
        )
    } else if cause_lc.contains("token has expired") {
        format!("The refresh token expired (3 months without use); {reauthorize}.")
    } else if cause_lc.contains("invalid refresh token") {
        format!("The stored refresh token is damaged or not a refresh token; {reauthorize}.")
    } else if title.contains("Некорректный клиент") || status == 401 {
        format!(
            "\"Incorrect client\": the refresh used a client id or secret other than the ones the \
             refresh token was issued for. Check AMOCRM_CLIENT_ID (now {}) and \
             `amocrm_client_secret` in the app secret against amoCRM → Keys and scopes; if the \
             secret changed, {reauthorize}.",
            cfg.client_id
        )
    } else {
        format!(
            "amoCRM refused the token request. Check AMOCRM_CLIENT_ID, the client secret and \
             AMOCRM_REDIRECT_URI (must be https://api.td-rss.ru/webhook/amocrm); if they are \
             right, {reauthorize}."
        )
    }
}
