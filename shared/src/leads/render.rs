//! Texts people read: the amoCRM lead title and note, and the sales mail (Russian).
//!
//! One list of facts about a lead feeds every text, so the note, the plain mail and the HTML mail
//! never disagree. Every customer string is HTML-escaped in the HTML part; the subject and title are
//! forced onto one line so no header can be injected.

use chrono::FixedOffset;
use html_escape::encode_quoted_attribute as esc;

use super::phone::display_phone;
use super::{CartItem, Lead};
use crate::ports::MailMessage;

/// The tag of a deal whose Telegram ID nobody vouched for.
pub const UNVERIFIED_TELEGRAM_TAG: &str = "Telegram ID не подтверждён";

/// What the managers read beside such an ID, in the note and the mail.
const UNVERIFIED_TELEGRAM_WARNING: &str = "НЕ ПОДТВЕРЖДЁН: указан в форме, а не передан \
     Telegram. Проверьте его у клиента, прежде чем закрывать сделку как успешную: оборудование \
     будет записано в Цифровой паспорт этого ID.";

/// Longest customer name shown in a title or subject (the full name is in the body).
const NAME_IN_TITLE: usize = 80;

/// Money for people: `12 345,50 ₽` (groups of three split by a plain space, comma before kopecks).
pub fn format_rub(kopecks: i64) -> String {
    let sign = if kopecks < 0 { "-" } else { "" };
    let abs = kopecks.unsigned_abs();
    let roubles = (abs / 100).to_string();
    let mut grouped = String::with_capacity(roubles.len() + roubles.len() / 3);
    for (i, digit) in roubles.chars().enumerate() {
        if i > 0 && (roubles.len() - i).is_multiple_of(3) {
            grouped.push(' ');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped},{:02} ₽", abs % 100)
}

/// The amoCRM lead name. Carries our lead id so a retry can find the lead it created earlier.
pub fn lead_title(lead: &Lead) -> String {
    let r = &lead.request;
    one_line(&format!(
        "{}: {} ({}) — заявка {}",
        capitalised(r.intent.title_ru()),
        clip(&r.name, NAME_IN_TITLE),
        r.source.title_ru(),
        lead.id
    ))
}

/// The marker that ends every note; delivery looks for it to avoid adding a note twice.
pub fn note_marker(lead: &Lead) -> String {
    format!("Заявка {}", lead.id)
}

/// The amoCRM note: everything the customer sent, readable; the last line is [`note_marker`].
pub fn note_text(lead: &Lead) -> String {
    let mut out = format!("{}\n", headline(lead));
    out.push_str(&plain_body(lead));
    out.push('\n');
    out.push_str(&note_marker(lead));
    out
}

/// The copy of a new lead for the sales mailbox. `to` may list several addresses, comma-separated.
pub fn sales_mail(
    lead: &Lead,
    amo_lead_id: Option<i64>,
    amo_base_url: &str,
    to: &str,
) -> MailMessage {
    let r = &lead.request;
    let subject = one_line(&format!(
        "Новая заявка: {} — {} ({}) [{}]",
        r.intent.title_ru(),
        clip(&r.name, NAME_IN_TITLE),
        r.source.title_ru(),
        lead.id
    ));
    let amo_url =
        amo_lead_id.map(|id| format!("{}/leads/detail/{id}", amo_base_url.trim_end_matches('/')));

    let mut text = format!("{}\n", headline(lead));
    if let Some(url) = &amo_url {
        text.push_str(&format!("Сделка в amoCRM: {url}\n\n"));
    }
    text.push_str(&plain_body(lead));
    text.push('\n');
    text.push_str(&note_marker(lead));
    text.push('\n');

    MailMessage {
        to: to
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect(),
        reply_to: r.email.clone().filter(|e| is_plain_address(e)),
        html: html_body(lead, &subject, amo_url.as_deref()),
        subject,
        text,
        lead_id: Some(lead.id.clone()),
    }
}

/// `Заявка: сервис (сайт)` — what kind of lead, from where.
fn headline(lead: &Lead) -> String {
    let r = &lead.request;
    format!(
        "Новая заявка: {} ({})",
        r.intent.title_ru(),
        r.source.title_ru()
    )
}

/// Label and value pairs of the lead, in reading order (contacts first).
fn contact_rows(lead: &Lead) -> Vec<(&'static str, String)> {
    let r = &lead.request;
    let mut rows = vec![("Имя", r.name.clone())];
    if let Some(phone) = &r.phone {
        rows.push(("Телефон", display_phone(phone)));
    }
    if let Some(email) = &r.email {
        rows.push(("E-mail", email.clone()));
    }
    if let Some(id) = r.telegram_id {
        let value = if r.telegram_unverified {
            format!("{id} — {UNVERIFIED_TELEGRAM_WARNING}")
        } else {
            id.to_string()
        };
        rows.push(("Telegram ID", value));
    }
    rows
}

fn equipment_rows(lead: &Lead) -> Vec<(&'static str, String)> {
    let Some(eq) = &lead.request.equipment else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    if let Some(model) = &eq.model {
        rows.push(("Модель оборудования", model.clone()));
    }
    if let Some(serial) = &eq.serial {
        rows.push(("Серийный номер", serial.clone()));
    }
    rows
}

fn utm_line(lead: &Lead) -> Option<String> {
    let utm = &lead.request.utm;
    (!utm.is_empty()).then(|| {
        utm.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Arrival time as the Moscow office reads it (UTC+3, no daylight saving since 2014).
fn received_msk(lead: &Lead) -> String {
    let msk = FixedOffset::east_opt(3 * 3600).expect("UTC+3 is a valid offset");
    format!(
        "{} МСК",
        lead.received_at
            .with_timezone(&msk)
            .format("%d.%m.%Y %H:%M")
    )
}

fn item_label(item: &CartItem) -> String {
    match &item.sku {
        Some(sku) => format!("{} (арт. {sku})", item.name),
        None => item.name.clone(),
    }
}

/// The body shared by the note and the plain-text mail (without headline and marker).
fn plain_body(lead: &Lead) -> String {
    let r = &lead.request;
    let mut out = String::new();
    for (label, value) in contact_rows(lead) {
        out.push_str(&format!("{label}: {value}\n"));
    }
    if let Some(message) = &r.message {
        out.push_str(&format!("\nСообщение:\n{message}\n"));
    }
    let equipment = equipment_rows(lead);
    if !equipment.is_empty() {
        out.push('\n');
        for (label, value) in equipment {
            out.push_str(&format!("{label}: {value}\n"));
        }
    }
    if !r.items.is_empty() {
        out.push_str("\nКорзина:\n");
        for (n, item) in r.items.iter().enumerate() {
            out.push_str(&format!(
                "{}. {} — {} × {} = {}\n",
                n + 1,
                item_label(item),
                item.qty,
                format_rub(item.price_kopecks),
                format_rub(item.line_total_kopecks())
            ));
        }
        out.push_str(&format!("Итого: {}\n", format_rub(r.total_kopecks())));
    }
    out.push('\n');
    if let Some(url) = &r.page_url {
        out.push_str(&format!("Страница: {url}\n"));
    }
    if let Some(utm) = utm_line(lead) {
        out.push_str(&format!("UTM: {utm}\n"));
    }
    out.push_str(&format!("Получена: {}\n", received_msk(lead)));
    out
}

const CELL: &str = "padding:4px 12px 4px 0;vertical-align:top";
const MONEY: &str = "padding:4px 0 4px 12px;text-align:right;white-space:nowrap";

fn html_body(lead: &Lead, subject: &str, amo_url: Option<&str>) -> String {
    let r = &lead.request;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"ru\"><head><meta charset=\"utf-8\">");
    h.push_str(&format!("<title>{}</title></head>\n", esc(subject)));
    h.push_str(
        "<body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222\">\n",
    );
    h.push_str(&format!(
        "<h2 style=\"margin:0 0 12px\">{}</h2>\n",
        esc(&headline(lead))
    ));
    if let Some(url) = amo_url.and_then(safe_href) {
        h.push_str(&format!(
            "<p><a href=\"{}\">Открыть сделку в amoCRM</a></p>\n",
            esc(url)
        ));
    }

    h.push_str("<table style=\"border-collapse:collapse\">\n");
    for (label, value) in contact_rows(lead).into_iter().chain(equipment_rows(lead)) {
        let shown = match label {
            "Телефон" => r
                .phone
                .as_deref()
                .filter(|p| is_e164(p))
                .map(|p| format!("<a href=\"tel:{}\">{}</a>", esc(p), esc(&value)))
                .unwrap_or_else(|| esc(&value).into_owned()),
            "E-mail" if is_mailto_safe(&value) => {
                format!("<a href=\"mailto:{0}\">{0}</a>", esc(&value))
            }
            _ => esc(&value).into_owned(),
        };
        h.push_str(&format!(
            "<tr><th style=\"{CELL};text-align:left\">{}</th><td style=\"{CELL}\">{shown}</td></tr>\n",
            esc(label)
        ));
    }
    h.push_str("</table>\n");

    if let Some(message) = &r.message {
        h.push_str("<h3 style=\"margin:16px 0 4px\">Сообщение</h3>\n");
        h.push_str(&format!(
            "<p style=\"margin:0\">{}</p>\n",
            esc(message).replace('\n', "<br>\n")
        ));
    }

    if !r.items.is_empty() {
        h.push_str("<h3 style=\"margin:16px 0 4px\">Корзина</h3>\n");
        h.push_str("<table style=\"border-collapse:collapse\">\n<tr>");
        for head in ["№", "Товар", "Артикул"] {
            h.push_str(&format!("<th style=\"{CELL};text-align:left\">{head}</th>"));
        }
        for head in ["Кол-во", "Цена", "Сумма"] {
            h.push_str(&format!("<th style=\"{MONEY}\">{head}</th>"));
        }
        h.push_str("</tr>\n");
        for (n, item) in r.items.iter().enumerate() {
            h.push_str(&format!(
                "<tr><td style=\"{CELL}\">{}</td><td style=\"{CELL}\">{}</td><td style=\"{CELL}\">{}</td>\
                 <td style=\"{MONEY}\">{}</td><td style=\"{MONEY}\">{}</td><td style=\"{MONEY}\">{}</td></tr>\n",
                n + 1,
                esc(&item.name),
                esc(item.sku.as_deref().unwrap_or("")),
                item.qty,
                format_rub(item.price_kopecks),
                format_rub(item.line_total_kopecks())
            ));
        }
        h.push_str(&format!(
            "<tr><th colspan=\"5\" style=\"{CELL};text-align:right\">Итого</th><th style=\"{MONEY}\">{}</th></tr>\n",
            format_rub(r.total_kopecks())
        ));
        h.push_str("</table>\n");
    }

    h.push_str("<p style=\"margin:16px 0 0\">");
    if let Some(url) = &r.page_url {
        let link = match safe_href(url) {
            Some(href) => format!("<a href=\"{}\">{}</a>", esc(href), esc(url)),
            None => esc(url).into_owned(),
        };
        h.push_str(&format!("Страница: {link}<br>\n"));
    }
    if let Some(utm) = utm_line(lead) {
        h.push_str(&format!("UTM: {}<br>\n", esc(&utm)));
    }
    h.push_str(&format!("Получена: {}</p>\n", esc(&received_msk(lead))));
    h.push_str(&format!(
        "<p style=\"color:#888;font-size:12px\">{}</p>\n</body></html>\n",
        esc(&note_marker(lead))
    ));
    h
}

/// A link target only when it is plainly `http(s)://` and carries nothing that could break out.
fn safe_href(url: &str) -> Option<&str> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let http = lower.starts_with("https://") || lower.starts_with("http://");
    let clean = !url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '`'));
    (http && clean).then_some(url)
}

fn is_e164(phone: &str) -> bool {
    phone
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Safe as a header value: one `@`, nothing that needs quoting, no whitespace or control
/// characters (intake guarantees this; the mail checks again rather than trust its caller).
fn is_plain_address(email: &str) -> bool {
    email.matches('@').count() == 1
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"<>()[]\\,;:".contains(c))
}

/// Safe inside `mailto:`: letters, digits and `.-_+@` only, so no `?cc=` or quote can ride along.
fn is_mailto_safe(email: &str) -> bool {
    is_plain_address(email)
        && email
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '@'))
}

/// Collapses every line break, tab and control character into single spaces.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
