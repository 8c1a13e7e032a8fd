//! Bearer tokens: the grants the sandbox knows (long-lived and OAuth access tokens), how they
//! are minted (JWT-shaped like amoCRM's, HMAC-signed with the client secret) and how a
//! request's `Authorization` header is judged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::SandboxConfig;
use crate::seed::ADMIN_USER_ID;

/// What kind of credential a request carried (recorded in the request log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// No `Authorization` header.
    None,
    LongLived,
    OAuth,
    /// A header that names no grant the sandbox knows (or is not `Bearer`).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    LongLived,
    OAuth,
}

/// A token the API accepts until it expires or is revoked.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub kind: GrantKind,
    /// Unix seconds.
    pub expires_at: i64,
    pub revoked: bool,
    pub issued_at: i64,
}

/// Why a bearer token was refused (all answer the same 401; the reason is for logs and state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Unknown,
    Expired,
    Revoked,
}

/// The token inside `Authorization: Bearer …`, if the header has that shape.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// Judges a grant at `now` (unix seconds).
pub fn check(grant: Option<&Grant>, now: i64) -> Result<GrantKind, Refusal> {
    let grant = grant.ok_or(Refusal::Unknown)?;
    if grant.revoked {
        return Err(Refusal::Revoked);
    }
    if grant.expires_at <= now {
        return Err(Refusal::Expired);
    }
    Ok(grant.kind)
}

fn sign(secret: &str, signing_input: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(signing_input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A JWT with amoCRM's claims (`aud`, `jti`, `iat`, `nbf`, `exp`, `sub`, `account_id`,
/// `base_domain`, `version`, `scopes`), HMAC-SHA256 signed with the client secret.
pub fn mint_jwt(cfg: &SandboxConfig, grant_type: &str, issued_at: i64, expires_at: i64) -> String {
    let header = json!({"typ": "JWT", "alg": "HS256"});
    let claims = json!({
        "aud": cfg.client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires_at,
        "sub": ADMIN_USER_ID.to_string(),
        "grant_type": grant_type,
        "account_id": cfg.account_id,
        "base_domain": "amocrm.ru",
        "version": 2,
        "scopes": ["crm", "files", "files_delete", "notifications", "push_notifications"],
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(&cfg.client_secret, &input);
    format!("{input}.{signature}")
}

/// A long-lived token for this sandbox's integration, valid until `expires_at` (unix
/// seconds). Register it with `SandboxConfig::long_lived_tokens` or
/// `SandboxHandle::add_long_lived_token`.
pub fn mint_long_lived_token(cfg: &SandboxConfig, expires_at: i64) -> String {
    // Issued now, unless the caller asks for a token that has already expired.
    let issued_at = crate::clock::Clock::default().now().min(expires_at);
    mint_jwt(cfg, "long_lived", issued_at, expires_at)
}

/// The `exp` claim of a JWT-shaped token, if it has one.
pub fn jwt_exp(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// An opaque random string (authorization codes, refresh tokens): long, URL-safe.
pub fn random_secret() -> String {
    format!(
        "def50200{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// amoCRM's signature of the "access revoked" hook: hex HMAC-SHA256(client_secret,
/// "{client_id}|{account_id}").
pub fn revoke_hook_signature(cfg: &SandboxConfig) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(cfg.client_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(format!("{}|{}", cfg.client_id, cfg.account_id).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Masks a token for display: enough to tell two apart, never enough to use one.
pub fn mask(token: &str) -> String {
    let tail: String = token
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_carry_their_expiry_and_are_distinct() {
        let cfg = SandboxConfig::default();
        let a = mint_long_lived_token(&cfg, 1_944_000_000);
        let b = mint_long_lived_token(&cfg, 1_944_000_000);
        assert_ne!(a, b);
        assert_eq!(a.split('.').count(), 3);
        assert_eq!(jwt_exp(&a), Some(1_944_000_000));
        assert_eq!(jwt_exp("not-a-jwt"), None);
    }

    #[test]
    fn bearer_header_shapes() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn masking_keeps_only_the_tail() {
        assert_eq!(mask("abcdefghij"), "…efghij");
    }
}
