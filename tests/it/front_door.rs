//! `serve`'s front door for IDEs, `e-<id>.localhost:<serve's port>`: what an
//! address answers while its environment is not running (fake backend, fast
//! tier), and with real agents the same address across stop and start, the
//! agents' private Unix sockets, and sockets the backend did not start
//! (full tier).

use crate::agent::{websocket, ws_status};
use crate::harness::ide::{agent_client, origin_of, redeem};
use crate::harness::{TestApp, User};
use crate::local_compute::local_app;
use dev8::compute::Compute as _;
use dev8::procs;
use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

fn port_of(app: &TestApp) -> u16 {
    reqwest::Url::parse(&app.url).unwrap().port().unwrap()
}

/// A request to `serve` naming `host`, as a client that resolves any name
/// to loopback sends it (Chromium does so for `*.localhost` by itself).
async fn at(
    app: &TestApp,
    method: reqwest::Method,
    host: &str,
    path: &str,
    auth: Option<&User>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.url))
        .header("host", host);
    if let Some(u) = auth {
        req = req
            .header("authorization", format!("Bearer {}", u.token))
            .header("cookie", &u.cookie)
            .header("origin", format!("http://{host}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// The not-running page, checked for what every such answer shares; its
/// body with the id (if any) made generic.
fn the_page(
    id: Option<&str>,
    (status, headers, body): (u16, reqwest::header::HeaderMap, String),
) -> String {
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("set-cookie").is_none());
    match id {
        Some(id) => body.replace(id, "<id>"),
        None => body,
    }
}

#[tokio::test]
async fn every_address_of_a_non_running_environment_answers_one_page_and_starts_nothing() {
    let app = TestApp::builder().spawn().await;
    let port = port_of(&app);
    let owner = app.user("owner@example.com").await;
    let other = app.user("other@example.com").await;
    let stopped = app.new_env(&owner, "payroll-web").await;
    app.settle(10).await;
    assert_eq!(app.action(&owner, &stopped, "stop").await.status, 202);
    app.settle(10).await;
    assert_eq!(app.status_of(&owner, &stopped).await, "stopped");
    // Someone else's: the fake runs it, with no agent behind the door.
    let theirs = app.new_env(&other, "secret-project").await;
    app.settle(10).await;
    assert_eq!(app.status_of(&other, &theirs).await, "running");
    let unknown = dev8::domain::new_id();
    let starts = app.fake().counts(&stopped).starts;

    let mut pages = HashSet::new();
    for id in [&stopped, &theirs, &unknown] {
        let host = format!("e-{id}.localhost:{port}");
        for path in [
            "/",
            "/?folder=/home",
            "/_dev8/session?ticket=x",
            "/_dev8/healthz",
        ] {
            let page = the_page(
                Some(id),
                at(&app, reqwest::Method::GET, &host, path, None).await,
            );
            pages.insert(page);
        }
        // The owner's own credentials change nothing: the API is not on
        // this host, and a POST is answered the same and does nothing.
        let page = the_page(
            Some(id),
            at(
                &app,
                reqwest::Method::GET,
                &host,
                "/api/environments",
                Some(&owner),
            )
            .await,
        );
        pages.insert(page);
        let start = format!("/api/environments/{id}/start");
        let page = the_page(
            Some(id),
            at(&app, reqwest::Method::POST, &host, &start, Some(&owner)).await,
        );
        pages.insert(page);
        // A WebSocket is refused the same way.
        let ws = websocket(&format!("http://{host}/"), &format!("http://{host}"), "")
            .await
            .unwrap_err();
        assert_eq!(ws_status(ws), 503);
    }
    assert_eq!(pages.len(), 1, "the answers differ: {pages:#?}");
    let page = pages.into_iter().next().unwrap();
    for secret in [
        "payroll",
        "secret-project",
        "owner@",
        "other@",
        "stopped",
        "Stopped",
        "starting",
    ] {
        assert!(!page.contains(secret), "the page says {secret:?}: {page}");
    }
    assert!(
        page.contains(&format!("href=\"{}/api/environments/<id>/ide\"", app.url)),
        "it links to the dashboard's IDE route: {page}"
    );

    // A malformed id gets the same page, linking to the dashboard itself.
    for host in [
        format!("e-not_an_id.localhost:{port}"),
        format!("e-..localhost:{port}"),
    ] {
        let answer = the_page(None, at(&app, reqwest::Method::GET, &host, "/", None).await);
        assert_eq!(
            answer,
            page.replace(
                &format!("{}/api/environments/<id>/ide", app.url),
                &format!("{}/", app.url)
            )
        );
    }

    // Nothing was started or asked for.
    assert_eq!(app.queue_len().await, 0, "a request was queued");
    assert_eq!(app.fake().counts(&stopped).starts, starts);
    let env = app.environment(&owner, &stopped).await;
    assert_eq!(
        (env["status"].as_str(), env["desiredState"].as_str()),
        (Some("stopped"), Some("stopped"))
    );

    // The link, followed by the owner, lands on the dashboard's not-running
    // view; followed by anyone else, it is not found.
    let ide = format!("/api/environments/{stopped}/ide");
    let r = app.get(&ide, &owner).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.headers["location"],
        format!("/#/environments/{stopped}?notice=not-running")
    );
    assert_eq!(app.get(&ide, &other).await.status, 404);
}

#[tokio::test]
async fn a_host_on_another_port_or_name_is_the_dashboard_not_an_environment() {
    let app = TestApp::builder().spawn().await;
    let port = port_of(&app);
    let u = app.user("dash@example.com").await;
    let id = app.new_env(&u, "web").await;
    app.settle(10).await;
    for host in [
        format!("e-{id}.localhost:{}", port.wrapping_add(1)),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("x-{id}.localhost:{port}"),
    ] {
        let (status, _, body) = at(
            &app,
            reqwest::Method::GET,
            &host,
            "/api/environments",
            Some(&u),
        )
        .await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains(&id), "{host}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn the_same_address_serves_the_ide_after_stop_and_start() {
    let app = local_app().await;
    let u = app.user("again@example.com").await;
    let id = app.new_env(&u, "web").await;
    let env = app
        .wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    let ide_url = env["ideUrl"].as_str().unwrap().to_string();
    assert_eq!(
        ide_url,
        format!("http://e-{id}.localhost:{}/", port_of(&app))
    );
    let client = agent_client(&ide_url);
    let cookie = redeem(&client, &app.open_url(&u, &id).await).await;
    // code-server's own health check, behind the agent's session check.
    let workbench = |cookie: String| {
        let (client, url) = (client.clone(), format!("{ide_url}healthz"));
        async move {
            client
                .get(&url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(workbench(cookie.clone()).await.status(), 200);

    assert_eq!(app.action(&u, &id, "stop").await.status, 202);
    app.wait_status(&u, &id, "stopped", Duration::from_secs(30))
        .await;
    let r = workbench(cookie.clone()).await;
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(&format!("{}/api/environments/{id}/ide", app.url)),
        "{page}"
    );
    let ws = websocket(&ide_url, &origin_of(&ide_url), &cookie)
        .await
        .unwrap_err();
    assert_eq!(ws_status(ws), 503);
    assert!(
        procs::marked(&id, &[]).is_empty(),
        "a GET started something"
    );
    assert_eq!(app.status_of(&u, &id).await, "stopped");

    assert_eq!(app.action(&u, &id, "start").await.status, 202);
    let env = app
        .wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    assert_eq!(env["ideUrl"], ide_url.as_str(), "the address changed");
    // The old tab's cookie belongs to the agent that stopped: the new agent
    // sends it for a fresh ticket, which opens the IDE at the same address.
    let r = workbench(cookie).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("{}/api/environments/{id}/ide", app.url).as_str()
    );
    let cookie = redeem(&client, &app.open_url(&u, &id).await).await;
    assert_eq!(workbench(cookie.clone()).await.status(), 200);
    // And its WebSocket passes the front door too.
    websocket(&ide_url, &origin_of(&ide_url), &cookie)
        .await
        .expect("a WebSocket through the front door");
    app.shutdown().await;
}

/// Inodes of the TCP sockets in LISTEN state on this machine.
fn tcp_listening_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; the inode is the tenth field.
            if f.get(3) == Some(&"0A") {
                inodes.extend(f.get(9).and_then(|i| i.parse::<u64>().ok()));
            }
        }
    }
    inodes
}

/// Inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: i32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn agents_listen_on_private_unix_sockets_and_only_started_ones_are_reached() {
    let app = local_app().await;
    let u = app.user("sockets@example.com").await;
    let id = app.new_env(&u, "web").await;
    let env = app
        .wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    let ide_url = env["ideUrl"].as_str().unwrap().to_string();

    let dir = app.local().sockets_dir();
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "{}",
        dir.display()
    );
    assert_eq!(meta.uid(), rustix::process::getuid().as_raw());
    let doors = app.local().front_door().unwrap();
    let socket = doors.socket(&id).expect("the started agent's door");
    assert_eq!(socket.parent(), Some(dir.as_path()));
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No process of the environment listens on TCP.
    let listening = tcp_listening_inodes();
    for pid in procs::marked(&id, &[]) {
        let open: HashSet<u64> = socket_inodes(pid);
        assert!(
            open.is_disjoint(&listening),
            "process {pid} ({}) listens on TCP",
            procs::cmdline(pid)
        );
    }

    // Stopped, the door closes; a socket planted in the folder (as any
    // process of serve's user could) under the environment's names is
    // never reached: the door comes from the backend's map, not the Host.
    assert_eq!(app.action(&u, &id, "stop").await.status, 202);
    app.wait_status(&u, &id, "stopped", Duration::from_secs(30))
        .await;
    assert_eq!(doors.socket(&id), None);
    let planted: Vec<_> = [socket.clone(), dir.join(format!("{id}.sock"))]
        .into_iter()
        .map(|p| {
            let _ = std::fs::remove_file(&p);
            tokio::net::UnixListener::bind(&p).unwrap()
        })
        .collect();
    let r = agent_client(&ide_url).get(&ide_url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    for l in &planted {
        let reached = tokio::time::timeout(Duration::from_millis(300), l.accept()).await;
        assert!(
            reached.is_err(),
            "the front door connected to a planted socket"
        );
    }
    app.shutdown().await;
}
