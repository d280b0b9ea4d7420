//! What an operator sees: `serve`'s `GET /metrics` read with a real
//! Prometheus text parser (`prometheus-parse`), who may scrape it, the
//! bounded route labels, and the Application Insights export against a
//! loopback stand-in of the ingestion endpoint (`fakes::appinsights`).

use crate::fakes::appinsights::Ingestion;
use crate::harness::{Mode, TestApp};
use chrono::Duration;
use dev8::jobs::worker;
use prometheus_parse::{Sample, Scrape, Value};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use std::collections::BTreeSet;

/// `GET /metrics` with extra headers; the status and the parsed scrape (when 200).
async fn scrape_with(app: &TestApp, headers: &[(&str, &str)]) -> (StatusCode, Option<Scrape>) {
    let mut req = app.client.get(format!("{}/metrics", app.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("scrape sent");
    let status = resp.status();
    if status != StatusCode::OK {
        return (status, None);
    }
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4",
        "the Prometheus text format"
    );
    let text = resp.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = Scrape::parse(lines).expect("the Prometheus text parser reads /metrics");
    (status, Some(parsed))
}

async fn scrape(app: &TestApp) -> Scrape {
    let (status, parsed) = scrape_with(app, &[]).await;
    assert_eq!(status, StatusCode::OK);
    parsed.unwrap()
}

/// The samples named `name` whose labels include every pair of `labels`.
fn samples<'a>(s: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect()
}

/// The value of the one sample named `name` with these labels (counter, gauge or untyped).
#[track_caller]
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples(s, name, labels);
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    match found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name} is not a number: {other:?}"),
    }
}

/// The observation count of a histogram (optionally with labels).
#[track_caller]
fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> u64 {
    let found = samples(s, name, labels);
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    match &found[0].value {
        Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max) as u64,
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

#[tokio::test]
async fn metrics_parse_and_move_with_requests_and_jobs() {
    let app = TestApp::builder().spawn().await;
    let before = scrape(&app).await;
    for name in [
        "dev8_environments",
        "dev8_jobs_total",
        "dev8_queue_depth",
        "dev8_idle_stops_total",
    ] {
        assert!(
            !samples(&before, name, &[]).is_empty(),
            "{name} is there before anything happened"
        );
    }
    assert_eq!(
        value(&before, "dev8_environments", &[("status", "running")]),
        0.0
    );

    let u = app.user("ops@example.com").await;
    let id = app.new_env(&u, "watched").await;
    assert_eq!(
        app.get(&format!("/api/environments/{id}"), &u).await.status,
        200
    );
    app.sweep().await;
    let queued = scrape(&app).await;
    assert!(
        value(&queued, "dev8_queue_depth", &[]) >= 1.0,
        "the create's reconcile is queued"
    );
    assert_eq!(
        value(
            &queued,
            "dev8_http_requests_total",
            &[("route", "EnvironmentsCreate"), ("code", "202")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &queued,
            "dev8_http_requests_total",
            &[("route", "EnvironmentGet"), ("code", "200")]
        ),
        1.0
    );
    assert_eq!(
        histogram_count(
            &queued,
            "dev8_http_request_duration_seconds",
            &[("route", "EnvironmentGet")]
        ),
        1
    );

    app.settle(20).await;
    let running = scrape(&app).await;
    assert_eq!(
        value(&running, "dev8_environments", &[("status", "running")]),
        1.0
    );
    assert_eq!(
        value(&running, "dev8_environments", &[("status", "creating")]),
        0.0
    );
    let done = value(&running, "dev8_jobs_total", &[("outcome", "done")]);
    assert!(done >= 1.0, "jobs done: {done}");
    assert!(histogram_count(&running, "dev8_reconcile_duration_seconds", &[]) as f64 >= done);
    assert_eq!(value(&running, "dev8_queue_depth", &[]), 0.0);

    // Idle past the timeout: the sweep stops it, and the counter says so.
    app.clock.advance(Duration::minutes(31));
    assert_eq!(app.sweep().await.idle_stopped, 1);
    let stopped = scrape(&app).await;
    assert_eq!(value(&stopped, "dev8_idle_stops_total", &[]), 1.0);
    assert_eq!(
        value(&stopped, "dev8_environments", &[("status", "stopping")]),
        1.0
    );
}

#[tokio::test]
async fn failed_deliveries_count_as_retried_then_poisoned() {
    let app = TestApp::builder().spawn().await;
    let u = app.user("ops@example.com").await;
    app.fake().set_down(true);
    app.new_env(&u, "doomed").await;
    for attempt in 1..=5u32 {
        worker::run_next(&app.platform).await.unwrap();
        app.clock
            .advance(Duration::from_std(worker::backoff(attempt)).unwrap());
    }
    assert_eq!(app.queue().poisoned().await.unwrap().len(), 1);
    let s = scrape(&app).await;
    assert_eq!(value(&s, "dev8_jobs_total", &[("outcome", "retried")]), 4.0);
    assert_eq!(
        value(&s, "dev8_jobs_total", &[("outcome", "poisoned")]),
        1.0
    );
    assert_eq!(value(&s, "dev8_jobs_total", &[("outcome", "done")]), 0.0);
    assert_eq!(value(&s, "dev8_environments", &[("status", "error")]), 1.0);
}

const TOKEN: &str = "metrics-token-for-tests";

#[tokio::test]
async fn behind_a_proxy_metrics_need_the_token() {
    let app = TestApp::builder()
        .settings(|s| s.metrics_token = Some(SecretString::from(TOKEN.to_string())))
        .spawn()
        .await;
    let bearer = format!("Bearer {TOKEN}");
    let forwarded = ("x-forwarded-for", "203.0.113.7");
    // A direct loopback peer with no proxy in front: open.
    assert_eq!(scrape_with(&app, &[]).await.0, StatusCode::OK);
    // Forwarded by a proxy: the token, in either header, and nothing else.
    assert_eq!(
        scrape_with(&app, &[forwarded]).await.0,
        StatusCode::UNAUTHORIZED
    );
    for wrong in [
        "Bearer nope",
        "metrics-token-for-tests",
        "Bearer metrics-token-for-test",
    ] {
        assert_eq!(
            scrape_with(&app, &[forwarded, ("authorization", wrong)])
                .await
                .0,
            StatusCode::UNAUTHORIZED,
            "{wrong}"
        );
    }
    assert_eq!(
        scrape_with(&app, &[forwarded, ("authorization", &bearer)])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        scrape_with(&app, &[forwarded, ("x-dev8-authorization", &bearer)])
            .await
            .0,
        StatusCode::OK
    );

    // Trusted hops set: every request may have come through the proxy.
    let proxied = TestApp::builder()
        .settings(|s| {
            s.trusted_proxy_hops = 1;
            s.metrics_token = Some(SecretString::from(TOKEN.to_string()));
        })
        .spawn()
        .await;
    assert_eq!(scrape_with(&proxied, &[]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape_with(&proxied, &[("authorization", &bearer)]).await.0,
        StatusCode::OK
    );

    // No token configured: behind a proxy nobody may scrape.
    let closed = TestApp::builder()
        .settings(|s| s.trusted_proxy_hops = 1)
        .spawn()
        .await;
    assert_eq!(
        scrape_with(&closed, &[("authorization", "Bearer ")])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn route_labels_stay_bounded_after_a_thousand_ids() {
    let app = TestApp::builder().spawn().await;
    let u = app.user("ops@example.com").await;
    for i in 0..1000 {
        let id = format!("e{i:05}x{}", ulid::Ulid::new());
        let path = if i % 2 == 0 {
            format!("/api/environments/{id}")
        } else {
            format!("/api/no-such-thing/{id}")
        };
        assert_eq!(app.get(&path, &u).await.status, 404, "{path}");
    }
    let s = scrape(&app).await;
    let known: BTreeSet<&str> = dev8::http::ROUTES
        .iter()
        .map(|r| r.function)
        .chain([dev8::metrics::UNMATCHED_ROUTE])
        .collect();
    let mut series = BTreeSet::new();
    for x in s
        .samples
        .iter()
        .filter(|x| x.metric.starts_with("dev8_http_"))
    {
        let route = x
            .labels
            .get("route")
            .expect("every HTTP sample has a route");
        assert!(
            known.contains(route),
            "route label {route:?} is not a ROUTES name"
        );
        series.insert((
            x.metric.clone(),
            route.to_string(),
            x.labels.get("code").map(str::to_string),
        ));
    }
    let routes: BTreeSet<&str> = series.iter().map(|(_, r, _)| r.as_str()).collect();
    assert_eq!(
        routes,
        BTreeSet::from(["AuthSignup", "AuthToken", "EnvironmentGet", "unmatched"]),
        "only the routes used, by name"
    );
    // Per route: one request series per code seen, and the histogram's own.
    assert!(series.len() <= 4 * 4, "series: {series:?}");
    assert_eq!(
        value(
            &s,
            "dev8_http_requests_total",
            &[("route", "EnvironmentGet"), ("code", "404")]
        ),
        500.0
    );
    assert_eq!(
        value(
            &s,
            "dev8_http_requests_total",
            &[("route", "unmatched"), ("code", "404")]
        ),
        500.0
    );
}

#[tokio::test]
async fn functions_mode_has_no_metrics_route() {
    let app = TestApp::builder().mode(Mode::Functions).spawn().await;
    let resp = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn application_insights_receives_metrics_and_a_reconcile_trace() {
    let ingestion = Ingestion::spawn().await;
    let connection = ingestion.connection_string();
    let app = TestApp::builder()
        .mode(Mode::Functions)
        .settings(move |s| s.appinsights_connection_string = Some(SecretString::from(connection)))
        .spawn()
        .await;
    let u = app.user("ops@example.com").await;
    let id = app.new_env(&u, "traced").await;
    // The queue trigger's invocation, as the Functions host sends it.
    let message = app
        .queue()
        .receive(std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the create's reconcile");
    let invocation = json!({
        "Data": {"job": serde_json::to_string(&message.body).unwrap()},
        "Metadata": {"Id": message.id, "DequeueCount": "1"}
    });
    let resp = app
        .client
        .post(format!("{}/{}", app.url, dev8::host::QUEUE_FUNCTION))
        .json(&invocation)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // The timer's invocation: the sweep is what refreshes the gauges in Azure.
    let resp = app
        .client
        .post(format!("{}/{}", app.url, dev8::host::TIMER_FUNCTION))
        .json(&json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    app.platform.metrics.flush().await;

    let items = ingestion.items();
    assert!(
        items.iter().all(|e| e["iKey"] == Ingestion::IKEY),
        "{items:#?}"
    );
    let reconcile = items
        .iter()
        .find(|e| {
            e["name"] == "Microsoft.ApplicationInsights.Request"
                && e["data"]["baseData"]["name"] == "reconcile"
        })
        .unwrap_or_else(|| panic!("no reconcile request telemetry in {items:#?}"));
    assert_eq!(reconcile["data"]["baseType"], "RequestData");
    assert_eq!(reconcile["data"]["baseData"]["success"], true);
    assert_eq!(
        reconcile["data"]["baseData"]["properties"]["dev8.environment_id"],
        id.as_str()
    );
    let create = items.iter().find(|e| {
        e["name"] == "Microsoft.ApplicationInsights.Request"
            && e["data"]["baseData"]["name"] == "POST /api/environments"
    });
    let create =
        create.unwrap_or_else(|| panic!("no request telemetry for the create in {items:#?}"));
    assert_eq!(create["data"]["baseData"]["responseCode"], "202");

    let metric = |name: &str, property: Option<(&str, &str)>| {
        items.iter().any(|e| {
            e["name"] == "Microsoft.ApplicationInsights.Metric"
                && e["data"]["baseType"] == "MetricData"
                && e["data"]["baseData"]["metrics"][0]["name"] == name
                && property.is_none_or(|(k, v)| e["data"]["baseData"]["properties"][k] == v)
        })
    };
    assert!(
        metric("dev8_jobs_total", Some(("outcome", "done"))),
        "{items:#?}"
    );
    assert!(
        metric("dev8_reconcile_duration_seconds", None),
        "{items:#?}"
    );
    // The one environment, counted under its status (creating or, if the
    // fake booted at once, running), by the sweep.
    assert!(
        items.iter().any(|e| {
            let d = &e["data"]["baseData"];
            d["metrics"][0]["name"] == "dev8_environments"
                && d["metrics"][0]["value"] == 1.0
                && ["creating", "running"]
                    .contains(&d["properties"]["status"].as_str().unwrap_or(""))
        }),
        "{items:#?}"
    );
    assert!(metric("dev8_queue_depth", None), "{items:#?}");
    assert!(
        items
            .iter()
            .any(|e| e["data"]["baseData"]["name"] == "sweep"),
        "no sweep request telemetry in {items:#?}"
    );
    assert!(
        metric(
            "dev8_http_requests_total",
            Some(("route", "EnvironmentsCreate"))
        ),
        "{items:#?}"
    );
    // No raw path or id is a metric property.
    for e in items
        .iter()
        .filter(|e| e["name"] == "Microsoft.ApplicationInsights.Metric")
    {
        let props = e["data"]["baseData"]["properties"].to_string();
        assert!(!props.contains(&id), "an id in metric properties: {props}");
    }
}
