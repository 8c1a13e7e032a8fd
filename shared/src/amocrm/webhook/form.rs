//! The PHP-style form body of an amoCRM webhook as a tree: `leads[status][0][id]=7` becomes
//! `leads → status → 0 → id = "7"`.
//!
//! Written by hand over `form_urlencoded` because `serde_qs` reads numeric keys as array indexes
//! and rejects `linked_leads_id[9982719][ID]=…` (sparse "indexes" that are really ids). Here every
//! key stays a map key, so ids-as-keys, sparse indexes and unusual shapes all survive.
//!
//! Semantics follow PHP's `parse_str`, which is what amoCRM's encoder targets:
//! `+` is a space, `%XX` is a byte (invalid UTF-8 becomes U+FFFD), a repeated key keeps the
//! last value, `a[]` appends, text after the last `]` is ignored, a key with an unclosed `[`
//! is a plain name. Unlike PHP, a path that receives both a scalar and sub-keys keeps both
//! (`values[0]=1615845600` next to `values[0][value]=…` loses nothing).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Most bracket segments a key may have. The deepest real key,
/// `leads[status][0][custom_fields][1][values][0][value]`, has 7.
pub const MAX_DEPTH: usize = 10;

/// Key under which [`Node::to_json`] keeps the scalar of a node that also has sub-keys.
pub const SCALAR_KEY: &str = "_value";

/// One path of the form: the scalar assigned exactly here (if any) and the sub-keys below it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Node {
    pub value: Option<String>,
    children: BTreeMap<String, Node>,
    /// PHP's "next free index" for `a[]=…`: one past the largest numeric key seen.
    next_index: u64,
}

/// Why a form body could not become a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    TooDeep { key: String, depth: usize },
}

impl Node {
    /// Builds the tree of a form body. Pairs with an empty name (`=x`, `[a]=x`, `&&`) are skipped.
    pub fn parse(body: &[u8]) -> Result<Node, FormError> {
        let mut root = Node::default();
        for (key, value) in form_urlencoded::parse(body) {
            let Some(path) = split_key(&key)? else {
                continue;
            };
            root.assign(path, value.into_owned());
        }
        Ok(root)
    }

    fn assign(&mut self, path: KeyPath<'_>, value: String) {
        let mut node = self.child_mut(path.base);
        for segment in path.segments {
            node = if segment.is_empty() {
                let index = node.next_index.to_string();
                node.child_mut(&index)
            } else {
                node.child_mut(segment)
            };
        }
        node.value = Some(value);
    }

    fn child_mut(&mut self, key: &str) -> &mut Node {
        if let Some(index) = numeric_key(key) {
            self.next_index = self.next_index.max(index.saturating_add(1));
        }
        self.children.entry(key.to_owned()).or_default()
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.children.get(key)
    }

    pub fn has_children(&self) -> bool {
        !self.children.is_empty()
    }

    /// Sub-keys in body order for lists: numeric keys by value first, then the rest by name.
    pub fn entries(&self) -> Vec<(&str, &Node)> {
        let mut entries: Vec<(&str, &Node)> =
            self.children.iter().map(|(k, v)| (k.as_str(), v)).collect();
        entries.sort_by(|(a, _), (b, _)| compare_keys(a, b));
        entries
    }

    /// The scalar of a sub-key, `None` when absent or empty.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key)?.scalar()
    }

    /// The scalar of this node, `None` when absent or empty.
    pub fn scalar(&self) -> Option<&str> {
        self.value.as_deref().filter(|v| !v.is_empty())
    }

    /// A sub-key read as an integer: `None` when absent, empty or not a number.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.text(key).and_then(parse_int)
    }

    /// The raw tree as JSON: every node with sub-keys is an object keyed as in the body (lists
    /// stay objects keyed `"0"`, `"1"`, …), a scalar beside sub-keys is kept under `"_value"`.
    pub fn to_json(&self) -> Value {
        if self.children.is_empty() {
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

struct KeyPath<'a> {
    base: &'a str,
    segments: Vec<&'a str>,
}

/// `a[b][]` → base `a`, segments `["b", ""]`. `Ok(None)` for a key PHP would drop.
fn split_key(key: &str) -> Result<Option<KeyPath<'_>>, FormError> {
    let Some(open) = key.find('[') else {
        return Ok((!key.is_empty()).then_some(KeyPath {
            base: key,
            segments: Vec::new(),
        }));
    };
    let base = &key[..open];
    if base.is_empty() {
        return Ok(None);
    }
    let mut segments = Vec::new();
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else { break };
        if segments.len() == MAX_DEPTH {
            return Err(FormError::TooDeep {
                key: shorten(key, 80),
                depth: MAX_DEPTH + 1 + inner[close..].matches('[').count(),
            });
        }
        segments.push(&inner[..close]);
        rest = &inner[close + 1..];
    }
    if segments.is_empty() {
        // `a[b=1`: an unclosed bracket makes the whole key a plain name.
        return Ok(Some(KeyPath {
            base: key,
            segments,
        }));
    }
    Ok(Some(KeyPath { base, segments }))
}

/// Numeric keys as PHP sees them: plain decimal digits, no sign, no leading zero.
fn numeric_key(key: &str) -> Option<u64> {
    let digits = !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit());
    if !digits || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    key.parse().ok()
}

fn compare_keys(a: &str, b: &str) -> Ordering {
    let is_num = |k: &str| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit());
    match (is_num(a), is_num(b)) {
        (true, true) => {
            let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
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
