//! Prices in roubles, read exactly into kopecks from their decimal text (never through a float).
//!
//! Accepted spellings: `1234`, `1234.5`, `1234,50`, `1 234,50` (space, no-break or thin space
//! between groups of three digits), an optional trailing `₽`. Rejected: signs, exponents, both `.`
//! and `,` (`1,234.50` and `1.234,50` are ambiguous), a separator without digits after it and more
//! than two decimals (`1,234` might mean a thousand: the customer is asked rather than guessed).
//!
//! A JSON number arrives here as its shortest round-trip spelling (`0.1` stays `0.1`), which for
//! a price with at most two decimals below a billion is exactly what the sender wrote.

use serde_json::Value;

/// The highest unit price accepted: one billion roubles. Keeps every cart total far from
/// overflow (200 lines × 10 000 × 10¹¹ kopecks < 2⁶³).
pub const MAX_PRICE_KOPECKS: i64 = 1_000_000_000 * 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a price in roubles")]
    Format,
    #[error("price is negative")]
    Negative,
    #[error("price has more than two decimals")]
    TooManyDecimals,
    #[error("price is above the limit")]
    TooLarge,
}

impl MoneyError {
    pub fn message_ru(self) -> &'static str {
        match self {
            MoneyError::Format => "Цена — число в рублях, например 1234,50",
            MoneyError::Negative => "Цена не может быть отрицательной",
            MoneyError::TooManyDecimals => "Цена: не более двух знаков после запятой",
            MoneyError::TooLarge => "Цена: не более 1 000 000 000 ₽",
        }
    }
}

fn is_group_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}')
}

/// A price in roubles written as text → kopecks.
pub fn parse_roubles(text: &str) -> Result<i64, MoneyError> {
    let text = text.trim();
    let text = text.strip_suffix('₽').unwrap_or(text).trim_end();
    // One sign at most: `--5` is a typo, not a price. (Reading signs one call per sign let a
    // 64 KiB run of `-` overflow the stack.)
    match text.strip_prefix(['-', '\u{2212}']) {
        Some(rest) => match parse_unsigned(rest.trim_start()) {
            Ok(0) => Ok(0),
            Ok(_) | Err(MoneyError::TooLarge) => Err(MoneyError::Negative),
            Err(e) => Err(e),
        },
        None => parse_unsigned(text),
    }
}

/// `1 234,50` without sign or currency → kopecks.
fn parse_unsigned(text: &str) -> Result<i64, MoneyError> {
    let (int_part, frac_part) = match (text.find('.'), text.find(',')) {
        (Some(_), Some(_)) => return Err(MoneyError::Format),
        (Some(i), None) | (None, Some(i)) => (&text[..i], Some(&text[i + 1..])),
        (None, None) => (text, None),
    };
    let whole = parse_grouped_digits(int_part)?;
    let kopecks = match frac_part {
        None => 0,
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(MoneyError::Format);
        }
        Some(f) if f.len() > 2 => return Err(MoneyError::TooManyDecimals),
        Some(f) => {
            let n: i64 = f.parse().map_err(|_| MoneyError::Format)?;
            if f.len() == 1 { n * 10 } else { n }
        }
    };
    let total = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(kopecks))
        .ok_or(MoneyError::TooLarge)?;
    if total > MAX_PRICE_KOPECKS {
        return Err(MoneyError::TooLarge);
    }
    Ok(total)
}

/// Whole roubles: plain digits, or groups of three after the first when spaced.
fn parse_grouped_digits(text: &str) -> Result<i64, MoneyError> {
    let groups: Vec<&str> = text.split(is_group_space).collect();
    let all_digits = |g: &&str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
    if !groups.iter().all(all_digits) {
        return Err(MoneyError::Format);
    }
    if groups.len() > 1 && (groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3)) {
        return Err(MoneyError::Format);
    }
    let digits: String = groups.concat();
    if digits.len() > 15 {
        return Err(MoneyError::TooLarge);
    }
    digits.parse().map_err(|_| MoneyError::Format)
}

/// A price as a JSON value (number or text) → kopecks. `None` for anything else.
pub(super) fn price_from_value(value: &Value) -> Option<Result<i64, MoneyError>> {
    match value {
        Value::Number(n) => Some(parse_roubles(&n.to_string())),
        Value::String(s) => Some(parse_roubles(s)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_spellings() {
        let cases = [
            ("0", 0),
            ("12", 1200),
            ("12.5", 1250),
            ("12,50", 1250),
            ("12.05", 1205),
            ("0.1", 10),
            ("0.01", 1),
            ("007", 700),
            ("1 234,50", 123_450),
            ("1\u{a0}234\u{a0}567.89", 123_456_789),
            ("12\u{202f}345,5", 1_234_550),
            ("  1500 ₽ ", 150_000),
            ("1500₽", 150_000),
            ("-0", 0),
            ("1000000000", MAX_PRICE_KOPECKS),
            ("999 999 999,99", MAX_PRICE_KOPECKS - 1),
        ];
        for (text, kopecks) in cases {
            assert_eq!(parse_roubles(text), Ok(kopecks), "{text:?}");
        }
    }

    #[test]
    fn rejected_spellings() {
        use MoneyError::*;
        let cases = [
            ("", Format),
            ("abc", Format),
            ("12 руб", Format),
            ("1,234.50", Format),
            ("1.234,50", Format),
            ("12.", Format),
            (".5", Format),
            ("+12", Format),
            ("1e3", Format),
            ("12 34", Format),
            ("1234 567", Format),
            ("1  234", Format),
            ("1.2.3", Format),
            ("1,234", TooManyDecimals),
            ("0.001", TooManyDecimals),
            ("12.500", TooManyDecimals),
            ("-5", Negative),
            ("\u{2212}0,01", Negative),
            ("-99999999999999999999", Negative),
            ("1000000000.01", TooLarge),
            ("99999999999999999999999", TooLarge),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_roubles(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn a_run_of_minus_signs_is_refused_on_a_small_stack() {
        assert_eq!(parse_roubles("--5"), Err(MoneyError::Format));
        assert_eq!(parse_roubles("-\u{2212}0"), Err(MoneyError::Format));
        assert_eq!(parse_roubles("- 5"), Err(MoneyError::Negative));
        // A whole 64 KiB request body of signs: one stack frame per sign used to overflow.
        let signs = format!("{}5", "-".repeat(64 * 1024));
        let on_small_stack = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || parse_roubles(&signs))
            .unwrap();
        assert_eq!(on_small_stack.join().unwrap(), Err(MoneyError::Format));
    }

    #[test]
    fn json_numbers_are_read_from_their_decimal_spelling() {
        let body: Value =
            serde_json::from_str(r#"[0.1, 0.2, 0.29, 1234.56, 19.99, 100, 1e2, 1.005, -1]"#)
                .unwrap();
        let read: Vec<_> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|v| price_from_value(v).unwrap())
            .collect();
        assert_eq!(
            read,
            vec![
                Ok(10),
                Ok(20),
                Ok(29),
                Ok(123_456),
                Ok(1999),
                Ok(10_000),
                Ok(10_000),
                Err(MoneyError::TooManyDecimals),
                Err(MoneyError::Negative),
            ]
        );
        // 0.1 + 0.2 in kopecks is exactly 30, where binary floats give 0.30000000000000004.
        assert_eq!(read[0].unwrap() + read[1].unwrap(), 30);
        assert_eq!(price_from_value(&Value::Bool(true)), None);
    }
}
