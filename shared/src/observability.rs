//! Logging set-up. (Masking of phones and e-mails for log lines: `leads::phone`.)

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
