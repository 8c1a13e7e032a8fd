//! The environment a function process gets in the benchmarks: what template.yaml gives it,
//! pointed at the local stack.

use local_stack::LocalStack;

/// The environment a function gets in the local stack: tables, secrets, the sandbox as
/// amoCRM, moto as AWS (dummy credentials), the Lambda variables the runtime requires.
pub fn function_env(stack: &LocalStack) -> Vec<(String, String)> {
    let r = &stack.resources;
    let pairs = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_ENDPOINT_URL", stack.moto.url.clone()),
        ("AWS_REGION", "eu-central-1".into()),
        ("AWS_DEFAULT_REGION", "eu-central-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("LEADS_TABLE", r.leads_table.clone()),
        ("INBOX_TABLE", r.inbox_table.clone()),
        ("PASSPORT_TABLE", r.passport_table.clone()),
        ("STATE_TABLE", r.state_table.clone()),
        ("APP_SECRET_ID", r.app_secret_id.clone()),
        ("AMOCRM_TOKEN_SECRET_ID", r.token_secret_id.clone()),
        (
            "AMOCRM_ACCOUNT_ID",
            stack.options.sandbox.account_id.to_string(),
        ),
        ("AMOCRM_BASE_URL", stack.sandbox.url.clone()),
        ("AMOCRM_OAUTH_BASE_URL", stack.sandbox.url.clone()),
        ("MAIL_FROM", r.mail_from.clone()),
    ];
    let mut env: Vec<(String, String)> =
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    // template.yaml gives every function the maintenance field ids (Globals).
    if let Some(ids) = stack.config.sync.field_ids() {
        env.extend([
            (
                "AMOCRM_FIELD_NEXT_MAINTENANCE".into(),
                ids.next_maintenance.to_string(),
            ),
            (
                "AMOCRM_FIELD_MAINTENANCE_STATUS".into(),
                ids.status.to_string(),
            ),
            (
                "AMOCRM_MAINTENANCE_STATUS_ENUMS".into(),
                ids.status_enums.to_spec(),
            ),
        ]);
    }
    env
}
