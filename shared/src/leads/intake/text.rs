//! Cleaning of customer text and the syntax checks of e-mail addresses and page URLs.
//!
//! Cleaning removes what a person cannot see or type on purpose (control characters, bidi
//! overrides, zero-width spaces), so names cannot smuggle line breaks into mail headers or
//! reorder text in amoCRM.

/// Characters that are invisible and only ever used to disguise text.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            | '\u{061C}' | '\u{FEFF}'
    )
}

/// One line of text: every run of whitespace (line breaks and tabs included) becomes one
/// space, control and invisible characters are dropped, the ends are trimmed.
pub(super) fn single_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            pending_space = true;
        } else if c.is_control() || is_invisible(c) {
            continue;
        } else {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    out
}

/// Free text that keeps its line breaks (`\r\n` and `\r` become `\n`); tabs become spaces,
/// other control and invisible characters are dropped, the ends are trimmed.
pub(super) fn multi_line(raw: &str) -> String {
    let unified = raw.replace("\r\n", "\n").replace('\r', "\n");
    let cleaned: String = unified
        .chars()
        .filter_map(|c| match c {
            '\n' => Some('\n'),
            '\t' => Some(' '),
            c if c.is_control() || is_invisible(c) => None,
            c => Some(c),
        })
        .collect();
    cleaned.trim().to_string()
}

pub(super) const MAX_EMAIL_CHARS: usize = 254;

/// Characters that make an address need quoting; we accept only plain addresses.
const EMAIL_LOCAL_FORBIDDEN: &[char] =
    &['"', '(', ')', ',', ':', ';', '<', '>', '[', '\\', ']', '@'];

/// A plain `local@domain.tld` address with the domain lower-cased, or `None`.
/// The mailbox part keeps its case: servers may treat it as significant.
pub(super) fn normalize_email(text: &str) -> Option<String> {
    if text.chars().count() > MAX_EMAIL_CHARS || text.chars().any(char::is_whitespace) {
        return None;
    }
    let (local, domain) = text.split_once('@')?;
    let local_ok = !local.is_empty()
        && local.chars().count() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !local.contains(EMAIL_LOCAL_FORBIDDEN);
    let domain = domain.to_lowercase();
    (local_ok && domain_ok(&domain)).then(|| format!("{local}@{domain}"))
}

/// At least two labels of letters, digits and inner hyphens; the top level is letters
/// (`ru`, `рф`) or punycode (`xn--p1ai`).
fn domain_ok(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.chars().count() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    let Some(tld) = labels.last() else {
        return false;
    };
    let tld_ok = tld.chars().count() >= 2
        && (tld.chars().all(char::is_alphabetic) || tld.starts_with("xn--"));
    labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok
}

/// An absolute `http(s)` URL with a host, the scheme lower-cased, or `None`.
/// No whitespace, quotes or angle brackets (a browser sends them percent-encoded), and no
/// `user@` part (only ever used to make a link look like another site).
pub(super) fn normalize_page_url(text: &str) -> Option<String> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("https://") {
        ("https://", &text[8..])
    } else if lower.starts_with("http://") {
        ("http://", &text[7..])
    } else {
        return None;
    };
    if rest
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '\\' | '`'))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let port_ok = |port: &str| port.chars().all(|c| c.is_ascii_digit());
    let host_ok = if let Some(bracketed) = authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        match bracketed.split_once(']') {
            Some((ip, after)) => {
                !ip.is_empty()
                    && ip
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                    && (after.is_empty() || after.strip_prefix(':').is_some_and(port_ok))
            }
            None => false,
        }
    } else {
        let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
        port_ok(port)
            && !host.is_empty()
            && !host.starts_with('.')
            && host
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
    };
    host_ok.then(|| format!("{scheme}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_collapses_whitespace_and_drops_controls() {
        let cases = [
            ("  Иван   Петров ", "Иван Петров"),
            ("Иван\r\nПетров", "Иван Петров"),
            ("Иван\tПетров\u{0}", "Иван Петров"),
            ("\u{202E}vorteP\u{202C} навИ", "vorteP навИ"),
            ("Ива\u{200B}н\u{7}", "Иван"),
            ("\u{FEFF}\n\t ", ""),
        ];
        for (raw, expected) in cases {
            assert_eq!(single_line(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn multi_line_keeps_line_breaks_only() {
        assert_eq!(
            multi_line("  Станок шумит.\r\nНужен мастер.\rСрочно\u{1b}[31m!\t \n"),
            "Станок шумит.\nНужен мастер.\nСрочно[31m!"
        );
    }

    #[test]
    fn email_syntax() {
        let good = [
            ("ivan@example.ru", "ivan@example.ru"),
            (
                "Ivan.Petrov+zakaz@Example.RU",
                "Ivan.Petrov+zakaz@example.ru",
            ),
            ("o'brien@mail.co.uk", "o'brien@mail.co.uk"),
            ("иван@пример.рф", "иван@пример.рф"),
            ("a@xn--e1afmkfd.xn--p1ai", "a@xn--e1afmkfd.xn--p1ai"),
            ("a@sub-domain.example.com", "a@sub-domain.example.com"),
        ];
        for (raw, expected) in good {
            assert_eq!(normalize_email(raw).as_deref(), Some(expected), "{raw:?}");
        }
        let long_local = format!("{}@example.ru", "a".repeat(65));
        let long_total = format!("a@{}.ru", "b.".repeat(130));
        let bad = [
            "ivan",
            "ivan@",
            "@example.ru",
            "ivan@example",
            "ivan@example.r",
            "ivan@example.ru.",
            "ivan@@example.ru",
            "iv an@example.ru",
            ".ivan@example.ru",
            "iv..an@example.ru",
            "\"ivan\"@example.ru",
            "<script>@example.ru",
            "ivan@exa_mple.ru",
            "ivan@-example.ru",
            "ivan@example.123",
            &long_local,
            &long_total,
        ];
        for raw in bad {
            assert_eq!(normalize_email(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn page_url_syntax() {
        let good = [
            (
                "https://td-rss.ru/catalog?x=1#top",
                "https://td-rss.ru/catalog?x=1#top",
            ),
            ("HTTP://td-rss.ru", "http://td-rss.ru"),
            ("https://тд-рсс.рф/каталог", "https://тд-рсс.рф/каталог"),
            ("http://127.0.0.1:8080/form", "http://127.0.0.1:8080/form"),
            ("http://[::1]:3000/", "http://[::1]:3000/"),
        ];
        for (raw, expected) in good {
            assert_eq!(
                normalize_page_url(raw).as_deref(),
                Some(expected),
                "{raw:?}"
            );
        }
        let bad = [
            "td-rss.ru/catalog",
            "javascript:alert(1)",
            "ftp://td-rss.ru",
            "https://",
            "https:///path",
            "https://td-rss.ru/a b",
            "https://td-rss.ru/\"><script>",
            "https://user@evil.example/",
            "https://td-rss.ru:80a/",
            "https://td_rss.ru/",
        ];
        for raw in bad {
            assert_eq!(normalize_page_url(raw), None, "{raw:?}");
        }
    }
}
