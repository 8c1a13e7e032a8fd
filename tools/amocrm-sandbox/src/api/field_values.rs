//! `custom_fields_values` on writes, checked like amoCRM checks them: the field must belong to
//! the entity, values must fit its type (text as string, numeric as a number, dates as unix
//! time or RFC 3339, selects by enum id/value, PHONE/EMAIL with a known `enum_code`), and
//! stored exactly as `GET` renders them (numbers as strings, selects with `enum_id`).

use serde_json::{Value, json};

use crate::errors::Violations;
use crate::model::{CustomField, Entity, FieldEnum, FieldType, FieldValues};
use crate::state::State;

/// amoCRM accepts at most 40 custom field values per entity in one write.
pub const MAX_FIELDS_PER_ENTITY: usize = 40;

/// A change to one field: new values, or `None` to clear it (`"values": null`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPatch {
    pub field_id: i64,
    pub values: Option<Vec<Value>>,
}

/// Checks `raw` (the `custom_fields_values` member) at `path`; violations go to `v`.
pub fn parse(
    st: &State,
    entity: Entity,
    raw: &Value,
    path: &str,
    v: &mut Violations,
) -> Vec<FieldPatch> {
    let items = match raw {
        Value::Null => return Vec::new(),
        Value::Array(items) => items,
        _ => {
            v.invalid_type(path, "array");
            return Vec::new();
        }
    };
    if items.is_empty() {
        v.too_few(path, 1);
        return Vec::new();
    }
    if items.len() > MAX_FIELDS_PER_ENTITY {
        v.too_many(path, MAX_FIELDS_PER_ENTITY);
        return Vec::new();
    }
    let mut patches = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}.{i}");
        if !item.is_object() {
            v.invalid_type(&p, "object");
            continue;
        }
        let Some(field) = resolve_field(st, entity, item, &p, v) else {
            continue;
        };
        let vp = format!("{p}.values");
        match item.get("values") {
            None => v.blank(&vp),
            Some(Value::Null) => patches.push(FieldPatch {
                field_id: field.id,
                values: None,
            }),
            Some(Value::Array(values)) => {
                if values.is_empty() {
                    v.too_few(&vp, 1);
                } else if values.len() > 1 && !field.field_type.is_multi() {
                    v.too_many(&vp, 1);
                } else {
                    let before = v.0.len();
                    let checked: Vec<Value> = values
                        .iter()
                        .enumerate()
                        .filter_map(|(j, value)| check_value(field, value, &format!("{vp}.{j}"), v))
                        .collect();
                    if v.0.len() == before {
                        patches.push(FieldPatch {
                            field_id: field.id,
                            values: Some(checked),
                        });
                    }
                }
            }
            Some(_) => v.invalid_type(&vp, "array"),
        }
    }
    patches
}

fn resolve_field<'a>(
    st: &'a State,
    entity: Entity,
    item: &Value,
    p: &str,
    v: &mut Violations,
) -> Option<&'a CustomField> {
    match (item.get("field_id"), item.get("field_code")) {
        (Some(Value::Number(n)), _) if n.is_i64() => {
            let field = st.field(n.as_i64().unwrap_or_default(), entity);
            if field.is_none() {
                v.not_a_choice(&format!("{p}.field_id"));
            }
            field
        }
        (Some(id), _) if !id.is_null() => {
            v.invalid_type(&format!("{p}.field_id"), "int");
            None
        }
        (_, Some(Value::String(code))) => {
            let field = st.field_by_code(code, entity);
            if field.is_none() {
                v.not_a_choice(&format!("{p}.field_code"));
            }
            field
        }
        (_, Some(code)) if !code.is_null() => {
            v.invalid_type(&format!("{p}.field_code"), "string");
            None
        }
        _ => {
            v.blank(&format!("{p}.field_id"));
            None
        }
    }
}

/// One value checked against the field type, in its stored (rendered) form.
fn check_value(field: &CustomField, value: &Value, p: &str, v: &mut Violations) -> Option<Value> {
    if !value.is_object() {
        v.invalid_type(p, "object");
        return None;
    }
    let vpath = format!("{p}.value");
    let raw = value.get("value").filter(|x| !x.is_null());
    match field.field_type {
        FieldType::Text | FieldType::Textarea | FieldType::Url => match raw {
            Some(Value::String(s)) => Some(json!({ "value": s })),
            Some(Value::Number(n)) => Some(json!({ "value": n.to_string() })),
            Some(_) => {
                v.invalid_type(&vpath, "string");
                None
            }
            None => {
                v.blank(&vpath);
                None
            }
        },
        FieldType::Numeric | FieldType::Price => match raw {
            Some(Value::Number(n)) => Some(json!({ "value": n.to_string() })),
            Some(Value::String(s)) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
                Some(json!({ "value": s.trim() }))
            }
            Some(_) => {
                v.invalid_type(&vpath, "numeric");
                None
            }
            None => {
                v.blank(&vpath);
                None
            }
        },
        FieldType::Checkbox => match raw {
            Some(Value::Bool(b)) => Some(json!({ "value": b })),
            Some(_) => {
                v.invalid_type(&vpath, "bool");
                None
            }
            None => {
                v.blank(&vpath);
                None
            }
        },
        FieldType::Date | FieldType::DateTime | FieldType::Birthday => match raw {
            Some(Value::Number(n)) if n.is_i64() => Some(json!({ "value": n.as_i64() })),
            Some(Value::String(s)) => match chrono::DateTime::parse_from_rfc3339(s.trim()) {
                Ok(t) => Some(json!({ "value": t.timestamp() })),
                Err(_) => {
                    v.invalid_type(&vpath, "date");
                    None
                }
            },
            Some(_) => {
                v.invalid_type(&vpath, "date");
                None
            }
            None => {
                v.blank(&vpath);
                None
            }
        },
        FieldType::Select | FieldType::Multiselect | FieldType::Radiobutton => {
            check_choice(field, value, p, v)
        }
        FieldType::Multitext => check_multitext(field, value, p, v),
    }
}

/// The option named by the first of `keys` present in `value` (`enum_id` by id, the others
/// by option value, e.g. `MOB` or `Плановое`); `None` when no key is present.
fn named_option<'a>(
    field: &'a CustomField,
    value: &Value,
    keys: &[&str],
    p: &str,
    v: &mut Violations,
) -> Option<Option<&'a FieldEnum>> {
    let (key, given) = keys
        .iter()
        .find_map(|k| value.get(*k).filter(|x| !x.is_null()).map(|x| (*k, x)))?;
    let path = format!("{p}.{key}");
    let found = match (key, given) {
        ("enum_id", Value::Number(n)) => field.enums.iter().find(|e| Some(e.id) == n.as_i64()),
        ("enum_id", _) => {
            v.invalid_type(&path, "int");
            return Some(None);
        }
        (_, Value::String(s)) => field.enums.iter().find(|e| e.value == *s),
        _ => {
            v.invalid_type(&path, "string");
            return Some(None);
        }
    };
    if found.is_none() {
        v.not_a_choice(&path);
    }
    Some(found)
}

/// Selects accept `enum_id`, or `value`/`enum_code` naming an option.
fn check_choice(field: &CustomField, value: &Value, p: &str, v: &mut Violations) -> Option<Value> {
    let Some(found) = named_option(field, value, &["enum_id", "value", "enum_code"], p, v) else {
        v.blank(&format!("{p}.enum_id"));
        return None;
    };
    found.map(|e| json!({ "value": e.value, "enum_id": e.id, "enum_code": null }))
}

/// PHONE/EMAIL: a string value plus an enum (`enum_code` WORK/MOB/…, or `enum_id`); WORK
/// when neither is given.
fn check_multitext(
    field: &CustomField,
    value: &Value,
    p: &str,
    v: &mut Violations,
) -> Option<Value> {
    let text = match value.get("value") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Null) | None => {
            v.blank(&format!("{p}.value"));
            None
        }
        Some(_) => {
            v.invalid_type(&format!("{p}.value"), "string");
            None
        }
    };
    let option = named_option(field, value, &["enum_id", "enum_code"], p, v)
        .unwrap_or_else(|| field.enums.first());
    match (text, option) {
        (Some(text), Some(e)) => {
            Some(json!({ "value": text, "enum_id": e.id, "enum_code": e.value }))
        }
        _ => None,
    }
}

/// Applies checked patches: new values replace a field's values, `None` clears the field.
pub fn apply(current: &mut Vec<FieldValues>, patches: &[FieldPatch]) {
    for patch in patches {
        match &patch.values {
            None => current.retain(|f| f.field_id != patch.field_id),
            Some(values) => match current.iter_mut().find(|f| f.field_id == patch.field_id) {
                Some(existing) => existing.values = values.clone(),
                None => current.push(FieldValues {
                    field_id: patch.field_id,
                    values: values.clone(),
                }),
            },
        }
    }
}

/// Renders stored values with `field_name`, `field_code`, `field_type` (or `null` if none).
pub fn render(st: &State, values: &[FieldValues]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    Value::Array(
        values
            .iter()
            .filter_map(|fv| {
                let field = st.fields.get(&fv.field_id)?;
                Some(json!({
                    "field_id": field.id,
                    "field_name": field.name,
                    "field_code": field.code,
                    "field_type": field.field_type.as_str(),
                    "values": fv.values,
                }))
            })
            .collect(),
    )
}

/// Text of every value (for `query=` search).
pub fn texts(values: &[FieldValues]) -> impl Iterator<Item = String> + '_ {
    values.iter().flat_map(|fv| {
        fv.values.iter().map(|v| match &v["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;
    use crate::seed::{FIELD_EMAIL, FIELD_PHONE, FIELD_SERIAL};

    fn state() -> State {
        State::seeded(&SandboxConfig::default(), 0)
    }

    fn codes(v: &Violations) -> Vec<(String, String)> {
        v.0.iter()
            .map(|x| (x.code.clone(), x.path.clone()))
            .collect()
    }

    #[test]
    fn text_fields_take_strings_and_reject_other_entities_fields() {
        let st = state();
        let mut v = Violations::default();
        let raw = json!([
            {"field_id": FIELD_SERIAL, "values": [{"value": "SN-1"}]},
            {"field_id": FIELD_PHONE, "values": [{"value": "+7900"}]},
            {"field_id": FIELD_SERIAL, "values": [{"value": {"x": 1}}]},
        ]);
        let patches = parse(&st, Entity::Leads, &raw, "custom_fields_values", &mut v);
        assert_eq!(patches.len(), 1);
        assert_eq!(patches[0].values, Some(vec![json!({"value": "SN-1"})]));
        assert_eq!(
            codes(&v),
            vec![
                (
                    "NotSupportedChoice".into(),
                    "custom_fields_values.1.field_id".into()
                ),
                (
                    "InvalidType".into(),
                    "custom_fields_values.2.values.0.value".into()
                ),
            ]
        );
    }

    #[test]
    fn phone_and_email_need_known_enum_codes() {
        let st = state();
        let mut v = Violations::default();
        let raw = json!([
            {"field_code": "PHONE", "values": [{"value": "+79123456789", "enum_code": "MOB"}]},
            {"field_code": "EMAIL", "values": [{"value": "a@b.ru", "enum_code": "MOB"}]},
        ]);
        let patches = parse(&st, Entity::Contacts, &raw, "p", &mut v);
        assert_eq!(patches[0].field_id, FIELD_PHONE);
        assert_eq!(patches[0].values.as_ref().unwrap()[0]["enum_code"], "MOB");
        assert_eq!(
            codes(&v),
            vec![("NotSupportedChoice".into(), "p.1.values.0.enum_code".into())]
        );
        let _ = FIELD_EMAIL;
    }

    #[test]
    fn empty_lists_are_too_few() {
        let st = state();
        let mut v = Violations::default();
        parse(
            &st,
            Entity::Leads,
            &json!([]),
            "custom_fields_values",
            &mut v,
        );
        assert_eq!(
            codes(&v),
            vec![("TooFew".into(), "custom_fields_values".into())]
        );
    }
}
