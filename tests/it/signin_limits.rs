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

/// The device cookie an answer set (`dev8_device=value`).
fn device_cookie(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("dev8_device="))
        .map(|c| c.split(';').next().unwrap().to_string())
        .expect("a device cookie")
}

async fn statuses(
    app: &TestApp,
    n: usize,
    forwarded: &[&str],
    cookie: Option<&str>,
    email: &str,
    password: &str,
) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let a = sign_in(app, TOKEN, forwarded, cookie, email, password).await;
        out.push(a.status().as_u16());
    }
    out
}

/// Successes do not count, and ten wrong passwords from one address slow
/// that address down on that account, not the owner signing in elsewhere.
#[tokio::test]
async fn only_failures_count_and_guessing_elsewhere_locks_nobody_out() {
    let app = TestApp::builder()
        .settings(|s| s.trusted_proxy_hops = 1)
        .spawn()
        .await;
    app.user("ada@x.io").await;
    let owner = ["203.0.113.5:51000"];
    let ok = statuses(&app, 12, &owner, None, "ada@x.io", RIGHT).await;
    assert!(ok.iter().all(|s| *s == 200), "{ok:?}");

    let attacker = ["198.51.100.7:4444"];
    let guesses = statuses(&app, 11, &attacker, None, "ada@x.io", WRONG).await;
    assert!(guesses[..10].iter().all(|s| *s == 401), "{guesses:?}");
    assert_eq!(guesses[10], 429);
    // Guessing stays slow there, even with the right password...
    let there = statuses(&app, 1, &attacker, None, "ada@x.io", RIGHT).await;
    assert_eq!(there, [429]);
    // ...and the owner, from an address that has not been failing, gets in.
    let owner_in = statuses(&app, 1, &owner, None, "ada@x.io", RIGHT).await;
    assert_eq!(owner_in, [200]);
}

/// Behind the Static Web App stand-in every browser here has the same
/// address (the one the stand-in appends): the owner's browser, which
/// signed in before, is exempt from the back-off others' guessing filled,
/// and its own failures are limited on their own.
#[tokio::test]
async fn a_device_cookie_exempts_the_owners_browser_behind_the_swa() {
    let app = TestApp::builder()
        .behind_swa()
        .settings(|s| s.trusted_proxy_hops = 1)
        .spawn()
        .await;
    app.user("ada@x.io").await;
    app.user("bob@x.io").await;
    let signin = "/api/auth/signin";
    let first = sign_in(&app, signin, &[], None, "ada@x.io", RIGHT).await;
    assert_eq!(first.status(), 200);
    let ada_device = device_cookie(&first);
    let bob = sign_in(&app, signin, &[], None, "bob@x.io", RIGHT).await;
    let bob_device = device_cookie(&bob);

    // Someone guesses, claiming addresses of their choice: they count as
    // the address the stand-in saw.
    for i in 0..10 {
        let claimed = format!("203.0.113.{i}");
        let a = sign_in(&app, TOKEN, &[&claimed], None, "ada@x.io", WRONG).await;
        assert_eq!(a.status(), 401);
    }
    let limited = statuses(&app, 1, &["203.0.113.99"], None, "ada@x.io", RIGHT).await;
    assert_eq!(limited, [429]);
    // Another account's device cookie exempts nothing.
    let other = statuses(&app, 1, &[], Some(&bob_device), "ada@x.io", RIGHT).await;
    assert_eq!(other, [429]);
    // The owner's browser gets in.
    let owner = sign_in(&app, signin, &[], Some(&ada_device), "ada@x.io", RIGHT).await;
    assert_eq!(owner.status(), 200);
    // A stolen device cookie does not make guessing fast.
    let own = statuses(&app, 11, &[], Some(&ada_device), "ada@x.io", WRONG).await;
    assert!(own[..10].iter().all(|s| *s == 401), "{own:?}");
    assert_eq!(own[10], 429);
}

/// An entry that does not parse makes the address unknown: unknown
/// addresses share a generous ceiling rather than one address's limit, and
/// each account is still limited.
#[tokio::test]
async fn unknown_addresses_share_a_generous_ceiling() {
    let app = TestApp::builder()
        .settings(|s| s.trusted_proxy_hops = 1)
        .spawn()
        .await;
    app.user("ada@x.io").await;
    let hidden = ["198.51.100.7, _hidden"];
    for j in 0..51 {
        let a = sign_in(&app, TOKEN, &hidden, None, &format!("u{j}@x.io"), WRONG).await;
        assert_eq!(a.status(), 401, "attempt {j}");
    }
    let guesses = statuses(&app, 11, &hidden, None, "ada@x.io", WRONG).await;
    assert!(guesses[..10].iter().all(|s| *s == 401), "{guesses:?}");
    assert_eq!(guesses[10], 429);
}
