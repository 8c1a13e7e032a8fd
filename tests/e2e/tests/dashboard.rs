//! The operators' dashboard and the access-log alarms of template.yaml name only metrics that
//! exist: the EMF metrics the code writes, the functions the template deploys, the metric
//! filters it defines. A renamed metric would otherwise leave an empty graph nobody notices.

use std::collections::BTreeSet;

use e2e::repo_file;
use serde_json::Value;
use serde_norway::Value as Yaml;
use shared::metrics::{Metric, NAMESPACE};

const STACK: &str = "stack";

fn template() -> Yaml {
    serde_norway::from_str(&repo_file("template.yaml")).expect("template.yaml parses")
}

/// The text under a `!Sub` tag (or a plain string).
fn sub_text(value: &Yaml) -> String {
    match value {
        Yaml::Tagged(tagged) => sub_text(&tagged.value),
        Yaml::String(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn resources_of(template: &Yaml, kind: &str) -> Vec<Yaml> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
        .filter(|r| r["Type"].as_str() == Some(kind))
        .cloned()
        .collect()
}

/// Deployed function names with the stack name as `STACK`.
fn function_names(template: &Yaml) -> BTreeSet<String> {
    resources_of(template, "AWS::Serverless::Function")
        .iter()
        .map(|f| sub_text(&f["Properties"]["FunctionName"]).replace("${AWS::StackName}", STACK))
        .collect()
}

fn filter_metrics(template: &Yaml) -> BTreeSet<String> {
    resources_of(template, "AWS::Logs::MetricFilter")
        .iter()
        .flat_map(|f| {
            f["Properties"]["MetricTransformations"]
                .as_sequence()
                .expect("transformations")
                .iter()
                .map(|t| t["MetricName"].as_str().expect("name").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn dashboard(template: &Yaml) -> Value {
    let dashboards = resources_of(template, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one operations dashboard");
    let body = sub_text(&dashboards[0]["Properties"]["DashboardBody"])
        .replace("${AWS::StackName}", STACK)
        .replace("${AWS::Region}", "eu-central-1");
    assert!(
        !body.contains("${"),
        "only the stack name and region are substituted"
    );
    serde_json::from_str(&body).expect("the dashboard body is JSON")
}

/// (namespace, metric, dimension value) of every metric line of every widget.
fn graphed(dashboard: &Value) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for widget in dashboard["widgets"].as_array().expect("widgets") {
        for line in widget["properties"]["metrics"].as_array().expect("metrics") {
            let parts = line.as_array().expect("a metric line is an array");
            let strings: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
            if strings.is_empty() {
                assert!(parts[0]["expression"].is_string(), "{line}");
                continue;
            }
            out.push((
                strings[0].to_string(),
                strings[1].to_string(),
                strings.get(3).map(|s| s.to_string()),
            ));
        }
    }
    out
}

#[test]
fn the_dashboard_graphs_only_metrics_the_code_writes_for_functions_the_template_deploys() {
    let template = template();
    let functions = function_names(&template);
    let filters = filter_metrics(&template);
    let emitted: BTreeSet<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    let lines = graphed(&dashboard(&template));
    assert!(lines.len() > 20, "{lines:?}");
    for (namespace, metric, dimension) in &lines {
        match namespace.as_str() {
            NAMESPACE => {
                assert!(
                    emitted.contains(metric.as_str()),
                    "no such EMF metric: {metric}"
                );
                let function = dimension.as_deref().expect("the Function dimension");
                assert!(functions.contains(function), "no function {function}");
            }
            "AWS/Lambda" => {
                let function = dimension.as_deref().expect("FunctionName");
                assert!(functions.contains(function), "no function {function}");
            }
            STACK => assert!(filters.contains(metric), "no metric filter makes {metric}"),
            other => panic!("unexpected namespace {other}"),
        }
    }
}

#[test]
fn the_dashboard_shows_what_operators_look_at() {
    let template = template();
    let graphed: BTreeSet<String> = graphed(&dashboard(&template))
        .into_iter()
        .map(|(_, metric, _)| metric)
        .collect();
    for wanted in [
        // leads accepted, delivered and parked
        "LeadsAccepted",
        "LeadsDelivered",
        "LeadsParked",
        // webhook acks and refusals
        "WebhookEvents",
        "AmoWebhookNot2xx",
        // amoCRM errors by kind
        "AmoCrm401",
        "AmoCrm429",
        "AmoCrm5xx",
        "AmoCrmNetworkErrors",
        "AmoCrmRefused",
        // the sync
        "SyncDurationMs",
        "SyncPulled",
        "SyncPushed",
        // the token, the stream, the API's 5xx
        "TokenDaysLeft",
        "IteratorAge",
        "ApiLeads5xx",
        "ApiPassport5xx",
    ] {
        assert!(graphed.contains(wanted), "the dashboard lacks {wanted}");
    }
}

#[test]
fn the_5xx_alarms_watch_the_routes_of_the_template_through_the_access_log() {
    let template = template();
    let filters = resources_of(&template, "AWS::Logs::MetricFilter");
    let pattern_of = |metric: &str| {
        filters
            .iter()
            .find(|f| {
                f["Properties"]["MetricTransformations"][0]["MetricName"].as_str() == Some(metric)
            })
            .map(|f| {
                f["Properties"]["FilterPattern"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .unwrap_or_else(|| panic!("no filter for {metric}"))
    };
    let leads = pattern_of("ApiLeads5xx");
    assert!(leads.contains(r#"$.route = "POST /leads""#), "{leads}");
    assert!(leads.contains(r#"$.status = "5*""#), "{leads}");
    let passport = pattern_of("ApiPassport5xx");
    for route in ["GET /passport", "POST /passport/service-requests"] {
        assert!(
            passport.contains(&format!(r#"$.route = "{route}""#)),
            "{passport}"
        );
    }
    // The route keys the filters match are the access log's $context.routeKey of real routes.
    let text = repo_file("template.yaml");
    assert!(text.contains(r#""route":"$context.routeKey""#));
    let alarms = resources_of(&template, "AWS::CloudWatch::Alarm");
    for metric in ["ApiLeads5xx", "ApiPassport5xx"] {
        let alarm = alarms
            .iter()
            .find(|a| a["Properties"]["MetricName"].as_str() == Some(metric))
            .unwrap_or_else(|| panic!("no alarm on {metric}"));
        assert!(
            alarm["Properties"]["AlarmActions"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
        );
    }
}
