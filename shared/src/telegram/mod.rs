//! Telegram: verification of the Mini App's `initData`, which tells the backend which Telegram
//! user a TMA request comes from.

pub mod init_data;

pub use init_data::{
    DEFAULT_MAX_AGE_SECS, InitDataError, TelegramUser, sign_init_data, verify_init_data,
};
