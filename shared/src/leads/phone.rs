//! Phone numbers: normalisation of what customers type into E.164, display for managers,
//! and masking for logs.
//!
//! Russian numbers are accepted in every common spelling (`8 (912) 345-67-89`, `+7 912 345 67 89`,
//! `7(912)3456789`, `9123456789`); other countries only with a leading `+`.

/// Why a phone number was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone is empty")]
    Empty,
    #[error("phone contains characters other than digits, spaces, dashes, dots and parentheses")]
    BadCharacter,
    /// Looks Russian (no `+`, or `+7`) but is not 11 digits with the country code.
    #[error("not a Russian number: expected 11 digits starting with 7 or 8, or 10 starting with 9")]
    NotRussian,
    /// `+` followed by fewer than 8 or more than 15 digits, or by a zero.
    #[error("not an international number: expected + and 8 to 15 digits")]
    NotInternational,
}

impl PhoneError {
    /// What the customer reads next to the phone field.
    pub fn message_ru(self) -> &'static str {
        match self {
            PhoneError::Empty | PhoneError::NotRussian => {
                "Телефон должен быть российским номером, например +7 912 345-67-89"
            }
            PhoneError::BadCharacter => {
                "Телефон может содержать только цифры, пробелы, дефисы, скобки и «+» в начале"
            }
            PhoneError::NotInternational => {
                "Международный номер должен начинаться с «+» и кода страны и содержать от 8 до 15 цифр"
            }
        }
    }
}

/// Longest input looked at: a phone spelled with generous separators still fits.
const MAX_INPUT_CHARS: usize = 40;

/// Normalises a phone number to E.164 (`+79123456789`).
///
/// Rules, in order:
/// - separators allowed anywhere: spaces, `-`, `–`, `.`, `(`, `)`; a `+` only first; anything else is rejected;
/// - with `+`: `+7` must be followed by 10 digits; `+8` and 10 digits starting with 9 is the common
///   typo for `+7` (no country code starts with 89); any other code needs 8–15 digits, no leading 0;
/// - without `+`: 11 digits starting with 7 or 8 → `+7…`; 10 digits starting with 9 (mobile) or
///   3/4 (city codes) → `+7…`; everything else (including `8…` not 11 digits) is rejected, because a
///   number without a country code can only be read as Russian here.
pub fn normalize_phone(input: &str) -> Result<String, PhoneError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(PhoneError::Empty);
    }
    if input.chars().count() > MAX_INPUT_CHARS {
        return Err(PhoneError::BadCharacter);
    }
    let (plus, rest) = match input.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, input),
    };
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '\u{a0}' | '\u{202f}' | '-' | '\u{2013}' | '.' | '(' | ')' => {}
            _ => return Err(PhoneError::BadCharacter),
        }
    }
    if digits.is_empty() {
        return Err(PhoneError::Empty);
    }
    let first = digits.as_bytes()[0];
    if plus {
        match (first, digits.len()) {
            (b'7', 11) => Ok(format!("+{digits}")),
            (b'7', _) => Err(PhoneError::NotRussian),
            (b'8', 11) if digits.as_bytes()[1] == b'9' => Ok(format!("+7{}", &digits[1..])),
            (b'0', _) => Err(PhoneError::NotInternational),
            (_, 8..=15) => Ok(format!("+{digits}")),
            _ => Err(PhoneError::NotInternational),
        }
    } else {
        match (first, digits.len()) {
            (b'7' | b'8', 11) => Ok(format!("+7{}", &digits[1..])),
            (b'3' | b'4' | b'9', 10) => Ok(format!("+7{digits}")),
            _ => Err(PhoneError::NotRussian),
        }
    }
}

/// How a manager reads a normalised number: `+7 912 345-67-89`; other countries stay E.164.
pub fn display_phone(e164: &str) -> String {
    match e164.strip_prefix("+7") {
        Some(n) if n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()) => {
            format!("+7 {} {}-{}-{}", &n[0..3], &n[3..6], &n[6..8], &n[8..10])
        }
        _ => e164.to_string(),
    }
}

/// A phone for logs: `+7912***6789`. Keeps up to four leading digits (country and operator code)
/// and the last four (two for short numbers); at least three digits are always hidden.
/// Anything that is not a number becomes `***`.
pub fn mask_phone(e164: &str) -> String {
    let digits: Vec<char> = e164.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    if n < 6 {
        return "***".to_string();
    }
    let tail = if n >= 10 { 4 } else { 2 };
    let head = (n - tail - 3).clamp(1, 4);
    let head: String = digits[..head].iter().collect();
    let tail: String = digits[n - tail..].iter().collect();
    format!("+{head}***{tail}")
}

/// An e-mail for logs: `i***@example.ru` (first character of the mailbox and the domain).
pub fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => match local.chars().next() {
            Some(first) => format!("{first}***@{domain}"),
            None => format!("***@{domain}"),
        },
        None => "***".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_numbers_in_every_common_spelling() {
        let cases = [
            "8 (912) 345-67-89",
            "+7 912 345 67 89",
            "7(912)3456789",
            "9123456789",
            "89123456789",
            "+79123456789",
            "  +7 (912) 345-67-89  ",
            "8.912.345.67.89",
            "8-912-345-67-89",
            "+7\u{a0}912\u{a0}345\u{2013}67\u{2013}89",
            "+8 912 345 67 89",
        ];
        for input in cases {
            assert_eq!(
                normalize_phone(input).as_deref(),
                Ok("+79123456789"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn russian_city_numbers_and_other_countries() {
        let cases = [
            ("8 (495) 123-45-67", "+74951234567"),
            ("4951234567", "+74951234567"),
            ("+7 (3412) 12-34-56", "+73412123456"),
            ("+49 30 1234567", "+49301234567"),
            ("+375 29 123-45-67", "+375291234567"),
            ("+1 (202) 555-0143", "+12025550143"),
            ("+81 90 1234 5678", "+819012345678"),
            ("+12345678", "+12345678"),
            ("+123456789012345", "+123456789012345"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_phone(input).as_deref(), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_phone() {
        use PhoneError::*;
        let cases = [
            ("", Empty),
            ("   ", Empty),
            ("()-", Empty),
            ("8 912 ABC 67 89", BadCharacter),
            ("тел. 89123456789", BadCharacter),
            ("8912345678", NotRussian),
            ("891234567890", NotRussian),
            ("8 (912) 345-67", NotRussian),
            ("912345678", NotRussian),
            ("91234567890", NotRussian),
            ("+7 912 345 67 8", NotRussian),
            ("+7 912 345 67 890", NotRussian),
            ("1234567890", NotRussian),
            ("7912345678", NotRussian),
            ("+1234567", NotInternational),
            ("+1234567890123456", NotInternational),
            ("+0 123 456 789", NotInternational),
            ("+7 912 +345 67 89", BadCharacter),
            ("++79123456789", BadCharacter),
            ("89123456789 доб. 12", BadCharacter),
            ("8912345678989123456789891234567898912345678", BadCharacter),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_phone(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn every_error_has_a_russian_message() {
        assert_eq!(
            PhoneError::NotRussian.message_ru(),
            "Телефон должен быть российским номером, например +7 912 345-67-89"
        );
        for e in [PhoneError::BadCharacter, PhoneError::NotInternational] {
            assert!(e.message_ru().contains("цифр"), "{e:?}");
        }
    }

    #[test]
    fn display_groups_russian_numbers_only() {
        assert_eq!(display_phone("+79123456789"), "+7 912 345-67-89");
        assert_eq!(display_phone("+49301234567"), "+49301234567");
    }

    #[test]
    fn masks_hide_the_middle() {
        assert_eq!(mask_phone("+79123456789"), "+7912***6789");
        assert_eq!(mask_phone("+12345678"), "+123***78");
        assert_eq!(mask_phone("+123456789012345"), "+1234***2345");
        assert_eq!(mask_phone("12"), "***");
        assert_eq!(mask_email("ivan@example.ru"), "i***@example.ru");
        assert_eq!(mask_email("Ёжик@пример.рф"), "Ё***@пример.рф");
        assert_eq!(mask_email("@example.ru"), "***@example.ru");
        assert_eq!(mask_email("no-at-sign"), "***");
        assert!(!mask_phone("+79123456789").contains("3456"));
    }
}
