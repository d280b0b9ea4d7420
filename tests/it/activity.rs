//! Activity that means use, end to end with real code-server, a short push
//! interval and a clock the test moves: an open but untouched IDE (VS Code
//! keep-alives and acks flowing) is stopped at the idle timeout; page
//! requests, WebSocket messages that carry work, and a busy process keep it
//! running (full tier).

use crate::harness::ide::{agent_client, origin_of, redeem};
use crate::harness::{Clock, Compute, LocalOpts, TestApp, User};
use chrono::{DateTime, Duration as Minutes, Utc};
use futures::SinkExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PUSH: Duration = Duration::from_millis(300);

/// Local compute whose agents report activity every `PUSH`.
async fn fast_app() -> TestApp {
    TestApp::builder()
        .compute(Compute::Local(LocalOpts {
            activity_interval: PUSH,
            cpu_sample: Duration::from_millis(300),
            ..LocalOpts::default()
        }))
        .clock(Clock::Offset)
        .spawn()
        .await
}

/// An IPC call on the management connection, serialised as VS Code does:
/// `[100, id, channel, command]` then the argument (here: undefined).
fn ipc(id: u8, channel: &str, command: &str) -> Vec<u8> {
    let mut p = vec![4, 4, 6, 100, 6, id & 0x7f, 1, channel.len() as u8];
    p.extend_from_slice(channel.as_bytes());
    p.extend_from_slice(&[1, command.len() as u8]);
    p.extend_from_slice(command.as_bytes());
    p.push(0);
    p
}

/// An extension-host RPC request from the workbench: type 1, request id, proxy id, method, JSON args.
fn rpc(req: u32, method: &str, args: &str) -> Vec<u8> {
    let mut p = vec![1];
    p.extend_from_slice(&req.to_be_bytes());
    p.push(b'X');
    p.push(method.len() as u8);
    p.extend_from_slice(method.as_bytes());
    p.extend_from_slice(&(args.len() as u32).to_be_bytes());
    p.extend_from_slice(args.as_bytes());
    p
}

/// A VS Code protocol message: type, id, ack, length (big-endian), payload.
fn vscode(kind: u8, id: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&ack.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    m
}

async fn last_activity(app: &TestApp, u: &User, id: &str) -> DateTime<Utc> {
    app.last_activity(u, id).await
}

async fn wait_activity_since(app: &TestApp, u: &User, id: &str, at: DateTime<Utc>) {
    app.wait_activity_since(u, id, at, Duration::from_secs(10))
        .await
        .unwrap();
}

struct Ide {
    id: String,
    ide_url: String,
    session: String,
    client: reqwest::Client,
}

async fn running_ide(app: &TestApp, u: &User, name: &str) -> Ide {
    let r = app
        .post(
            "/api/environments",
            json!({"name": name, "baseImage": "node", "preset": "small", "idleTimeoutMinutes": 5}),
            u,
        )
        .await;
    assert_eq!(r.status, 202);
    let id = r.body["environment"]["id"].as_str().unwrap().to_string();
    let env = app
        .wait_status(u, &id, "running", Duration::from_secs(30))
        .await;
    let ide_url = env["ideUrl"].as_str().unwrap().to_string();
    let client = agent_client(&ide_url);
    let session = redeem(&client, &app.open_url(u, &id).await).await;
    Ide {
        id,
        ide_url,
        session,
        client,
    }
}

impl Ide {
    async fn page(&self) {
        let r = self
            .client
            .get(&self.ide_url)
            .header("cookie", &self.session)
            .header("sec-fetch-dest", "document")
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success() || r.status().is_redirection(),
            "{}",
            r.status()
        );
    }

    async fn asset(&self) {
        let r = self
            .client
            .get(format!("{}manifest.json", self.ide_url))
            .header("cookie", &self.session)
            .header("sec-fetch-dest", "manifest")
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500);
    }

    /// A VS Code WebSocket of `connection` type (1 management, 2 extension host).
    async fn websocket(
        &self,
        connection: u8,
    ) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
        let url = reqwest::Url::parse(&self.ide_url).unwrap();
        let port = url.port().unwrap();
        let mut req = format!(
            "ws://{}:{port}/?reconnectionToken=r{}&reconnection=false&skipWebSocketFrames=false",
            url.host_str().unwrap(),
            self.id
        )
        .into_client_request()
        .unwrap();
        req.headers_mut()
            .insert("origin", origin_of(&self.ide_url).parse().unwrap());
        req.headers_mut()
            .insert("cookie", self.session.parse().unwrap());
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
            .await
            .expect("WebSocket through the agent");
        // The handshake the workbench starts with (a Control message) is not use either.
        let auth = vscode(
            2,
            0,
            0,
            br#"{"type":"auth","auth":"00000000000000000000","data":""}"#,
        );
        ws.send(Message::Binary(auth.into())).await.unwrap();
        let kind = format!(
            r#"{{"type":"connectionType","signedData":"y","desiredConnectionType":{connection}}}"#
        );
        ws.send(Message::Binary(vscode(2, 0, 0, kind.as_bytes()).into()))
            .await
            .unwrap();
        ws
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn an_open_untouched_ide_is_stopped_at_the_idle_timeout() {
    let app = fast_app().await;
    let u = app.user("idle@example.com").await;
    let ide = running_ide(&app, &u, "idle").await;

    // Loading the page is use: it is reported.
    let before = app.clock.now();
    ide.page().await;
    wait_activity_since(&app, &u, &ide.id, before).await;
    tokio::time::sleep(PUSH * 2).await;
    let settled = last_activity(&app, &u, &ide.id).await;

    // An open tab, as seen from code-server 4.100.3's workbench in Chromium
    // left alone: keep-alives every 5 s and acks, the latency probe
    // (`telemetry.ping` calls), file-watcher events and the window going
    // inactive sent to the extension host, replies to the extension host,
    // asset and health requests (all here much faster). None of it is use.
    let mut management = ide.websocket(1).await;
    let mut ext_host = ide.websocket(2).await;
    let until = Instant::now() + PUSH * 5;
    let mut n = 0;
    while Instant::now() < until {
        for ws in [&mut management, &mut ext_host] {
            ws.send(Message::Binary(vscode(9, 0, n, &[]).into()))
                .await
                .unwrap();
            ws.send(Message::Binary(vscode(3, 0, n, &[]).into()))
                .await
                .unwrap();
            ws.send(Message::Ping(vec![1, 2, 3].into())).await.unwrap();
        }
        let ping = vscode(1, n + 1, 0, &ipc(n as u8, "telemetry", "ping"));
        management.send(Message::Binary(ping.into())).await.unwrap();
        let event = rpc(
            n,
            "$onFileEvent",
            r#"[{"created":[],"changed":[{"$mid":1,"path":"/settings/user"}],"deleted":[]}]"#,
        );
        ext_host
            .send(Message::Binary(vscode(1, 2 * n + 1, 0, &event).into()))
            .await
            .unwrap();
        let inactive = rpc(n, "$onDidChangeWindowActive", "[false]");
        ext_host
            .send(Message::Binary(vscode(1, 2 * n + 2, 0, &inactive).into()))
            .await
            .unwrap();
        let reply = [7, 0, 0, 1, n as u8];
        ext_host
            .send(Message::Binary(vscode(1, 2 * n + 3, 0, &reply).into()))
            .await
            .unwrap();
        ide.asset().await;
        let _ = ide
            .client
            .get(format!("{}_dev8/healthz", ide.ide_url))
            .send()
            .await
            .unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(PUSH * 2).await;
    assert_eq!(
        last_activity(&app, &u, &ide.id).await,
        settled,
        "keep-alives, acks, assets or probes counted as use"
    );

    // At the timeout the sweep stops it, tab still open.
    app.clock.advance(Minutes::minutes(5) + Minutes::seconds(1));
    let report = dev8::jobs::sweep::sweep(&app.platform).await.unwrap();
    assert_eq!(report.idle_stopped, 1);
    let env = app
        .wait_status(&u, &ide.id, "stopped", Duration::from_secs(30))
        .await;
    assert_eq!(env["stopCause"], "idle");
    drop((management, ext_host));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn page_requests_and_websocket_work_keep_it_running() {
    let app = fast_app().await;
    let u = app.user("busy@example.com").await;
    let ide = running_ide(&app, &u, "used").await;
    let mut ws = ide.websocket(1).await;

    // Three minutes on, a page view; three more, a message only a person
    // sends (typing into a terminal): six minutes in all, past the
    // five-minute timeout.
    for round in 0..2 {
        app.clock.advance(Minutes::minutes(3));
        let at = app.clock.now();
        if round == 0 {
            ide.page().await;
        } else {
            ws.send(Message::Binary(
                vscode(1, 1, 0, &ipc(9, "remoteterminal", "$input")).into(),
            ))
            .await
            .unwrap();
        }
        wait_activity_since(&app, &u, &ide.id, at).await;
        let report = dev8::jobs::sweep::sweep(&app.platform).await.unwrap();
        assert_eq!(
            report.idle_stopped, 0,
            "stopped while in use (round {round})"
        );
    }
    assert_eq!(app.environment(&u, &ide.id).await["status"], "running");
    drop(ws);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn a_busy_process_keeps_it_running_and_idles_out_when_done() {
    let app = fast_app().await;
    let u = app.user("build@example.com").await;
    let ide = running_ide(&app, &u, "build").await;

    // A long build started from an IDE terminal: it inherits the
    // environment's marker (as every process code-server starts does) and
    // runs in the workspace.
    let mut build = tokio::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .env(dev8::procs::MARKER, &ide.id)
        .current_dir(app.local().home(&ide.id).join("workspace"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for round in 0..2 {
        app.clock.advance(Minutes::minutes(3));
        let at = app.clock.now();
        wait_activity_since(&app, &u, &ide.id, at).await;
        let report = dev8::jobs::sweep::sweep(&app.platform).await.unwrap();
        assert_eq!(
            report.idle_stopped, 0,
            "stopped during the build (round {round})"
        );
    }
    build.kill().await.unwrap();
    let _ = build.wait().await;

    // Done building: nothing else keeps it up.
    tokio::time::sleep(PUSH * 3).await;
    app.clock.advance(Minutes::minutes(5) + Minutes::seconds(1));
    let report = dev8::jobs::sweep::sweep(&app.platform).await.unwrap();
    assert_eq!(report.idle_stopped, 1);
    app.wait_status(&u, &ide.id, "stopped", Duration::from_secs(30))
        .await;
    app.shutdown().await;
}
