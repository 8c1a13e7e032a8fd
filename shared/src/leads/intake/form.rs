//! `application/x-www-form-urlencoded` bodies of plain HTML forms → the same loose JSON tree a
//! JSON body gives, so one validator serves both.
//!
//! Bracketed keys nest: `equipment[model]` → `{"equipment":{"model":…}}`, `items[0][sku]` →
//! `{"items":[{"sku":…}]}`, `tags[]` appends. Every value stays a string; the validator reads
//! numbers out of strings. A repeated key keeps its last value. Bytes that are not UTF-8 are
//! replaced rather than refused: a garbled letter in a name is better than a lost lead.

use serde_json::{Map, Value};

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
    let mut root = Map::new();
    for (i, pair) in body
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        if i >= MAX_PAIRS {
            return Err(FormError::TooManyFields);
        }
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        let key = decode(key);
        let path = split_key(&key)?;
        insert(&mut root, &key, &path, decode(value))?;
    }
    Ok(root
        .into_iter()
        .map(|(k, v)| (k, arrays_from_indexes(v)))
        .collect())
}

/// Percent-decoding with `+` as space. A `%` not followed by two hex digits stays as it is,
/// as browsers do.
fn decode(raw: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => match raw.get(i + 1..i + 3).and_then(|h| hex_pair(h[0], h[1])) {
                Some(b) => {
                    bytes.push(b);
                    i += 2;
                }
                None => bytes.push(b'%'),
            },
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    Some((digit(hi)? * 16 + digit(lo)?) as u8)
}

/// `items[0][sku]` → `["items", "0", "sku"]`; `tags[]` → `["tags", ""]`.
fn split_key(key: &str) -> Result<Vec<&str>, FormError> {
    let broken = || FormError::BrokenKey(shorten(key));
    let (base, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if base.is_empty() || base.contains(']') {
        return Err(broken());
    }
    let mut path = vec![base];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(broken)?;
        let close = inner.find(']').ok_or_else(broken)?;
        let segment = &inner[..close];
        if segment.contains('[') {
            return Err(broken());
        }
        path.push(segment);
        rest = &inner[close + 1..];
    }
    if path.len() > MAX_DEPTH + 1 {
        return Err(FormError::TooDeep(shorten(key)));
    }
    Ok(path)
}

/// Error messages quote keys (never values), cut to a readable length.
fn shorten(key: &str) -> String {
    key.chars().take(60).collect()
}

fn insert(
    node: &mut Map<String, Value>,
    key: &str,
    path: &[&str],
    value: String,
) -> Result<(), FormError> {
    let (first, rest) = path
        .split_first()
        .expect("a key has at least its base name");
    // `[]` appends: the next free position in this group.
    let slot = if first.is_empty() {
        node.len().to_string()
    } else {
        (*first).to_string()
    };
    if rest.is_empty() {
        if matches!(node.get(&slot), Some(Value::Object(_))) {
            return Err(FormError::Conflict(shorten(key)));
        }
        node.insert(slot, Value::String(value));
        return Ok(());
    }
    match node
        .entry(slot)
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(child) => insert(child, key, rest, value),
        _ => Err(FormError::Conflict(shorten(key))),
    }
}

/// Groups whose keys are all indexes (`items[0]`, `items[1]`, …) become arrays in index order.
fn arrays_from_indexes(value: Value) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    let indexed: Option<Vec<(u64, Value)>> = map
        .iter()
        .map(|(k, v)| {
            let is_index = !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit());
            let index = if is_index { k.parse().ok() } else { None };
            index.map(|i| (i, v.clone()))
        })
        .collect();
    match indexed {
        Some(mut items) if !items.is_empty() => {
            items.sort_by_key(|(i, _)| *i);
            Value::Array(
                items
                    .into_iter()
                    .map(|(_, v)| arrays_from_indexes(v))
                    .collect(),
            )
        }
        _ => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, arrays_from_indexes(v)))
                .collect(),
        ),
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
