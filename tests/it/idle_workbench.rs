//! Idle stop against a real VS Code workbench (full tier): code-server
//! 4.100.3 run by the agent, its workbench in headless Chromium driven by
//! `tests/js/ide/workbench.mjs` (a person who types, opens files, runs
//! terminal commands, or does nothing). An untouched tab counts no use for
//! ten real minutes, is warned and then stopped; typing (also in Restricted
//! Mode) and a terminal build keep it running; a terminal that only prints
//! and an open file changed on disk do not. Each test records what the page
//! sent on its WebSockets to `test-artifacts/idle/` (the fast tier's
//! fixtures in `tests/it/fixtures/` are such recordings).

use crate::harness::{Clock, Compute, LocalOpts, TestApp, User};
use chrono::{DateTime, Duration as Minutes, Utc};
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PUSH: Duration = Duration::from_millis(500);
const FULL_TIER: &str = "code-server, Chromium";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Local compute whose agents report every `PUSH`, a clock the test moves,
/// and `warning_minutes` as `DEV8_IDLE_WARNING_MINUTES`.
async fn app(warning_minutes: Option<u16>) -> TestApp {
    TestApp::builder()
        .compute(Compute::Local(LocalOpts {
            activity_interval: PUSH,
            cpu_sample: Duration::from_millis(500),
            ..LocalOpts::default()
        }))
        .clock(Clock::Offset)
        .settings(move |s| s.idle_warning_minutes = warning_minutes)
        .spawn()
        .await
}

/// A running environment with a five-minute idle timeout.
async fn running(app: &TestApp, u: &User, name: &str) -> String {
    let r = app
        .post(
            "/api/environments",
            json!({"name": name, "baseImage": "node", "preset": "small", "idleTimeoutMinutes": 5}),
            u,
        )
        .await;
    assert_eq!(r.status, 202, "{FULL_TIER}");
    let id = r.body["environment"]["id"].as_str().unwrap().to_string();
    app.wait_status(u, &id, "running", Duration::from_secs(60))
        .await;
    id
}

async fn last_activity(app: &TestApp, u: &User, id: &str) -> DateTime<Utc> {
    app.last_activity(u, id).await
}

/// Wait (a bound: it returns as soon as the use is on the record) for use
/// reported since `at`.
async fn wait_activity_since(app: &TestApp, u: &User, id: &str, at: DateTime<Utc>) {
    if let Err(e) = app
        .wait_activity_since(u, id, at, Duration::from_secs(90))
        .await
    {
        panic!("{e}; {}", evidence(app, id));
    }
}

/// The agent's log, and code-server's logs (the extension host's say when
/// Dev8's extension was activated) kept under `test-artifacts/idle/`.
fn evidence(app: &TestApp, id: &str) -> String {
    let logs = app.local().home(id).join(".local/share/code-server/logs");
    let kept = root().join(format!("test-artifacts/idle/code-server-logs-{id}"));
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&logs)
        .arg(&kept)
        .status()
        .is_ok_and(|s| s.success());
    let where_ = if copied {
        format!("code-server's logs are in {}", kept.display())
    } else {
        format!(
            "code-server's logs could not be copied from {}",
            logs.display()
        )
    };
    format!("{where_}; the agent's log:\n{}", agent_log(app, id))
}

/// No report for longer than Dev8's extension may hold one back (it reports
/// each kind of input at most every 5 s, then once more for the input in
/// between), so a report still owed cannot land after this.
const QUIET: Duration = Duration::from_secs(8);

/// Wait until no report has arrived for `QUIET`, and return `lastActivityAt`.
async fn settled(app: &TestApp, u: &User, id: &str) -> DateTime<Utc> {
    let mut last = last_activity(app, u, id).await;
    loop {
        tokio::time::sleep(QUIET).await;
        let now = last_activity(app, u, id).await;
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The agent's log, for a failure message.
fn agent_log(app: &TestApp, id: &str) -> String {
    let home = app.local().home(id);
    let text =
        std::fs::read_to_string(home.parent().unwrap().join("agent.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The workbench in Chromium, driven by `tests/js/ide/workbench.mjs`.
struct Workbench {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Workbench {
    /// Open the environment's IDE (`restricted`: answer Workspace Trust with
    /// "No"), recording what the page sends to `test-artifacts/idle/<name>.jsonl`.
    async fn open(app: &TestApp, u: &User, id: &str, restricted: bool, name: &str) -> Workbench {
        let dir = root().join("test-artifacts/idle");
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = tokio::process::Command::new("node")
            .arg(root().join("tests/js/ide/workbench.mjs"))
            .arg(app.open_url(u, id).await)
            .arg(if restricted { "restricted" } else { "trust" })
            .arg(dir.join(format!("{name}.jsonl")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the workbench driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut w = Workbench {
            child,
            stdin,
            stdout,
        };
        let first = w.line(Duration::from_secs(180)).await;
        assert_eq!(
            first, "ready",
            "the workbench did not come up ({FULL_TIER})"
        );
        w
    }

    async fn line(&mut self, within: Duration) -> String {
        tokio::time::timeout(within, self.stdout.next_line())
            .await
            .expect("the workbench driver answers")
            .unwrap()
            .expect("the workbench driver is running")
    }

    /// Send one command; its answer.
    async fn run(&mut self, command: &str) -> String {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        let answer = self.line(Duration::from_secs(90)).await;
        assert!(!answer.starts_with("error"), "{command}: {answer}");
        answer
    }

    async fn notifications(&mut self) -> Vec<String> {
        let answer = self.run("notifications").await;
        serde_json::from_str(answer.strip_prefix("notifications ").unwrap()).unwrap()
    }

    async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

async fn sweep_stopped(app: &TestApp) -> u32 {
    dev8::jobs::sweep::sweep(&app.platform)
        .await
        .unwrap()
        .idle_stopped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server, Chromium"]
async fn an_untouched_workbench_counts_no_use_for_ten_minutes_is_warned_and_stopped() {
    // Warn as soon as nothing is used (the lead is the whole timeout), so the
    // warning is seen while the tab stays untouched.
    let app = app(Some(5)).await;
    let u = app.user("untouched@example.com").await;
    let id = running(&app, &u, "untouched").await;
    let mut tab = Workbench::open(&app, &u, &id, false, "untouched").await;

    // Loading the page counted; then ten real minutes with the tab open and
    // nobody at it: port detection, extension activation, file-system polls,
    // latency probes, keep-alives. None of it may count.
    let quiet = settled(&app, &u, &id).await;
    let until = Instant::now() + Duration::from_secs(600);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(
            last_activity(&app, &u, &id).await,
            quiet,
            "an untouched workbench counted as use; the agent's log:\n{}",
            agent_log(&app, &id)
        );
    }

    // The person was warned inside VS Code, before the stop.
    let notes = tab.notifications().await;
    assert!(
        notes.iter().any(|n| n.contains("stops for inactivity")),
        "{notes:?}"
    );
    let env = app.environment(&u, &id).await;
    assert!(env["idleWarningAt"].as_str().unwrap() <= env["lastActivityAt"].as_str().unwrap());

    // With the clock past the timeout, the sweep stops it, tab still open.
    app.clock.advance(Minutes::minutes(5) + Minutes::seconds(1));
    assert_eq!(sweep_stopped(&app).await, 1);
    let env = app
        .wait_status(&u, &id, "stopped", Duration::from_secs(60))
        .await;
    assert_eq!(env["stopCause"], "idle");
    tab.close().await;
    app.shutdown().await;
}

/// Wait until Dev8's extension counts input. VS Code activates it at
/// `onStartupFinished`, which on a loaded machine comes well after the
/// workbench shows (its extension host starts seconds after the page; a
/// Restricted Mode reload starts another): input before that is not seen.
/// A click into the editor (a mouse selection, which it reports) is tried
/// until one counts, within a bound.
async fn extension_counts_clicks(app: &TestApp, u: &User, id: &str, tab: &mut Workbench) {
    let until = Instant::now() + Duration::from_secs(180);
    settled(app, u, id).await;
    loop {
        let at = app.clock.now();
        tab.run("click").await;
        let counted = app
            .wait_activity_since(u, id, at, Duration::from_secs(15))
            .await;
        if counted.is_ok() {
            return;
        }
        assert!(
            Instant::now() < until,
            "Dev8's extension never counted a click in the editor; {}",
            evidence(app, id)
        );
    }
}

/// Type `text` into the open editor (the driver answers once it shows
/// there) and wait for the use it reports. Starts settled, so only this
/// typing can move `lastActivityAt` (not a report still owed for earlier
/// input); typed again when the driver had to click the focus back into the
/// editor first, since the click counts by itself.
async fn type_a_line(app: &TestApp, u: &User, id: &str, tab: &mut Workbench, text: &str) {
    for take in 1..=3 {
        settled(app, u, id).await;
        let at = app.clock.now();
        // Each take its own text: the driver waits for it to show.
        if tab.run(&format!("type {text} Take {take}.")).await == "ok" {
            wait_activity_since(app, u, id, at).await;
            return;
        }
    }
    panic!("the editor kept losing the keyboard focus");
}

/// Someone types in an editor: it keeps running past the timeout.
async fn typing_keeps_it_running(restricted: bool) {
    let app = app(None).await;
    let u = app.user("typist@example.com").await;
    let id = running(&app, &u, "typist").await;
    let name = if restricted {
        "typing-restricted"
    } else {
        "typing"
    };
    let mut tab = Workbench::open(&app, &u, &id, restricted, name).await;
    tab.run("open README.md").await;
    extension_counts_clicks(&app, &u, &id, &mut tab).await;
    // Three minutes on, a line typed; three more, another: six minutes in
    // all, past the five-minute timeout.
    for round in 0..2 {
        app.clock.advance(Minutes::minutes(3));
        type_a_line(&app, &u, &id, &mut tab, &format!("typed in round {round}.")).await;
        assert_eq!(
            sweep_stopped(&app).await,
            0,
            "stopped while typing (round {round})"
        );
    }
    assert_eq!(app.environment(&u, &id).await["status"], "running");
    tab.close().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server, Chromium"]
async fn typing_in_a_trusted_workbench_keeps_it_running() {
    typing_keeps_it_running(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server, Chromium"]
async fn typing_in_restricted_mode_keeps_it_running() {
    typing_keeps_it_running(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server, Chromium"]
async fn a_terminal_running_a_long_build_keeps_it_running() {
    let app = app(None).await;
    let u = app.user("builder@example.com").await;
    let id = running(&app, &u, "builder").await;
    let mut tab = Workbench::open(&app, &u, &id, false, "build").await;
    // A build that keeps a core busy, typed into a real terminal.
    tab.run("terminal while :; do :; done").await;
    tokio::time::sleep(PUSH * 6).await;
    for round in 0..2 {
        app.clock.advance(Minutes::minutes(3));
        let at = app.clock.now();
        // Nobody types: only the build is there to count.
        wait_activity_since(&app, &u, &id, at).await;
        assert_eq!(
            sweep_stopped(&app).await,
            0,
            "stopped during the build (round {round})"
        );
    }
    assert_eq!(app.environment(&u, &id).await["status"], "running");
    tab.close().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server, Chromium"]
async fn a_terminal_that_only_prints_and_a_file_changed_on_disk_do_not_count() {
    let app = app(None).await;
    let u = app.user("watcher@example.com").await;
    let id = running(&app, &u, "watcher").await;
    let mut tab = Workbench::open(&app, &u, &id, false, "printing").await;
    tab.run("open README.md").await;
    // A program that prints a line five times a second (little CPU), started
    // by typing it (which counts, once).
    tab.run("terminal while :; do date; sleep 0.2; done").await;
    let quiet = settled(&app, &u, &id).await;
    // Meanwhile a process rewrites the open file every two seconds: the
    // editor reloads it from disk.
    let readme = app.local().home(&id).join("workspace/README.md");
    let until = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        std::fs::write(&readme, format!("# changed on disk, time {n}\n")).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(PUSH * 4).await;
    assert_eq!(
        last_activity(&app, &u, &id).await,
        quiet,
        "printing or a file changed on disk counted as use; the agent's log:\n{}",
        agent_log(&app, &id)
    );
    // And at the timeout it stops.
    app.clock.advance(Minutes::minutes(5) + Minutes::seconds(1));
    assert_eq!(sweep_stopped(&app).await, 1);
    tab.close().await;
    app.shutdown().await;
}
