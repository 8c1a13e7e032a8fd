//! CloudWatch Embedded Metric Format: counters bumped anywhere in the process and written as one
//! JSON line per invocation. CloudWatch extracts the metrics from the log line: no API call, no
//! latency added to the request. Alarms in template.yaml read them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "RusStankoSbyt/Integration";

/// Everything the integration counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    LeadsAccepted,
    LeadsRepeated,
    LeadsDelivered,
    LeadsParked,
    LeadsRetried,
    WebhookEvents,
    WebhookDuplicates,
    WebhooksApplied,
    WebhooksParked,
    AmoCrm2xx,
    AmoCrm4xx,
    AmoCrm5xx,
    AmoCrm401,
    AmoCrm429,
    AmoCrmNetworkErrors,
    /// A refusal incident (403) began: counted once across all functions.
    AmoCrmRefused,
    MailBounces,
    MailComplaints,
    TokenRefreshes,
    TokenRefreshFailures,
    SyncRuns,
    SyncFailures,
    SyncDurationMs,
    SyncPulled,
    SyncPushed,
    RemindersCreated,
    /// Whole days until the long-lived amoCRM token expires (a gauge, set by each sync run).
    TokenDaysLeft,
}

impl Metric {
    /// Every metric, for checks that the dashboards and alarms name only real ones.
    pub const ALL: [Metric; 27] = [
        Metric::LeadsAccepted,
        Metric::LeadsRepeated,
        Metric::LeadsDelivered,
        Metric::LeadsParked,
        Metric::LeadsRetried,
        Metric::WebhookEvents,
        Metric::WebhookDuplicates,
        Metric::WebhooksApplied,
        Metric::WebhooksParked,
        Metric::AmoCrm2xx,
        Metric::AmoCrm4xx,
        Metric::AmoCrm5xx,
        Metric::AmoCrm401,
        Metric::AmoCrm429,
        Metric::AmoCrmNetworkErrors,
        Metric::AmoCrmRefused,
        Metric::MailBounces,
        Metric::MailComplaints,
        Metric::TokenRefreshes,
        Metric::TokenRefreshFailures,
        Metric::SyncRuns,
        Metric::SyncFailures,
        Metric::SyncDurationMs,
        Metric::SyncPulled,
        Metric::SyncPushed,
        Metric::RemindersCreated,
        Metric::TokenDaysLeft,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::LeadsAccepted => "LeadsAccepted",
            Metric::LeadsRepeated => "LeadsRepeated",
            Metric::LeadsDelivered => "LeadsDelivered",
            Metric::LeadsParked => "LeadsParked",
            Metric::LeadsRetried => "LeadsRetried",
            Metric::WebhookEvents => "WebhookEvents",
            Metric::WebhookDuplicates => "WebhookDuplicates",
            Metric::WebhooksApplied => "WebhooksApplied",
            Metric::WebhooksParked => "WebhooksParked",
            Metric::AmoCrm2xx => "AmoCrm2xx",
            Metric::AmoCrm4xx => "AmoCrm4xx",
            Metric::AmoCrm5xx => "AmoCrm5xx",
            Metric::AmoCrm401 => "AmoCrm401",
            Metric::AmoCrm429 => "AmoCrm429",
            Metric::AmoCrmNetworkErrors => "AmoCrmNetworkErrors",
            Metric::AmoCrmRefused => "AmoCrmRefused",
            Metric::MailBounces => "MailBounces",
            Metric::MailComplaints => "MailComplaints",
            Metric::TokenRefreshes => "TokenRefreshes",
            Metric::TokenRefreshFailures => "TokenRefreshFailures",
            Metric::SyncRuns => "SyncRuns",
            Metric::SyncFailures => "SyncFailures",
            Metric::SyncDurationMs => "SyncDurationMs",
            Metric::SyncPulled => "SyncPulled",
            Metric::SyncPushed => "SyncPushed",
            Metric::RemindersCreated => "RemindersCreated",
            Metric::TokenDaysLeft => "TokenDaysLeft",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::SyncDurationMs => "Milliseconds",
            Metric::TokenDaysLeft => "None",
            _ => "Count",
        }
    }
}

/// Counters of one process, drained by `flush`.
#[derive(Default)]
pub struct Registry {
    values: Mutex<BTreeMap<Metric, f64>>,
}

impl Registry {
    pub fn add(&self, metric: Metric, value: f64) {
        if let Ok(mut v) = self.values.lock() {
            *v.entry(metric).or_default() += value;
        }
    }

    /// Replaces a gauge's value (the last reading counts, not the sum).
    pub fn set(&self, metric: Metric, value: f64) {
        if let Ok(mut v) = self.values.lock() {
            v.insert(metric, value);
        }
    }

    /// The EMF line for everything counted since the last flush (`None` when nothing was),
    /// stamped with `level` for Lambda's log-level filter.
    pub fn take_line(&self, function: &str, timestamp_ms: i64, level: &str) -> Option<String> {
        let values = std::mem::take(&mut *self.values.lock().ok()?);
        if values.is_empty() {
            return None;
        }
        let mut line = Map::new();
        line.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": values.keys().map(|m| json!({"Name": m.name(), "Unit": m.unit()})).collect::<Vec<_>>(),
                }],
            }),
        );
        line.insert("level".into(), Value::from(level));
        line.insert("Function".into(), Value::from(function));
        for (metric, value) in values {
            line.insert(metric.name().into(), json!(value));
        }
        Some(Value::Object(line).to_string())
    }
}

static PROCESS: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::default);

pub fn count(metric: Metric) {
    PROCESS.add(metric, 1.0);
}

pub fn add(metric: Metric, value: f64) {
    PROCESS.add(metric, value);
}

pub fn gauge(metric: Metric, value: f64) {
    PROCESS.set(metric, value);
}

/// The level an EMF line carries. With `LogFormat: JSON`, Lambda drops application lines below
/// `ApplicationLogLevel` and reads a line without `level` as INFO, so raising the level to WARN
/// would silently drop every metric and the alarms on them. Lambda tells the function its level
/// in `AWS_LAMBDA_LOG_LEVEL`: the metrics line takes exactly that level, the least that passes.
pub fn emf_level(configured: Option<&str>) -> &'static str {
    const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    configured
        .map(|l| l.trim().to_ascii_uppercase())
        .and_then(|l| LEVELS.into_iter().find(|known| *known == l))
        .unwrap_or("INFO")
}

/// Counts one amoCRM answer by its status class (401 and 429 also on their own).
pub fn amocrm_status(status: u16) {
    count(match status {
        200..=299 => Metric::AmoCrm2xx,
        500..=599 => Metric::AmoCrm5xx,
        _ => Metric::AmoCrm4xx,
    });
    match status {
        401 => count(Metric::AmoCrm401),
        429 => count(Metric::AmoCrm429),
        _ => {}
    }
}

/// Writes this invocation's metrics to stdout (one line; Lambda ships it to CloudWatch Logs).
/// The `Function` dimension is the deployed name (dev and prod stacks may share an account);
/// `function` is the fallback outside Lambda.
pub fn flush(function: &str) {
    let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| function.to_string());
    let level = emf_level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref());
    if let Some(line) = PROCESS.take_line(&name, chrono::Utc::now().timestamp_millis(), level) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_flush_in_embedded_metric_format_and_counters_reset() {
        let r = Registry::default();
        assert_eq!(
            r.take_line("crm-worker", 1, "INFO"),
            None,
            "nothing counted, nothing written"
        );
        r.add(Metric::LeadsDelivered, 1.0);
        r.add(Metric::LeadsDelivered, 1.0);
        r.add(Metric::AmoCrm429, 1.0);
        r.add(Metric::SyncDurationMs, 1234.0);
        let line: Value = serde_json::from_str(
            &r.take_line("crm-worker", 1_795_000_000_000, "WARN")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(line["Function"], "crm-worker");
        assert_eq!(line["level"], "WARN", "passes Lambda's log-level filter");
        assert_eq!(line["LeadsDelivered"], 2.0);
        assert_eq!(line["AmoCrm429"], 1.0);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["LeadsDelivered", "AmoCrm429", "SyncDurationMs"]);
        assert!(directive["Metrics"].to_string().contains("Milliseconds"));
        assert_eq!(
            r.take_line("crm-worker", 2, "INFO"),
            None,
            "flushed counters start again at zero"
        );
    }

    #[test]
    fn gauges_keep_their_last_reading_and_counters_add_up() {
        let r = Registry::default();
        r.set(Metric::TokenDaysLeft, 30.0);
        r.set(Metric::TokenDaysLeft, 29.0);
        r.add(Metric::LeadsParked, 1.0);
        r.add(Metric::LeadsParked, 1.0);
        let line: Value = serde_json::from_str(&r.take_line("f", 1, "INFO").unwrap()).unwrap();
        assert_eq!(line["TokenDaysLeft"], 29.0);
        assert_eq!(line["LeadsParked"], 2.0);
    }

    #[test]
    fn metrics_lines_take_the_level_lambda_filters_at() {
        assert_eq!(emf_level(Some("WARN")), "WARN");
        assert_eq!(emf_level(Some("error")), "ERROR");
        assert_eq!(emf_level(Some(" FATAL ")), "FATAL");
        assert_eq!(emf_level(Some("TRACE")), "TRACE");
        // Unset or unknown: what Lambda assumes for a line without a level.
        assert_eq!(emf_level(None), "INFO");
        assert_eq!(emf_level(Some("verbose")), "INFO");
    }
}
