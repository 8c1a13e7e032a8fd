//! Who Telegram vouches for: the Mini App's signed launch data (`Authorization: tma
//! <initData>`), checked with the bot token of the app secret, and the bot's own server
//! (`X-Bot-Key`).

use chrono::Utc;
use lambda_http::Request;
use tracing::warn;

use super::http::header;
use crate::ports::AppSecrets;
use crate::secrets::AppSecretsSource;
use crate::telegram::{DEFAULT_MAX_AGE_SECS, TelegramUser, verify_init_data};

/// What the request's credentials say about the Telegram user behind it.
#[derive(Debug)]
pub enum TelegramVoucher {
    /// No `Authorization: tma …` and no `X-Bot-Key`.
    None,
    /// Valid initData: this is the user.
    MiniApp(TelegramUser),
    /// The bot's server, with the right key: the body's `telegram_id` is Telegram's.
    Bot,
    /// Credentials were sent and are wrong, stale or not checkable (logged with the reason).
    Refused,
}

/// The initData in `Authorization: tma <initData>`, if the header is of that kind.
pub fn init_data(req: &Request) -> Option<&str> {
    header(req, "authorization")?
        .strip_prefix("tma ")
        .map(str::trim)
}

/// Checks the Mini App's initData, and for lead-ingest the bot's key. initData that fails
/// is checked once more against a fresh read of the bot token (rotation).
pub async fn voucher(secrets: &AppSecretsSource, req: &Request) -> TelegramVoucher {
    if let Some(init_data) = init_data(req) {
        return match mini_app_user(secrets, init_data).await {
            Some(user) => TelegramVoucher::MiniApp(user),
            None => TelegramVoucher::Refused,
        };
    }
    match header(req, "x-bot-key") {
        None => TelegramVoucher::None,
        Some(key) => {
            if secrets
                .accepts(|s| s.bot_api_key.as_deref(), Some(key))
                .await
            {
                TelegramVoucher::Bot
            } else {
                warn!("X-Bot-Key refused");
                TelegramVoucher::Refused
            }
        }
    }
}

/// The verified Telegram user of `init_data`; `None` (logged with the reason) when it fails.
pub async fn mini_app_user(secrets: &AppSecretsSource, init_data: &str) -> Option<TelegramUser> {
    let verify = |secrets: &AppSecrets| {
        let Some(bot_token) = secrets.telegram_bot_token.as_deref() else {
            tracing::error!("telegram_bot_token is not set in the app secret");
            return None;
        };
        Some(verify_init_data(
            init_data,
            bot_token,
            Utc::now().timestamp(),
            DEFAULT_MAX_AGE_SECS,
        ))
    };
    let first = verify(secrets.current().await.as_ref())?;
    let checked = match first {
        Err(_) => match secrets.after_miss().await {
            Some(fresh) => verify(fresh.as_ref()).unwrap_or(first),
            None => first,
        },
        ok => ok,
    };
    checked
        .map_err(|e| warn!(reason = %e, "initData refused"))
        .ok()
}
