//! The PHP-style form body of an amoCRM webhook as a tree: `leads[status][0][id]=7` becomes
//! `leads → status → 0 → id = "7"`.
//!
//! The tokenizer and the tree are the crate's shared [`crate::form`] (PHP `parse_str` semantics,
//! ids used as keys stay keys). This module adds the webhook's rules, lenient as PHP is, since
//! amoCRM's encoder targets PHP: a key PHP would drop (`=x`, `[a]=x`) is skipped, an odd key is
//! read as PHP reads it (`b[c=1` is the name `b[c`), a scalar beside sub-keys is kept
//! (`values[0]=1615845600` next to `values[0][value]=…`), and only depth is limited. It also
//! adds the readers the events need: numbers and the raw JSON view.

use serde_json::{Map, Value};

use crate::form::{Key, pairs};

pub use crate::form::Node;

/// Most bracket segments a key may have. The deepest real key,
/// `leads[status][0][custom_fields][1][values][0][value]`, has 7.
pub const MAX_DEPTH: usize = 10;

/// Key under which [`Node::to_json`] keeps the scalar of a node that also has sub-keys.
pub const SCALAR_KEY: &str = "_value";

/// Why a form body could not become a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    TooDeep { key: String, depth: usize },
}

// The webhook's constructor and readers of the shared tree, visible only inside `webhook`.
impl Node {
    /// Builds the tree of a webhook body by the rules above.
    pub(super) fn parse(body: &[u8]) -> Result<Node, FormError> {
        let mut root = Node::default();
        for (name, value) in pairs(body) {
            let key = Key::parse(&name);
            if key.name.is_empty() {
                continue;
            }
            if key.path.len() > MAX_DEPTH {
                return Err(FormError::TooDeep {
                    key: shorten(&name, 80),
                    depth: key.path.len(),
                });
            }
            // A scalar beside sub-keys is fine here: both stay readable.
            root.insert(&key, value.into_owned());
        }
        Ok(root)
    }

    /// A sub-key read as an integer: `None` when absent, empty or not a number.
    pub(super) fn int(&self, key: &str) -> Option<i64> {
        self.text(key).and_then(parse_int)
    }

    /// The raw tree as JSON: every node with sub-keys is an object keyed as in the body (lists
    /// stay objects keyed `"0"`, `"1"`, …), a scalar beside sub-keys is kept under `"_value"`.
    pub(super) fn to_json(&self) -> Value {
        if !self.has_children() {
            return Value::String(self.value.clone().unwrap_or_default());
        }
        let mut map = Map::new();
        if let Some(value) = &self.value {
            map.insert(SCALAR_KEY.to_owned(), Value::String(value.clone()));
        }
        for (key, child) in self.entries() {
            map.insert(key.to_owned(), child.to_json());
        }
        Value::Object(map)
    }
}

/// An amoCRM number: all values arrive as strings, sometimes empty or padded.
pub fn parse_int(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// At most `max` characters of `text`, with `…` when cut (safe on any UTF-8 boundary).
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(body: &str) -> Node {
        Node::parse(body.as_bytes()).expect("parses")
    }

    #[test]
    fn nests_encoded_and_raw_brackets_alike() {
        let encoded = tree("leads%5Bstatus%5D%5B0%5D%5Bid%5D=7&account%5Bid%5D=1");
        let raw = tree("leads[status][0][id]=7&account[id]=1");
        assert_eq!(encoded, raw);
        assert_eq!(
            raw.to_json(),
            json!({"account": {"id": "1"}, "leads": {"status": {"0": {"id": "7"}}}})
        );
    }

    #[test]
    fn decodes_plus_percent_and_keeps_literal_cyrillic() {
        let t = tree("a=%D0%98%D0%BB%D1%8C%D1%8F+%2B1&b=Семинар:+Пропитание&c=x%2Fy");
        assert_eq!(t.text("a"), Some("Илья +1"));
        assert_eq!(t.text("b"), Some("Семинар: Пропитание"));
        assert_eq!(t.text("c"), Some("x/y"));
    }

    #[test]
    fn value_may_contain_equals_and_question_marks() {
        let t = tree("u=https://forms.example/x?dp=Q1%2BhH&v=1");
        assert_eq!(t.text("u"), Some("https://forms.example/x?dp=Q1+hH"));
    }

    #[test]
    fn invalid_percent_and_utf8_do_not_fail() {
        let t = tree("a=%ZZ%&b=%FF%FE");
        assert_eq!(t.text("a"), Some("%ZZ%"));
        assert_eq!(t.text("b"), Some("\u{FFFD}\u{FFFD}"));
    }

    #[test]
    fn scalar_and_subkeys_on_one_path_both_survive() {
        let t = tree("v[0]=1615845600&v[0][enum]=5");
        let node = t.get("v").unwrap().get("0").unwrap();
        assert_eq!(node.scalar(), Some("1615845600"));
        assert_eq!(node.text("enum"), Some("5"));
        assert_eq!(
            t.to_json(),
            json!({"v": {"0": {"_value": "1615845600", "enum": "5"}}})
        );
    }

    #[test]
    fn last_repeated_key_wins_and_empty_brackets_append() {
        let t = tree("a=1&a=2&l[]=x&l[]=y&l[7]=z&l[]=w");
        assert_eq!(t.text("a"), Some("2"));
        let keys: Vec<&str> = t
            .get("l")
            .unwrap()
            .entries()
            .iter()
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(keys, ["0", "1", "7", "8"]);
    }

    #[test]
    fn numeric_keys_sort_by_value_not_text() {
        let t = tree("f[10]=c&f[2]=b&f[0]=a&f[name]=n");
        let values: Vec<&str> = t
            .get("f")
            .unwrap()
            .entries()
            .iter()
            .map(|(_, n)| n.scalar().unwrap())
            .collect();
        assert_eq!(values, ["a", "b", "c", "n"]);
    }

    #[test]
    fn odd_keys_follow_php() {
        let t = tree("=x&[a]=y&&b[c=1&d[e]tail=2&noval");
        assert_eq!(t.text("b[c"), Some("1"));
        assert_eq!(t.get("d").unwrap().text("e"), Some("2"));
        assert_eq!(t.get("noval").unwrap().value.as_deref(), Some(""));
        assert_eq!(t.text("noval"), None, "empty scalars read as absent");
        assert!(t.get("").is_none());
    }

    #[test]
    fn depth_is_limited() {
        let ok = format!("a{}=1", "[x]".repeat(MAX_DEPTH));
        assert!(Node::parse(ok.as_bytes()).is_ok());
        let deep = format!("a{}=1", "[x]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            Node::parse(deep.as_bytes()),
            Err(FormError::TooDeep {
                key: shorten(&deep[..deep.len() - 2], 80),
                depth: MAX_DEPTH + 1
            })
        );
    }

    #[test]
    fn parse_int_tolerates_padding_but_not_junk() {
        assert_eq!(parse_int(" 936736\n"), Some(936736));
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("12a"), None);
        assert_eq!(parse_int("99999999999999999999"), None);
    }

    #[test]
    fn shorten_respects_char_boundaries() {
        assert_eq!(shorten("Илья", 2), "Ил…");
        assert_eq!(shorten("ab", 2), "ab");
    }
}
