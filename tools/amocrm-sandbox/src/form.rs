//! `application/x-www-form-urlencoded` both ways, the way PHP does it: amoCRM's webhooks are
//! built with PHP's `http_build_query` (space → `+`, everything but `A-Za-z0-9-_.` as `%XX`),
//! and query strings like `filter[id][]=1` arrive in the same encoding.

/// Encodes one key or value like PHP's `urlencode`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for byte in s.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Joins pairs into a body: `k=v&k=v`.
pub fn encode_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k.as_ref()), encode(v.as_ref())))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes one component: `+` is a space, `%XX` a byte; invalid escapes stay as written.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Splits a query string or form body into decoded pairs, in order.
pub fn decode_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(part), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_php_urlencode() {
        assert_eq!(
            encode("leads[status][0][id]"),
            "leads%5Bstatus%5D%5B0%5D%5Bid%5D"
        );
        assert_eq!(encode("TEST MISHA (SORRY)"), "TEST+MISHA+%28SORRY%29");
        assert_eq!(encode("1800*2400"), "1800%2A2400");
        assert_eq!(encode("https://x.amocrm.ru"), "https%3A%2F%2Fx.amocrm.ru");
        assert_eq!(encode("Заявка"), "%D0%97%D0%B0%D1%8F%D0%B2%D0%BA%D0%B0");
    }

    #[test]
    fn decoding_reverses_encoding() {
        let original = "Серийный номер: A-1 (x*y)+z%";
        assert_eq!(decode(&encode(original)), original);
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(
            decode_pairs("filter%5Bid%5D%5B%5D=1&filter[id][]=2&flag"),
            vec![
                ("filter[id][]".to_string(), "1".to_string()),
                ("filter[id][]".to_string(), "2".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
    }
}
