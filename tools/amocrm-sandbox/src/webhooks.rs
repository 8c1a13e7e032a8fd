//! Webhooks sent like amoCRM sends them: form-encoded PHP bracket keys (`account[...]` first,
//! then `leads[status][0][id]=…`), every value a string, dates without `[value]`, selects with
//! `[enum]`; `User-Agent: amoCRM-Webhooks/3.0`, `X-Amocrm-Requestid`. Deliveries run in a
//! background task (never inside an API request), wait 2 s, and retry undelivered hooks.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::auth::revoke_hook_signature;
use crate::config::SandboxConfig;
use crate::form;
use crate::model::{Contact, FieldValues, Lead};
use crate::state::{Shared, State, next};

/// Setting names a subscription may list (amoCRM's names; the sandbox sends the lead and
/// contact ones it can produce: add/update/status of leads, add of contacts).
pub const KNOWN_SETTINGS: &[&str] = &[
    "add_lead",
    "update_lead",
    "delete_lead",
    "restore_lead",
    "status_lead",
    "responsible_lead",
    "note_lead",
    "add_contact",
    "update_contact",
    "delete_contact",
    "restore_contact",
    "responsible_contact",
    "note_contact",
    "add_company",
    "update_company",
    "delete_company",
    "restore_company",
    "responsible_company",
    "note_company",
    "add_task",
    "update_task",
    "delete_task",
    "add_unsorted",
    "delete_unsorted",
    "add_talk",
    "update_talk",
    "add_message",
];

/// One webhook request the sandbox made (or is still trying to make).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub destination: String,
    /// `leads[add]`, `leads[update]`, `leads[status]`, `contacts[add]`, `integration_revoked`.
    pub event: String,
    pub entity_ids: Vec<i64>,
    /// The `X-Amocrm-Requestid` header (the same on every attempt).
    pub request_id: String,
    pub body: String,
    pub attempts: u32,
    /// HTTP status of each attempt; `None` for a timeout or connection failure.
    pub statuses: Vec<Option<u16>>,
    pub delivered: bool,
    /// No more attempts will be made.
    pub finished: bool,
    pub last_error: Option<String>,
    pub queued_at_ms: i64,
}

/// What the background sender needs for one delivery.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub delivery_id: i64,
    pub url: String,
    /// `None` sends a `GET` (the "access revoked" hook), otherwise a form `POST`.
    pub body: Option<String>,
    pub request_id: String,
    pub user_agent: &'static str,
}

/// How one lead changed in one API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadChange {
    Added,
    /// `old_status_id` is set when the status moved.
    Updated {
        old_status_id: Option<i64>,
    },
}

fn account_pairs(cfg: &SandboxConfig) -> Vec<(String, String)> {
    vec![
        ("account[subdomain]".into(), cfg.subdomain.clone()),
        ("account[id]".into(), cfg.account_id.to_string()),
        ("account[_links][self]".into(), cfg.account_url()),
    ]
}

/// `tags[i][id|name]` pairs of an entity under `prefix`.
fn tag_pairs(st: &State, prefix: &str, ids: &[i64], out: &mut Vec<(String, String)>) {
    for (i, tag) in ids.iter().filter_map(|id| st.tags.get(id)).enumerate() {
        out.push((format!("{prefix}[tags][{i}][id]"), tag.id.to_string()));
        out.push((format!("{prefix}[tags][{i}][name]"), tag.name.clone()));
    }
}

/// `custom_fields[i][…]` pairs of an entity under `prefix`.
fn custom_field_pairs(
    st: &State,
    prefix: &str,
    values: &[FieldValues],
    out: &mut Vec<(String, String)>,
) {
    for (i, fv) in values.iter().enumerate() {
        let Some(field) = st.fields.get(&fv.field_id) else {
            continue;
        };
        let p = format!("{prefix}[custom_fields][{i}]");
        out.push((format!("{p}[id]"), field.id.to_string()));
        out.push((format!("{p}[name]"), field.name.clone()));
        for (j, v) in fv.values.iter().enumerate() {
            let text = match &v["value"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                other => other.to_string(),
            };
            if field.field_type.is_date() {
                // Dates arrive without `[value]`: `custom_fields[1][values][0]=1615845600`.
                out.push((format!("{p}[values][{j}]"), text));
                continue;
            }
            out.push((format!("{p}[values][{j}][value]"), text));
            if let Some(enum_id) = v.get("enum_id").and_then(|e| e.as_i64()) {
                out.push((format!("{p}[values][{j}][enum]"), enum_id.to_string()));
            }
        }
        if let Some(code) = &field.code {
            out.push((format!("{p}[code]"), code.clone()));
        }
    }
}

fn lead_pairs(
    st: &State,
    cfg: &SandboxConfig,
    prefix: &str,
    lead: &Lead,
    old_status: Option<i64>,
) -> Vec<(String, String)> {
    let mut out = vec![
        (format!("{prefix}[id]"), lead.id.to_string()),
        (format!("{prefix}[name]"), lead.name.clone()),
        (format!("{prefix}[status_id]"), lead.status_id.to_string()),
    ];
    if let Some(old) = old_status {
        out.push((format!("{prefix}[old_status_id]"), old.to_string()));
    }
    out.extend([
        (format!("{prefix}[price]"), lead.price.to_string()),
        (
            format!("{prefix}[responsible_user_id]"),
            lead.responsible_user_id.to_string(),
        ),
        (
            format!("{prefix}[last_modified]"),
            lead.updated_at.to_string(),
        ),
        (
            format!("{prefix}[modified_user_id]"),
            lead.updated_by.to_string(),
        ),
        (
            format!("{prefix}[created_user_id]"),
            lead.created_by.to_string(),
        ),
        (
            format!("{prefix}[date_create]"),
            lead.created_at.to_string(),
        ),
        (
            format!("{prefix}[pipeline_id]"),
            lead.pipeline_id.to_string(),
        ),
    ]);
    tag_pairs(st, prefix, &lead.tag_ids, &mut out);
    out.push((format!("{prefix}[account_id]"), cfg.account_id.to_string()));
    custom_field_pairs(st, prefix, &lead.custom_fields, &mut out);
    out.push((format!("{prefix}[created_at]"), lead.created_at.to_string()));
    out.push((format!("{prefix}[updated_at]"), lead.updated_at.to_string()));
    out
}

fn contact_pairs(
    st: &State,
    cfg: &SandboxConfig,
    prefix: &str,
    contact: &Contact,
) -> Vec<(String, String)> {
    let mut out = vec![
        (format!("{prefix}[id]"), contact.id.to_string()),
        (format!("{prefix}[name]"), contact.name.clone()),
        (
            format!("{prefix}[responsible_user_id]"),
            contact.responsible_user_id.to_string(),
        ),
        (
            format!("{prefix}[date_create]"),
            contact.created_at.to_string(),
        ),
        (
            format!("{prefix}[last_modified]"),
            contact.updated_at.to_string(),
        ),
        (
            format!("{prefix}[created_user_id]"),
            contact.created_by.to_string(),
        ),
        (
            format!("{prefix}[modified_user_id]"),
            contact.updated_by.to_string(),
        ),
        (format!("{prefix}[account_id]"), cfg.account_id.to_string()),
    ];
    custom_field_pairs(st, prefix, &contact.custom_fields, &mut out);
    tag_pairs(st, prefix, &contact.tag_ids, &mut out);
    for lead in st
        .leads
        .values()
        .filter(|l| l.contact_ids.contains(&contact.id))
    {
        let id = lead.id.to_string();
        out.push((format!("{prefix}[linked_leads_id][{id}][ID]"), id));
    }
    out.push((format!("{prefix}[type]"), "contact".into()));
    out.push((
        format!("{prefix}[created_at]"),
        contact.created_at.to_string(),
    ));
    out.push((
        format!("{prefix}[updated_at]"),
        contact.updated_at.to_string(),
    ));
    out
}

/// Queues one delivery per subscription that wants `setting`.
fn enqueue(
    sb: &Shared,
    st: &mut State,
    setting: &str,
    event: &str,
    entity_ids: Vec<i64>,
    pairs: &[(String, String)],
) {
    let destinations: Vec<String> = st
        .subscriptions
        .iter()
        .filter(|s| s.settings.iter().any(|x| x == setting))
        .map(|s| s.destination.clone())
        .collect();
    for destination in destinations {
        let mut all = account_pairs(&sb.cfg);
        all.extend(pairs.iter().cloned());
        let body = form::encode_pairs(&all);
        queue_delivery(
            sb,
            st,
            destination,
            event,
            entity_ids.clone(),
            Some(body),
            "amoCRM-Webhooks/3.0",
        );
    }
}

fn queue_delivery(
    sb: &Shared,
    st: &mut State,
    url: String,
    event: &str,
    entity_ids: Vec<i64>,
    body: Option<String>,
    user_agent: &'static str,
) {
    let id = next(&mut st.ids.delivery);
    let request_id = uuid::Uuid::new_v4().to_string();
    st.deliveries.push(Delivery {
        id,
        destination: url.clone(),
        event: event.into(),
        entity_ids,
        request_id: request_id.clone(),
        body: body.clone().unwrap_or_default(),
        attempts: 0,
        statuses: Vec::new(),
        delivered: false,
        finished: false,
        last_error: None,
        queued_at_ms: sb.clock.now_ms(),
    });
    // The receiver lives as long as the server; a send after shutdown is simply dropped.
    let _ = sb.hooks.send(Outgoing {
        delivery_id: id,
        url,
        body,
        request_id,
        user_agent,
    });
}

/// Sends the hooks for lead changes made by one call (one request per action and destination,
/// every lead of the call in it, in order).
pub fn leads_changed(sb: &Shared, st: &mut State, changes: &[(i64, LeadChange)]) {
    let mut by_action: BTreeMap<&str, Vec<(i64, Option<i64>)>> = BTreeMap::new();
    for &(id, change) in changes {
        match change {
            LeadChange::Added => by_action.entry("add").or_default().push((id, None)),
            LeadChange::Updated { old_status_id } => {
                by_action
                    .entry("update")
                    .or_default()
                    .push((id, old_status_id));
                if let Some(old) = old_status_id {
                    by_action.entry("status").or_default().push((id, Some(old)));
                }
            }
        }
    }
    // amoCRM reports status first, then the update that carried it.
    for action in ["add", "status", "update"] {
        let Some(items) = by_action.get(action) else {
            continue;
        };
        let mut pairs = Vec::new();
        for (i, (id, old)) in items.iter().enumerate() {
            if let Some(lead) = st.leads.get(id) {
                let prefix = format!("leads[{action}][{i}]");
                pairs.extend(lead_pairs(st, &sb.cfg, &prefix, lead, *old));
            }
        }
        let ids = items.iter().map(|(id, _)| *id).collect();
        enqueue(
            sb,
            st,
            &format!("{action}_lead"),
            &format!("leads[{action}]"),
            ids,
            &pairs,
        );
    }
}

/// Sends `contacts[add]` hooks for contacts created by one call.
pub fn contacts_added(sb: &Shared, st: &mut State, ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    let mut pairs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(contact) = st.contacts.get(id) {
            pairs.extend(contact_pairs(
                st,
                &sb.cfg,
                &format!("contacts[add][{i}]"),
                contact,
            ));
        }
    }
    enqueue(sb, st, "add_contact", "contacts[add]", ids.to_vec(), &pairs);
}

/// The signed `GET` amoCRM makes when an admin revokes the integration.
pub fn integration_revoked(sb: &Shared, st: &mut State) {
    let Some(base) = sb.cfg.revoke_hook_url.clone() else {
        return;
    };
    let query = form::encode_pairs(&[
        ("client_uuid", sb.cfg.client_id.clone()),
        ("account_id", sb.cfg.account_id.to_string()),
        ("signature", revoke_hook_signature(&sb.cfg)),
    ]);
    let sep = if base.contains('?') { '&' } else { '?' };
    queue_delivery(
        sb,
        st,
        format!("{base}{sep}{query}"),
        "integration_revoked",
        Vec::new(),
        None,
        "amoService-oAuth-Code-Sender/1.0",
    );
}

/// Runs until the sandbox is dropped: takes queued deliveries and sends each in its own task.
pub async fn run_sender(sb: Weak<Shared>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let client = match reqwest::Client::builder().no_proxy().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook sender: cannot build an HTTP client");
            return;
        }
    };
    while let Some(out) = rx.recv().await {
        tokio::spawn(deliver(sb.clone(), client.clone(), out));
    }
}

async fn deliver(sb: Weak<Shared>, client: reqwest::Client, out: Outgoing) {
    let Some((timeout, delays)) = sb.upgrade().map(|s| {
        (
            Duration::from_millis(s.cfg.webhook_timeout_ms),
            s.cfg.webhook_retry_delays_ms.clone(),
        )
    }) else {
        return;
    };
    let mut pauses = delays.into_iter();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let request = match &out.body {
            Some(body) => client
                .post(&out.url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("X-Amocrm-Requestid", &out.request_id)
                .body(body.clone()),
            None => client.get(&out.url),
        };
        let result = request
            .header("User-Agent", out.user_agent)
            .timeout(timeout)
            .send()
            .await;
        let (status, error) = match result {
            Ok(res) => (Some(res.status().as_u16()), None),
            Err(e) if e.is_timeout() => (None, Some("timed out".to_string())),
            Err(e) => (None, Some(format!("connection failed: {e}"))),
        };
        // amoCRM counts 100–299 as delivered.
        let delivered = status.is_some_and(|s| (100..300).contains(&s));
        let pause = if delivered { None } else { pauses.next() };
        let last = pause.is_none();
        let Some(shared) = sb.upgrade() else {
            return;
        };
        {
            let mut st = shared.lock();
            if let Some(d) = st.deliveries.iter_mut().find(|d| d.id == out.delivery_id) {
                d.attempts += 1;
                d.statuses.push(status);
                d.delivered = delivered;
                d.finished = last;
                d.last_error = error.clone().or_else(|| {
                    (!delivered).then(|| format!("HTTP {}", status.unwrap_or_default()))
                });
            }
        }
        tracing::info!(
            delivery = out.delivery_id,
            attempt,
            status = status.unwrap_or_default(),
            delivered,
            "webhook attempt"
        );
        drop(shared);
        match pause {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => return,
        }
    }
}
