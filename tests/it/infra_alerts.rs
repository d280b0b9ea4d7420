//! Tidy check: the day-one alert rules in `infra/modules/alerts.bicep`
//! exist, are wired into `main.bicep` on the Application Insights resource,
//! and query only metric names, label names and label values that
//! `dev8::metrics` really exports (so renaming a metric breaks this test,
//! not the alert). The Bicep CLI cannot run here, so this reads the text.

use dev8::domain::Status;
use dev8::metrics::{JobOutcome, Metrics, RequestRecord};
use std::collections::BTreeSet;
use std::path::Path;

fn infra(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("infra")
            .join(file),
    )
    .unwrap_or_else(|e| panic!("infra/{file}: {e}"))
}

/// `(name, query)` of every entry of the `rules` array.
fn rules(text: &str) -> Vec<(String, String)> {
    let quoted = |line: &str, key: &str| {
        let rest = line.trim_start().strip_prefix(key)?.trim_start();
        let rest = rest.strip_prefix('\'')?;
        Some(rest[..rest.rfind('\'')?].to_string())
    };
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = quoted(line, "name:").filter(|n| !n.contains("${")) {
            name = Some(n);
        }
        if let Some(q) = quoted(line, "query:") {
            out.push((name.take().expect("a rule's name before its query"), q));
        }
    }
    out
}

/// Every `dev8_…` word in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("dev8_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_day_one_alerts_query_what_the_binary_exports() {
    let text = infra("modules/alerts.bicep");
    let found = rules(&text);
    let names: BTreeSet<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "poison-queue",
            "reconcile-failures",
            "environments-in-error",
            "http-5xx"
        ]),
        "rules: {found:?}"
    );
    // Families with labels appear once they have a series: record one request.
    let metrics = Metrics::default();
    metrics.http_request(RequestRecord {
        route: "Health",
        template: "/api/health",
        method: "GET",
        code: 200,
        started: std::time::SystemTime::now(),
        elapsed: std::time::Duration::from_millis(1),
    });
    let exported: BTreeSet<String> = metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    let labels = ["status", "route", "code", "outcome"];
    for (name, query) in &found {
        let used = metric_names(query);
        assert!(!used.is_empty(), "{name} queries no dev8 metric: {query}");
        for m in &used {
            assert!(
                exported.contains(m),
                "{name} queries {m}, which is not exported: {exported:?}"
            );
        }
        for dim in query.split("customDimensions.").skip(1) {
            let label: String = dim
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(
                labels.contains(&label.as_str()),
                "{name}: unknown label {label}"
            );
        }
        assert!(
            query.contains("measure"),
            "{name} must yield `measure`: {query}"
        );
    }
    let query = |n: &str| &found.iter().find(|(x, _)| x == n).unwrap().1;
    let poisoned = JobOutcome::Poisoned.as_str();
    assert!(query("poison-queue").contains(&format!("== \"{poisoned}\"")));
    let done = JobOutcome::Done.as_str();
    assert!(query("reconcile-failures").contains(&format!("!= \"{done}\"")));
    let error = Status::Error.as_str();
    assert!(query("environments-in-error").contains(&format!("== \"{error}\"")));
    assert!(query("http-5xx").contains(">= 500"));

    assert!(
        text.contains("'Microsoft.Insights/scheduledQueryRules@")
            && text.contains("scopes: [appInsightsId]"),
        "the rules are log alerts on the Application Insights resource"
    );
    let main = infra("main.bicep");
    assert!(
        main.contains("module alerts 'modules/alerts.bicep'")
            && main.contains("appInsightsId: monitoring.outputs.insightsId"),
        "main.bicep deploys the alerts on the monitoring module's Application Insights"
    );
    assert!(infra("modules/monitoring.bicep").contains("output insightsId string = insights.id"));
}
