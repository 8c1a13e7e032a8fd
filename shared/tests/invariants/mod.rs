//! What must hold for ANY input of the parsers that read untrusted bytes: the amoCRM webhook
//! form, the lead intake (JSON and form), Telegram initData and amoCRM error bodies. Each check
//! panics on a violation. Two drivers feed them: the proptest suite (`tests/properties.rs`, part
//! of `make test`) and the cargo-fuzz targets (`fuzz/`, `make fuzz`), which include this file by
//! path, so both test exactly the same properties.

use serde_json::{Value, json};
use shared::amocrm::error::{FailedResponse, Problem, ResponseContext};
use shared::amocrm::webhook::{Webhook, parse_webhook};
use shared::amocrm::{CrmError, CrmErrorKind, oauth_error};
use shared::config::AmoConfig;
use shared::leads::LeadRequest;
use shared::leads::intake::{
    Intake, IntakeError, MAX_PRICE_KOPECKS, parse_form, parse_json, parse_roubles,
};
use shared::leads::phone::normalize_phone;
use shared::telegram::{DEFAULT_MAX_AGE_SECS, InitDataError, sign_init_data, verify_init_data};

// ---------------------------------------------------------------------------------------------
// amoCRM webhooks

/// Never panics; a parsed webhook survives the JSON round trip the inbox makes, and a body reads
/// the same however its pairs are percent-encoded.
pub fn webhook(body: &[u8]) {
    let Ok(hook) = parse_webhook(body) else {
        return;
    };
    let stored = serde_json::to_string(&hook).expect("a webhook serialises");
    let read_back: Webhook = serde_json::from_str(&stored).expect("a stored webhook reads back");
    assert_eq!(read_back, hook, "JSON round trip changed the webhook");

    let mut reencoded = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(body.trim_ascii()) {
        reencoded.append_pair(&key, &value);
    }
    let reencoded = reencoded.finish();
    assert_eq!(
        parse_webhook(reencoded.as_bytes()),
        Ok(hook),
        "the same pairs, percent-encoded, read differently: {reencoded:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Lead intake

/// Never panics; see [`intake_result`].
pub fn intake_json(body: &[u8]) {
    intake_result(parse_json(body));
}

/// Never panics; see [`intake_result`].
pub fn intake_form(body: &[u8]) {
    intake_result(parse_form(body));
}

/// Errors always name a field and say why; an accepted lead passes [`lead_request`].
pub fn intake_result(result: Result<Intake, IntakeError>) {
    match result {
        Ok(Intake::Lead(lead)) => lead_request(&lead),
        Ok(Intake::Spam) => {}
        Err(IntakeError::Malformed(why)) => assert!(!why.trim().is_empty()),
        Err(IntakeError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "Invalid without a field");
            for e in errors {
                assert!(!e.field.trim().is_empty(), "error without a field: {e:?}");
                assert!(
                    !e.message.trim().is_empty(),
                    "error without a message: {e:?}"
                );
            }
        }
    }
}

/// A validated lead: phone in E.164, cart lines in range, totals free of overflow, and the lead
/// re-sent as the site would send it (JSON, and a form when a form can carry it) reads back the
/// same.
pub fn lead_request(lead: &LeadRequest) {
    if let Some(phone) = &lead.phone {
        assert!(is_e164(phone), "phone {phone:?} is not E.164");
        assert_eq!(normalize_phone(phone).as_deref(), Ok(phone.as_str()));
    }
    for item in &lead.items {
        assert!((1..=10_000).contains(&item.qty), "qty {}", item.qty);
        assert!((0..=MAX_PRICE_KOPECKS).contains(&item.price_kopecks));
    }
    let exact_total = lead.items.iter().try_fold(0_i64, |sum, item| {
        item.price_kopecks
            .checked_mul(i64::from(item.qty))
            .and_then(|line| sum.checked_add(line))
    });
    assert_eq!(
        exact_total,
        Some(lead.total_kopecks()),
        "cart total overflows"
    );
    assert!(lead.total_roubles() >= 0);

    let again = json_body(lead).to_string();
    assert_eq!(
        parse_json(again.as_bytes()),
        Ok(Intake::Lead(lead.clone())),
        "the lead re-sent as JSON reads differently: {again}"
    );
    if let Some(form) = form_body(lead) {
        assert_eq!(
            parse_form(form.as_bytes()),
            Ok(Intake::Lead(lead.clone())),
            "the lead re-sent as a form reads differently: {form}"
        );
    }
}

/// `+` and 8 to 15 digits, the first not 0.
pub fn is_e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// A price read from any text is in range and reads back the same from its canonical spelling.
pub fn money(text: &str) {
    if let Ok(kopecks) = parse_roubles(text) {
        assert!((0..=MAX_PRICE_KOPECKS).contains(&kopecks), "{kopecks}");
        assert_eq!(parse_roubles(&roubles(kopecks)), Ok(kopecks));
    }
}

fn roubles(kopecks: i64) -> String {
    format!("{}.{:02}", kopecks / 100, kopecks % 100)
}

/// The lead as the JSON body of `POST /leads` (prices in roubles, as the site sends them).
pub fn json_body(lead: &LeadRequest) -> Value {
    let items: Vec<Value> = lead
        .items
        .iter()
        .map(|item| {
            json!({
                "sku": item.sku,
                "name": item.name,
                "qty": item.qty,
                "price": roubles(item.price_kopecks),
            })
        })
        .collect();
    json!({
        "source": lead.source.as_str(),
        "intent": lead.intent.as_str(),
        "name": lead.name,
        "phone": lead.phone,
        "email": lead.email,
        "telegram_id": lead.telegram_id,
        "message": lead.message,
        "equipment": lead.equipment.as_ref().map(|e| json!({"model": e.model, "serial": e.serial})),
        "items": items,
        "page_url": lead.page_url,
        "utm": lead.utm,
    })
}

/// The lead as an HTML form body, or `None` when its UTM keys cannot be form keys (a bracket
/// in a key, or only numbers, which a form reads as a list).
pub fn form_body(lead: &LeadRequest) -> Option<String> {
    let is_index = |k: &str| k.bytes().all(|b| b.is_ascii_digit()) && k.parse::<u64>().is_ok();
    let keys_ok = lead.utm.keys().all(|k| !k.contains(['[', ']']))
        && (lead.utm.is_empty() || !lead.utm.keys().all(|k| is_index(k)));
    if !keys_ok {
        return None;
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            form.append_pair(key, value);
        }
    };
    put("source", Some(lead.source.as_str()));
    put("intent", Some(lead.intent.as_str()));
    put("name", Some(&lead.name));
    put("phone", lead.phone.as_deref());
    put("email", lead.email.as_deref());
    put(
        "telegram_id",
        lead.telegram_id.map(|id| id.to_string()).as_deref(),
    );
    put("message", lead.message.as_deref());
    if let Some(equipment) = &lead.equipment {
        put("equipment[model]", equipment.model.as_deref());
        put("equipment[serial]", equipment.serial.as_deref());
    }
    for (i, item) in lead.items.iter().enumerate() {
        put(&format!("items[{i}][sku]"), item.sku.as_deref());
        put(&format!("items[{i}][name]"), Some(&item.name));
        put(&format!("items[{i}][qty]"), Some(&item.qty.to_string()));
        put(
            &format!("items[{i}][price]"),
            Some(&roubles(item.price_kopecks)),
        );
    }
    put("page_url", lead.page_url.as_deref());
    for (key, value) in &lead.utm {
        put(&format!("utm[{key}]"), Some(value));
    }
    Some(form.finish())
}

// ---------------------------------------------------------------------------------------------
// Telegram initData

/// The bot token and clock the checks verify with: those of the unit tests' python-signed sample,
/// so that sample (a fuzz seed) passes the hash and reaches the deeper checks.
pub const BOT_TOKEN: &str = "123456789:TEST-not-a-real-token";
pub const NOW: i64 = 1_700_000_010;

/// Never panics, whatever the string.
pub fn init_data(text: &str) {
    let _ = verify_init_data(text, BOT_TOKEN, NOW, DEFAULT_MAX_AGE_SECS);
}

/// One byte-level edit of a signed initData string.
#[derive(Debug, Clone, Copy)]
pub enum Edit {
    Replace { at: usize, byte: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
}

/// `extra` fields signed beside a fresh `auth_date` and a `user`: verifies as that user; after
/// `edits` it is accepted only if the edits changed nothing the verifier decodes (percent
/// spelling, hash hex case, field order, blank pairs), never for other data.
pub fn init_data_edits(user_id: i64, age_secs: i64, extra: &[(String, String)], edits: &[Edit]) {
    let auth_date = (NOW - age_secs).to_string();
    let user = json!({"id": user_id, "first_name": "Иван"}).to_string();
    let mut fields: Vec<(&str, &str)> = vec![("auth_date", &auth_date), ("user", &user)];
    for (key, value) in extra {
        if key != "hash" && !fields.iter().any(|(k, _)| k == key) {
            fields.push((key, value));
        }
    }
    let signed = sign_init_data(&fields, BOT_TOKEN);
    let verified = verify_init_data(&signed, BOT_TOKEN, NOW, DEFAULT_MAX_AGE_SECS);
    let fresh = (-60..=DEFAULT_MAX_AGE_SECS).contains(&age_secs);
    // A line break in a field, or `=` in a key, makes the data-check-string ambiguous.
    let ambiguous = fields
        .iter()
        .any(|(k, v)| k.contains(['\n', '=']) || v.contains('\n'));
    match &verified {
        Ok(u) => assert!(
            fresh && !ambiguous && u.id == user_id,
            "accepted {u:?} from {signed:?}"
        ),
        Err(InitDataError::Malformed { .. }) if ambiguous => {}
        Err(e) => assert!(!fresh, "signed initData refused ({e}): {signed:?}"),
    }

    let mut bytes = signed.clone().into_bytes();
    for edit in edits {
        apply(&mut bytes, *edit);
    }
    let edited = String::from_utf8_lossy(&bytes);
    if let Ok(user) = verify_init_data(&edited, BOT_TOKEN, NOW, DEFAULT_MAX_AGE_SECS) {
        // Telegram never signs an ambiguous set, so from one the most an edit may reach is
        // the one unambiguous reading of the same signed lines.
        let reading = |text: &str| match ambiguous {
            false => decoded_fields(text),
            true => vec![(check_lines(text), String::new())],
        };
        assert_eq!(
            reading(&edited),
            reading(&signed),
            "edited initData accepted as {user:?} with other data: {edited:?} (signed {signed:?})"
        );
    }
}

fn apply(bytes: &mut Vec<u8>, edit: Edit) {
    let len = bytes.len();
    match edit {
        Edit::Replace { at, byte } if len > 0 => bytes[at % len] = byte,
        Edit::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
        Edit::Remove { at } if len > 0 => {
            bytes.remove(at % len);
        }
        _ => {}
    }
}

/// The decoded fields but `hash`, sorted: what the application can read from initData.
/// The data-check-string the signature covers.
fn check_lines(init_data: &str) -> String {
    let lines: Vec<String> = decoded_fields(init_data)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    lines.join("\n")
}

fn decoded_fields(init_data: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = form_urlencoded::parse(init_data.trim().as_bytes())
        .filter(|(k, _)| k != "hash")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    fields.sort();
    fields
}

// ---------------------------------------------------------------------------------------------
// amoCRM error bodies

/// Planted by the drivers into error bodies; no 16-character piece of them may come out.
/// A JWT-shaped access token (amoCRM's are several hundred characters; 80 suffice)…
pub const PLANTED_TOKEN: &str =
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJmdXp6IiwianRpIjoicGxhbnRlZCJ9xQ7";
/// …and a short one after `Bearer`.
pub const PLANTED_BEARER: &str = " Bearer Zk9mYXJfc2VjcmV0X3Rva2Vu ";

/// Never panics; the hint is never empty, the kind follows the status, and no planted token
/// appears in what is stored or shown (message, hint, validation errors).
pub fn crm_error(status: u16, content_type: Option<&str>, retry_after: Option<&str>, body: &str) {
    let _ = Problem::parse(body);
    let cfg = config();
    let err = CrmError::from_response(
        &FailedResponse {
            status,
            content_type,
            retry_after_header: retry_after,
            body,
        },
        &ResponseContext {
            endpoint: "POST /api/v4/leads/complex",
            config: &cfg,
            request_body: Some(&json!([{"custom_fields_values": [{"field_id": 712631}]}])),
        },
    );
    let expected = match status {
        401 => CrmErrorKind::Unauthorized,
        // Our address refused (whitelist, ban): never a token problem.
        403 => CrmErrorKind::Blocked,
        429 => CrmErrorKind::RateLimited,
        s if s >= 500 => CrmErrorKind::Transient,
        _ => CrmErrorKind::Permanent,
    };
    assert_eq!(err.kind, expected, "status {status}");
    assert_eq!(err.status, Some(status));
    assert!(status == 429 || err.retry_after.is_none());
    shown_safely(&err);

    let oauth = oauth_error(status, body, &cfg);
    let expected = match status {
        429 => CrmErrorKind::RateLimited,
        403 => CrmErrorKind::Blocked,
        s if s >= 500 => CrmErrorKind::Transient,
        _ => CrmErrorKind::Unauthorized,
    };
    assert_eq!(oauth.kind, expected, "token endpoint status {status}");
    shown_safely(&oauth);
}

fn shown_safely(err: &CrmError) {
    assert!(!err.message.trim().is_empty(), "empty message: {err:?}");
    assert!(!err.hint.trim().is_empty(), "empty hint: {err:?}");
    let stored = serde_json::to_string(err).expect("a CrmError serialises");
    for planted in [PLANTED_TOKEN, PLANTED_BEARER.trim()] {
        for piece in planted.as_bytes().windows(16) {
            let piece = std::str::from_utf8(piece).expect("ASCII");
            for (what, text) in [
                ("message", &err.message),
                ("hint", &err.hint),
                ("stored", &stored),
            ] {
                assert!(!text.contains(piece), "{what} echoes a token: {text}");
            }
        }
    }
}

/// The production ids of the brief (as the unit tests' `test_config`).
fn config() -> AmoConfig {
    AmoConfig {
        subdomain: "new599bd9d13818a".into(),
        base_url: "https://new599bd9d13818a.amocrm.ru".into(),
        pipeline_id: 10226282,
        status_id: 80953554,
        responsible_user_id: 12380450,
        field_serial: 712629,
        field_model: 712631,
        field_telegram_id: 712633,
        client_id: "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd".into(),
        redirect_uri: "https://api.td-rss.ru/webhook/amocrm".into(),
        requests_per_second: 7,
        timeout_ms: 10_000,
        egress_ip: None,
    }
}
