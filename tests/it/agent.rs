//! The environment agent with real code-server: the open-IDE flow, tickets,
//! sessions, the WebSocket Origin check, and secrets kept from the IDE (full
//! tier).

use crate::harness::ide::{agent_client, origin_of, redeem};
use crate::harness::{Auth, Clock, Compute, LocalOpts, TestApp};
use dev8::auth::KeySet;
use dev8::auth::tokens::{TokenKind, claims};
use dev8::procs;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A WebSocket to an environment's address (through `serve`'s front door).
pub(crate) async fn websocket(
    ide_url: &str,
    origin: &str,
    cookie: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tokio_tungstenite::tungstenite::Error,
> {
    let url = reqwest::Url::parse(ide_url).unwrap();
    let ws_url = format!(
        "ws://{}:{}/?reconnectionToken=t1&reconnection=false&skipWebSocketFrames=false",
        url.host_str().unwrap(),
        url.port().unwrap()
    );
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", url.port().unwrap()))
        .await
        .unwrap();
    tokio_tungstenite::client_async(req, tcp)
        .await
        .map(|(ws, _)| ws)
}

pub(crate) fn ws_status(e: tokio_tungstenite::tungstenite::Error) -> u16 {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn open_ide_through_the_agent_with_one_time_tickets() {
    let app = TestApp::builder()
        .compute(Compute::Local(LocalOpts::default()))
        .clock(Clock::Offset)
        .spawn()
        .await;
    let alice = app.user("alice@example.com").await;
    let t0 = Instant::now();
    let id = app.new_env_from(&alice, "web", "node").await;
    let env = app
        .wait_status(&alice, &id, "running", Duration::from_secs(30))
        .await;
    eprintln!("create -> running in {:?}", t0.elapsed());
    let ide_url = env["ideUrl"].as_str().unwrap().to_string();
    assert!(
        ide_url.starts_with(&format!("http://e-{id}.localhost:")),
        "{ide_url}"
    );
    let agent = agent_client(&ide_url);

    // GET /ide: 303 to the agent with a ticket, no-store, no-referrer.
    let ide = format!("/api/environments/{id}/ide");
    let r = app
        .send(Method::GET, &ide, None, app.as_browser(&alice))
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["referrer-policy"], "no-referrer");
    let ticket_url = r.headers["location"].to_str().unwrap().to_string();
    assert!(
        ticket_url.starts_with(&format!("{}_dev8/session?ticket=", ide_url)),
        "{ticket_url}"
    );

    // Without a session the agent sends the browser to the control plane's /ide.
    let r = agent.get(&ide_url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{}/api/environments/{id}/ide", app.url)
    );
    let r = agent
        .get(&ide_url)
        .header("cookie", "dev8_ide=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    // Redeem once: cookie + 303 to / without the ticket; the workbench loads.
    let cookie = redeem(&agent, &ticket_url).await;
    let r = agent
        .get(&ide_url)
        .header("cookie", &cookie)
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    let r = if r.status().is_redirection() {
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let next = reqwest::Url::parse(&ide_url).unwrap().join(&loc).unwrap();
        agent
            .get(next)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
    } else {
        r
    };
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("vs/code/browser/workbench/workbench")
            && page.contains("vscode-workbench-web-configuration"),
        "not the workbench: {}",
        &page[..page.len().min(500)]
    );

    // Static assets come through too.
    let r = agent
        .get(format!("{ide_url}healthz"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A used ticket is refused.
    let r = agent.get(&ticket_url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().get("set-cookie").is_none());

    // Expired, foreign-key, other-environment, too-long and wrong-kind tickets are refused.
    let p = &app.platform;
    let iss = p.policy.issuer().to_string();
    let now = chrono::Utc::now();
    let sign = |kind, env: &str, at: chrono::DateTime<chrono::Utc>, ttl: i64| {
        p.keys.sign(&claims(
            kind,
            &iss,
            "u",
            env,
            at,
            chrono::Duration::seconds(ttl),
        ))
    };
    let expired = sign(
        TokenKind::IdeTicket,
        &id,
        now - chrono::Duration::seconds(120),
        60,
    );
    let other_env = sign(TokenKind::IdeTicket, "01hotherenvironment0000000", now, 60);
    let too_long = sign(TokenKind::IdeTicket, &id, now, 3600);
    let wrong_kind = sign(TokenKind::Agent, &id, now, 60);
    let foreign = KeySet::generate().sign(&claims(
        TokenKind::IdeTicket,
        &iss,
        "u",
        &id,
        now,
        chrono::Duration::seconds(60),
    ));
    for (what, t) in [
        ("expired", expired),
        ("other environment", other_env),
        ("too long", too_long),
        ("wrong kind", wrong_kind),
        ("foreign key", foreign),
    ] {
        let r = agent
            .get(format!("{ide_url}_dev8/session?ticket={t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{what} ticket accepted");
    }
    let r = agent
        .get(format!("{ide_url}_dev8/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // WebSockets: a foreign Origin is refused even with a session; our own Origin gets through.
    let origin = origin_of(&ide_url);
    assert_eq!(
        ws_status(
            websocket(&ide_url, "http://evil.example", &cookie)
                .await
                .unwrap_err()
        ),
        403
    );
    assert_eq!(
        ws_status(websocket(&ide_url, &app.url, &cookie).await.unwrap_err()),
        403
    );
    assert_eq!(
        ws_status(
            websocket(&ide_url, &origin, "dev8_ide=forged")
                .await
                .unwrap_err()
        ),
        401
    );
    let ws = websocket(&ide_url, &origin, &cookie)
        .await
        .expect("same-origin WebSocket through the agent");
    drop(ws);

    // POST /open gives the same kind of URL for API clients.
    let url = app.open_url(&alice, &id).await;
    assert!(url.starts_with(&format!("{ide_url}_dev8/session?ticket=")));
    redeem(&agent, &url).await;

    // Nothing inside the environment sees the agent's secrets.
    let agent_pid = app.local().agent_pid(&id).expect("agent runs");
    let inside = procs::marked(&id, &[agent_pid]);
    assert!(
        inside
            .iter()
            .any(|p| procs::cmdline(*p).contains("code-server")),
        "no code-server among {inside:?}"
    );
    for pid in &inside {
        let env = procs::environ(*pid);
        assert!(
            env.iter()
                .any(|e| e == &format!("DEV8_ENVIRONMENT_ID={id}"))
        );
        for e in &env {
            assert!(
                !e.starts_with("DEV8_AGENT_") && !e.starts_with("DEV8_SIGNING_KEYS"),
                "pid {pid} ({}) sees {}",
                procs::cmdline(*pid),
                e.split('=').next().unwrap()
            );
        }
        assert!(
            env.iter()
                .any(|e| e.starts_with("HOME=") && e.ends_with("/home")),
            "pid {pid} has its own HOME"
        );
    }
    // (The check can see secrets where they are: the agent holds its token.)
    assert!(
        procs::environ(agent_pid)
            .iter()
            .any(|e| e.starts_with("DEV8_AGENT_TOKEN="))
    );

    // Another user gets 404 on every environment route; the IDE routes need sign-in.
    let bob = app.user("bob@example.com").await;
    let open = format!("/api/environments/{id}/open");
    assert_eq!(
        app.send(Method::GET, &ide, None, app.as_browser(&bob))
            .await
            .status,
        404
    );
    assert_eq!(
        app.send(Method::POST, &open, Some(json!({})), app.as_browser(&bob))
            .await
            .status,
        404
    );
    let r = app.send(Method::GET, &ide, None, Auth::None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/#/signin");
    let r = app.send(Method::POST, &open, None, Auth::None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["content-type"], "application/problem+json");

    // Activity: only the environment's current agent token.
    let activity = format!("/api/environments/{id}/activity");
    let post_activity = async |auth: Auth<'_>| {
        app.send(Method::POST, &activity, None, auth)
            .await
            .status
            .as_u16()
    };
    assert_eq!(post_activity(Auth::None).await, 401);
    assert_eq!(
        app.send(
            Method::POST,
            &activity,
            Some(json!({})),
            app.as_browser(&alice)
        )
        .await
        .status,
        401
    );
    let record = p
        .store
        .environment(&alice.id, &id)
        .await
        .unwrap()
        .unwrap()
        .value;
    let mut c = claims(
        TokenKind::Agent,
        &iss,
        &record.user_id,
        &id,
        now,
        chrono::Duration::hours(1),
    );
    let stale = p.keys.sign(&c);
    assert_eq!(
        post_activity(Auth::Bearer(&stale)).await,
        401,
        "an old agent token"
    );
    c.jti = record.agent_token_id.clone().unwrap();
    let current = p.keys.sign(&c);
    // The answer says when the environment stops unless used, and when the person is warned.
    let before = app.now();
    let answer = app
        .send(Method::POST, &activity, None, Auth::Bearer(&current))
        .await;
    let after = app.now();
    assert_eq!(answer.status, 200);
    let stop: chrono::DateTime<chrono::Utc> =
        answer.body["idleStopAt"].as_str().unwrap().parse().unwrap();
    let warn: chrono::DateTime<chrono::Utc> = answer.body["idleWarningAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let timeout = chrono::Duration::minutes(record.idle_timeout_minutes.into());
    assert!(before + timeout <= stop && stop <= after + timeout);
    assert_eq!(stop - warn, (timeout / 3).min(chrono::Duration::minutes(5)));
    let other = "/api/environments/01hzzzzzzzzzzzzzzzzzzzzzzz/activity";
    assert_eq!(
        app.send(Method::POST, other, None, Auth::Bearer(&current))
            .await
            .status,
        401,
        "a token for another environment"
    );
    let mut c2 = claims(
        TokenKind::Agent,
        &iss,
        &record.user_id,
        "01hzzzzzzzzzzzzzzzzzzzzzzz",
        now,
        chrono::Duration::hours(1),
    );
    c2.jti = "x".into();
    assert_eq!(
        app.send(Method::POST, other, None, Auth::Bearer(&p.keys.sign(&c2)))
            .await
            .status,
        404
    );

    // Stopped: /ide leads back to the dashboard, /open is a conflict, the agent is gone.
    assert_eq!(
        app.send(
            Method::POST,
            &format!("/api/environments/{id}/stop"),
            Some(json!({})),
            app.as_browser(&alice)
        )
        .await
        .status,
        202
    );
    app.wait_status(&alice, &id, "stopped", Duration::from_secs(30))
        .await;
    let r = app
        .send(Method::GET, &ide, None, app.as_browser(&alice))
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("/#/environments/{id}?notice=not-running")
    );
    assert_eq!(
        app.send(Method::POST, &open, Some(json!({})), app.as_browser(&alice))
            .await
            .status,
        409
    );
    assert_eq!(
        post_activity(Auth::Bearer(&current)).await,
        401,
        "token of a stopped environment"
    );
    // The agent is gone: its address answers serve's not-running page.
    assert_eq!(
        agent.get(&ide_url).send().await.unwrap().status(),
        503,
        "the agent still answers after stop"
    );
    assert!(
        procs::marked(&id, &[]).is_empty(),
        "processes left after stop"
    );
    app.shutdown().await;
}

/// How often the agents of the sign-out tests check their sessions.
const CHECK: Duration = Duration::from_secs(1);

fn checking_agents() -> Compute {
    Compute::Local(LocalOpts {
        session_check: CHECK,
        ..LocalOpts::default()
    })
}

/// An open IDE: the agent's session cookie and a same-origin WebSocket
/// through it to code-server.
struct OpenIde {
    ide_url: String,
    agent: reqwest::Client,
    cookie: String,
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

impl OpenIde {
    async fn open(ide_url: &str, ticket_url: &str) -> Self {
        let agent = agent_client(ide_url);
        let cookie = redeem(&agent, ticket_url).await;
        let ws = websocket(ide_url, &origin_of(ide_url), &cookie)
            .await
            .expect("WebSocket through the agent");
        OpenIde {
            ide_url: ide_url.to_string(),
            agent,
            cookie,
            ws,
        }
    }

    /// The agent's answer to a page request with the session cookie.
    async fn page(&self) -> reqwest::Response {
        self.agent
            .get(&self.ide_url)
            .header("cookie", &self.cookie)
            .header("sec-fetch-dest", "document")
            .send()
            .await
            .unwrap()
    }

    /// Still served: pages come from code-server and the WebSocket stays
    /// open, over several check intervals (so checks do confirm the session).
    async fn still_served(&mut self) {
        use futures::StreamExt;
        // code-server may send (its keep-alives); the socket must not close.
        let ended = tokio::time::timeout(CHECK * 4, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(m)) if !m.is_close() => {}
                    other => return other,
                }
            }
        })
        .await;
        assert!(
            ended.is_err(),
            "the WebSocket ended while the session was live: {ended:?}"
        );
        let r = self.page().await;
        assert!(
            r.status() == 200
                || r.headers()
                    .get("location")
                    .is_some_and(|l| !l.to_str().unwrap().contains("/api/")),
            "a live session was refused: {} {:?}",
            r.status(),
            r.headers().get("location")
        );
    }

    /// Wait (real time, at most `within`) until the agent refuses the
    /// session: the WebSocket is closed and a page request is sent to the
    /// control plane's `/ide` route (which signs the browser in again).
    async fn refused_within(mut self, app_url: &str, id: &str, within: Duration) {
        use futures::StreamExt;
        let deadline = Instant::now() + within;
        let closed = tokio::time::timeout(within, async {
            loop {
                match self.ws.next().await {
                    None
                    | Some(Err(_))
                    | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => break,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the WebSocket stayed open after {within:?}");
        let ide = format!("{app_url}/api/environments/{id}/ide");
        loop {
            let r = self.page().await;
            let location = r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string());
            if r.status() == 303 && location.as_deref() == Some(ide.as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the agent still serves the session: {} {location:?}",
                r.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A new WebSocket is refused too.
        assert_eq!(
            ws_status(
                websocket(&self.ide_url, &origin_of(&self.ide_url), &self.cookie)
                    .await
                    .unwrap_err()
            ),
            401
        );
    }
}

/// The bound these tests wait for: fail closed after two intervals, a
/// revocation within one, plus room for a loaded machine.
fn bound() -> Duration {
    CHECK * 2 + Duration::from_secs(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn signing_out_closes_the_ide_within_the_check_interval() {
    let app = TestApp::builder().compute(checking_agents()).spawn().await;
    let alice = app.user("alice@example.com").await;
    let id = app.new_env_from(&alice, "web", "node").await;
    let env = app
        .wait_status(&alice, &id, "running", Duration::from_secs(30))
        .await;
    let ide_url = env["ideUrl"].as_str().unwrap();
    // The browser opens the IDE from the dashboard (its cookie session).
    let ide = format!("/api/environments/{id}/ide");
    let r = app
        .send(Method::GET, &ide, None, app.as_browser(&alice))
        .await;
    assert_eq!(r.status, 303);
    let mut open = OpenIde::open(ide_url, r.headers["location"].to_str().unwrap()).await;
    // An API client's session of the same user is separate.
    let mut other = OpenIde::open(ide_url, &app.open_url(&alice, &id).await).await;
    open.still_served().await;

    let out = app
        .send(
            Method::POST,
            "/api/auth/signout",
            None,
            app.as_browser(&alice),
        )
        .await;
    assert_eq!(out.status, 204);
    open.refused_within(&app.url, &id, bound()).await;
    // Where the agent sends the browser, a signed-out cookie gets the sign-in page.
    let r = app
        .send(Method::GET, &ide, None, app.as_browser(&alice))
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/#/signin");
    // The bearer session was not signed out: its IDE session stays.
    other.still_served().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn deleting_the_account_closes_the_ide_even_while_the_environment_still_runs() {
    // No background worker: the environment's deletion is not carried out,
    // so its agent keeps running and must refuse by itself.
    let app = TestApp::builder()
        .compute(checking_agents())
        .background(false)
        .spawn()
        .await;
    let alice = app.user("alice@example.com").await;
    let id = app.new_env_from(&alice, "web", "node").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.status_of(&alice, &id).await != "running" {
        assert!(Instant::now() < deadline, "not running within 30 s");
        // Jobs by hand, on real time (tickets must not come from the future).
        dev8::jobs::worker::drain(&app.platform, 100)
            .await
            .expect("drain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ide_url = app.environment(&alice, &id).await["ideUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let mut open = OpenIde::open(&ide_url, &app.open_url(&alice, &id).await).await;
    open.still_served().await;

    let del = app
        .send(
            Method::DELETE,
            "/api/auth/me",
            None,
            Auth::Bearer(&alice.token),
        )
        .await;
    assert_eq!(del.status, 204, "{}", del.body);
    assert!(app.local().agent_pid(&id).is_some(), "the agent runs on");
    open.refused_within(&app.url, &id, bound()).await;
    assert!(app.local().agent_pid(&id).is_some(), "the agent ran on");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn an_agent_that_cannot_reach_the_control_plane_closes_the_ide_after_the_interval() {
    // The agent reaches the control plane through the Static Web App
    // stand-in, which can be taken down.
    let app = TestApp::builder()
        .compute(checking_agents())
        .behind_swa()
        .spawn()
        .await;
    let alice = app.user("alice@example.com").await;
    let id = app.new_env_from(&alice, "web", "node").await;
    let env = app
        .wait_status(&alice, &id, "running", Duration::from_secs(30))
        .await;
    let mut open = OpenIde::open(
        env["ideUrl"].as_str().unwrap(),
        &app.open_url(&alice, &id).await,
    )
    .await;
    open.still_served().await;

    app.swa().set_down(true);
    open.refused_within(&app.url, &id, bound()).await;
    app.swa().set_down(false);
    app.shutdown().await;
}
