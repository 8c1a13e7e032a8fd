//! An account with a past, as the real one meets the integration on day one: deals won before
//! our webhook existed (most with serial, model and Telegram ID, some without), lost and open
//! deals, contacts whose phones managers typed by hand (`8 (916) …`, `+7 916 …`) and e-mails
//! with capitals, and the old system's webhook subscription without a token.
//!
//! Everything is dated in the past and made by the manager, never by the integration's user,
//! so a test can tell what the integration did from what was already there.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{Contact, FieldValues, LOST_STATUS_ID, Lead, Subscription, WON_STATUS_ID};
use crate::seed::{
    FIELD_EMAIL, FIELD_MODEL, FIELD_PHONE, FIELD_SERIAL, FIELD_TELEGRAM_ID, MAIN_PIPELINE_ID,
    MANAGER_USER_ID, NEW_REQUEST_STATUS_ID,
};
use crate::state::{Sb, next};

/// The old system's webhook destination: the redirect URI, without our `?token=`.
pub const OLD_WEBHOOK_DESTINATION: &str = "https://api.td-rss.ru/webhook/amocrm";

/// How much history to make. Counts are of deals; each won deal has its own contact.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct History {
    /// Won, with serial number, model and Telegram ID.
    pub won: usize,
    /// Won, but the serial number was never filled in.
    pub won_without_serial: usize,
    /// Won, but without the customer's Telegram ID.
    pub won_without_telegram: usize,
    pub lost: usize,
    /// Still at «Заявка».
    pub open: usize,
    /// The old system's token-less subscription to `OLD_WEBHOOK_DESTINATION`.
    pub old_webhook: bool,
    /// How far back the oldest deal was closed, in days.
    pub span_days: i64,
}

impl Default for History {
    fn default() -> Self {
        History {
            won: 20,
            won_without_serial: 2,
            won_without_telegram: 2,
            lost: 5,
            open: 5,
            old_webhook: true,
            span_days: 700,
        }
    }
}

/// What was made, so a test can check what the integration did with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Made {
    /// `(deal id, serial, telegram id)` of the complete won deals.
    pub won: Vec<(i64, String, i64)>,
    pub won_without_serial: Vec<i64>,
    pub won_without_telegram: Vec<i64>,
    pub lost: Vec<i64>,
    pub open: Vec<i64>,
    /// `(contact id, phone as typed, national number, e-mail as typed)`.
    pub contacts: Vec<(i64, String, String, String)>,
}

/// The ways people type one Russian mobile number (`national` is its ten digits).
fn typed_phone(i: usize, national: &str) -> String {
    let (a, b, c, d) = (
        &national[..3],
        &national[3..6],
        &national[6..8],
        &national[8..],
    );
    match i % 5 {
        0 => format!("8 ({a}) {b}-{c}-{d}"),
        1 => format!("+7 {a} {b} {c} {d}"),
        2 => format!("8{national}"),
        3 => format!("+7 ({a}) {b}-{c}{d}"),
        _ => format!("7-{a}-{b}-{c}-{d}"),
    }
}

/// Adds the history to the sandbox's account.
pub fn seed(sb: &Sb, spec: &History) -> Made {
    let now = sb.clock.now();
    let mut st = sb.lock();
    let mut made = Made::default();
    let total = spec.won + spec.won_without_serial + spec.won_without_telegram;
    let day = 86_400;
    let span = spec.span_days.max(1) * day;
    for i in 0..total {
        let national = format!("916{:07}", 1_000_000 + i);
        let phone = typed_phone(i, &national);
        let email = format!("Client.{i}@Example-Zavod.RU");
        let contact_id = next(&mut st.ids.contact);
        // Spread over the span, oldest first, at least a day ago.
        let closed_at = now - span + (span - day) * i as i64 / total.max(1) as i64;
        let created_at = closed_at - 14 * day;
        st.contacts.insert(
            contact_id,
            Contact {
                id: contact_id,
                name: format!("Покупатель {i}"),
                first_name: format!("Покупатель {i}"),
                last_name: String::new(),
                responsible_user_id: MANAGER_USER_ID,
                created_by: MANAGER_USER_ID,
                updated_by: MANAGER_USER_ID,
                created_at,
                updated_at: created_at,
                custom_fields: vec![
                    FieldValues {
                        field_id: FIELD_PHONE,
                        values: vec![
                            json!({ "value": phone, "enum_id": 1513001, "enum_code": "WORK" }),
                        ],
                    },
                    FieldValues {
                        field_id: FIELD_EMAIL,
                        values: vec![
                            json!({ "value": email, "enum_id": 1513013, "enum_code": "WORK" }),
                        ],
                    },
                ],
                tag_ids: Vec::new(),
                company_ids: Vec::new(),
            },
        );
        made.contacts
            .push((contact_id, phone, national.clone(), email));
        let serial = format!("SN-OLD-{i:05}");
        let telegram_id = 700_000_000 + i as i64;
        let (with_serial, with_telegram) = if i < spec.won {
            (true, true)
        } else if i < spec.won + spec.won_without_serial {
            (false, true)
        } else {
            (true, false)
        };
        let text = |id: i64, v: String| FieldValues {
            field_id: id,
            values: vec![json!({ "value": v })],
        };
        let mut fields = vec![text(FIELD_MODEL, format!("16К20 вариант {}", i % 4))];
        if with_serial {
            fields.push(text(FIELD_SERIAL, serial.clone()));
        }
        if with_telegram {
            fields.push(text(FIELD_TELEGRAM_ID, telegram_id.to_string()));
        }
        let id = insert_deal(
            &mut st,
            format!("Продажа станка №{i}"),
            WON_STATUS_ID,
            created_at,
            Some(closed_at),
            fields,
            vec![contact_id],
        );
        match (with_serial, with_telegram) {
            (true, true) => made.won.push((id, serial, telegram_id)),
            (false, _) => made.won_without_serial.push(id),
            (true, false) => made.won_without_telegram.push(id),
        }
    }
    for i in 0..spec.lost {
        let at = now - span / 2 + i as i64 * day;
        let serial = FieldValues {
            field_id: FIELD_SERIAL,
            values: vec![json!({ "value": format!("SN-LOST-{i:05}") })],
        };
        let id = insert_deal(
            &mut st,
            format!("Не сложилось №{i}"),
            LOST_STATUS_ID,
            at - 7 * day,
            Some(at),
            vec![serial],
            Vec::new(),
        );
        made.lost.push(id);
    }
    for i in 0..spec.open {
        let at = now - (i as i64 + 1) * day;
        let id = insert_deal(
            &mut st,
            format!("В работе №{i}"),
            NEW_REQUEST_STATUS_ID,
            at,
            None,
            Vec::new(),
            Vec::new(),
        );
        made.open.push(id);
    }
    if spec.old_webhook
        && !st
            .subscriptions
            .iter()
            .any(|s| s.destination == OLD_WEBHOOK_DESTINATION)
    {
        let id = next(&mut st.ids.subscription);
        st.subscriptions.push(Subscription {
            id,
            destination: OLD_WEBHOOK_DESTINATION.into(),
            settings: vec![
                "add_lead".into(),
                "update_lead".into(),
                "status_lead".into(),
            ],
            sort: 1,
            created_at: now - span,
            updated_at: now - span,
        });
    }
    made
}

fn insert_deal(
    st: &mut crate::state::State,
    name: String,
    status_id: i64,
    created_at: i64,
    closed_at: Option<i64>,
    custom_fields: Vec<FieldValues>,
    contact_ids: Vec<i64>,
) -> i64 {
    let id = next(&mut st.ids.lead);
    st.leads.insert(
        id,
        Lead {
            id,
            name,
            price: 1_250_000,
            responsible_user_id: MANAGER_USER_ID,
            status_id,
            pipeline_id: MAIN_PIPELINE_ID,
            loss_reason_id: None,
            created_by: MANAGER_USER_ID,
            updated_by: MANAGER_USER_ID,
            created_at,
            updated_at: closed_at.unwrap_or(created_at),
            closed_at,
            custom_fields,
            tag_ids: Vec::new(),
            contact_ids,
            company_ids: Vec::new(),
        },
    );
    id
}

/// `Made` as JSON for the control API.
pub fn summary(made: &Made) -> Value {
    json!({
        "won": made.won.iter().map(|(id, serial, tg)| json!({"id": id, "serial": serial, "telegram_id": tg})).collect::<Vec<_>>(),
        "won_without_serial": made.won_without_serial,
        "won_without_telegram": made.won_without_telegram,
        "lost": made.lost,
        "open": made.open,
        "contacts": made.contacts.len(),
    })
}
