//! The rules of a lead, applied to a loose JSON tree. Every rule records its error and moves on,
//! so the customer sees all fields to fix at once.
//!
//! Shared conventions: `null`, a missing key and a string that is empty after cleaning all mean
//! "absent"; a number where text is expected is read as its spelling (`"sku": 12345`); unknown
//! keys are ignored.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::money::price_from_value;
use super::text::{self, MAX_EMAIL_CHARS};
use super::{FieldError, Intake, IntakeError};
use crate::leads::phone::normalize_phone;
use crate::leads::{CartItem, Intent, LeadRequest, MachineRef, Source};

const MAX_NAME: usize = 200;
const MAX_MESSAGE: usize = 4000;
const MAX_EQUIPMENT_TEXT: usize = 200;
const MAX_ITEMS: usize = 200;
const MAX_ITEM_NAME: usize = 300;
const MAX_SKU: usize = 100;
const MAX_QTY: i64 = 10_000;
const MAX_PAGE_URL: usize = 2000;
const MAX_UTM_KEYS: usize = 20;
const MAX_UTM_KEY: usize = 100;
const MAX_UTM_VALUE: usize = 500;
/// Flat UTM fields a site form may send instead of `utm[...]` (`utm_source` → `source`).
const FLAT_UTM: [&str; 5] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// Applies every rule to a body.
pub(super) fn validate(body: &Map<String, Value>) -> Result<Intake, IntakeError> {
    if is_filled(body.get("website")) {
        return Ok(Intake::Spam);
    }
    let mut c = Checker::default();
    let source = c.source(body.get("source"));
    let intent = c.intent(body.get("intent"));
    let name = c.required_text("name", body.get("name"), "Имя", MAX_NAME, "Укажите имя");
    let phone = c.phone(body.get("phone"));
    let email = c.email(body.get("email"));
    let telegram_id = c.telegram_id(body.get("telegram_id"));
    let any_contact_given = phone.1 || email.1 || telegram_id.1;
    if !any_contact_given {
        c.fail(
            "contact",
            "Укажите телефон, e-mail или Telegram ID, чтобы мы могли с вами связаться",
        );
    }
    let message = c.message(body.get("message"));
    let equipment = c.equipment(body.get("equipment"));
    let items = c.items(body.get("items"));
    let page_url = c.page_url(body.get("page_url"));
    let utm = c.utm(body);

    if !c.errors.is_empty() {
        return Err(IntakeError::Invalid(c.errors));
    }
    Ok(Intake::Lead(LeadRequest {
        source: source.expect("no errors means source was read"),
        intent,
        name: name.expect("no errors means name was read"),
        phone: phone.0,
        email: email.0,
        telegram_id: telegram_id.0,
        telegram_unverified: false,
        message,
        equipment,
        items,
        page_url,
        utm,
    }))
}

/// The honeypot counts as filled by anything but absence, `false` and blank text.
fn is_filled(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !text::single_line(s).is_empty(),
        Some(_) => true,
    }
}

#[derive(Clone, Copy)]
enum Lines {
    Single,
    Multi,
}

/// A JSON value was not text (nor a number).
struct NotText;

/// Text of a scalar, cleaned; `None` when absent or blank.
fn scalar_text(value: Option<&Value>, lines: Lines) -> Result<Option<String>, NotText> {
    let raw = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(NotText),
    };
    let cleaned = match lines {
        Lines::Single => text::single_line(&raw),
        Lines::Multi => text::multi_line(&raw),
    };
    Ok((!cleaned.is_empty()).then_some(cleaned))
}

/// A whole number from a JSON integer or a digit string; `Err` for anything else.
fn scalar_integer(value: &Value) -> Result<i64, ()> {
    match value {
        Value::Number(n) => n.as_i64().ok_or(()),
        Value::String(s) => {
            let s = text::single_line(s);
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            s.parse().map_err(|_| ())
        }
        _ => Err(()),
    }
}

#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Optional text with a length limit (in characters, after cleaning).
    fn optional_text(
        &mut self,
        field: &str,
        value: Option<&Value>,
        label: &str,
        max: usize,
        lines: Lines,
    ) -> Option<String> {
        match scalar_text(value, lines) {
            Err(NotText) => {
                self.fail(field, format!("{label}: ожидается текст"));
                None
            }
            Ok(Some(s)) if s.chars().count() > max => {
                self.fail(field, format!("{label}: не более {max} символов"));
                None
            }
            Ok(text) => text,
        }
    }

    fn required_text(
        &mut self,
        field: &str,
        value: Option<&Value>,
        label: &str,
        max: usize,
        missing: &str,
    ) -> Option<String> {
        let before = self.errors.len();
        let text = self.optional_text(field, value, label, max, Lines::Single);
        if text.is_none() && self.errors.len() == before {
            self.fail(field, missing);
        }
        text
    }

    fn source(&mut self, value: Option<&Value>) -> Option<Source> {
        const MISSING: &str = "Укажите источник заявки: site, bot, cart или tma";
        const INVALID: &str = "Неизвестный источник заявки: допустимы site, bot, cart, tma";
        match scalar_text(value, Lines::Single) {
            Ok(None) => {
                self.fail("source", MISSING);
                None
            }
            Ok(Some(s)) => {
                let found = Source::ALL
                    .into_iter()
                    .find(|src| src.as_str().eq_ignore_ascii_case(&s));
                if found.is_none() {
                    self.fail("source", INVALID);
                }
                found
            }
            Err(NotText) => {
                self.fail("source", INVALID);
                None
            }
        }
    }

    fn intent(&mut self, value: Option<&Value>) -> Intent {
        const INVALID: &str = "Неизвестный тип заявки: допустимы service, parts, other";
        match scalar_text(value, Lines::Single) {
            Ok(None) => Intent::default(),
            Ok(Some(s)) => [Intent::Service, Intent::Parts, Intent::Other]
                .into_iter()
                .find(|i| i.as_str().eq_ignore_ascii_case(&s))
                .unwrap_or_else(|| {
                    self.fail("intent", INVALID);
                    Intent::default()
                }),
            Err(NotText) => {
                self.fail("intent", INVALID);
                Intent::default()
            }
        }
    }

    /// The normalised phone and whether one was given at all (valid or not).
    fn phone(&mut self, value: Option<&Value>) -> (Option<String>, bool) {
        match scalar_text(value, Lines::Single) {
            Ok(None) => (None, false),
            Ok(Some(raw)) => match normalize_phone(&raw) {
                Ok(e164) => (Some(e164), true),
                Err(e) => {
                    self.fail("phone", e.message_ru());
                    (None, true)
                }
            },
            Err(NotText) => {
                self.fail(
                    "phone",
                    "Телефон должен быть российским номером, например +7 912 345-67-89",
                );
                (None, true)
            }
        }
    }

    fn email(&mut self, value: Option<&Value>) -> (Option<String>, bool) {
        const INVALID: &str = "Проверьте адрес электронной почты, например ivan@example.ru";
        match scalar_text(value, Lines::Single) {
            Ok(None) => (None, false),
            Ok(Some(raw)) if raw.chars().count() > MAX_EMAIL_CHARS => {
                self.fail(
                    "email",
                    format!("Адрес электронной почты: не более {MAX_EMAIL_CHARS} символов"),
                );
                (None, true)
            }
            Ok(Some(raw)) => match text::normalize_email(&raw) {
                Some(email) => (Some(email), true),
                None => {
                    self.fail("email", INVALID);
                    (None, true)
                }
            },
            Err(NotText) => {
                self.fail("email", INVALID);
                (None, true)
            }
        }
    }

    fn telegram_id(&mut self, value: Option<&Value>) -> (Option<i64>, bool) {
        let value = match value {
            None | Some(Value::Null) => return (None, false),
            Some(Value::String(s)) if text::single_line(s).is_empty() => return (None, false),
            Some(v) => v,
        };
        match scalar_integer(value) {
            Ok(id) if id > 0 => (Some(id), true),
            _ => {
                self.fail(
                    "telegram_id",
                    "Telegram ID должен быть целым положительным числом",
                );
                (None, true)
            }
        }
    }

    fn message(&mut self, value: Option<&Value>) -> Option<String> {
        self.optional_text("message", value, "Сообщение", MAX_MESSAGE, Lines::Multi)
    }

    fn equipment(&mut self, value: Option<&Value>) -> Option<MachineRef> {
        let fields = match value {
            None | Some(Value::Null) => return None,
            Some(Value::Object(fields)) => fields,
            Some(_) => {
                self.fail("equipment", "Оборудование: ожидаются поля model и serial");
                return None;
            }
        };
        let model = self.optional_text(
            "equipment.model",
            fields.get("model"),
            "Модель оборудования",
            MAX_EQUIPMENT_TEXT,
            Lines::Single,
        );
        let serial = self.optional_text(
            "equipment.serial",
            fields.get("serial"),
            "Серийный номер",
            MAX_EQUIPMENT_TEXT,
            Lines::Single,
        );
        (model.is_some() || serial.is_some()).then_some(MachineRef { model, serial })
    }

    fn items(&mut self, value: Option<&Value>) -> Vec<CartItem> {
        let lines = match value {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(lines)) => lines,
            Some(_) => {
                self.fail("items", "Корзина: ожидается список товаров");
                return Vec::new();
            }
        };
        if lines.len() > MAX_ITEMS {
            self.fail("items", format!("Корзина: не более {MAX_ITEMS} позиций"));
            return Vec::new();
        }
        lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| self.item(&format!("items[{i}]"), line))
            .collect()
    }

    fn item(&mut self, path: &str, line: &Value) -> Option<CartItem> {
        let Value::Object(fields) = line else {
            self.fail(path, "Позиция корзины: ожидаются поля name, qty и price");
            return None;
        };
        let sku = self.optional_text(
            &format!("{path}.sku"),
            fields.get("sku"),
            "Артикул",
            MAX_SKU,
            Lines::Single,
        );
        let name = self.required_text(
            &format!("{path}.name"),
            fields.get("name"),
            "Название товара",
            MAX_ITEM_NAME,
            "Укажите название товара",
        );
        let qty = self.qty(&format!("{path}.qty"), fields.get("qty"));
        let price = self.price(&format!("{path}.price"), fields.get("price"));
        Some(CartItem {
            sku,
            name: name?,
            qty: qty?,
            price_kopecks: price?,
        })
    }

    fn qty(&mut self, field: &str, value: Option<&Value>) -> Option<u32> {
        let qty = value
            .filter(|v| !v.is_null())
            .and_then(|v| scalar_integer(v).ok())
            .filter(|q| (1..=MAX_QTY).contains(q));
        if qty.is_none() {
            self.fail(field, format!("Количество — целое число от 1 до {MAX_QTY}"));
        }
        qty.and_then(|q| u32::try_from(q).ok())
    }

    fn price(&mut self, field: &str, value: Option<&Value>) -> Option<i64> {
        let blank = match value {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(_) => false,
        };
        if blank {
            self.fail(field, "Укажите цену");
            return None;
        }
        match value.and_then(price_from_value) {
            Some(Ok(kopecks)) => Some(kopecks),
            Some(Err(e)) => {
                self.fail(field, e.message_ru());
                None
            }
            None => {
                self.fail(field, super::MoneyError::Format.message_ru());
                None
            }
        }
    }

    fn page_url(&mut self, value: Option<&Value>) -> Option<String> {
        let raw = self.optional_text(
            "page_url",
            value,
            "Адрес страницы",
            MAX_PAGE_URL,
            Lines::Single,
        )?;
        let url = text::normalize_page_url(&raw);
        if url.is_none() {
            self.fail(
                "page_url",
                "Адрес страницы должен начинаться с http:// или https://",
            );
        }
        url
    }

    /// `utm` as a map, plus the flat `utm_source`-style fields for keys the map does not have.
    fn utm(&mut self, body: &Map<String, Value>) -> BTreeMap<String, String> {
        let mut utm = BTreeMap::new();
        match body.get("utm") {
            None | Some(Value::Null) => {}
            Some(Value::Object(tags)) => {
                for (key, value) in tags {
                    let key = text::single_line(key);
                    if key.is_empty() {
                        continue;
                    }
                    if key.chars().count() > MAX_UTM_KEY {
                        self.fail(
                            "utm",
                            format!("Метки UTM: имя метки не более {MAX_UTM_KEY} символов"),
                        );
                        continue;
                    }
                    let field = format!("utm.{key}");
                    if let Some(v) = self.optional_text(
                        &field,
                        Some(value),
                        "Метка UTM",
                        MAX_UTM_VALUE,
                        Lines::Single,
                    ) {
                        utm.insert(key, v);
                    }
                }
            }
            Some(_) => self.fail("utm", "Метки UTM: ожидается набор «имя — значение»"),
        }
        for flat in FLAT_UTM {
            let key = &flat["utm_".len()..];
            if utm.contains_key(key) {
                continue;
            }
            if let Some(v) = self.optional_text(
                flat,
                body.get(flat),
                "Метка UTM",
                MAX_UTM_VALUE,
                Lines::Single,
            ) {
                utm.insert(key.to_string(), v);
            }
        }
        if utm.len() > MAX_UTM_KEYS {
            self.fail("utm", format!("Метки UTM: не более {MAX_UTM_KEYS}"));
        }
        utm
    }
}
