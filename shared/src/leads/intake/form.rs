//! `application/x-www-form-urlencoded` bodies of plain HTML forms → the same loose JSON tree a
//! JSON body gives, so one validator serves both.
//!
//! Bracketed keys nest: `equipment[model]` → `{"equipment":{"model":…}}`, `items[0][sku]` →
//! `{"items":[{"sku":…}]}`, `tags[]` appends. Every value stays a string; the validator reads
//! numbers out of strings. A repeated key keeps its last value. Bytes that are not UTF-8 are
//! replaced rather than refused: a garbled letter in a name is better than a lost lead.
//!
//! The tokenizer and the tree are the crate's shared [`crate::form`]. The rules here are
//! stricter than PHP's, because we publish these forms ourselves: a key must be exactly
//! `name[part]…`, a path is a value or a group but never both, and size is limited.

use serde_json::{Map, Value};

use crate::form::{Key, Node, pairs};

/// More pairs than any real form has (200 cart lines × 4 fields plus the rest).
const MAX_PAIRS: usize = 5000;
/// `items[0][sku]` is two levels; leave room, refuse abuse.
const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FormError {
    #[error("form has more than {MAX_PAIRS} fields")]
    TooManyFields,
    #[error("form key {0:?} is not `name` or `name[part]…`")]
    BrokenKey(String),
    #[error("form key {0:?} nests deeper than {MAX_DEPTH} levels")]
    TooDeep(String),
    #[error("form key {0:?} is used both as a value and as a group")]
    Conflict(String),
}

/// Parses a form body into a JSON object.
pub(super) fn parse(body: &[u8]) -> Result<Map<String, Value>, FormError> {
    let mut root = Node::default();
    for (i, (name, value)) in pairs(body).enumerate() {
        if i >= MAX_PAIRS {
            return Err(FormError::TooManyFields);
        }
        let key = Key::parse(&name);
        if !key.well_formed {
            return Err(FormError::BrokenKey(shorten(&name)));
        }
        if key.path.len() > MAX_DEPTH {
            return Err(FormError::TooDeep(shorten(&name)));
        }
        if root.insert(&key, value.into_owned()) {
            return Err(FormError::Conflict(shorten(&name)));
        }
    }
    Ok(root
        .entries()
        .into_iter()
        .map(|(name, node)| (name.to_owned(), to_json(node)))
        .collect())
}

/// Error messages quote keys (never values), cut to a readable length.
fn shorten(key: &str) -> String {
    key.chars().take(60).collect()
}

/// A value is a string; a group whose keys are all indexes (`items[0]`, `items[1]`, …) becomes
/// an array in index order, any other group an object.
fn to_json(node: &Node) -> Value {
    if !node.has_children() {
        return Value::String(node.value.clone().unwrap_or_default());
    }
    let is_index = |k: &str| k.bytes().all(|b| b.is_ascii_digit()) && k.parse::<u64>().is_ok();
    // `entries` lists numeric keys by value, so an index group is already in order.
    let entries = node.entries();
    if entries.iter().all(|(k, _)| is_index(k)) {
        Value::Array(entries.into_iter().map(|(_, n)| to_json(n)).collect())
    } else {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, n)| (k.to_owned(), to_json(n)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(body: &str) -> Value {
        Value::Object(parse(body.as_bytes()).unwrap())
    }

    #[test]
    fn flat_fields_are_decoded() {
        assert_eq!(
            parsed(
                "name=%D0%98%D0%B2%D0%B0%D0%BD+%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2&phone=%2B7+912&empty=&flag&&x=1%2"
            ),
            json!({"name": "Иван Петров", "phone": "+7 912", "empty": "", "flag": "", "x": "1%2"})
        );
    }

    #[test]
    fn brackets_nest_and_indexes_become_arrays() {
        let body = "equipment[model]=16K20&equipment[serial]=A-1\
            &items[1][name]=Two&items[0][name]=One&items[0][qty]=2&items[10][name]=Ten\
            &utm[source]=yandex&tags[]=a&tags[]=b";
        assert_eq!(
            parsed(body),
            json!({
                "equipment": {"model": "16K20", "serial": "A-1"},
                "items": [{"name": "One", "qty": "2"}, {"name": "Two"}, {"name": "Ten"}],
                "utm": {"source": "yandex"},
                "tags": ["a", "b"],
            })
        );
    }

    #[test]
    fn appending_after_an_explicit_index_overwrites_nothing() {
        assert_eq!(
            parsed("tags[1]=a&tags[]=b&items[3][name]=x&items[][name]=y"),
            json!({"tags": ["a", "b"], "items": [{"name": "x"}, {"name": "y"}]})
        );
    }

    #[test]
    fn percent_encoded_brackets_are_brackets() {
        assert_eq!(
            parsed("utm%5Bsource%5D=vk"),
            json!({"utm": {"source": "vk"}})
        );
    }

    #[test]
    fn last_repeated_value_wins() {
        assert_eq!(parsed("name=a&name=b"), json!({"name": "b"}));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        assert_eq!(
            parse(b"name=%FF%FEok").unwrap()["name"],
            json!("\u{fffd}\u{fffd}ok")
        );
    }

    #[test]
    fn broken_keys_are_refused() {
        for body in ["[x]=1", "a[b=1", "a]=1", "a[b]c=1", "a[b[c]]=1", "=1"] {
            assert!(
                matches!(parse(body.as_bytes()), Err(FormError::BrokenKey(_))),
                "{body}"
            );
        }
        assert!(matches!(
            parse(b"a[b][c][d][e][f]=1"),
            Err(FormError::TooDeep(_))
        ));
        assert!(matches!(parse(b"a=1&a[b]=2"), Err(FormError::Conflict(_))));
        assert!(matches!(parse(b"a[b]=2&a=1"), Err(FormError::Conflict(_))));
        let many = "a=1&".repeat(MAX_PAIRS + 1);
        assert_eq!(parse(many.as_bytes()), Err(FormError::TooManyFields));
    }
}
