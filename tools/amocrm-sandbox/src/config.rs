//! How a sandbox instance behaves: the account it imitates, its limits, its credentials and
//! how it delivers webhooks. `Default` is the production account with amoCRM's
//! real limits; tests shrink limits and delays to stay fast.

/// Settings of one sandbox instance.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub account_id: i64,
    /// Technical subdomain; webhooks name the account `https://{subdomain}.amocrm.ru`.
    pub subdomain: String,
    /// Accepted requests per integration (all its tokens and token endpoint calls) within any
    /// sliding second (amoCRM: 7).
    pub requests_per_second: u32,
    /// More 429 answers than this within 60 s bans the client.
    pub ban_after_429s: u32,
    /// How long a ban lasts (every API call answers 403 meanwhile).
    pub ban_secs: u64,
    /// Long-lived tokens accepted from the start (any string; a JWT's `exp` is honoured).
    pub long_lived_tokens: Vec<String>,
    pub client_id: String,
    pub client_secret: String,
    /// The redirect URI registered for the integration (must match exactly at the token endpoint).
    pub redirect_uri: String,
    pub access_token_ttl_secs: u64,
    /// amoCRM's refresh tokens live three months.
    pub refresh_token_ttl_secs: u64,
    /// Authorization codes live 20 minutes.
    pub auth_code_ttl_secs: u64,
    /// Batch writes of leads larger than this answer 504 and change nothing (amoCRM's
    /// "reduce the batch" behaviour under load).
    pub batch_504_above: Option<usize>,
    /// How long amoCRM waits for a webhook receiver.
    pub webhook_timeout_ms: u64,
    /// Pause before each retry of an undelivered webhook (amoCRM: minutes; here short).
    pub webhook_retry_delays_ms: Vec<u64>,
    /// Where the signed "integration access revoked" GET goes, if anywhere.
    pub revoke_hook_url: Option<String>,
    /// The account's API IP whitelist (amoCRM → Settings → Security): when not empty, the API
    /// and the token endpoint answer 403 (error code 113) to every other source address.
    pub ip_allowlist: Vec<std::net::IpAddr>,
    /// How long `query=` search takes to see an entity created or changed (a search index);
    /// `filter[...]` sees it at once. 0 = at once.
    pub search_lag_ms: u64,
}

/// The integration's client secret in the default configuration (sandbox only).
pub const DEFAULT_CLIENT_SECRET: &str = "sandbox-client-secret";

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            account_id: 31234567,
            subdomain: "new599bd9d13818a".into(),
            requests_per_second: 7,
            ban_after_429s: 30,
            ban_secs: 600,
            long_lived_tokens: Vec::new(),
            client_id: "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd".into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            redirect_uri: "https://api.td-rss.ru/webhook/amocrm".into(),
            access_token_ttl_secs: 86_400,
            refresh_token_ttl_secs: 90 * 86_400,
            auth_code_ttl_secs: 20 * 60,
            batch_504_above: None,
            webhook_timeout_ms: 2_000,
            webhook_retry_delays_ms: vec![200, 200, 200],
            revoke_hook_url: None,
            ip_allowlist: Vec::new(),
            search_lag_ms: 0,
        }
    }
}

impl SandboxConfig {
    /// `127.0.0.1, 203.0.113.7` (commas or spaces); the address that fails to parse is named.
    pub fn parse_allowlist(text: &str) -> Result<Vec<std::net::IpAddr>, String> {
        text.split([',', ' '])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| a.parse().map_err(|_| format!("not an IP address: {a:?}")))
            .collect()
    }

    /// The account's public address, as amoCRM names it in webhooks.
    pub fn account_url(&self) -> String {
        format!("https://{}.amocrm.ru", self.subdomain)
    }
}
