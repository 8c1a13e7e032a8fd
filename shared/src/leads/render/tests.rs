//! What managers read: money, the title, the note and the mail, and that customer text can
//! never become markup or a second mail header.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};

use super::*;
use crate::leads::fixtures::{accepted, cart_request};
use crate::leads::{Intent, LeadRequest, MachineRef, Source};

const ID: &str = "01JMZ8Q6X0W5T2N3R4S5V6Y7Z8";

fn cart_lead() -> Lead {
    let mut request = cart_request();
    request.items[1].qty = 3;
    request.page_url = Some("https://td-rss.ru/cart?x=1&y=2".into());
    let received_at = Utc.with_ymd_and_hms(2026, 2, 10, 12, 34, 0).unwrap();
    accepted(ID, received_at, request)
}

fn minimal_lead() -> Lead {
    let mut lead = cart_lead();
    lead.request = LeadRequest {
        source: Source::Site,
        intent: Intent::Service,
        name: "Анна".into(),
        phone: None,
        email: None,
        telegram_id: Some(42),
        telegram_unverified: false,
        message: None,
        equipment: None,
        items: Vec::new(),
        page_url: None,
        utm: BTreeMap::new(),
    };
    lead
}

/// Every customer string replaced by markup naming its field.
fn hostile_lead() -> Lead {
    let evil = |field: &str| format!("<script>{field}\"'</script>&");
    let mut lead = cart_lead();
    let r = &mut lead.request;
    r.name = evil("name");
    r.email = Some("o'<b>\"@example.ru".into());
    r.message = Some(evil("message"));
    r.equipment = Some(MachineRef {
        model: Some(evil("model")),
        serial: Some(evil("serial")),
    });
    r.items[0].name = evil("item");
    r.items[0].sku = Some(evil("sku"));
    r.page_url = Some("https://td-rss.ru/\"><script>page</script>".into());
    r.utm = BTreeMap::from([(evil("utmkey"), evil("utmvalue"))]);
    lead
}

#[test]
fn money_is_grouped_with_kopecks_after_a_comma() {
    let cases = [
        (0, "0,00 ₽"),
        (5, "0,05 ₽"),
        (100, "1,00 ₽"),
        (99_999, "999,99 ₽"),
        (100_000, "1 000,00 ₽"),
        (1_234_550, "12 345,50 ₽"),
        (12_345_678_901, "123 456 789,01 ₽"),
        (-150, "-1,50 ₽"),
        (i64::MIN, "-92 233 720 368 547 758,08 ₽"),
    ];
    for (kopecks, shown) in cases {
        assert_eq!(format_rub(kopecks), shown, "{kopecks}");
    }
}

#[test]
fn title_carries_the_lead_id_on_one_line() {
    let mut lead = cart_lead();
    assert_eq!(
        lead_title(&lead),
        format!("Запчасти: Иван Петров (корзина) — заявка {ID}")
    );
    lead.request.name = format!("Иван\r\nBcc: x@evil.ru {}", "я".repeat(300));
    let title = lead_title(&lead);
    assert!(title.contains(ID));
    assert!(!title.contains(['\r', '\n']));
    assert!(title.chars().count() < 150, "{title}");
}

#[test]
fn note_lists_everything_and_ends_with_the_marker() {
    let note = note_text(&cart_lead());
    let expected = [
        "Новая заявка: запчасти (корзина)",
        "Имя: Иван Петров",
        "Телефон: +7 912 345-67-89",
        "E-mail: ivan@example.ru",
        "Telegram ID: 123456789",
        "Сообщение:\nНужны запчасти.\nСрочно.",
        "Модель оборудования: 16К20",
        "Серийный номер: SN-001",
        "Корзина:\n1. Фреза 16 мм (арт. FR-16) — 2 × 1 500,50 ₽ = 3 001,00 ₽\n\
         2. Ремень — 3 × 0,10 ₽ = 0,30 ₽\n\
         Итого: 3 001,30 ₽",
        "Страница: https://td-rss.ru/cart?x=1&y=2",
        "UTM: campaign=spring, source=yandex",
        "Получена: 10.02.2026 15:34 МСК",
    ];
    for part in expected {
        assert!(note.contains(part), "note lacks {part:?}:\n{note}");
    }
    assert_eq!(note.lines().last(), Some(format!("Заявка {ID}").as_str()));
    assert_eq!(note_marker(&cart_lead()), format!("Заявка {ID}"));
}

#[test]
fn note_of_a_bare_lead_has_no_empty_sections() {
    let note = note_text(&minimal_lead());
    for absent in [
        "Сообщение",
        "Корзина",
        "Итого",
        "Модель",
        "Страница",
        "UTM",
        "Телефон",
        "E-mail",
    ] {
        assert!(!note.contains(absent), "{absent} in:\n{note}");
    }
    assert!(note.contains("Telegram ID: 42"));
    assert!(note.ends_with(&format!("Заявка {ID}")));
}

#[test]
fn mail_has_subject_recipients_reply_to_and_amo_link() {
    let mail = sales_mail(
        &cart_lead(),
        Some(987654),
        "https://new599bd9d13818a.amocrm.ru/",
        "zakaz@tdrusstankosbyt.ru, boss@td-rss.ru",
    );
    assert_eq!(
        mail.subject,
        format!("Новая заявка: запчасти — Иван Петров (корзина) [{ID}]")
    );
    assert_eq!(mail.to, ["zakaz@tdrusstankosbyt.ru", "boss@td-rss.ru"]);
    assert_eq!(mail.reply_to.as_deref(), Some("ivan@example.ru"));
    let link = "https://new599bd9d13818a.amocrm.ru/leads/detail/987654";
    assert!(
        mail.html.contains(&format!("<a href=\"{link}\">")),
        "{}",
        mail.html
    );
    assert!(mail.text.contains(link));
}

#[test]
fn mail_without_amo_lead_or_customer_email() {
    let mail = sales_mail(
        &minimal_lead(),
        None,
        "https://x.amocrm.ru",
        "zakaz@tdrusstankosbyt.ru",
    );
    assert_eq!(mail.reply_to, None);
    assert!(!mail.html.contains("amocrm.ru") && !mail.text.contains("amoCRM"));
    assert_eq!(
        mail.subject,
        format!("Новая заявка: сервис — Анна (сайт) [{ID}]")
    );
}

#[test]
fn html_and_text_parts_carry_the_same_facts() {
    let mail = sales_mail(&cart_lead(), Some(1), "https://x.amocrm.ru", "a@b.ru");
    let facts = [
        "Иван Петров",
        "+7 912 345-67-89",
        "ivan@example.ru",
        "123456789",
        "Нужны запчасти.",
        "Срочно.",
        "16К20",
        "SN-001",
        "Фреза 16 мм",
        "FR-16",
        "1 500,50 ₽",
        "3 001,00 ₽",
        "0,30 ₽",
        "3 001,30 ₽",
        "campaign=spring, source=yandex",
        "10.02.2026 15:34 МСК",
    ];
    for fact in facts {
        assert!(mail.text.contains(fact), "text lacks {fact}");
        assert!(mail.html.contains(fact), "html lacks {fact}");
    }
    // The page URL's `&` is escaped in HTML, as it must be inside an attribute.
    assert!(mail.text.contains("https://td-rss.ru/cart?x=1&y=2"));
    assert!(
        mail.html
            .contains("href=\"https://td-rss.ru/cart?x=1&amp;y=2\"")
    );
    assert!(mail.html.contains("href=\"tel:+79123456789\""));
    assert!(mail.html.contains("href=\"mailto:ivan@example.ru\""));
}

#[test]
fn every_customer_string_is_escaped_in_html() {
    let mail = sales_mail(&hostile_lead(), Some(1), "https://x.amocrm.ru", "a@b.ru");
    let html = &mail.html;
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    for field in [
        "name", "message", "model", "serial", "item", "sku", "utmkey", "utmvalue",
    ] {
        assert!(
            html.contains(&format!(
                "&lt;script&gt;{field}&quot;&#x27;&lt;/script&gt;&amp;"
            )),
            "{field} not escaped in {html}"
        );
    }
    // A URL that would break out of its attribute is shown as text, never linked.
    assert!(!html.contains("href=\"https://td-rss.ru/"), "{html}");
    assert!(html.contains("https://td-rss.ru/&quot;&gt;&lt;script&gt;page"));
    // An address that needs quoting is neither a mailto link nor passes unescaped.
    assert!(!html.contains("mailto:"));
    assert!(html.contains("o&#x27;&lt;b&gt;&quot;@example.ru"));
}

#[test]
fn non_http_page_url_is_never_a_link() {
    let mut lead = cart_lead();
    lead.request.page_url = Some("javascript:alert(1)".into());
    let mail = sales_mail(&lead, None, "https://x.amocrm.ru", "a@b.ru");
    assert!(!mail.html.contains("href=\"javascript"));
    assert!(mail.html.contains("Страница: javascript:alert(1)"));
}

#[test]
fn subject_and_reply_to_cannot_inject_headers() {
    let mut lead = hostile_lead();
    lead.request.name = "Иван\r\nBcc: all@example.ru\u{0}\u{85}\u{2028}Петров".into();
    lead.request.email = Some("ivan@example.ru\r\nBcc: all@example.ru".into());
    let mail = sales_mail(&lead, None, "https://x.amocrm.ru", "a@b.ru");
    assert!(
        !mail
            .subject
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}'),
        "{:?}",
        mail.subject
    );
    assert!(mail.subject.contains("Иван Bcc: all@example.ru Петров"));
    assert_eq!(mail.reply_to, None);
}
