//! Telegram Mini App initData verification (to be written).
