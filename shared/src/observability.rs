//! Logging set-up and masking of personal data for log lines.

/// JSON logs for processes outside the Lambda runtime (local stack, tools). Inside Lambda,
/// functions use `lambda_runtime::tracing::init_default_subscriber()`, which emits JSON with the
/// request id when the function's log format is JSON.
pub fn init_json_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_target(false)
        .try_init();
}

/// `+79123456789` → `+7912***6789`: enough to correlate, not enough to call.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 6 {
        return "***".into();
    }
    let head: String = chars[..chars.len().min(5)].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

/// `ivan.petrov@example.ru` → `i***@example.ru`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_neither_full_phone_nor_full_email() {
        let p = mask_phone("+79123456789");
        assert_eq!(p, "+7912***6789");
        assert!(!p.contains("345"));
        assert_eq!(mask_email("ivan.petrov@example.ru"), "i***@example.ru");
        assert_eq!(mask_email("garbage"), "***");
    }
}
