//! The intake rules as the site sees them: what is accepted, how it is normalised, and which
//! field each error names.

use serde_json::{Value, json};

use super::*;
use crate::leads::{Intent, MachineRef, Source};

fn accept_json(body: &Value) -> LeadRequest {
    match parse_json(body.to_string().as_bytes()) {
        Ok(Intake::Lead(lead)) => lead,
        other => panic!("expected a lead from {body}, got {other:?}"),
    }
}

fn accept_form(body: &str) -> LeadRequest {
    match parse_form(body.as_bytes()) {
        Ok(Intake::Lead(lead)) => lead,
        other => panic!("expected a lead from {body}, got {other:?}"),
    }
}

/// `(field, message)` of every error a JSON body gets.
fn json_errors(body: &Value) -> Vec<(String, String)> {
    match parse_json(body.to_string().as_bytes()) {
        Err(IntakeError::Invalid(errors)) => {
            errors.into_iter().map(|e| (e.field, e.message)).collect()
        }
        other => panic!("expected field errors from {body}, got {other:?}"),
    }
}

fn error_fields(body: &Value) -> Vec<String> {
    json_errors(body).into_iter().map(|(f, _)| f).collect()
}

/// A minimal valid body with `patch` merged over it (`null` in the patch removes a key).
fn with(patch: Value) -> Value {
    let mut body = json!({"source": "site", "name": "Иван Петров", "phone": "+79123456789"});
    for (k, v) in patch.as_object().expect("patch is an object") {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body
}

fn full_request() -> LeadRequest {
    crate::leads::fixtures::cart_request()
}

#[test]
fn full_json_body_is_normalised_into_the_request() {
    let body = json!({
        "source": "cart",
        "intent": "parts",
        "name": "  Иван   Петров ",
        "phone": "8 (912) 345-67-89",
        "email": " Ivan@EXAMPLE.ru ",
        "telegram_id": 123456789,
        "message": "Нужны запчасти.\r\nСрочно.\u{7}",
        "equipment": {"model": "16К20", "serial": "SN-001"},
        "items": [
            {"sku": "FR-16", "name": "Фреза 16 мм", "qty": 2, "price": 1500.5},
            {"sku": "", "name": "Ремень", "qty": "1", "price": "0,1"}
        ],
        "page_url": "https://td-rss.ru/cart",
        "utm": {"source": "yandex", "campaign": "spring", "medium": ""},
        "unknown": {"ignored": true},
        "website": ""
    });
    assert_eq!(accept_json(&body), full_request());
}

#[test]
fn the_same_lead_as_a_plain_html_form() {
    let form = "source=cart&intent=parts&name=++%D0%98%D0%B2%D0%B0%D0%BD+%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2\
        &phone=8+%28912%29+345-67-89&email=Ivan%40EXAMPLE.ru&telegram_id=123456789\
        &message=%D0%9D%D1%83%D0%B6%D0%BD%D1%8B+%D0%B7%D0%B0%D0%BF%D1%87%D0%B0%D1%81%D1%82%D0%B8.%0D%0A%D0%A1%D1%80%D0%BE%D1%87%D0%BD%D0%BE.\
        &equipment%5Bmodel%5D=16%D0%9A20&equipment%5Bserial%5D=SN-001\
        &items%5B0%5D%5Bsku%5D=FR-16&items%5B0%5D%5Bname%5D=%D0%A4%D1%80%D0%B5%D0%B7%D0%B0+16+%D0%BC%D0%BC\
        &items%5B0%5D%5Bqty%5D=2&items%5B0%5D%5Bprice%5D=1+500%2C50\
        &items%5B1%5D%5Bsku%5D=&items%5B1%5D%5Bname%5D=%D0%A0%D0%B5%D0%BC%D0%B5%D0%BD%D1%8C\
        &items%5B1%5D%5Bqty%5D=1&items%5B1%5D%5Bprice%5D=0.10\
        &page_url=https%3A%2F%2Ftd-rss.ru%2Fcart&utm%5Bsource%5D=yandex&utm_campaign=spring&website=";
    assert_eq!(accept_form(form), full_request());
}

#[test]
fn form_and_json_give_the_same_request_for_the_same_fields() {
    let pairs = [
        ("source", "site"),
        ("intent", "service"),
        ("name", "Пётр"),
        ("phone", "9123456789"),
        ("telegram_id", "42"),
        ("equipment[serial]", "A-1"),
        ("items[0][name]", "Шпиндель"),
        ("items[0][qty]", "3"),
        ("items[0][price]", "99.99"),
    ];
    let form: String = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", k.replace('[', "%5B").replace(']', "%5D"), v))
        .collect::<Vec<_>>()
        .join("&");
    let json = json!({
        "source": "site", "intent": "service", "name": "Пётр", "phone": "9123456789",
        "telegram_id": "42", "equipment": {"serial": "A-1"},
        "items": [{"name": "Шпиндель", "qty": "3", "price": "99.99"}]
    });
    let from_form = accept_form(&form);
    assert_eq!(from_form, accept_json(&json));
    assert_eq!(from_form.phone.as_deref(), Some("+79123456789"));
    assert_eq!(from_form.items[0].price_kopecks, 9999);
}

#[test]
fn minimal_lead_gets_defaults_and_nothing_else() {
    let lead = accept_json(&with(json!({})));
    assert_eq!(lead.source, Source::Site);
    assert_eq!(lead.intent, Intent::Other);
    assert_eq!(
        (
            lead.email,
            lead.telegram_id,
            lead.message,
            lead.equipment,
            lead.page_url
        ),
        (None, None, None, None, None)
    );
    assert!(lead.items.is_empty() && lead.utm.is_empty());
}

#[test]
fn empty_strings_and_nulls_mean_absent() {
    let lead = accept_json(&with(json!({
        "intent": "", "email": "", "telegram_id": " ", "message": " \n ",
        "equipment": {"model": "", "serial": null}, "items": null, "page_url": "",
        "utm": {"source": ""}
    })));
    assert_eq!(lead.intent, Intent::Other);
    assert_eq!(
        (lead.email, lead.telegram_id, lead.message),
        (None, None, None)
    );
    assert_eq!((lead.equipment, lead.page_url), (None, None));
    assert!(lead.items.is_empty() && lead.utm.is_empty());
}

#[test]
fn accepted_spellings_are_normalised() {
    let lead = accept_json(&with(json!({
        "source": "TMA", "intent": "Service", "phone": 79123456789u64, "telegram_id": "  777 ",
        "email": "a.b+c@Mail.Example.RU", "equipment": {"model": 1620, "serial": "  X\u{202E}1 "},
        "items": [{"sku": 12345, "name": "Винт", "qty": 10000, "price": 0}],
        "page_url": "HTTPS://td-rss.ru/a?b=1", "utm": {"id": 7}
    })));
    assert_eq!((lead.source, lead.intent), (Source::Tma, Intent::Service));
    assert_eq!(lead.phone.as_deref(), Some("+79123456789"));
    assert_eq!(lead.telegram_id, Some(777));
    assert_eq!(lead.email.as_deref(), Some("a.b+c@mail.example.ru"));
    assert_eq!(
        lead.equipment,
        Some(MachineRef {
            model: Some("1620".into()),
            serial: Some("X1".into())
        })
    );
    assert_eq!(lead.items[0].sku.as_deref(), Some("12345"));
    assert_eq!((lead.items[0].qty, lead.items[0].price_kopecks), (10000, 0));
    assert_eq!(lead.page_url.as_deref(), Some("https://td-rss.ru/a?b=1"));
    assert_eq!(lead.utm.get("id").map(String::as_str), Some("7"));
}

#[test]
fn control_characters_are_stripped_but_message_keeps_its_lines() {
    let lead = accept_json(&with(json!({
        "name": "Иван\u{0}\r\nПетров\u{1b}",
        "message": "Строка 1\r\nСтрока 2\u{0}\n\tСтрока 3"
    })));
    assert_eq!(lead.name, "Иван Петров");
    assert_eq!(
        lead.message.as_deref(),
        Some("Строка 1\nСтрока 2\n Строка 3")
    );
}

#[test]
fn only_one_contact_is_needed() {
    let alone = [
        json!({"phone": "+7 912 345 67 89"}),
        json!({"phone": null, "email": "ivan@example.ru"}),
        json!({"phone": null, "telegram_id": 5}),
    ];
    for patch in alone {
        accept_json(&with(patch));
    }
}

/// One row per rule: the patch applied to a valid body, the field blamed, its message.
#[test]
fn every_rule_names_its_field_with_a_russian_message() {
    let long = |n: usize| "я".repeat(n);
    let rows: Vec<(Value, &str, String)> = vec![
        (
            json!({"source": null}),
            "source",
            "Укажите источник заявки: site, bot, cart или tma".into(),
        ),
        (
            json!({"source": "email"}),
            "source",
            "Неизвестный источник заявки: допустимы site, bot, cart, tma".into(),
        ),
        (
            json!({"source": 1}),
            "source",
            "Неизвестный источник заявки: допустимы site, bot, cart, tma".into(),
        ),
        (
            json!({"intent": "buy"}),
            "intent",
            "Неизвестный тип заявки: допустимы service, parts, other".into(),
        ),
        (json!({"name": null}), "name", "Укажите имя".into()),
        (json!({"name": "   "}), "name", "Укажите имя".into()),
        (
            json!({"name": ["Иван"]}),
            "name",
            "Имя: ожидается текст".into(),
        ),
        (
            json!({"name": long(201)}),
            "name",
            "Имя: не более 200 символов".into(),
        ),
        (
            json!({"phone": "8 912 345"}),
            "phone",
            "Телефон должен быть российским номером, например +7 912 345-67-89".into(),
        ),
        (
            json!({"phone": "89123456789x"}),
            "phone",
            "Телефон может содержать только цифры, пробелы, дефисы, скобки и «+» в начале".into(),
        ),
        (
            json!({"phone": "+12"}),
            "phone",
            "Международный номер должен начинаться с «+» и кода страны и содержать от 8 до 15 цифр"
                .into(),
        ),
        (
            json!({"phone": true}),
            "phone",
            "Телефон должен быть российским номером, например +7 912 345-67-89".into(),
        ),
        (
            json!({"email": "ivan@"}),
            "email",
            "Проверьте адрес электронной почты, например ivan@example.ru".into(),
        ),
        (
            json!({"email": "iv an@example.ru"}),
            "email",
            "Проверьте адрес электронной почты, например ivan@example.ru".into(),
        ),
        (
            json!({"email": format!("{}@example.ru", "a".repeat(250))}),
            "email",
            "Адрес электронной почты: не более 254 символов".into(),
        ),
        (
            json!({"telegram_id": 0}),
            "telegram_id",
            "Telegram ID должен быть целым положительным числом".into(),
        ),
        (
            json!({"telegram_id": -5}),
            "telegram_id",
            "Telegram ID должен быть целым положительным числом".into(),
        ),
        (
            json!({"telegram_id": 1.5}),
            "telegram_id",
            "Telegram ID должен быть целым положительным числом".into(),
        ),
        (
            json!({"telegram_id": "12a"}),
            "telegram_id",
            "Telegram ID должен быть целым положительным числом".into(),
        ),
        (
            json!({"telegram_id": 18446744073709551615u64}),
            "telegram_id",
            "Telegram ID должен быть целым положительным числом".into(),
        ),
        (
            json!({"phone": null}),
            "contact",
            "Укажите телефон, e-mail или Telegram ID, чтобы мы могли с вами связаться".into(),
        ),
        (
            json!({"phone": ""}),
            "contact",
            "Укажите телефон, e-mail или Telegram ID, чтобы мы могли с вами связаться".into(),
        ),
        (
            json!({"message": long(4001)}),
            "message",
            "Сообщение: не более 4000 символов".into(),
        ),
        (
            json!({"message": {"text": "x"}}),
            "message",
            "Сообщение: ожидается текст".into(),
        ),
        (
            json!({"equipment": "16К20"}),
            "equipment",
            "Оборудование: ожидаются поля model и serial".into(),
        ),
        (
            json!({"equipment": {"model": long(201)}}),
            "equipment.model",
            "Модель оборудования: не более 200 символов".into(),
        ),
        (
            json!({"equipment": {"serial": long(201)}}),
            "equipment.serial",
            "Серийный номер: не более 200 символов".into(),
        ),
        (
            json!({"equipment": {"serial": [1]}}),
            "equipment.serial",
            "Серийный номер: ожидается текст".into(),
        ),
        (
            json!({"items": {"name": "x"}}),
            "items",
            "Корзина: ожидается список товаров".into(),
        ),
        (
            json!({"items": vec![json!({"name": "x", "qty": 1, "price": 1}); 201]}),
            "items",
            "Корзина: не более 200 позиций".into(),
        ),
        (
            json!({"items": ["Фреза"]}),
            "items[0]",
            "Позиция корзины: ожидаются поля name, qty и price".into(),
        ),
        (
            json!({"items": [{"qty": 1, "price": 1}]}),
            "items[0].name",
            "Укажите название товара".into(),
        ),
        (
            json!({"items": [{"name": long(301), "qty": 1, "price": 1}]}),
            "items[0].name",
            "Название товара: не более 300 символов".into(),
        ),
        (
            json!({"items": [{"name": "x", "sku": long(101), "qty": 1, "price": 1}]}),
            "items[0].sku",
            "Артикул: не более 100 символов".into(),
        ),
        (
            json!({"items": [{"name": "x", "price": 1}]}),
            "items[0].qty",
            "Количество — целое число от 1 до 10000".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 0, "price": 1}]}),
            "items[0].qty",
            "Количество — целое число от 1 до 10000".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 10001, "price": 1}]}),
            "items[0].qty",
            "Количество — целое число от 1 до 10000".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 1.5, "price": 1}]}),
            "items[0].qty",
            "Количество — целое число от 1 до 10000".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": "два", "price": 1}]}),
            "items[0].qty",
            "Количество — целое число от 1 до 10000".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 1}]}),
            "items[0].price",
            "Укажите цену".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 1, "price": ""}]}),
            "items[0].price",
            "Укажите цену".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 1, "price": -1}]}),
            "items[0].price",
            "Цена не может быть отрицательной".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 1, "price": "1,234"}]}),
            "items[0].price",
            "Цена: не более двух знаков после запятой".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 1, "price": 0.001}]}),
            "items[0].price",
            "Цена: не более двух знаков после запятой".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 1, "price": "бесплатно"}]}),
            "items[0].price",
            "Цена — число в рублях, например 1234,50".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 1, "price": {"rub": 1}}]}),
            "items[0].price",
            "Цена — число в рублях, например 1234,50".into(),
        ),
        (
            json!({"items": [{"name": "x", "qty": 1, "price": 2e9}]}),
            "items[0].price",
            "Цена: не более 1 000 000 000 ₽".into(),
        ),
        (
            json!({"page_url": "td-rss.ru/cart"}),
            "page_url",
            "Адрес страницы должен начинаться с http:// или https://".into(),
        ),
        (
            json!({"page_url": "javascript:alert(1)"}),
            "page_url",
            "Адрес страницы должен начинаться с http:// или https://".into(),
        ),
        (
            json!({"page_url": format!("https://td-rss.ru/{}", "a".repeat(2000))}),
            "page_url",
            "Адрес страницы: не более 2000 символов".into(),
        ),
        (
            json!({"utm": "yandex"}),
            "utm",
            "Метки UTM: ожидается набор «имя — значение»".into(),
        ),
        (
            json!({"utm": {"source": long(501)}}),
            "utm.source",
            "Метка UTM: не более 500 символов".into(),
        ),
        (
            json!({"utm": {"source": {"a": 1}}}),
            "utm.source",
            "Метка UTM: ожидается текст".into(),
        ),
        (
            json!({"utm": {long(101): "x"}}),
            "utm",
            "Метки UTM: имя метки не более 100 символов".into(),
        ),
        (
            json!({"utm": (0..21).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "utm",
            "Метки UTM: не более 20".into(),
        ),
        (
            json!({"utm_source": long(501)}),
            "utm_source",
            "Метка UTM: не более 500 символов".into(),
        ),
    ];
    for (patch, field, message) in rows {
        let body = with(patch.clone());
        assert_eq!(
            json_errors(&body),
            vec![(field.to_string(), message)],
            "patch {patch}"
        );
    }
}

#[test]
fn limits_count_characters_not_bytes() {
    let lead = accept_json(&with(
        json!({"name": "я".repeat(200), "message": "ё".repeat(4000)}),
    ));
    assert_eq!(lead.name.chars().count(), 200);
    assert_eq!(lead.message.map(|m| m.chars().count()), Some(4000));
}

#[test]
fn every_bad_field_is_listed_at_once_with_its_path() {
    let body = json!({
        "source": "fax",
        "name": "",
        "phone": "12345",
        "email": "nope",
        "equipment": {"serial": "я".repeat(201)},
        "items": [
            {"name": "ok", "qty": 1, "price": 1},
            {"name": "ok", "qty": 1, "price": 1},
            {"name": "ok", "qty": 1, "price": 1},
            {"name": "", "qty": 0, "price": "x"}
        ],
        "page_url": "ftp://x"
    });
    assert_eq!(
        error_fields(&body),
        [
            "source",
            "name",
            "phone",
            "email",
            "equipment.serial",
            "items[3].name",
            "items[3].qty",
            "items[3].price",
            "page_url"
        ]
    );
}

#[test]
fn form_errors_use_the_same_paths() {
    let form = "source=site&name=&phone=1&items[0][name]=x&items[0][qty]=1&items[0][price]=1\
        &items[1][name]=y&items[1][qty]=0&items[1][price]=1&equipment[serial]=";
    let Err(IntakeError::Invalid(errors)) = parse_form(form.as_bytes()) else {
        panic!("expected field errors");
    };
    let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["name", "phone", "items[1].qty"]);
}

#[test]
fn honeypot_marks_spam_before_any_other_rule() {
    assert_eq!(
        parse_json(br#"{"website": "http://spam.example"}"#),
        Ok(Intake::Spam)
    );
    assert_eq!(parse_json(br#"{"website": 1}"#), Ok(Intake::Spam));
    assert_eq!(parse_form(b"website=x&name=&source=site"), Ok(Intake::Spam));
    for blank in [json!(""), json!("  "), json!(null), json!(false)] {
        assert!(
            matches!(
                parse_json(
                    with(json!({"website": blank.clone()}))
                        .to_string()
                        .as_bytes()
                ),
                Ok(Intake::Lead(_))
            ),
            "{blank}"
        );
    }
}

#[test]
fn unreadable_bodies_are_malformed() {
    let json_cases: [&[u8]; 6] = [
        b"",
        b"not json",
        b"[1,2]",
        b"\"lead\"",
        b"{\"name\":",
        &[0xff, 0xfe],
    ];
    for body in json_cases {
        assert!(
            matches!(parse_json(body), Err(IntakeError::Malformed(_))),
            "{body:?}"
        );
    }
    for body in ["a[b=1", "items[0]=x&items[0][name]=y"] {
        assert!(
            matches!(parse_form(body.as_bytes()), Err(IntakeError::Malformed(_))),
            "{body}"
        );
    }
}

#[test]
fn error_display_lists_fields_but_never_values() {
    let err = parse_json(br#"{"source":"site","name":"x","phone":"+7 999 SECRET"}"#).unwrap_err();
    let shown = err.to_string();
    assert_eq!(shown, "invalid fields: phone");
    let as_json = serde_json::to_value(match err {
        IntakeError::Invalid(e) => e,
        IntakeError::Malformed(_) => unreachable!(),
    })
    .unwrap();
    assert_eq!(as_json[0]["field"], "phone");
}

#[test]
fn cart_total_is_exact_in_kopecks() {
    let lead = accept_json(&with(json!({"items": [
        {"name": "a", "qty": 1, "price": 0.1},
        {"name": "b", "qty": 1, "price": "0.2"},
        {"name": "c", "qty": 3, "price": "1 234,56"}
    ]})));
    assert_eq!(lead.total_kopecks(), 10 + 20 + 3 * 123_456);
}
