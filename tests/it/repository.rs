//! Creating from a Git repository and the account's dotfiles: the create
//! body's `repository` and `PATCH /api/settings`'s `dotfilesRepository`
//! (URL and ref rules, 400s naming the field with nothing created or
//! changed), the test-only loopback setting's start-up check, a reported
//! clone error kept and audited once (fast tier, `FakeCompute`); and with
//! real agents and code-server against git's own `git http-backend` on
//! loopback (`harness::git_server`): the clone at `ref`, VS Code opening on
//! it, a bad ref leaving a running environment with the error, no second
//! clone on later starts, the dotfiles' install script run once (full tier).

use crate::harness::git_server::{GitServer, git};
use crate::harness::{Auth, Compute, LocalOpts, TestApp, User, refusals_off_loopback, spawn_app};
use crate::usage::{current_token, report};
use dev8::procs;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn create_body(repository: Value) -> Value {
    json!({"name": "app", "baseImage": "node", "preset": "small", "repository": repository})
}

/// `PATCH /api/settings` as `u`.
pub(crate) async fn patch_settings(app: &TestApp, u: &User, body: Value) -> crate::harness::Answer {
    app.send(
        Method::PATCH,
        "/api/settings",
        Some(body),
        Auth::Bearer(&u.token),
    )
    .await
}

/// The fast app with the test-only loopback setting on.
async fn loopback_app() -> TestApp {
    TestApp::builder()
        .settings(|s| s.test_allow_loopback_git = true)
        .spawn()
        .await
}

#[tokio::test]
async fn every_refused_repository_is_a_400_naming_the_field_and_creates_nothing() {
    let app = spawn_app().await;
    let u = app.user("refused@example.com").await;
    let url = "https://github.com/dev8/app.git";
    let cases = [
        (
            json!({"url": "http://github.com/dev8/app.git"}),
            "repository.url",
        ),
        (
            json!({"url": "git@github.com:dev8/app.git"}),
            "repository.url",
        ),
        (
            json!({"url": "ssh://github.com/dev8/app.git"}),
            "repository.url",
        ),
        (json!({"url": "file:///etc/passwd"}), "repository.url"),
        (
            json!({"url": "https://user:secret@github.com/dev8/app.git"}),
            "repository.url",
        ),
        (
            json!({"url": "https://ghp_token@github.com/dev8/app.git"}),
            "repository.url",
        ),
        (
            json!({"url": "https://140.82.112.3/dev8/app.git"}),
            "repository.url",
        ),
        (
            json!({"url": "https://[::1]/dev8/app.git"}),
            "repository.url",
        ),
        (
            json!({"url": "https://localhost/dev8/app.git"}),
            "repository.url",
        ),
        (
            json!({"url": "https://git.localhost/dev8/app.git"}),
            "repository.url",
        ),
        (
            json!({"url": format!("https://github.com/{}", "a".repeat(2100))}),
            "repository.url",
        ),
        (
            json!({"url": "https://github.com/dev8/app.git?x=1"}),
            "repository.url",
        ),
        // Loopback http is refused without the test-only setting.
        (
            json!({"url": "http://127.0.0.1:9/app.git"}),
            "repository.url",
        ),
        (json!({}), "repository.url"),
        (json!({"url": 5}), "repository.url"),
        (
            json!({"url": url, "ref": "--upload-pack=touch /tmp/x"}),
            "repository.ref",
        ),
        (json!({"url": url, "ref": "a..b"}), "repository.ref"),
        (json!({"url": url, "ref": "with space"}), "repository.ref"),
        (
            json!({"url": url, "ref": "x".repeat(256)}),
            "repository.ref",
        ),
        (json!({"url": url, "ref": 1}), "repository.ref"),
        (json!({"url": url, "token": "x"}), "repository.token"),
        (json!(url), "repository"),
    ];
    for (repository, field) in cases {
        let a = app
            .post("/api/environments", create_body(repository.clone()), &u)
            .await;
        let problem = a.problem(400);
        assert!(
            problem[field].is_string(),
            "{repository} should name {field}: {problem}"
        );
    }
    let list = app.get("/api/environments", &u).await;
    assert_eq!(list.body["environments"], json!([]), "nothing created");
    assert!(
        app.get("/api/audit", &u).await.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["action"] != "environment.create")
    );
}

#[tokio::test]
async fn the_repository_is_kept_on_the_record_and_shown() {
    let app = spawn_app().await;
    let u = app.user("kept@example.com").await;
    let repository = json!({"url": "https://github.com/dev8/app.git", "ref": "v1.2"});
    let a = app
        .post("/api/environments", create_body(repository.clone()), &u)
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["environment"]["repository"], repository);
    assert_eq!(a.body["environment"]["cloneError"], Value::Null);
    let id = a.body["environment"]["id"].as_str().unwrap().to_string();
    app.settle(10).await;
    let env = app.environment(&u, &id).await;
    assert_eq!(env["repository"], repository);
    // Without a ref, `ref` is null (the remote's default branch).
    let a = app
        .post(
            "/api/environments",
            json!({"name": "b", "baseImage": "node", "preset": "small",
                   "repository": {"url": "https://github.com/dev8/app"}}),
            &u,
        )
        .await;
    assert_eq!(
        a.body["environment"]["repository"],
        json!({"url": "https://github.com/dev8/app", "ref": null})
    );
    // An environment made without one says so.
    let plain = app.create_env(&u, "plain").await;
    assert_eq!(plain["repository"], Value::Null);
}

#[tokio::test]
async fn a_reported_clone_error_is_kept_and_audited_once() {
    let app = spawn_app().await;
    let u = app.user("clone-error@example.com").await;
    let a = app
        .post(
            "/api/environments",
            create_body(json!({"url": "https://github.com/dev8/gone.git"})),
            &u,
        )
        .await;
    let id = a.body["environment"]["id"].as_str().unwrap().to_string();
    app.settle(10).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
    let token = current_token(&app, &u, &id).await;
    let body = json!({"setup": {"cloneError": "fatal: repository not found"}});
    for _ in 0..3 {
        let r = report(&app, &id, body.clone(), Auth::Bearer(&token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // A later report with another error does not replace the first.
    let other = json!({"setup": {"cloneError": "something else"}});
    report(&app, &id, other, Auth::Bearer(&token)).await;
    let env = app.environment(&u, &id).await;
    assert_eq!(env["status"], "running");
    assert_eq!(env["cloneError"], "fatal: repository not found");
    let history = app.get(&format!("/api/audit?environmentId={id}"), &u).await;
    let failed: Vec<&Value> = history.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "environment.clone_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", history.body);
    assert_eq!(failed[0]["outcome"], "failure");
    assert_eq!(failed[0]["detail"], "fatal: repository not found");
    // A malformed setup section is a 400 naming it, and changes nothing.
    report(
        &app,
        &id,
        json!({"setup": {"cloneError": 5}}),
        Auth::Bearer(&token),
    )
    .await
    .problem(400);
    // An environment without a repository ignores a clone error.
    let plain = app.new_env(&u, "plain").await;
    app.settle(10).await;
    let token = current_token(&app, &u, &plain).await;
    report(&app, &plain, body, Auth::Bearer(&token)).await;
    assert_eq!(app.environment(&u, &plain).await["cloneError"], Value::Null);
}

#[tokio::test]
async fn dotfiles_is_an_account_setting_with_the_same_rules() {
    let app = spawn_app().await;
    let u = app.user("dotfiles@example.com").await;
    let other = app.user("other@example.com").await;
    let got = app.get("/api/settings", &u).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, json!({"dotfilesRepository": null}));
    let url = "https://github.com/ada/dotfiles";
    let set = patch_settings(&app, &u, json!({"dotfilesRepository": url})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["dotfilesRepository"], url);
    for bad in [
        json!({"dotfilesRepository": "http://github.com/ada/dotfiles"}),
        json!({"dotfilesRepository": "https://tok@github.com/ada/dotfiles"}),
        json!({"dotfilesRepository": "https://10.0.0.1/ada/dotfiles"}),
        json!({"dotfilesRepository": "https://localhost/ada/dotfiles"}),
        json!({"dotfilesRepository": 1}),
        json!({}),
    ] {
        let a = patch_settings(&app, &u, bad.clone()).await;
        assert!(
            a.problem(400)["dotfilesRepository"].is_string(),
            "{bad}: {}",
            a.body
        );
    }
    patch_settings(
        &app,
        &u,
        json!({"dotfilesRepository": url, "theme": "dark"}),
    )
    .await
    .problem(400);
    // Nothing a refused request sent was kept; nobody else's settings moved.
    assert_eq!(
        app.get("/api/settings", &u).await.body["dotfilesRepository"],
        url
    );
    assert_eq!(
        app.get("/api/settings", &other).await.body["dotfilesRepository"],
        Value::Null
    );
    // A new environment takes the account's dotfiles as they are now.
    let id = app.new_env(&u, "with-dotfiles").await;
    let record = app
        .platform
        .store
        .environment(&u.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.value.dotfiles_repository.as_deref(), Some(url));
    // null removes it.
    let cleared = patch_settings(&app, &u, json!({"dotfilesRepository": null})).await;
    assert_eq!(cleared.body["dotfilesRepository"], Value::Null);
    patch_settings(&app, &u, json!({"dotfilesRepository": url})).await;
    // Account deletion takes the settings with it.
    let gone = app.delete("/api/auth/me", &u).await;
    assert!(gone.status.is_success(), "{}", gone.body);
    assert!(
        app.platform
            .store
            .document(&format!("settings:{}", u.id))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn loopback_http_is_accepted_only_with_the_test_setting() {
    let app = loopback_app().await;
    let u = app.user("loopback@example.com").await;
    let a = app
        .post(
            "/api/environments",
            create_body(json!({"url": "http://127.0.0.1:9/app.git"})),
            &u,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    // Still only that address: no other http, no localhost.
    let a = app
        .post(
            "/api/environments",
            create_body(json!({"url": "http://localhost:9/app.git"})),
            &u,
        )
        .await;
    assert!(a.problem(400)["repository.url"].is_string());
}

#[tokio::test]
async fn the_loopback_setting_is_refused_unless_local_compute_on_loopback() {
    for err in refusals_off_loopback(|s| s.test_allow_loopback_git = true).await {
        assert!(err.contains("DEV8_TEST_ALLOW_LOOPBACK_GIT"), "{err}");
    }
}

// ---- full tier: real agents, code-server and git http-backend ----

/// `serve` with the local backend, the loopback setting on, and agents
/// reporting every half second (the clone error rides on the report).
async fn local_app() -> TestApp {
    TestApp::builder()
        .compute(Compute::Local(LocalOpts {
            report_interval: Duration::from_millis(500),
            ..LocalOpts::default()
        }))
        .settings(|s| s.test_allow_loopback_git = true)
        .spawn()
        .await
}

async fn create_from(app: &TestApp, u: &User, name: &str, repository: Value) -> String {
    let a = app
        .post(
            "/api/environments",
            json!({"name": name, "baseImage": "node", "preset": "small", "repository": repository}),
            u,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    a.body["environment"]["id"].as_str().unwrap().to_string()
}

/// The folder code-server was started on (its last argument).
fn code_server_folder(id: &str, app: &TestApp) -> String {
    let agent = app.local().agent_pid(id).expect("an agent runs");
    let cs = procs::marked(id, &[agent])
        .into_iter()
        .find(|p| procs::stat(*p).is_some_and(|s| s.ppid == agent))
        .expect("code-server is the agent's child");
    procs::cmdline(cs)
        .split(' ')
        .next_back()
        .unwrap_or_default()
        .to_string()
}

async fn restart(app: &TestApp, u: &User, id: &str) -> Value {
    assert_eq!(app.action(u, id, "stop").await.status, 202);
    app.wait_status(u, id, "stopped", Duration::from_secs(30))
        .await;
    assert_eq!(app.action(u, id, "start").await.status, 202);
    app.wait_status(u, id, "running", Duration::from_secs(60))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn create_from_a_repository_checks_out_ref_and_never_clones_again() {
    let git_server = GitServer::start().await;
    let (url, main_head) = git_server.repository("app", &[("README.md", "# app\n")]);
    git_server.branch("app", "feature");
    let feature_head = git_server.commit("app", &[("feature.txt", "new\n")], "feature");
    assert_ne!(main_head, feature_head);
    let app = local_app().await;
    let u = app.user("clone@example.com").await;
    // A slow clone: the start shows the step it is at.
    git_server.set_delay(Duration::from_secs(4));
    let id = create_from(&app, &u, "app", json!({"url": url, "ref": "feature"})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let env = app.environment(&u, &id).await;
        if env["progress"]["step"] == "cloning the repository" {
            assert_eq!(env["status"], "creating");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clone's step not shown: {env}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    git_server.set_delay(Duration::ZERO);
    let env = app
        .wait_status(&u, &id, "running", Duration::from_secs(90))
        .await;
    assert_eq!(env["cloneError"], Value::Null);
    let workspace = app.local().home(&id).join("workspace");
    let clone = workspace.join("app");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), feature_head);
    assert!(clone.join("feature.txt").is_file());
    // Only the repository: no starter project beside it.
    assert!(!workspace.join("package.json").exists());
    // VS Code opened on the clone.
    assert_eq!(code_server_folder(&id, &app), clone.to_string_lossy());
    // The history shows the create and no clone failure.
    let uploads = git_server.uploads();
    assert!(uploads >= 1, "the clone went through the git server");

    // The person's changes survive a stop and start; nothing is cloned again.
    std::fs::write(clone.join("README.md"), "# changed by me\n").unwrap();
    std::fs::write(clone.join("notes.txt"), "mine\n").unwrap();
    git_server.commit("app", &[("later.txt", "upstream moved on\n")], "later");
    restart(&app, &u, &id).await;
    assert_eq!(
        std::fs::read_to_string(clone.join("README.md")).unwrap(),
        "# changed by me\n"
    );
    assert!(clone.join("notes.txt").is_file());
    assert!(
        !clone.join("later.txt").exists(),
        "the clone was not refreshed"
    );
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), feature_head);
    assert_eq!(git_server.uploads(), uploads, "a later start cloned again");
    assert_eq!(code_server_folder(&id, &app), clone.to_string_lossy());
    app.shutdown().await;
}

/// Wait (in real time) until the environment shows a clone error.
async fn wait_clone_error(app: &TestApp, u: &User, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let env = app.environment(u, id).await;
        if env["cloneError"].is_string() {
            return env;
        }
        assert!(Instant::now() < deadline, "no clone error shown: {env}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn a_failed_clone_leaves_a_running_environment_showing_the_error() {
    let git_server = GitServer::start().await;
    let (url, head) = git_server.repository("app", &[("README.md", "# app\n")]);
    let app = local_app().await;
    let u = app.user("bad-ref@example.com").await;

    // A ref that does not exist: the clone is there, on the default branch.
    let bad_ref = create_from(
        &app,
        &u,
        "bad-ref",
        json!({"url": url, "ref": "no-such-branch"}),
    )
    .await;
    // A repository that does not exist: nothing is cloned.
    let missing = format!("{}/gone.git", git_server.url);
    let gone = create_from(&app, &u, "gone", json!({"url": missing})).await;
    for id in [&bad_ref, &gone] {
        app.wait_status(&u, id, "running", Duration::from_secs(90))
            .await;
    }
    let env = wait_clone_error(&app, &u, &bad_ref).await;
    assert_eq!(env["status"], "running");
    assert!(
        env["cloneError"]
            .as_str()
            .unwrap()
            .contains("no-such-branch"),
        "{env}"
    );
    let clone = app.local().home(&bad_ref).join("workspace/app");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), head);
    let env = wait_clone_error(&app, &u, &gone).await;
    assert!(
        env["actions"].as_array().unwrap().contains(&json!("open")),
        "{env}"
    );
    let workspace = app.local().home(&gone).join("workspace");
    assert_eq!(code_server_folder(&gone, &app), workspace.to_string_lossy());
    assert!(!workspace.join("gone").exists());
    // In each history, once, even after more reports and a restart.
    restart(&app, &u, &gone).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in [&bad_ref, &gone] {
        let history = app.get(&format!("/api/audit?environmentId={id}"), &u).await;
        let failed = history.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "environment.clone_failed")
            .count();
        assert_eq!(failed, 1, "{}", history.body);
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn dotfiles_install_runs_once_as_the_ide_user() {
    let git_server = GitServer::start().await;
    // install.sh wins over setup.sh; it records each run and who ran it,
    // and its `#!` line is honoured (bash, not sh).
    let (url, _) = git_server.repository(
        "dotfiles",
        &[
            (
                "install.sh",
                "#!/bin/bash\nwords=(installing)\n[[ -n ${words[0]} ]] && echo \"${words[0]}\"\nid -u >> \"$HOME/dotfiles-runs\"\necho \"$DEV8_AGENT_TOKEN\" > \"$HOME/seen-token\"\n",
            ),
            ("setup.sh", "touch \"$HOME/setup-ran\"\n"),
            ("bashrc", "alias ll='ls -l'\n"),
        ],
    );
    let app = local_app().await;
    let u = app.user("dotfiles@example.com").await;
    let set = patch_settings(&app, &u, json!({"dotfilesRepository": url})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    let id = app.new_env(&u, "dots").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(90))
        .await;
    let home = app.local().home(&id);
    assert!(
        home.join(".dotfiles/bashrc").is_file(),
        "cloned to ~/.dotfiles"
    );
    let runs = || std::fs::read_to_string(home.join("dotfiles-runs")).unwrap_or_default();
    // Locally the IDE's user is the one running `serve` (and the agent).
    let uid = rustix::process::getuid().as_raw().to_string();
    assert_eq!(runs().lines().collect::<Vec<_>>(), [uid.as_str()]);
    assert!(
        !home.join("setup-ran").exists(),
        "only the first script found runs"
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".dotfiles.log")).unwrap(),
        "installing\n"
    );
    // The script saw none of the agent's secrets.
    assert_eq!(
        std::fs::read_to_string(home.join("seen-token")).unwrap(),
        "\n"
    );
    restart(&app, &u, &id).await;
    assert_eq!(runs().lines().count(), 1, "the install ran again");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn a_dotfiles_clone_failure_is_in_the_users_log() {
    let git_server = GitServer::start().await;
    let app = local_app().await;
    let u = app.user("gone-dotfiles@example.com").await;
    let url = format!("{}/no-such-dotfiles.git", git_server.url);
    let set = patch_settings(&app, &u, json!({"dotfilesRepository": url})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    let id = app.new_env(&u, "dots").await;
    let env = app
        .wait_status(&u, &id, "running", Duration::from_secs(90))
        .await;
    assert_eq!(env["cloneError"], Value::Null, "not the repository's error");
    let home = app.local().home(&id);
    assert!(!home.join(".dotfiles").exists());
    let log = std::fs::read_to_string(home.join(".dotfiles.log")).unwrap();
    assert!(
        log.starts_with("dev8: the dotfiles were not installed: fatal:")
            && log.contains("no-such-dotfiles.git"),
        "{log}"
    );
    app.shutdown().await;
}
