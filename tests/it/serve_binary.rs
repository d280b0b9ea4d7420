//! The real `handler serve` binary started from `/` (not the project): the
//! dashboard comes from the copy embedded in the binary, and code-server is
//! found where an install puts it (here the data dir's `tools/`), never
//! relative to the current folder (full tier: needs code-server, as any
//! `serve` with local compute does).

use crate::peers::code_server;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `handler serve` on a free loopback port, started in `/`.
struct Serve {
    child: tokio::process::Child,
    url: String,
}

impl Serve {
    async fn start(data_dir: &Path) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"));
        cmd.args(["serve", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .current_dir("/")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for keep in ["PATH", "HOME", "TMPDIR"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        let child = cmd.spawn().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{url}/api/health")).await.is_err() {
            assert!(Instant::now() < deadline, "serve did not answer in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Serve { child, url }
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()[name].to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn serve_started_in_root_serves_the_dashboard_and_runs_environments() {
    let data = tempfile::tempdir().unwrap();
    // Install code-server into the data dir the way scripts/setup.sh lays
    // out tools/ (a link to the installed copy).
    let installed = code_server::entry();
    let version_dir = installed.ancestors().nth(5).unwrap();
    std::fs::create_dir_all(data.path().join("tools")).unwrap();
    std::os::unix::fs::symlink(
        version_dir,
        data.path()
            .join("tools")
            .join(version_dir.file_name().unwrap()),
    )
    .unwrap();
    let mut serve = Serve::start(data.path()).await;
    let http = reqwest::Client::new();

    // The dashboard: its page, a module with a JavaScript type, and an
    // unknown path answering 404 with the page (which shows "not found").
    let page = http.get(format!("{}/", serve.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert_eq!(
        html,
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("static-web/index.html")
        )
        .unwrap()
    );
    let module = http
        .get(format!("{}/js/app.js", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(module.status(), 200);
    assert!(header(&module, "content-type").contains("javascript"));
    assert!(header(&module, "content-security-policy").contains("default-src 'self'"));
    let route = http
        .get(format!("{}/environments/x", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), 404);
    assert!(header(&route, "content-type").starts_with("text/html"));
    assert_eq!(route.text().await.unwrap(), html);

    // An environment starts with the code-server found in the data dir.
    let origin = serve.url.clone();
    let signup = http
        .post(format!("{origin}/api/auth/signup"))
        .header("origin", &origin)
        .json(&json!({"email": "root@example.com", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let token: Value = http
        .post(format!("{origin}/api/auth/token"))
        .json(&json!({"email": "root@example.com", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let created: Value = http
        .post(format!("{origin}/api/environments"))
        .header("authorization", &bearer)
        .json(&json!({"name": "anywhere", "baseImage": "node", "preset": "small"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["environment"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let env: Value = http
            .get(format!("{origin}/api/environments/{id}"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match env["environment"]["status"].as_str() {
            Some("running") => break,
            Some("creating") => {}
            other => panic!("unexpected status {other:?}: {env}"),
        }
        assert!(Instant::now() < deadline, "not running in 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let from_data_dir = format!(
        "{}={}",
        dev8::agent_env::CODE_SERVER,
        data.path().join("tools").display()
    );
    let agent_uses_it = dev8::procs::marked(&id, &[]).into_iter().any(|pid| {
        dev8::procs::environ(pid)
            .iter()
            .any(|e| e.starts_with(&from_data_dir))
    });
    assert!(
        agent_uses_it,
        "the agent was not given the data dir's code-server"
    );

    // SIGTERM: serve stops its environments and exits cleanly.
    dev8::procs::signal(
        serve.child.id().unwrap() as i32,
        rustix::process::Signal::TERM,
    );
    let status = tokio::time::timeout(Duration::from_secs(30), serve.child.wait())
        .await
        .expect("serve exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(dev8::procs::marked(&id, &[]).is_empty());
}

/// The real binary estimates a new password's strength in a child of
/// itself (`handler password-strength`, `auth::strength`): a weak password
/// is refused with zxcvbn's reason beside any other field's error, a strong
/// one is taken, and a password change is judged the same way. (That the
/// dictionaries then stay out of `serve`'s memory is `serve_memory`'s
/// figure, not a test's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_judges_new_passwords_through_its_child() {
    let data = tempfile::tempdir().unwrap();
    let serve = Serve::start(data.path()).await;
    let http = reqwest::Client::new();
    let origin = serve.url.clone();
    let signup = |body: Value| {
        http.post(format!("{origin}/api/auth/signup"))
            .header("origin", &origin)
            .json(&body)
            .send()
    };
    let weak = signup(json!({"email": "nope", "password": "password12345"}))
        .await
        .unwrap();
    assert_eq!(weak.status(), 400);
    let problem: Value = weak.json().await.unwrap();
    let why = problem["errors"]["password"].as_str().unwrap_or_default();
    assert!(why.starts_with("is too easy to guess"), "{problem}");
    assert!(problem["errors"]["email"].is_string(), "{problem}");
    // The person's own address counts against them.
    let own =
        signup(json!({"email": "adalovelace1815@example.com", "password": "adalovelace1815"}))
            .await
            .unwrap();
    assert_eq!(own.status(), 400);
    let strong =
        signup(json!({"email": "ada@example.com", "password": "correct horse battery staple"}))
            .await
            .unwrap();
    assert_eq!(strong.status(), 201);
    let cookie = strong.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let change = |new: &str| {
        http.post(format!("{origin}/api/auth/password"))
            .header("origin", &origin)
            .header("cookie", &cookie)
            .json(&json!({"currentPassword": "correct horse battery staple", "newPassword": new}))
            .send()
    };
    let weak = change("qwertyuiop123").await.unwrap();
    assert_eq!(weak.status(), 400);
    let problem: Value = weak.json().await.unwrap();
    assert!(
        problem["errors"]["newPassword"]
            .as_str()
            .is_some_and(|w| w.starts_with("is too easy to guess")),
        "{problem}"
    );
    assert_eq!(
        change("vivid otter marble seventeen")
            .await
            .unwrap()
            .status(),
        204
    );
    drop(serve);
}
