//! Telegram Mini App `initData`: proves that a request comes from the Telegram user it names.
//!
//! Telegram signs the query string with a key derived from the bot token:
//! `secret = HMAC_SHA256(key = "WebAppData", msg = bot_token)`,
//! `hash = hex(HMAC_SHA256(key = secret, msg = data_check_string))`, where the data-check-string
//! is every field but `hash` (percent-decoded, sorted by key) joined as `key=value` lines.
//! `signature` (Ed25519, for third parties) is an ordinary field here and stays in the string.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How old `auth_date` may be: Telegram's own advice is a day at most.
pub const DEFAULT_MAX_AGE_SECS: i64 = 24 * 60 * 60;
/// How far `auth_date` may be ahead of our clock.
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;
/// Real initData is well under 4 KiB; anything far larger is not from Telegram.
pub const MAX_INIT_DATA_BYTES: usize = 16 * 1024;

/// The Telegram user the initData was issued to. `id` owns the passport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramUser {
    pub id: i64,
    #[serde(default)]
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub language_code: Option<String>,
}

/// Why initData was refused. The HTTP layer answers 401 to all of them; the variants are for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitDataError {
    #[error("bot token is empty: initData cannot be verified (check the bot token secret)")]
    NoBotToken,
    #[error("initData has no `{0}` field")]
    Missing(&'static str),
    #[error("initData field `{field}` is malformed: {reason}")]
    Malformed { field: String, reason: &'static str },
    #[error("initData hash does not match: altered data or signed for another bot")]
    BadHash,
    #[error("initData is {age_secs} s old, over the {max_age_secs} s allowed")]
    Expired { age_secs: i64, max_age_secs: i64 },
    #[error("initData auth_date is {ahead_secs} s ahead of our clock")]
    FromTheFuture { ahead_secs: i64 },
}

/// Verifies `Telegram.WebApp.initData` (the raw query string, without any `tma ` prefix) at
/// unix time `now`; returns the user it was issued to.
pub fn verify_init_data(
    init_data: &str,
    bot_token: &str,
    now: i64,
    max_age_secs: i64,
) -> Result<TelegramUser, InitDataError> {
    if bot_token.trim().is_empty() {
        return Err(InitDataError::NoBotToken);
    }
    if init_data.len() > MAX_INIT_DATA_BYTES {
        return Err(malformed("initData", "longer than 16 KiB"));
    }
    let mut fields = decode_fields(init_data)?;
    let hash_at = fields
        .iter()
        .position(|(k, _)| k == "hash")
        .ok_or(InitDataError::Missing("hash"))?;
    let (_, hash_hex) = fields.remove(hash_at);
    let hash = hex::decode(hash_hex.trim())
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or_else(|| malformed("hash", "not 64 hex digits"))?;

    // verify_slice compares in constant time.
    mac_of(&fields, bot_token)
        .verify_slice(&hash)
        .map_err(|_| InitDataError::BadHash)?;

    let auth_date = field(&fields, "auth_date")
        .ok_or(InitDataError::Missing("auth_date"))?
        .trim()
        .parse::<i64>()
        .map_err(|_| malformed("auth_date", "not unix seconds"))?;
    check_freshness(auth_date, now, max_age_secs)?;

    let user = field(&fields, "user").ok_or(InitDataError::Missing("user"))?;
    let user: TelegramUser = serde_json::from_str(user)
        .map_err(|_| malformed("user", "not a JSON object with a numeric `id`"))?;
    Ok(user.without_empty_names())
}

/// Builds a signed initData query string from `fields` (kept in the given order, any `hash`
/// among them ignored), the way Telegram would for this bot. For tests and for driving the
/// Mini App API locally: `sign_init_data(&[("auth_date", "…"), ("user", r#"{"id":1}"#)], token)`.
pub fn sign_init_data(fields: &[(&str, &str)], bot_token: &str) -> String {
    let fields: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| *k != "hash")
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let hash = hex::encode(mac_of(&fields, bot_token).finalize().into_bytes());
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(&fields);
    query.append_pair("hash", &hash);
    query.finish()
}

/// Percent-decoded `key=value` pairs; a repeated key is refused (which one was signed?), and so
/// is a field the data-check-string could not tell apart from its neighbour.
fn decode_fields(init_data: &str) -> Result<Vec<(String, String)>, InitDataError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(init_data.trim().as_bytes()) {
        if fields.iter().any(|(k, _)| *k == key) {
            return Err(InitDataError::Malformed {
                field: key.chars().take(40).collect(),
                reason: "appears more than once",
            });
        }
        // The data-check-string joins `key=value` lines with `\n`, so a line break in a field or
        // an `=` in a key would let two different field sets share one signature (a value
        // swallowing the next line). Telegram never sends either; refusing them keeps the
        // signature bound to exactly one reading.
        if key.contains(['\n', '=']) || value.contains('\n') {
            return Err(InitDataError::Malformed {
                field: key.chars().filter(|c| *c != '\n').take(40).collect(),
                reason: "has a line break, or an `=` in its name",
            });
        }
        fields.push((key.into_owned(), value.into_owned()));
    }
    Ok(fields)
}

/// The HMAC of the data-check-string, keyed by the bot's WebAppData secret.
fn mac_of(fields: &[(String, String)], bot_token: &str) -> HmacSha256 {
    let mut secret = HmacSha256::new_from_slice(b"WebAppData").expect("HMAC takes any key length");
    secret.update(bot_token.as_bytes());
    let secret = secret.finalize().into_bytes();

    let mut sorted: Vec<&(String, String)> = fields.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| a.cmp(b));
    let data_check_string = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n");

    let mut mac = HmacSha256::new_from_slice(&secret).expect("HMAC takes any key length");
    mac.update(data_check_string.as_bytes());
    mac
}

fn check_freshness(auth_date: i64, now: i64, max_age_secs: i64) -> Result<(), InitDataError> {
    let age_secs = now.saturating_sub(auth_date);
    if age_secs > max_age_secs {
        return Err(InitDataError::Expired {
            age_secs,
            max_age_secs,
        });
    }
    if -age_secs > MAX_CLOCK_SKEW_SECS {
        return Err(InitDataError::FromTheFuture {
            ahead_secs: -age_secs,
        });
    }
    Ok(())
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn malformed(field: &str, reason: &'static str) -> InitDataError {
    InitDataError::Malformed {
        field: field.to_owned(),
        reason,
    }
}

impl TelegramUser {
    fn without_empty_names(mut self) -> Self {
        for name in [
            &mut self.last_name,
            &mut self.username,
            &mut self.language_code,
        ] {
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                *name = None;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT_TOKEN: &str = "123456789:TEST-not-a-real-token";
    const AUTH_DATE: i64 = 1_700_000_000;

    /// Signed independently of this code, with python3 (the `signature` field kept in the
    /// data-check-string, values quoted with `%20` for spaces as Telegram clients do):
    ///
    /// ```python
    /// import hmac, hashlib, urllib.parse
    /// bot_token = "123456789:TEST-not-a-real-token"
    /// fields = [("query_id", "AAHdF6IQAAAAAN0XohDhrOrc"), ("user", USER_JSON),
    ///           ("auth_date", "1700000000"),
    ///           ("signature", "6fbdaab833d39f54518bd5c3eb3f511d035e68cb"), ("chat_type", "sender")]
    /// dcs = "\n".join(f"{k}={v}" for k, v in sorted(fields))
    /// secret = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    /// h = hmac.new(secret, dcs.encode(), hashlib.sha256).hexdigest()
    /// print("&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in fields) + "&hash=" + h)
    /// ```
    /// with `USER_JSON = '{"id":279058397,"first_name":"Иван Петров","last_name":"",
    /// "username":"ivan_p","language_code":"ru","is_premium":true,
    /// "photo_url":"https:\\/\\/t.me\\/i\\/userpic\\/320\\/x.svg"}'` (one line).
    const KNOWN_ANSWER: &str = "query_id=AAHdF6IQAAAAAN0XohDhrOrc&user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22%D0%98%D0%B2%D0%B0%D0%BD%20%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2%22%2C%22last_name%22%3A%22%22%2C%22username%22%3A%22ivan_p%22%2C%22language_code%22%3A%22ru%22%2C%22is_premium%22%3Atrue%2C%22photo_url%22%3A%22https%3A%5C%2F%5C%2Ft.me%5C%2Fi%5C%2Fuserpic%5C%2F320%5C%2Fx.svg%22%7D&auth_date=1700000000&signature=6fbdaab833d39f54518bd5c3eb3f511d035e68cb&chat_type=sender&hash=0ee229a925fced9c5921cd43654d29b9973d6b4f0263291271be2100a9a1be03";

    fn verify(init_data: &str) -> Result<TelegramUser, InitDataError> {
        verify_init_data(init_data, BOT_TOKEN, AUTH_DATE + 10, DEFAULT_MAX_AGE_SECS)
    }

    fn signed(user: &str, auth_date: i64) -> String {
        let auth_date = auth_date.to_string();
        sign_init_data(
            &[
                ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc"),
                ("user", user),
                ("auth_date", &auth_date),
                ("signature", "c2lnbmF0dXJl"),
            ],
            BOT_TOKEN,
        )
    }

    #[test]
    fn known_answer_from_python() {
        let user = verify(KNOWN_ANSWER).expect("valid initData");
        assert_eq!(
            user,
            TelegramUser {
                id: 279058397,
                first_name: "Иван Петров".into(),
                last_name: None,
                username: Some("ivan_p".into()),
                language_code: Some("ru".into()),
            }
        );
    }

    #[test]
    fn signature_field_is_part_of_the_signed_data() {
        let without_signature =
            KNOWN_ANSWER.replace("&signature=6fbdaab833d39f54518bd5c3eb3f511d035e68cb", "");
        assert_ne!(without_signature, KNOWN_ANSWER);
        assert_eq!(verify(&without_signature), Err(InitDataError::BadHash));
    }

    /// Two field sets with one data-check-string: `a=x` + `b=y` and `a="x\nb=y"` both give
    /// "a=x\nb=y\n…". Found by the property test: turning the `&` before `b` into a line
    /// break kept the hash valid. Both readings are refused, so one signature means one set.
    #[test]
    fn fields_that_could_be_read_as_other_fields_are_refused() {
        let user = r#"{"id":7,"first_name":"Иван"}"#;
        let date = AUTH_DATE.to_string();
        let split = sign_init_data(
            &[
                ("a", "x"),
                ("b", "\n"),
                ("auth_date", &date),
                ("user", user),
            ],
            BOT_TOKEN,
        );
        let merged = split.replacen("&b=", "%0Ab=", 1);
        assert_ne!(merged, split);
        for init_data in [&split, &merged] {
            assert!(
                matches!(verify(init_data), Err(InitDataError::Malformed { .. })),
                "{init_data:?} must be refused, not read as another field set"
            );
        }
        let equals_in_key = sign_init_data(
            &[("a=b", "c"), ("auth_date", &date), ("user", user)],
            BOT_TOKEN,
        );
        assert!(matches!(
            verify(&equals_in_key),
            Err(InitDataError::Malformed { .. })
        ));
    }

    #[test]
    fn round_trip_with_plus_encoded_spaces() {
        let init_data = signed(
            r#"{"id":42,"first_name":"Анна Мария","username":"anna"}"#,
            AUTH_DATE,
        );
        assert!(
            init_data.contains("+"),
            "the serializer writes spaces as +: {init_data}"
        );
        let user = verify(&init_data).unwrap();
        assert_eq!((user.id, user.first_name.as_str()), (42, "Анна Мария"));
        assert_eq!(user.username.as_deref(), Some("anna"));
        assert_eq!(user.last_name, None);
    }

    #[test]
    fn sign_ignores_a_stale_hash_field_and_keeps_field_order() {
        let a = sign_init_data(
            &[("auth_date", "1700000000"), ("user", r#"{"id":1}"#)],
            BOT_TOKEN,
        );
        let b = sign_init_data(
            &[
                ("hash", "00"),
                ("user", r#"{"id":1}"#),
                ("auth_date", "1700000000"),
            ],
            BOT_TOKEN,
        );
        assert!(a.starts_with("auth_date=") && b.starts_with("user="));
        assert_eq!(
            a.rsplit_once("&hash=").unwrap().1,
            b.rsplit_once("&hash=").unwrap().1
        );
        assert_eq!(verify(&b).unwrap().id, 1);
    }

    #[test]
    fn tampering_with_any_field_fails() {
        let init_data = KNOWN_ANSWER;
        let pairs: Vec<&str> = init_data.split('&').collect();
        for (i, pair) in pairs.iter().enumerate() {
            let (key, value) = pair.split_once('=').unwrap();
            let altered_value = match value.chars().last() {
                Some('0') => format!("{}1", &value[..value.len() - 1]),
                _ => format!("{}0", &value[..value.len() - 1]),
            };
            let mut tampered = pairs.clone();
            let replacement = format!("{key}={altered_value}");
            tampered[i] = &replacement;
            let tampered = tampered.join("&");
            let error = verify(&tampered).expect_err(&format!("tampered {key} must fail"));
            assert_eq!(error, InitDataError::BadHash, "tampered {key}");
        }
        // An extra field, a renamed field, a dropped field.
        assert_eq!(
            verify(&format!("{init_data}&extra=1")),
            Err(InitDataError::BadHash)
        );
        assert_eq!(
            verify(&init_data.replace("chat_type=", "chat_typ=")),
            Err(InitDataError::BadHash)
        );
        assert_eq!(
            verify(&init_data.replace("&chat_type=sender", "")),
            Err(InitDataError::BadHash)
        );
    }

    #[test]
    fn another_bot_token_fails() {
        let result = verify_init_data(
            KNOWN_ANSWER,
            "987654321:OTHER-token",
            AUTH_DATE,
            DEFAULT_MAX_AGE_SECS,
        );
        assert_eq!(result, Err(InitDataError::BadHash));
        assert_eq!(
            verify_init_data(KNOWN_ANSWER, " ", AUTH_DATE, DEFAULT_MAX_AGE_SECS),
            Err(InitDataError::NoBotToken)
        );
    }

    #[test]
    fn freshness_window() {
        let init_data = signed(r#"{"id":7}"#, AUTH_DATE);
        let at = |now| verify_init_data(&init_data, BOT_TOKEN, now, DEFAULT_MAX_AGE_SECS);
        assert!(
            at(AUTH_DATE + DEFAULT_MAX_AGE_SECS).is_ok(),
            "exactly 24 h old is still fine"
        );
        assert_eq!(
            at(AUTH_DATE + DEFAULT_MAX_AGE_SECS + 1),
            Err(InitDataError::Expired {
                age_secs: DEFAULT_MAX_AGE_SECS + 1,
                max_age_secs: DEFAULT_MAX_AGE_SECS
            })
        );
        assert!(
            at(AUTH_DATE - MAX_CLOCK_SKEW_SECS).is_ok(),
            "a minute of clock skew is tolerated"
        );
        assert_eq!(
            at(AUTH_DATE - 61),
            Err(InitDataError::FromTheFuture { ahead_secs: 61 })
        );
        assert_eq!(
            verify_init_data(&init_data, BOT_TOKEN, AUTH_DATE + 301, 300),
            Err(InitDataError::Expired {
                age_secs: 301,
                max_age_secs: 300
            })
        );
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        let no_auth_date = sign_init_data(&[("user", r#"{"id":1}"#)], BOT_TOKEN);
        assert_eq!(
            verify(&no_auth_date),
            Err(InitDataError::Missing("auth_date"))
        );
        let bad_auth_date = sign_init_data(
            &[("auth_date", "yesterday"), ("user", r#"{"id":1}"#)],
            BOT_TOKEN,
        );
        assert_eq!(
            verify(&bad_auth_date),
            Err(malformed("auth_date", "not unix seconds"))
        );
        let no_user = sign_init_data(&[("auth_date", &AUTH_DATE.to_string())], BOT_TOKEN);
        assert_eq!(verify(&no_user), Err(InitDataError::Missing("user")));
        for user in [r#"{"first_name":"x"}"#, r#"{"id":"12"}"#, "not json", "[1]"] {
            let init_data = signed(user, AUTH_DATE);
            assert_eq!(
                verify(&init_data),
                Err(malformed("user", "not a JSON object with a numeric `id`")),
                "{user}"
            );
        }
        assert_eq!(verify(""), Err(InitDataError::Missing("hash")));
        assert_eq!(
            verify("auth_date=1&user=%7B%7D"),
            Err(InitDataError::Missing("hash"))
        );
        assert_eq!(
            verify("auth_date=1&hash=xyz"),
            Err(malformed("hash", "not 64 hex digits"))
        );
        assert_eq!(
            verify("auth_date=1&hash=abcd"),
            Err(malformed("hash", "not 64 hex digits"))
        );
        let twice = format!("{KNOWN_ANSWER}&auth_date=1700000001");
        assert_eq!(
            verify(&twice),
            Err(InitDataError::Malformed {
                field: "auth_date".into(),
                reason: "appears more than once"
            })
        );
        let huge = "a".repeat(MAX_INIT_DATA_BYTES + 1);
        assert_eq!(
            verify(&huge),
            Err(malformed("initData", "longer than 16 KiB"))
        );
    }

    #[test]
    fn hash_is_checked_before_anything_is_trusted() {
        // A forged body with a fresh date and a victim's id still fails on the hash.
        let forged = format!(
            "auth_date={}&user=%7B%22id%22%3A1%7D&hash={}",
            AUTH_DATE,
            "0".repeat(64)
        );
        assert_eq!(verify(&forged), Err(InitDataError::BadHash));
    }

    #[test]
    fn uppercase_hash_hex_is_accepted() {
        let (data, hash) = KNOWN_ANSWER.rsplit_once("&hash=").unwrap();
        let upper = format!("{data}&hash={}", hash.to_uppercase());
        assert_eq!(verify(&upper).unwrap().id, 279058397);
    }
}
