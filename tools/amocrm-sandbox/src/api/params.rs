//! Query strings the way amoCRM reads them (`filter[id][]=1`, `filter[statuses][0][status_id]`,
//! `order[updated_at]=asc`, `with=contacts,loss_reason`, `page`, `limit`) and the paged list
//! envelope (`_page`, `_links.self/next`, `_embedded`).

use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::form;

use super::MAX_BATCH;

/// Decoded query pairs, in order.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Params {
        Params(raw.map(form::decode_pairs).unwrap_or_default())
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, `key[]` and `key[N]` (and comma lists inside them).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| {
                k == key
                    || k.strip_prefix(key).is_some_and(|rest| {
                        rest.starts_with('[')
                            && rest.ends_with(']')
                            && rest[1..rest.len() - 1].chars().all(|c| c.is_ascii_digit())
                    })
            })
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Integers from `list(key)`; anything non-numeric is dropped (amoCRM ignores it too).
    pub fn ints(&self, key: &str) -> Vec<i64> {
        self.list(key)
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }

    /// Whether `with=` names `what`.
    pub fn with(&self, what: &str) -> bool {
        self.get("with")
            .is_some_and(|w| w.split(',').any(|x| x.trim() == what))
    }

    /// `filter[statuses][N][pipeline_id|status_id]` pairs, grouped by N.
    pub fn status_filters(&self) -> Vec<(Option<i64>, Option<i64>)> {
        let mut groups: std::collections::BTreeMap<String, (Option<i64>, Option<i64>)> =
            Default::default();
        for (k, v) in &self.0 {
            let Some(rest) = k.strip_prefix("filter[statuses][") else {
                continue;
            };
            let Some((index, field)) = rest.split_once("][") else {
                continue;
            };
            let entry = groups.entry(index.to_string()).or_default();
            match field.trim_end_matches(']') {
                "pipeline_id" => entry.0 = v.parse().ok(),
                "status_id" => entry.1 = v.parse().ok(),
                _ => {}
            }
        }
        groups.into_values().collect()
    }

    /// `order[field]=asc|desc` for one of the allowed fields.
    pub fn order(&self, allowed: &[&str]) -> Option<(String, bool)> {
        self.0.iter().find_map(|(k, v)| {
            let field = k.strip_prefix("order[")?.strip_suffix(']')?;
            if !allowed.contains(&field) {
                return None;
            }
            Some((field.to_string(), v.eq_ignore_ascii_case("desc")))
        })
    }
}

/// One page of a list.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: usize,
    pub limit: usize,
}

/// `page` (from 1) and `limit` (default 50; above 250 is 422 "Limit 250 per page").
pub fn page(params: &Params) -> Result<Page, ApiError> {
    let limit = match params.int("limit") {
        Some(l) if l > MAX_BATCH as i64 => return Err(ApiError::LimitExceeded(MAX_BATCH)),
        Some(l) if l >= 1 => l as usize,
        _ => 50,
    };
    let page = params.int("page").filter(|p| *p >= 1).unwrap_or(1) as usize;
    Ok(Page { page, limit })
}

fn href(base: &str, path: &str, params: &Params, page: usize) -> String {
    let mut pairs: Vec<(String, String)> = params
        .0
        .iter()
        .filter(|(k, _)| k != "page")
        .cloned()
        .collect();
    pairs.insert(0, ("page".into(), page.to_string()));
    format!("{base}{path}?{}", form::encode_pairs(&pairs))
}

/// Cuts one page out of `items` and wraps it in amoCRM's envelope; `None` when the page is
/// empty (the caller answers 204).
pub fn envelope(
    base: &str,
    path: &str,
    params: &Params,
    page: Page,
    key: &str,
    items: Vec<Value>,
) -> Option<Value> {
    let start = (page.page - 1) * page.limit;
    if start >= items.len() {
        return None;
    }
    let has_next = items.len() > start + page.limit;
    let slice: Vec<Value> = items.into_iter().skip(start).take(page.limit).collect();
    let mut links = json!({ "self": { "href": href(base, path, params, page.page) } });
    if has_next {
        links["next"] = json!({ "href": href(base, path, params, page.page + 1) });
    }
    if page.page > 1 {
        links["first"] = json!({ "href": href(base, path, params, 1) });
        links["prev"] = json!({ "href": href(base, path, params, page.page - 1) });
    }
    Some(json!({
        "_page": page.page,
        "_links": links,
        "_embedded": { key: slice },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_filters_accept_every_spelling() {
        let p = Params::parse(Some(
            "filter[id][]=1&filter[id][1]=2&filter[id]=3,4&filter[idx]=9&filter[id][x]=8",
        ));
        assert_eq!(p.ints("filter[id]"), vec![1, 2, 3, 4]);
    }

    #[test]
    fn status_filters_group_by_index() {
        let p = Params::parse(Some(
            "filter[statuses][0][pipeline_id]=10&filter[statuses][0][status_id]=142&filter[statuses][1][status_id]=7",
        ));
        assert_eq!(
            p.status_filters(),
            vec![(Some(10), Some(142)), (None, Some(7))]
        );
    }

    #[test]
    fn paging_limits() {
        assert!(matches!(
            page(&Params::parse(Some("limit=251"))),
            Err(ApiError::LimitExceeded(250))
        ));
        let p = page(&Params::parse(Some("limit=250&page=3"))).unwrap();
        assert_eq!((p.page, p.limit), (3, 250));
        let p = page(&Params::parse(None)).unwrap();
        assert_eq!((p.page, p.limit), (1, 50));
    }

    #[test]
    fn envelope_links_next_only_when_more() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let params = Params::parse(Some("limit=2"));
        let pg = page(&params).unwrap();
        let env = envelope(
            "http://x",
            "/api/v4/leads",
            &params,
            pg,
            "leads",
            items.clone(),
        )
        .unwrap();
        assert_eq!(env["_embedded"]["leads"], json!([0, 1]));
        assert_eq!(
            env["_links"]["next"]["href"],
            "http://x/api/v4/leads?page=2&limit=2"
        );
        let params = Params::parse(Some("limit=2&page=3"));
        let env = envelope(
            "http://x",
            "/p",
            &params,
            page(&params).unwrap(),
            "k",
            items.clone(),
        )
        .unwrap();
        assert_eq!(env["_embedded"]["k"], json!([4]));
        assert!(env["_links"].get("next").is_none());
        let params = Params::parse(Some("limit=2&page=4"));
        assert!(
            envelope(
                "http://x",
                "/p",
                &params,
                page(&params).unwrap(),
                "k",
                items
            )
            .is_none()
        );
    }
}
