//! The local compute backend with real code-server: persistent homes,
//! starter projects, deletion, crash recovery, restarts of `serve`, and no
//! processes left behind (full tier).

use crate::harness::ide::{agent_client, redeem};
use crate::harness::{Clock, Compute, LocalOpts, TestApp};
use dev8::procs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `serve` with the local backend (real agents and code-server).
pub(crate) async fn local_app() -> TestApp {
    TestApp::builder()
        .compute(Compute::Local(LocalOpts::default()))
        .clock(Clock::Offset)
        .spawn()
        .await
}

/// The private folder of the Unix socket `agent` runs code-server on
/// (`--socket <folder>/code-server.sock` on its code-server child).
fn runtime_dir(id: &str, agent: i32) -> PathBuf {
    let code_server = procs::marked(id, &[agent])
        .into_iter()
        .find(|p| procs::stat(*p).is_some_and(|s| s.ppid == agent))
        .expect("code-server is the agent's child");
    let cmdline = procs::cmdline(code_server);
    let socket = cmdline
        .split(' ')
        .skip_while(|a| *a != "--socket")
        .nth(1)
        .unwrap_or_else(|| panic!("no --socket in {cmdline}"));
    Path::new(socket).parent().unwrap().to_path_buf()
}

async fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn files_and_settings_survive_stop_and_start() {
    let app = local_app().await;
    let u = app.user("files@example.com").await;
    let id = app.new_env_from(&u, "py", "python").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(30))
        .await;
    let home = app.local().home(&id);
    let ws = home.join("workspace");
    assert!(
        ws.join("main.py").is_file() && ws.join("requirements.txt").is_file(),
        "python starter project"
    );
    let settings = home.join(".local/share/code-server/User/settings.json");
    assert!(
        std::fs::read_to_string(&settings)
            .unwrap()
            .contains("files.autoSave"),
        "autoSave on by default"
    );

    std::fs::write(ws.join("notes.txt"), "remember me").unwrap();
    std::fs::write(ws.join("main.py"), "print('changed')\n").unwrap();
    std::fs::write(&settings, "{\"editor.fontSize\": 18}\n").unwrap();
    std::fs::write(home.join(".bashrc"), "alias ll='ls -l'\n").unwrap();

    assert_eq!(app.action(&u, &id, "stop").await.status, 202);
    app.wait_status(&u, &id, "stopped", Duration::from_secs(30))
        .await;
    assert!(
        procs::marked(&id, &[]).is_empty(),
        "processes left after stop"
    );
    assert!(home.is_dir(), "home kept on stop");

    assert_eq!(app.action(&u, &id, "start").await.status, 202);
    let env = app
        .wait_status(&u, &id, "running", Duration::from_secs(30))
        .await;
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.txt")).unwrap(),
        "remember me"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("main.py")).unwrap(),
        "print('changed')\n",
        "starter not rewritten"
    );
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        "{\"editor.fontSize\": 18}\n",
        "user settings kept"
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".bashrc")).unwrap(),
        "alias ll='ls -l'\n"
    );
    // And the IDE opens again.
    let ide_url = env["ideUrl"].as_str().unwrap();
    redeem(&agent_client(ide_url), &app.open_url(&u, &id).await).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn delete_removes_home_and_processes() {
    let app = local_app().await;
    let u = app.user("delete@example.com").await;
    let id = app.new_env_from(&u, "go", "golang").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(30))
        .await;
    let home = app.local().home(&id);
    assert!(
        home.join("workspace/go.mod").is_file() && home.join("workspace/main.go").is_file(),
        "go starter project"
    );
    assert!(!procs::marked(&id, &[]).is_empty());
    assert_eq!(app.action(&u, &id, "delete").await.status, 202);
    app.wait_gone(&u, &id, Duration::from_secs(30)).await;
    assert!(!home.exists(), "home removed");
    assert!(
        !home.parent().unwrap().exists(),
        "environment folder removed"
    );
    assert!(
        procs::marked(&id, &[]).is_empty(),
        "processes left after delete"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn a_killed_agent_is_replaced_promptly() {
    let app = local_app().await;
    let u = app.user("crash@example.com").await;
    let id = app.new_env_from(&u, "node", "node").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(30))
        .await;
    let old = app.local().agent_pid(&id).unwrap();
    // A killed agent cannot remove its runtime folder (code-server's socket,
    // under the temp dir): the test does, once the agent is replaced.
    let old_runtime = runtime_dir(&id, old);
    let t0 = Instant::now();
    procs::signal(old, rustix::process::Signal::KILL);
    // The backend notices at once: a new agent, running again, old processes gone.
    let compute = app.local().clone();
    let id2 = id.clone();
    wait_until("a new agent", Duration::from_secs(15), move || {
        compute.agent_pid(&id2).is_some_and(|p| p != old)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let env = app.environment(&u, &id).await;
        let answers = match env["ideUrl"].as_str() {
            Some(url) if env["status"] == "running" => agent_client(url)
                .get(format!("{url}_dev8/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200),
            _ => false,
        };
        if answers {
            break;
        }
        assert!(Instant::now() < deadline, "not running again: {env}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("recovered in {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(20));
    let new = app.local().agent_pid(&id).unwrap();
    if old_runtime.exists() {
        std::fs::remove_dir_all(&old_runtime).unwrap();
    }
    for pid in procs::marked(&id, &[]) {
        let mut p = pid;
        // Every process of the environment descends from the new agent.
        while p > 1 && p != new {
            p = procs::stat(p).map_or(1, |s| s.ppid);
        }
        assert_eq!(
            p,
            new,
            "pid {pid} ({}) is not under the new agent",
            procs::cmdline(pid)
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn serve_restart_brings_environments_back_and_shutdown_leaves_nothing() {
    let app = local_app().await;
    let u = app.user("restart@example.com").await;
    let id = app.new_env_from(&u, "web", "node").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(30))
        .await;
    let data = app.shutdown().await;
    assert!(
        procs::marked(&id, &[]).is_empty(),
        "processes left after shutdown"
    );

    let app = TestApp::builder()
        .compute(Compute::Local(LocalOpts::default()))
        .clock(Clock::Offset)
        .data_dir(data)
        .spawn()
        .await;
    // A new port is a new issuer: sign in again (same data dir, same account).
    let u = app.sign_in("restart@example.com").await;
    // The record still says `running` from before; the sweep at start
    // requeues it and reconcile finds no agent, so it starts a new one.
    let compute = app.local().clone();
    let id2 = id.clone();
    wait_until(
        "an agent after the restart",
        Duration::from_secs(30),
        move || compute.agent_pid(&id2).is_some(),
    )
    .await;
    let agent = app.local().agent_pid(&id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let env = loop {
        let env = app.environment(&u, &id).await;
        if let (Some(url), true) = (env["ideUrl"].as_str(), env["status"] == "running") {
            let health = agent_client(url)
                .get(format!("{url}_dev8/healthz"))
                .send()
                .await;
            if health.is_ok_and(|r| r.status() == 200) {
                break env;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not running on the new agent: {env}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ide_url = env["ideUrl"].as_str().unwrap();
    let r = agent_client(ide_url)
        .get(format!("{ide_url}_dev8/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.shutdown().await;
    assert!(
        procs::stat(agent).is_none_or(|_| !procs::is_marked(agent, &id)),
        "agent left after shutdown"
    );
    assert!(
        procs::marked(&id, &[]).is_empty(),
        "processes left after the second shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn the_agent_restarts_code_server_when_it_dies() {
    let app = local_app().await;
    let u = app.user("cs-crash@example.com").await;
    let id = app.new_env_from(&u, "node", "node").await;
    let env = app
        .wait_status(&u, &id, "running", Duration::from_secs(30))
        .await;
    let ide_url = env["ideUrl"].as_str().unwrap().to_string();
    let agent = app.local().agent_pid(&id).unwrap();
    let code_server = |agent: i32| {
        procs::marked(&id, &[agent])
            .into_iter()
            .find(|p| procs::stat(*p).is_some_and(|s| s.ppid == agent))
    };
    let old = code_server(agent).expect("code-server is the agent's child");
    procs::signal(old, rustix::process::Signal::KILL);
    let client = agent_client(&ide_url);
    let t0 = Instant::now();
    loop {
        let ready = client
            .get(format!("{ide_url}_dev8/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready && code_server(agent).is_some_and(|p| p != old) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "code-server not back within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.local().agent_pid(&id),
        Some(agent),
        "the same agent carries on"
    );
    app.shutdown().await;
}
