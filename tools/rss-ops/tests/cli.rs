//! The `rss-ops` binary against a local stack, configured through the environment exactly as
//! an operator's shell would be: exit statuses, the printed fixes and settings, and that no
//! token ever reaches the output.

mod common;

use common::rss_ops;
use local_stack::{LocalStack, StackOptions};
use serde_json::Value;

async fn stack() -> LocalStack {
    LocalStack::start(StackOptions::for_tests())
        .await
        .unwrap_or_else(|e| panic!("local stack did not start: {e}"))
}

/// The functions' environment of this stack (AWS pointed at moto), and where amoCRM's webhook goes.
fn env(stack: &LocalStack) -> Vec<(String, String)> {
    let mut env = stack.process_env();
    env.push((
        "WEBHOOK_DESTINATION".into(),
        format!("{}/webhook/amocrm", stack.api_url),
    ));
    env
}

#[tokio::test]
async fn doctor_fails_until_setup_ran_then_passes_and_a_revoked_token_fails_it_again() {
    let stack = stack().await;
    let env = env(&stack);
    let token =
        serde_json::from_str::<Value>(&stack.resources.token_secret_json).unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
    let secrets = [token.as_str(), stack.options.webhook_token.as_str()];
    let clean = |out: &str| {
        for s in secrets {
            assert!(!out.contains(s), "a secret was printed:\n{out}");
        }
    };

    let (code, out, err) = rss_ops(&env, &["doctor"]).await;
    clean(&(out.clone() + &err));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL  webhook"), "{out}");
    assert!(out.contains("fix: Run `rss-ops setup`"), "{out}");
    assert!(out.contains("token=***"), "{out}");

    let (code, out, err) = rss_ops(&env, &["setup"]).await;
    clean(&(out.clone() + &err));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("AMOCRM_FIELD_NEXT_MAINTENANCE="), "{out}");
    assert!(out.contains("AMOCRM_MAINTENANCE_STATUS_ENUMS=ok="), "{out}");

    let (code, out, err) = rss_ops(&env, &["doctor", "--json"]).await;
    clean(&(out.clone() + &err));
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(report["ok"], true);
    assert!(report["findings"].as_array().unwrap().len() >= 10);

    stack.sandbox.state.revoke_integration();
    let (code, out, err) = rss_ops(&env, &["doctor"]).await;
    clean(&(out.clone() + &err));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL  token"), "{out}");
    assert!(out.contains("Generate a new long-lived token"), "{out}");
}

#[tokio::test]
async fn parked_commands_and_mistakes() {
    let stack = stack().await;
    let env = env(&stack);
    let (code, out, _) = rss_ops(&env, &["parked", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("nothing is parked"), "{out}");
    let (code, out, _) = rss_ops(&env, &["parked", "redrive", "--all", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["redriven"], serde_json::json!([]));
    let (code, out, _) = rss_ops(&env, &["parked", "redrive", "01JNOSUCHLEAD"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("no such lead or event"), "{out}");

    let (code, _, err) = rss_ops(&env, &["parked", "redrive"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("one id or --all"), "{err}");
    let without_table: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| *k != "LEADS_TABLE")
        .collect();
    let (code, _, err) = rss_ops(&without_table, &["doctor"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("LEADS_TABLE"), "{err}");
    let (code, out, _) = rss_ops(&[], &["help"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("rss-ops doctor"), "{out}");
}
