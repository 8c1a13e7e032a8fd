//! PHP-style bracket forms (`a[b][0][c]=v`): the one tokenizer and tree builder behind amoCRM
//! webhooks (`amocrm::webhook`) and the HTML forms of `POST /leads` (`leads::intake`).
//!
//! [`pairs`] splits and decodes a body, [`Key::parse`] reads a key's brackets and
//! [`Node::insert`] places a value in the tree. Each caller runs the loop over the pairs itself,
//! because that is where its own limits live (depth, number of pairs, which keys it skips or
//! refuses, with its own error type), and reads the finished tree its own way.
//!
//! Written over `form_urlencoded` rather than `serde_qs`, which reads numeric keys as array
//! indexes and rejects `linked_leads_id[9982719][ID]=…` (ids used as keys): here every key stays
//! a map key, and turning index groups into arrays is left to the caller.
//!
//! Semantics follow PHP's `parse_str`, which amoCRM's encoder targets and HTML forms fit:
//! `+` is a space, `%XX` is a byte (a `%` without two hex digits stays as it is, invalid UTF-8
//! becomes U+FFFD), empty pairs are skipped, a repeated key keeps the last value, `a[]` appends
//! at one past the largest numeric key, text after the last `]` is ignored, a key whose first
//! `[` never closes is a plain name. Unlike PHP, a path given both a scalar and sub-keys keeps
//! both (`values[0]=1615845600` next to `values[0][value]=…` loses nothing); [`Node::insert`]
//! tells when that happens, for callers that refuse it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The `name=value` pairs of a body in order, decoded (see the module notes).
pub fn pairs(body: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(body)
}

/// A decoded key read the PHP way: `a[b][]` has the name `a` and the path `["b", ""]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a> {
    /// Text before the first `[`, or the whole key when that bracket never closes. Empty for
    /// `[a]=…` and `=…`, which PHP drops.
    pub name: &'a str,
    /// The bracket contents in order; `""` (from `[]`) appends.
    pub path: Vec<&'a str>,
    /// The key is exactly `name[part]…`: a non-empty name without `]`, every bracket closed,
    /// no `[` inside a part and nothing after the last `]`. PHP reads the other keys too, by
    /// the rules above; a caller that publishes its own forms may refuse them.
    pub well_formed: bool,
}

impl<'a> Key<'a> {
    pub fn parse(key: &'a str) -> Key<'a> {
        let Some(open) = key.find('[') else {
            return Key {
                name: key,
                path: Vec::new(),
                well_formed: !key.is_empty() && !key.contains(']'),
            };
        };
        let name = &key[..open];
        let mut path = Vec::new();
        let mut rest = &key[open..];
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(close) = inner.find(']') else { break };
            path.push(&inner[..close]);
            rest = &inner[close + 1..];
        }
        let well_formed = !name.is_empty()
            && !name.contains(']')
            && rest.is_empty()
            && !path.iter().any(|part| part.contains('['));
        if path.is_empty() && !name.is_empty() {
            // `a[b=1`: an unclosed bracket makes the whole key a plain name.
            return Key {
                name: key,
                path,
                well_formed,
            };
        }
        Key {
            name,
            path,
            well_formed,
        }
    }
}

/// One path of the form: the scalar assigned exactly here (if any) and the sub-keys below it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Node {
    pub value: Option<String>,
    children: BTreeMap<String, Node>,
    /// PHP's "next free index" for `a[]=…`: one past the largest numeric key seen.
    next_index: u64,
}

impl Node {
    /// Puts `value` at the key's path, replacing an earlier value there. Returns `true` when a
    /// node on that path now holds both a scalar and sub-keys (`a=1&a[b]=2`, in either order).
    /// The caller decides what a nameless key means; here it is just the name `""`.
    pub fn insert(&mut self, key: &Key<'_>, value: String) -> bool {
        let mut node = self.child_mut(key.name);
        let mut mixed = false;
        for part in &key.path {
            mixed |= node.value.is_some();
            node = if part.is_empty() {
                let index = node.next_index.to_string();
                node.child_mut(&index)
            } else {
                node.child_mut(part)
            };
        }
        mixed |= node.has_children();
        node.value = Some(value);
        mixed
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> (&str, Vec<&str>, bool) {
        let key = Key::parse(raw);
        (key.name, key.path, key.well_formed)
    }

    /// Every pair of `body` inserted; the tree and whether any insert mixed a scalar with sub-keys.
    fn build(body: &str) -> (Node, bool) {
        let mut root = Node::default();
        let mut mixed = false;
        for (name, value) in pairs(body.as_bytes()) {
            mixed |= root.insert(&Key::parse(&name), value.into_owned());
        }
        (root, mixed)
    }

    fn keys(node: &Node) -> Vec<&str> {
        node.entries().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn pairs_are_split_and_decoded() {
        let got: Vec<(String, String)> = pairs(b"a=1+%2B&&b&c==x&d%5B0%5D=%D0%AF%ZZ")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let want = [("a", "1 +"), ("b", ""), ("c", "=x"), ("d[0]", "Я%ZZ")];
        assert_eq!(
            got,
            want.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
    }

    #[test]
    fn well_formed_keys_split_into_name_and_path() {
        assert_eq!(key("name"), ("name", vec![], true));
        assert_eq!(key("items[0][sku]"), ("items", vec!["0", "sku"], true));
        assert_eq!(key("tags[]"), ("tags", vec![""], true));
    }

    #[test]
    fn odd_keys_are_read_like_php_and_flagged() {
        assert_eq!(
            key("a[b=1"),
            ("a[b=1", vec![], false),
            "unclosed: plain name"
        );
        assert_eq!(key("d[e]tail"), ("d", vec!["e"], false), "tail ignored");
        assert_eq!(key("a[b[c]]"), ("a", vec!["b[c"], false));
        assert_eq!(key("a]"), ("a]", vec![], false));
        assert_eq!(key("[x][y]"), ("", vec!["x", "y"], false), "nameless");
        assert_eq!(key("[x"), ("", vec![], false), "nameless, not a plain name");
        assert_eq!(key(""), ("", vec![], false));
    }

    #[test]
    fn append_takes_one_past_the_largest_numeric_key() {
        let (tree, _) = build("l[]=a&l[x]=b&l[]=c&l[7]=d&l[]=e&l[007]=f&l[]=g");
        let l = tree.get("l").unwrap();
        assert_eq!(keys(l), ["0", "1", "007", "7", "8", "9", "x"]);
        assert_eq!(l.text("9"), Some("g"), "`007` is a name, not index 7");
    }

    #[test]
    fn later_values_replace_earlier_ones_at_any_depth() {
        let (tree, mixed) = build("a[b][c]=1&a[b][c]=2&a[b][d]=3");
        let b = tree.get("a").unwrap().get("b").unwrap();
        assert_eq!((b.text("c"), b.text("d")), (Some("2"), Some("3")));
        assert!(!mixed);
    }

    #[test]
    fn insert_reports_a_scalar_beside_sub_keys_in_either_order() {
        for body in ["a=1&a[b]=2", "a[b]=2&a=1"] {
            let (tree, mixed) = build(body);
            assert!(mixed, "{body}");
            let a = tree.get("a").unwrap();
            assert_eq!((a.scalar(), a.text("b")), (Some("1"), Some("2")), "{body}");
        }
        assert!(build("x[0][y]=2&x[0]=1").1);
        assert!(build("x[0]=1&x[0][y][z]=2").1);
        assert!(!build("a[b]=1&a[c]=2&d=3&d=4&l[]=5&l[]=6").1);
    }
}
