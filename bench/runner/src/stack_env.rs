//! The environment a function process gets in the benchmarks: what template.yaml gives it,
//! pointed at the local stack, plus the variables the Lambda runtime sets (the template's
//! LoggingConfig among them).

use local_stack::LocalStack;

/// The local stack's function environment (tables, secrets, the sandbox as amoCRM, moto as AWS,
/// the maintenance field ids) and the Lambda variables the runtime requires.
pub fn function_env(stack: &LocalStack) -> Vec<(String, String)> {
    let lambda = [
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        // What Lambda sets from the template's LoggingConfig (JSON lines, INFO).
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
    ];
    let mut env = vec![(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_default(),
    )];
    env.extend(stack.process_env());
    env.extend(lambda.map(|(k, v)| (k.to_string(), v.to_string())));
    env
}
