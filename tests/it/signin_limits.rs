//! Client addresses from `X-Forwarded-For` and the sign-in limits built on
//! them, with real headers through the real router.

use crate::harness::TestApp;
use serde_json::json;

/// A password sign-in (`/api/auth/token` or, with the app's Origin,
/// `/api/auth/signin`) carrying these `X-Forwarded-For` headers and cookies.
async fn sign_in(
    app: &TestApp,
    path: &str,
    forwarded: &[&str],
    cookie: Option<&str>,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}{path}", app.url))
        .header("origin", app.origin())
        .json(&json!({"email": email, "password": password}));
    for f in forwarded {
        req = req.header("x-forwarded-for", *f);
    }
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.expect("request sent")
}

const TOKEN: &str = "/api/auth/token";
const RIGHT: &str = "correct-horse-battery";
const WRONG: &str = "wrong-password";

/// App Service's front end appends the address it saw with its port
/// (`203.0.113.9:4444`): that entry is the trusted hop, so the caller's own
/// left-most entries choose nothing, and the audit record shows the real one.
#[tokio::test]
async fn forwarded_entries_with_ports_still_count_as_hops() {
    let app = TestApp::builder()
        .settings(|s| s.trusted_proxy_hops = 1)
        .spawn()
        .await;
    let u = app.user("ada@x.io").await;
    for (i, seen) in ["203.0.113.9:4444", "[2001:db8::9]:4444"]
        .iter()
        .enumerate()
    {
        let mut statuses = Vec::new();
        for j in 0..51 {
            let claimed = format!("198.51.{i}.{j}, {seen}");
            let a = sign_in(&app, TOKEN, &[&claimed], None, &format!("u{j}@x.io"), WRONG).await;
            statuses.push(a.status().as_u16());
        }
        assert_eq!(statuses.last(), Some(&429), "{seen}: {statuses:?}");
    }
    app.clock.advance(chrono::Duration::minutes(16));
    // Two headers are one list: the last entry of the last header is the hop.
    let two = ["192.0.2.66", "203.0.113.9:4444"];
    let ok = sign_in(&app, TOKEN, &two, None, "ada@x.io", RIGHT).await;
    assert_eq!(ok.status(), 200);
    let log = app.get("/api/audit", &u).await;
    assert_eq!(log.status, 200);
    let text = log.body.to_string();
    assert!(text.contains("203.0.113.9"), "{text}");
    assert!(!text.contains("192.0.2.66"), "{text}");
}
