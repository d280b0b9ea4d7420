//! Dev8 behind its Static Web App. The linked backend (the proxy that puts
//! the Function App's API under the dashboard's origin) sets its own
//! `Authorization` on every request it forwards (`fakes::swa`), so Dev8's
//! clients carry their token in `X-Dev8-Authorization`, and a foreign
//! `Authorization` neither spoils a valid cookie session or Dev8 token nor
//! lets anything in. Through the stand-in, with the real app: the
//! dashboard's calls (cookie + Origin), a bearer API client, the agent's
//! activity reports, and (full tier, real code-server) the lifecycle.

use crate::fakes::swa::SWA_AUTHORIZATION;
use crate::harness::ide::{agent_client, redeem};
use crate::harness::{Auth, Clock, Compute, LocalOpts, TestApp, User, spawn_app};
use dev8::http::extract::DEV8_AUTHORIZATION;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

/// The dashboard's "Open IDE": a page navigation with the session cookie,
/// answered with a redirect to a ticket URL (not to the sign-in page).
async fn open_ide(app: &TestApp, u: &User, id: &str) -> String {
    let path = format!("/api/environments/{id}/ide");
    let ide = app.send(Method::GET, &path, None, app.as_browser(u)).await;
    assert_eq!(ide.status, 303);
    let location = ide.headers["location"].to_str().unwrap().to_string();
    assert!(!location.contains("signin"), "{location}");
    location
}

/// Stop, start or delete from the dashboard (cookie + Origin): accepted.
async fn dashboard_action(app: &TestApp, u: &User, id: &str, action: &str) {
    let a = match action {
        "delete" => {
            let path = format!("/api/environments/{id}");
            app.send(Method::DELETE, &path, None, app.as_browser(u))
                .await
        }
        _ => {
            let path = format!("/api/environments/{id}/{action}");
            app.send(Method::POST, &path, Some(json!({})), app.as_browser(u))
                .await
        }
    };
    assert_eq!(a.status, 202, "{action}: {}", a.body);
}

fn small(name: &str) -> serde_json::Value {
    json!({"name": name, "baseImage": "node", "preset": "small"})
}

#[tokio::test]
async fn the_dashboard_works_behind_the_static_web_app() {
    let app = TestApp::builder().behind_swa().spawn().await;
    let u = app.user("ada@example.com").await;
    let browser = app.as_browser(&u);
    // What failed before: the proxy's Authorization was taken for a session.
    let a = app
        .send(
            Method::POST,
            "/api/environments",
            Some(small("web")),
            browser,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["environment"]["id"].as_str().unwrap().to_string();
    app.settle(10).await;
    let list = app
        .send(Method::GET, "/api/environments", None, browser)
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["environments"][0]["status"], "running");
    let me = app.send(Method::GET, "/api/auth/me", None, browser).await;
    assert_eq!(me.body["user"]["email"], "ada@example.com");
    // The IDE page navigation (a GET with the cookie) goes to the ticket.
    open_ide(&app, &u, &id).await;
    for action in ["stop", "start"] {
        dashboard_action(&app, &u, &id, action).await;
        app.settle(10).await;
    }
    // The CSRF check still holds behind the proxy: no Origin, no change.
    let a = app
        .send(
            Method::POST,
            &format!("/api/environments/{id}/stop"),
            Some(json!({})),
            Auth::Cookie(&u.cookie, None),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    dashboard_action(&app, &u, &id, "delete").await;
    app.settle(10).await;
    assert_eq!(app.env(&u, &id).await.status, 404);
}

#[tokio::test]
async fn bearer_clients_and_agents_use_x_dev8_authorization_behind_it() {
    let app = TestApp::builder().behind_swa().spawn().await;
    assert_eq!(app.bearer_header, DEV8_AUTHORIZATION);
    let u = app.user("ada@example.com").await;
    // `app.post`/`get` send the token in X-Dev8-Authorization.
    let id = app.new_env(&u, "api").await;
    app.settle(10).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
    // `Authorization: Bearer` does not survive the proxy (it is replaced).
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/api/environments", app.url))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The agent's activity report, with the token the compute gave it.
    let token = app.fake().agent_token(&id).expect("the agent got a token");
    let activity = format!("/api/environments/{id}/activity");
    let before = app.environment(&u, &id).await["lastActivityAt"].clone();
    app.clock.advance(chrono::Duration::minutes(3));
    let r = app
        .send(
            Method::POST,
            &activity,
            Some(json!({"pages": 1})),
            Auth::Bearer(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(app.environment(&u, &id).await["lastActivityAt"], before);
    let r = client
        .post(format!("{}{activity}", app.url))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "Authorization is the proxy's");
}

/// What a request is, the headers it carries, and the status it must get.
type Case<'a> = (&'a str, Method, &'a str, Vec<(&'a str, &'a str)>, u16);

/// Straight at `serve`, with the proxy's header added by hand: every
/// combination lets in exactly what it would without that header.
#[tokio::test]
async fn a_foreign_authorization_changes_nothing() {
    let app = spawn_app().await;
    let u = app.user("ada@example.com").await;
    let id = app.new_env(&u, "e").await;
    app.settle(10).await;
    let send = async |method: Method, path: &str, headers: &[(&str, &str)]| {
        let mut req = app
            .client
            .request(method, format!("{}{path}", app.url))
            .header("content-type", "application/json")
            .body("{}");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap().status().as_u16()
    };
    let foreign = ("authorization", SWA_AUTHORIZATION);
    let origin = ("origin", app.origin());
    let cookie = ("cookie", u.cookie.as_str());
    let bearer = format!("Bearer {}", u.token);
    let list = "/api/environments";
    let stop = format!("/api/environments/{id}/stop");
    let cases: &[Case] = &[
        (
            "alone it lets nothing in",
            Method::GET,
            list,
            vec![foreign],
            401,
        ),
        (
            "with a valid cookie, the cookie decides",
            Method::GET,
            list,
            vec![foreign, cookie],
            200,
        ),
        (
            "the cookie's Origin check still holds",
            Method::POST,
            &stop,
            vec![foreign, cookie],
            403,
        ),
        (
            "a change with cookie and Origin",
            Method::POST,
            &stop,
            vec![foreign, cookie, origin],
            202,
        ),
        (
            "a Dev8 token decides",
            Method::GET,
            list,
            vec![foreign, (DEV8_AUTHORIZATION, &bearer)],
            200,
        ),
        (
            "a bad Dev8 token is refused, cookie or not",
            Method::GET,
            list,
            vec![(DEV8_AUTHORIZATION, "Bearer not-a-token"), cookie],
            401,
        ),
        (
            "a malformed Dev8 header is refused",
            Method::GET,
            list,
            vec![(DEV8_AUTHORIZATION, "garbage"), cookie],
            401,
        ),
        (
            "X-Dev8-Authorization is looked at first",
            Method::GET,
            list,
            vec![
                (DEV8_AUTHORIZATION, "Bearer not-a-token"),
                ("authorization", &bearer),
            ],
            401,
        ),
        (
            "serve keeps accepting Authorization: Bearer",
            Method::GET,
            list,
            vec![("authorization", &bearer)],
            200,
        ),
    ];
    for (what, method, path, headers, want) in cases {
        assert_eq!(send(method.clone(), path, headers).await, *want, "{what}");
    }

    // Activity: an agent token only, in either header; the foreign one and
    // a cookie are refused.
    app.settle(10).await;
    let start = format!("/api/environments/{id}/start");
    assert_eq!(send(Method::POST, &start, &[cookie, origin]).await, 202);
    app.settle(10).await;
    let agent = format!("Bearer {}", app.fake().agent_token(&id).unwrap());
    let activity = format!("/api/environments/{id}/activity");
    for (headers, want) in [
        (vec![foreign], 401),
        (vec![foreign, cookie, origin], 401),
        (vec![foreign, (DEV8_AUTHORIZATION, agent.as_str())], 200),
        (vec![("authorization", agent.as_str())], 200),
    ] {
        assert_eq!(
            send(Method::POST, &activity, &headers).await,
            want,
            "{headers:?}"
        );
    }
}

/// Poll (real time) until the dashboard's view of the environment has `status`.
async fn wait_browser_status(app: &TestApp, u: &User, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = app
            .send(
                Method::GET,
                &format!("/api/environments/{id}"),
                None,
                app.as_browser(u),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        if a.body["environment"]["status"] == status {
            return;
        }
        assert_ne!(a.body["environment"]["status"], "error", "{}", a.body);
        assert!(
            Instant::now() < deadline,
            "not {status} in time: {}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn the_lifecycle_runs_behind_the_static_web_app() {
    let app = TestApp::builder()
        .compute(Compute::Local(LocalOpts {
            activity_interval: Duration::from_millis(300),
            cpu_sample: Duration::from_millis(300),
            ..LocalOpts::default()
        }))
        .clock(Clock::Offset)
        .behind_swa()
        .spawn()
        .await;
    let u = app.user("ada@example.com").await;
    let browser = app.as_browser(&u);
    let body =
        json!({"name": "swa", "baseImage": "node", "preset": "small", "idleTimeoutMinutes": 5});
    let a = app
        .send(Method::POST, "/api/environments", Some(body), browser)
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["environment"]["id"].as_str().unwrap().to_string();
    wait_browser_status(&app, &u, &id, "running").await;

    // Open the IDE as the dashboard does (a page navigation with the cookie).
    let ticket = open_ide(&app, &u, &id).await;
    let env = app.environment(&u, &id).await;
    let ide_url = env["ideUrl"].as_str().unwrap().to_string();
    let client = agent_client(&ide_url);
    let session = redeem(&client, &ticket).await;

    // Use keeps it running: the agent's reports pass the proxy.
    app.clock.advance(chrono::Duration::minutes(3));
    let at = app.clock.now();
    let r = client
        .get(&ide_url)
        .header("cookie", &session)
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    assert!(r.status().as_u16() < 400, "{}", r.status());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last: chrono::DateTime<chrono::Utc> = app.environment(&u, &id).await["lastActivityAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        if last >= at {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no activity report arrived through the proxy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.clock.advance(chrono::Duration::minutes(3));
    let report = dev8::jobs::sweep::sweep(&app.platform).await.unwrap();
    assert_eq!(report.idle_stopped, 0, "stopped while in use");

    for (action, status) in [("stop", "stopped"), ("start", "running")] {
        dashboard_action(&app, &u, &id, action).await;
        wait_browser_status(&app, &u, &id, status).await;
    }
    dashboard_action(&app, &u, &id, "delete").await;
    app.wait_gone(&u, &id, Duration::from_secs(60)).await;
    app.shutdown().await;
}
