//! `setup`: makes the amoCRM account ready for the integration, safe to run again and again.
//! It creates the maintenance fields if missing (remembering their ids for the sync) and
//! subscribes our webhook route to lead events (`POST /api/v4/webhooks`). Once ours is in
//! place it removes the subscriptions our route would refuse: the old system's, to the
//! redirect URI without our token, and ours with an old token. amoCRM disables a webhook after
//! 100 failed deliveries in two hours; removing them keeps the account's view clean.
//!
//! The webhook destination carries the app secret's `webhook_token` as `?token=`; it is never
//! printed unmasked.

use serde::Serialize;

use super::field_setup::{FieldProvisioner, Setting};
use super::finding::Finding;
use crate::amocrm::AmoClient;
use crate::amocrm::CrmError;
use crate::amocrm::admin::{WebhookSubscription, mask_destination};
use crate::ports::SyncStateStore;

/// The lead events crm-worker acts on (won/reopened deals and their fields).
pub const WEBHOOK_SETTINGS: [&str; 3] = ["add_lead", "update_lead", "status_lead"];

/// Where amoCRM should send webhooks, with our token in it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    destination: String,
    /// The redirect URI without a query: the old system's webhook destination.
    old_destination: String,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WebhookTarget")
            .field(&self.masked())
            .finish()
    }
}

impl WebhookTarget {
    /// The destination from `explicit` (`--webhook-destination` / `WEBHOOK_DESTINATION`) or,
    /// without it, the OAuth redirect URI (the same route, `/webhook/amocrm`). The app secret's
    /// `webhook_token` is appended as `?token=` unless the URL carries a token already, which
    /// must then be that token.
    pub fn resolve(
        explicit: Option<&str>,
        redirect_uri: &str,
        webhook_token: Option<&str>,
    ) -> Result<Self, Finding> {
        let (url, var) = match explicit.map(str::trim).filter(|e| !e.is_empty()) {
            Some(e) => (e, "WEBHOOK_DESTINATION"),
            None => (redirect_uri.trim(), "AMOCRM_REDIRECT_URI"),
        };
        let problem =
            |detail: String, fix: String| Finding::problem("webhook destination", detail, fix);
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            problem(
                format!("{var} is not a URL ({e})"),
                format!(
                    "Set {var} (or pass --webhook-destination) to \
                     https://api.td-rss.ru/webhook/amocrm."
                ),
            )
        })?;
        let local = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost"));
        if parsed.scheme() != "https" && !(local && parsed.scheme() == "http") {
            return Err(problem(
                format!("{var} is not an https URL: {}", mask_destination(url)),
                format!(
                    "amoCRM must call us over https: set {var} to https://api.td-rss.ru/webhook/amocrm."
                ),
            ));
        }
        let present = parsed
            .query_pairs()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        let expected = webhook_token.map(str::trim).filter(|t| !t.is_empty());
        match (present, expected) {
            (Some(p), Some(e)) if p != e => Err(problem(
                format!(
                    "the token in {var} is not the app secret's webhook_token: our route would \
                     refuse amoCRM's calls (401)"
                ),
                format!(
                    "Drop `token=` from {var}; setup adds the app secret's webhook_token itself."
                ),
            )),
            (Some(_), _) => Ok(Self {
                destination: url.to_string(),
                old_destination: without_query(redirect_uri),
            }),
            (None, Some(token)) => {
                let mut with_token = parsed;
                with_token.query_pairs_mut().append_pair("token", token);
                Ok(Self {
                    destination: with_token.to_string(),
                    old_destination: without_query(redirect_uri),
                })
            }
            (None, None) => Err(problem(
                "the app secret has no webhook_token, so the destination cannot carry one and \
                 our route refuses every webhook"
                    .to_string(),
                "Put a long random `webhook_token` into the app secret (APP_SECRET_ID), then run \
                 setup again."
                    .to_string(),
            )),
        }
    }

    /// The full URL (with the token): for amoCRM only, never for output.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    pub fn masked(&self) -> String {
        mask_destination(&self.destination)
    }

    /// The URL without its query: subscriptions to it with another token are stale.
    pub fn base(&self) -> &str {
        self.destination
            .split_once('?')
            .map_or(self.destination.as_str(), |(b, _)| b)
    }
}

fn without_query(url: &str) -> String {
    url.trim()
        .split_once('?')
        .map_or(url.trim(), |(b, _)| b)
        .to_string()
}

/// What `setup` did: one finding per step, and the settings to put into samconfig.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupReport {
    pub findings: Vec<Finding>,
    pub settings: Vec<Setting>,
}

/// Runs the steps; each one reports on its own, so a failing step does not hide the others.
pub async fn setup(
    amo: &AmoClient,
    fields: Option<&dyn FieldProvisioner>,
    target: &Result<WebhookTarget, Finding>,
) -> SetupReport {
    let mut findings = Vec::new();
    let mut settings = Vec::new();
    match fields {
        None => {}
        Some(provisioner) => match provisioner.ensure().await {
            Ok(s) => {
                findings.push(Finding::ok(
                    "maintenance fields",
                    format!(
                        "{}; their ids are in the settings",
                        s.iter()
                            .filter(|s| s.var.starts_with("AMOCRM_FIELD_"))
                            .map(|s| s.note.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                settings = s;
            }
            Err(e) => findings.push(Finding::problem("maintenance fields", e.message, e.hint)),
        },
    }
    match target {
        Err(f) => findings.push(f.clone()),
        Ok(t) => findings.extend(match register_webhook(amo, t).await {
            Ok(f) => f,
            Err(e) => vec![Finding::problem("webhook", e.message, e.hint)],
        }),
    }
    SetupReport { findings, settings }
}

/// Subscribes the destination unless it already gets every event we need.
async fn register_webhook(amo: &AmoClient, t: &WebhookTarget) -> Result<Vec<Finding>, CrmError> {
    let before = amo.webhooks().await?;
    let current = before.iter().find(|s| s.destination == t.destination());
    if let Some(s) = current.filter(|s| complete(s)) {
        let mut findings = vec![Finding::ok(
            "webhook",
            format!(
                "already registered (id {}) for {}: {}",
                s.id,
                s.settings.join(", "),
                t.masked()
            ),
        )];
        findings.extend(remove_stale(amo, &before, t).await);
        return Ok(findings);
    }
    // amoCRM replaces a known destination's settings: keep what someone added besides ours.
    let mut wanted: Vec<&str> = current
        .map(|s| s.settings.iter().map(String::as_str).collect())
        .unwrap_or_default();
    for w in WEBHOOK_SETTINGS {
        if !wanted.contains(&w) {
            wanted.push(w);
        }
    }
    amo.register_webhook(t.destination(), &wanted).await?;
    let after = amo.webhooks().await?;
    let mut findings = vec![
        match after.iter().find(|s| s.destination == t.destination()) {
            Some(s) if complete(s) => Finding::ok(
                "webhook",
                format!(
                    "registered (id {}) for {}: {}",
                    s.id,
                    s.settings.join(", "),
                    t.masked()
                ),
            ),
            Some(s) if s.disabled => Finding::problem(
                "webhook",
                format!("registered but disabled by amoCRM: {}", t.masked()),
                "amoCRM disables a webhook after many failed deliveries. Re-enable it in amoCRM → \
                 Settings → Integrations → Web hooks, and check that GET /health is fine.",
            ),
            _ => Finding::problem(
                "webhook",
                format!(
                    "amoCRM accepted the registration but does not list it: {}",
                    t.masked()
                ),
                "Check amoCRM → Settings → Integrations → Web hooks; webhooks through the API \
                 need an administrator's token.",
            ),
        },
    ];
    if after
        .iter()
        .any(|s| s.destination == t.destination() && complete(s))
    {
        findings.extend(remove_stale(amo, &after, t).await);
    } else {
        // Ours is not working: the old subscription stays until it is.
        findings.extend(stale_finding(&after, t));
    }
    Ok(findings)
}

/// Deletes every stale subscription (ours is registered by now); one finding each.
async fn remove_stale(
    amo: &AmoClient,
    subs: &[WebhookSubscription],
    t: &WebhookTarget,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in stale_subscriptions(subs, t) {
        let masked = mask_destination(&s.destination);
        findings.push(match amo.delete_webhook(&s.destination).await {
            Ok(()) => Finding::ok(
                "old webhook",
                format!(
                    "removed (id {}, {}): it had no valid token, so our route refused its calls",
                    s.id, masked
                ),
            ),
            Err(e) => Finding::problem(
                "old webhook",
                format!("could not remove id {} {masked}: {}", s.id, e.message),
                format!(
                    "{} Or delete it in amoCRM → Settings → Integrations → Web hooks.",
                    e.hint
                ),
            ),
        });
    }
    findings
}

/// Saves the maintenance fields' ids where the sync reads them (`SYNC#fields`), so it syncs
/// from its next run without a redeploy.
pub async fn remember_fields(amo: &AmoClient, state: &dyn SyncStateStore) -> Finding {
    match crate::amocrm::maintenance_fields::find_maintenance_fields(amo).await {
        Ok(Some(ids)) => match state.save_field_ids(&ids).await {
            Ok(()) => Finding::ok(
                "maintenance sync",
                format!(
                    "field ids {} and {} saved in the state table; the next sync run uses them",
                    ids.next_maintenance, ids.status
                ),
            ),
            Err(e) => Finding::problem(
                "maintenance sync",
                format!("the field ids could not be saved: {e}"),
                "Check STATE_TABLE and dynamodb:PutItem on it; the sync also finds the fields \
                 by name on its own.",
            ),
        },
        Ok(None) => Finding::problem(
            "maintenance sync",
            "the maintenance fields are not in amoCRM",
            "See the maintenance fields finding above, then run setup again.",
        ),
        Err(e) => Finding::problem("maintenance sync", e.message, e.hint),
    }
}

fn complete(s: &WebhookSubscription) -> bool {
    !s.disabled
        && WEBHOOK_SETTINGS
            .iter()
            .all(|w| s.settings.iter().any(|have| have == w))
}

/// Subscriptions our route would refuse: to our route with another (old) token or none, and
/// the old system's, to the redirect URI without any token (another stage's subscription there
/// has its own token and is left alone).
pub fn stale_subscriptions<'a>(
    subs: &'a [WebhookSubscription],
    t: &WebhookTarget,
) -> Vec<&'a WebhookSubscription> {
    subs.iter()
        .filter(|s| s.destination != t.destination())
        .filter(|s| {
            let (base, query) = s
                .destination
                .split_once('?')
                .unwrap_or((s.destination.as_str(), ""));
            // Another stage's subscription to the redirect URI carries its own token: not ours
            // to remove. Only the token-less one is the old system's.
            let tokenless = !query.split('&').any(|p| p.starts_with("token="));
            base == t.base() || (base == t.old_destination && tokenless)
        })
        .collect()
}

pub(crate) fn stale_finding(subs: &[WebhookSubscription], t: &WebhookTarget) -> Option<Finding> {
    let stale = stale_subscriptions(subs, t);
    if stale.is_empty() {
        return None;
    }
    Some(Finding::problem(
        "old webhook",
        format!(
            "{} subscription(s) our route refuses (the old system's without our token, or an \
             old token): {}",
            stale.len(),
            stale
                .iter()
                .map(|s| format!("id {} {}", s.id, mask_destination(&s.destination)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "Run `rss-ops setup`: once our subscription is registered it removes them (or delete \
         them in amoCRM → Settings → Integrations → Web hooks). amoCRM disables a webhook after \
         100 failed deliveries in two hours.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIRECT: &str = "https://api.td-rss.ru/webhook/amocrm";

    #[test]
    fn the_token_is_appended_from_the_app_secret_and_never_shown() {
        let t = WebhookTarget::resolve(None, REDIRECT, Some("s3cr3t-token")).unwrap();
        assert_eq!(
            t.destination(),
            "https://api.td-rss.ru/webhook/amocrm?token=s3cr3t-token"
        );
        assert_eq!(t.masked(), "https://api.td-rss.ru/webhook/amocrm?token=***");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert_eq!(t.base(), REDIRECT);

        let explicit = WebhookTarget::resolve(
            Some("http://127.0.0.1:3000/webhook/amocrm"),
            REDIRECT,
            Some("a b"),
        )
        .unwrap();
        assert_eq!(
            explicit.destination(),
            "http://127.0.0.1:3000/webhook/amocrm?token=a+b"
        );
    }

    #[test]
    fn a_destination_with_the_right_token_is_kept_and_a_wrong_one_refused() {
        let url = "https://api.td-rss.ru/webhook/amocrm?token=abc";
        let t = WebhookTarget::resolve(Some(url), REDIRECT, Some("abc")).unwrap();
        assert_eq!(t.destination(), url);
        let f = WebhookTarget::resolve(Some(url), REDIRECT, Some("other")).unwrap_err();
        assert!(!f.ok);
        assert!(!f.detail.contains("abc") && !f.detail.contains("other"));
    }

    #[test]
    fn plain_http_elsewhere_and_no_token_at_all_are_refused() {
        let f = WebhookTarget::resolve(
            Some("http://api.td-rss.ru/webhook/amocrm"),
            REDIRECT,
            Some("t"),
        )
        .unwrap_err();
        assert!(f.detail.contains("https"), "{}", f.detail);
        let f = WebhookTarget::resolve(None, REDIRECT, None).unwrap_err();
        assert!(f.fix.unwrap().contains("webhook_token"));
    }

    #[test]
    fn the_old_systems_and_old_token_subscriptions_are_stale_others_are_not() {
        let t = WebhookTarget::resolve(None, REDIRECT, Some("new")).unwrap();
        let local = WebhookTarget::resolve(
            Some("http://127.0.0.1:3000/webhook/amocrm"),
            REDIRECT,
            Some("new"),
        )
        .unwrap();
        let sub = |id, d: &str| WebhookSubscription {
            id,
            destination: d.into(),
            settings: vec!["add_lead".into()],
            disabled: false,
        };
        let subs = vec![
            sub(1, "https://api.td-rss.ru/webhook/amocrm?token=new"),
            sub(
                2,
                "https://api.td-rss.ru/webhook/amocrm?token=expired-token-1",
            ),
            sub(3, "https://example.com/hook"),
            // The old system's subscription: the redirect URI, no token.
            sub(4, "https://api.td-rss.ru/webhook/amocrm"),
            sub(5, "http://127.0.0.1:3000/webhook/amocrm?token=new"),
        ];
        let ids = |t: &WebhookTarget| {
            stale_subscriptions(&subs, t)
                .iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&t), vec![2, 4]);
        // From another stage (or the local stack) only the token-less old one is removed:
        // production's subscriptions carry their own token.
        assert_eq!(ids(&local), vec![4]);
        let f = stale_finding(&subs, &t).unwrap();
        assert!(!f.detail.contains("expired-token-1"), "{}", f.detail);
        assert!(f.fix.unwrap().contains("rss-ops setup"));
    }
}
