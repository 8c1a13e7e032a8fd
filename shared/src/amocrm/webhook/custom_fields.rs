//! Custom fields as webhooks carry them, which is not the API v4 shape: `id` (not `field_id`),
//! selects with `[enum]` beside `[value]`, date values with no `[value]` key at all
//! (`values[0]=1615845600`), fields with a `code` and no values, radiobutton values as one object
//! instead of a list, multitext (PHONE/EMAIL) with `enum` per value and `code` on the field.

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::form::{Node, parse_int};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    pub id: i64,
    pub name: Option<String>,
    /// Field code for system fields (`PHONE`, `EMAIL`, `UTM_MEDIUM`, …).
    pub code: Option<String>,
    /// Empty when the hook sent the field without values (a cleared field).
    pub values: Vec<FieldValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    /// Text as sent: select label, date as unix seconds, checkbox `1`, phone number, …
    pub value: Option<String>,
    /// Select/multiselect/radiobutton option id, or the PHONE/EMAIL kind id of multitext.
    pub enum_id: Option<i64>,
    /// Value-level code when present (`enum_code` in API v4 terms, e.g. `WORK`).
    pub code: Option<String>,
}

/// Every field of a `custom_fields` node that has a numeric `id`; the others cannot be
/// addressed and are dropped.
pub(crate) fn parse_custom_fields(node: Option<&Node>) -> Vec<CustomField> {
    let Some(node) = node else { return Vec::new() };
    node.entries()
        .into_iter()
        .filter_map(|(_, field)| {
            Some(CustomField {
                id: field.int("id")?,
                name: field.text("name").map(str::to_owned),
                code: field.text("code").map(str::to_owned),
                values: parse_values(field.get("values")),
            })
        })
        .collect()
}

fn parse_values(node: Option<&Node>) -> Vec<FieldValue> {
    let Some(node) = node else { return Vec::new() };
    if !node.has_children() {
        // `values=…`: a lone scalar.
        return node
            .scalar()
            .map(|v| vec![text_value(v)])
            .unwrap_or_default();
    }
    if is_single_value(node) {
        // Radiobutton style: `values[value]=…&values[enum]=…` without an index.
        return vec![parse_value(node)];
    }
    node.entries()
        .into_iter()
        .map(|(_, value)| parse_value(value))
        .filter(|v| v.value.is_some() || v.enum_id.is_some())
        .collect()
}

fn is_single_value(node: &Node) -> bool {
    ["value", "enum", "enum_id"]
        .iter()
        .any(|k| node.get(k).is_some())
}

/// One value: `{value, enum, code}` sub-keys, or (dates) just a scalar.
fn parse_value(node: &Node) -> FieldValue {
    FieldValue {
        value: node
            .text("value")
            .or_else(|| node.scalar())
            .map(str::to_owned),
        enum_id: node.int("enum").or_else(|| node.int("enum_id")),
        code: node
            .text("enum_code")
            .or_else(|| node.text("code"))
            .map(str::to_owned),
    }
}

fn text_value(value: &str) -> FieldValue {
    FieldValue {
        value: Some(value.to_owned()),
        enum_id: None,
        code: None,
    }
}

impl CustomField {
    /// The first non-empty text value.
    pub fn text(&self) -> Option<&str> {
        self.values.iter().find_map(|v| v.value.as_deref())
    }

    /// All non-empty text values (a multitext field has several phones).
    pub fn texts(&self) -> Vec<&str> {
        self.values
            .iter()
            .filter_map(|v| v.value.as_deref())
            .collect()
    }

    pub fn int(&self) -> Option<i64> {
        self.text().and_then(parse_int)
    }

    /// The option id of a select/radiobutton (first value carrying one).
    pub fn enum_id(&self) -> Option<i64> {
        self.values.iter().find_map(|v| v.enum_id)
    }

    /// A date field as unix seconds. Hooks send dates as unix seconds of midnight in the
    /// account's time zone, returned as is; `DD.MM.YYYY`, `YYYY-MM-DD` and
    /// `YYYY-MM-DD HH:MM:SS` texts (seen in text fields used as dates) read as UTC.
    pub fn date(&self) -> Option<i64> {
        self.text().and_then(parse_date)
    }

    /// A checkbox: `1`/`true` → true, `0`/`false` → false.
    pub fn flag(&self) -> Option<bool> {
        match self.text()?.trim() {
            "1" | "true" | "Y" | "y" => Some(true),
            "0" | "false" | "N" | "n" => Some(false),
            _ => None,
        }
    }
}

fn parse_date(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(seconds) = parse_int(text) {
        return Some(seconds);
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp());
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.and_utc().timestamp());
        }
    }
    ["%d.%m.%Y", "%Y-%m-%d"].iter().find_map(|format| {
        let day = NaiveDate::parse_from_str(text, format).ok()?;
        Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
    })
}

/// Look-ups by field id (what the integration knows from amoCRM settings) shared by lead and
/// contact payloads: `lead.field_text(712629)` reads the serial-number field.
macro_rules! custom_field_accessors {
    ($payload:ty) => {
        impl $payload {
            pub fn custom_field(&self, id: i64) -> Option<&$crate::amocrm::webhook::CustomField> {
                self.custom_fields.iter().find(|f| f.id == id)
            }

            /// By field code (`PHONE`, `EMAIL`, …), ignoring case.
            pub fn custom_field_by_code(
                &self,
                code: &str,
            ) -> Option<&$crate::amocrm::webhook::CustomField> {
                self.custom_fields.iter().find(|f| {
                    f.code
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case(code))
                })
            }

            pub fn field_text(&self, id: i64) -> Option<&str> {
                self.custom_field(id)?.text()
            }

            pub fn field_texts(&self, id: i64) -> Vec<&str> {
                self.custom_field(id).map(|f| f.texts()).unwrap_or_default()
            }

            pub fn field_i64(&self, id: i64) -> Option<i64> {
                self.custom_field(id)?.int()
            }

            pub fn field_enum(&self, id: i64) -> Option<i64> {
                self.custom_field(id)?.enum_id()
            }

            pub fn field_date(&self, id: i64) -> Option<i64> {
                self.custom_field(id)?.date()
            }

            pub fn field_flag(&self, id: i64) -> Option<bool> {
                self.custom_field(id)?.flag()
            }
        }
    };
}
pub(crate) use custom_field_accessors;

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> Vec<CustomField> {
        let tree = Node::parse(body.as_bytes()).unwrap();
        parse_custom_fields(tree.get("cf"))
    }

    fn one(value: &str, enum_id: Option<i64>, code: Option<&str>) -> FieldValue {
        FieldValue {
            value: Some(value.into()),
            enum_id,
            code: code.map(Into::into),
        }
    }

    #[test]
    fn date_value_without_value_key() {
        let f = fields("cf[1][id]=481305&cf[1][name]=Cind+trebuie%3F&cf[1][values][0]=1615845600");
        assert_eq!(f[0].values, [one("1615845600", None, None)]);
        assert_eq!(f[0].date(), Some(1615845600));
    }

    #[test]
    fn select_carries_enum() {
        let f =
            fields("cf[0][id]=66339&cf[0][values][0][value]=Сайт&cf[0][values][0][enum]=139517");
        assert_eq!(f[0].values, [one("Сайт", Some(139517), None)]);
        assert_eq!(f[0].enum_id(), Some(139517));
    }

    #[test]
    fn code_without_values() {
        let f = fields("cf[0][id]=436799&cf[0][name]=utm_medium&cf[0][code]=UTM_MEDIUM");
        assert_eq!(f[0].code.as_deref(), Some("UTM_MEDIUM"));
        assert!(f[0].values.is_empty());
        assert_eq!(f[0].text(), None);
    }

    #[test]
    fn values_as_one_object() {
        let f = fields("cf[0][id]=5&cf[0][values][value]=Да&cf[0][values][enum]=77");
        assert_eq!(f[0].values, [one("Да", Some(77), None)]);
    }

    #[test]
    fn values_as_a_bare_scalar() {
        let f = fields("cf[0][id]=5&cf[0][values]=abc");
        assert_eq!(f[0].values, [one("abc", None, None)]);
    }

    #[test]
    fn multitext_keeps_every_value_in_order() {
        let f = fields(
            "cf[0][id]=54667&cf[0][code]=PHONE&cf[0][values][1][value]=222&cf[0][values][1][enum]=2\
             &cf[0][values][0][value]=111&cf[0][values][0][enum]=1&cf[0][values][0][enum_code]=WORK",
        );
        assert_eq!(
            f[0].values,
            [one("111", Some(1), Some("WORK")), one("222", Some(2), None)]
        );
        assert_eq!(f[0].texts(), ["111", "222"]);
    }

    #[test]
    fn fields_without_numeric_id_are_dropped_and_empty_values_skipped() {
        let f = fields("cf[0][name]=x&cf[1][id]=abc&cf[2][id]=9&cf[2][values][0][value]=");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id, 9);
        assert!(f[0].values.is_empty());
    }

    #[test]
    fn dates_in_text_form() {
        assert_eq!(parse_date("02.02.1978"), Some(255_225_600));
        assert_eq!(parse_date("2021-03-16"), Some(1_615_852_800));
        assert_eq!(parse_date("2021-03-16T00:00:00+03:00"), Some(1_615_842_000));
        assert_eq!(parse_date("tomorrow"), None);
    }

    #[test]
    fn checkbox_flags() {
        let f =
            fields("cf[0][id]=1&cf[0][values][0][value]=1&cf[1][id]=2&cf[1][values][0][value]=0");
        assert_eq!((f[0].flag(), f[1].flag()), (Some(true), Some(false)));
    }
}
