//! Snapshot mode with local compute and real code-server (full tier):
//! `DEV8_LOCAL_HOME_MODE=snapshot` puts the home in a scratch folder that
//! every start wipes, and the agent restores it from the folder store
//! before code-server starts. What a POSIX home holds must come back
//! exactly — with the folder store and with the Blob store on Azurite
//! (`DEV8_LOCAL_SNAPSHOT_BLOB_*`, the agent holding only its container's
//! SAS); a kill -9 in the middle of a snapshot must leave the previous
//! one whole; a corrupt latest must fall back with a visible warning; a
//! SAS renewed through the report keeps snapshots going past the first
//! one's expiry; the container is pruned at stop and goes with the
//! environment. npm's `.bin` links, a venv without `--copies` and pnpm
//! (its store in the home, hard-linked into `node_modules/.pnpm`) survive.

use crate::harness::{Clock, Compute, LocalOpts, TestApp, User};
use dev8::compute::HomeMode;
use dev8::procs;
use dev8::snapshot::{self, MANIFEST, Manifest};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the snapshots go.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    Folder,
    /// Azurite's Blob service, SAS valid this long.
    Blob(Duration),
}

async fn snapshot_app(interval: Duration) -> TestApp {
    snapshot_app_with(interval, Store::Folder).await
}

async fn snapshot_app_with(interval: Duration, store: Store) -> TestApp {
    TestApp::builder()
        .compute(Compute::Local(LocalOpts {
            home_mode: HomeMode::Snapshot,
            snapshot_interval: interval,
            report_interval: Duration::from_millis(500),
            snapshot_blob: match store {
                Store::Folder => None,
                Store::Blob(lifetime) => Some(crate::peers::azurite::blob_account(lifetime)),
            },
            ..LocalOpts::default()
        }))
        .clock(Clock::Offset)
        .spawn()
        .await
}

/// The complete snapshots of an environment, whichever its store, oldest first.
async fn stored_manifests(app: &TestApp, id: &str) -> Vec<Manifest> {
    let store = app.local().snapshot_store(id).unwrap();
    let mut found = Vec::new();
    for name in store.list().await.unwrap() {
        // The agent prunes while it runs: a manifest listed a moment ago
        // may be gone by the time it is read.
        if name.ends_with(MANIFEST)
            && let Some(body) = store.get(&name).await.unwrap()
        {
            found.push(serde_json::from_slice::<Manifest>(&body).unwrap());
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The complete snapshots in an environment's folder store, oldest first.
fn manifests(dir: &Path) -> Vec<Manifest> {
    let mut found: Vec<Manifest> = std::fs::read_dir(dir)
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| std::fs::read(e.path().join(MANIFEST)).ok())
        .map(|b| serde_json::from_slice(&b).unwrap())
        .collect();
    found.sort_by(|a: &Manifest, b| a.id.cmp(&b.id));
    found
}

async fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A new user's running environment of `template`, and its snapshot folder.
async fn running_env(app: &TestApp, email: &str, template: &str) -> (User, String, PathBuf) {
    let u = app.user(email).await;
    let id = app.new_env_from(&u, "snap", template).await;
    app.wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    let store = app.local().snapshot_dir(&id);
    (u, id, store)
}

async fn stop_and_start(app: &TestApp, u: &User, id: &str) -> serde_json::Value {
    assert_eq!(app.action(u, id, "stop").await.status, 202);
    app.wait_status(u, id, "stopped", Duration::from_secs(120))
        .await;
    assert!(procs::marked(id, &[]).is_empty(), "processes left");
    assert_eq!(app.action(u, id, "start").await.status, 202);
    app.wait_status(u, id, "running", Duration::from_secs(60))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn a_posix_home_survives_stop_and_start_through_a_snapshot() {
    a_posix_home_survives(Store::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server and Azurite"]
async fn a_posix_home_survives_stop_and_start_through_the_blob_store() {
    a_posix_home_survives(Store::Blob(Duration::from_secs(3600))).await;
}

async fn a_posix_home_survives(store: Store) {
    // No periodic snapshot during the test: what comes back is the final one.
    let app = snapshot_app_with(Duration::from_secs(3600), store).await;
    let u = app.user("posix@example.com").await;
    let id = app.new_env_from(&u, "web", "node").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    let local = app.local();
    let home = local.home(&id);
    assert!(
        home.ends_with("scratch/home"),
        "snapshot mode runs from scratch: {}",
        home.display()
    );
    let ws = home.join("workspace");
    assert!(ws.join("package.json").is_file(), "node starter project");

    // A key, links, a WAL database with commits still in its -wal file.
    std::fs::create_dir(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE").unwrap();
    std::fs::set_permissions(
        home.join(".ssh/id_ed25519"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(ws.join("data.txt"), "twice").unwrap();
    std::fs::hard_link(ws.join("data.txt"), ws.join("data-link.txt")).unwrap();
    std::os::unix::fs::symlink("data.txt", ws.join("data-symlink")).unwrap();
    let db = rusqlite::Connection::open(ws.join("app.db")).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    db.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    db.execute_batch("CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('in the wal');")
        .unwrap();
    drop(db);
    // A git repository whose tree holds a symlink.
    let repo = ws.join("repo");
    std::fs::create_dir(&repo).unwrap();
    run(&repo, "git", &["init", "-q"]);
    std::fs::write(repo.join("README"), "hi").unwrap();
    std::os::unix::fs::symlink("README", repo.join("LINK")).unwrap();
    run(&repo, "git", &["add", "."]);
    run(
        &repo,
        "git",
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "one",
        ],
    );
    // npm with its .bin links (a local package: no registry needed).
    let tool = ws.join("tool");
    std::fs::create_dir(&tool).unwrap();
    std::fs::write(
        tool.join("package.json"),
        r#"{"name":"tool","version":"1.0.0","bin":{"tool":"cli.js"}}"#,
    )
    .unwrap();
    std::fs::write(
        tool.join("cli.js"),
        "#!/usr/bin/env node\nconsole.log('tool ok')\n",
    )
    .unwrap();
    std::fs::set_permissions(tool.join("cli.js"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let npm_app = app_using_tool(&ws, "npm-app");
    run(
        &npm_app,
        "npm",
        &["install", "--offline", "--no-audit", "--no-fund"],
    );
    assert!(
        std::fs::symlink_metadata(npm_app.join("node_modules/.bin/tool"))
            .unwrap()
            .is_symlink()
    );
    // pnpm: its content-addressed store in the home, files hard-linked from
    // there into node_modules/.pnpm, and node_modules/tool a symlink.
    let pnpm_app = app_using_tool(&ws, "pnpm-app");
    let out = Command::new(pnpm())
        .args(["install", "--offline"])
        .current_dir(&pnpm_app)
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("PNPM_HOME")
        .output()
        .expect("pnpm (scripts/ci-deps.sh installs it in tests/js)");
    assert!(
        out.status.success(),
        "pnpm install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pnpm_links(&pnpm_app), 2, "hard-linked with the store");
    // A venv with its default symlinks (no --copies).
    run(&ws, "python3", &["-m", "venv", "--without-pip", "venv"]);
    assert!(
        std::fs::symlink_metadata(ws.join("venv/bin/python"))
            .unwrap()
            .is_symlink()
    );

    stop_and_start(&app, &u, &id).await;
    let snaps = stored_manifests(&app, &id).await;
    assert!(!snaps.is_empty(), "the stop took a snapshot");
    if store != Store::Folder {
        assert!(
            manifests(&local.snapshot_dir(&id)).is_empty(),
            "nothing in the folder store with a Blob store"
        );
    }

    let home = local.home(&id);
    let ws = home.join("workspace");
    let key = std::fs::metadata(home.join(".ssh/id_ed25519")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(home.join(".ssh/id_ed25519")).unwrap(),
        "PRIVATE"
    );
    let (a, b) = (
        std::fs::metadata(ws.join("data.txt")).unwrap(),
        std::fs::metadata(ws.join("data-link.txt")).unwrap(),
    );
    assert_eq!(
        (a.ino(), a.nlink()),
        (b.ino(), 2),
        "the hard link is one file"
    );
    assert_eq!(
        std::fs::read_link(ws.join("data-symlink")).unwrap(),
        Path::new("data.txt")
    );
    let db = rusqlite::Connection::open(ws.join("app.db")).unwrap();
    let v: String = db.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "in the wal");
    let repo = ws.join("repo");
    assert_eq!(
        run(&repo, "git", &["status", "--porcelain"]),
        "",
        "clean tree"
    );
    assert!(
        run(&repo, "git", &["ls-files", "-s", "LINK"]).starts_with("120000"),
        "LINK is a symlink in the index"
    );
    assert_eq!(
        std::fs::read_link(repo.join("LINK")).unwrap(),
        Path::new("README")
    );
    assert_eq!(
        run(&ws.join("npm-app"), "./node_modules/.bin/tool", &[]),
        "tool ok\n"
    );
    let pnpm_app = ws.join("pnpm-app");
    assert_eq!(
        std::fs::read_link(pnpm_app.join("node_modules/tool")).unwrap(),
        Path::new(PNPM_TOOL)
    );
    assert_eq!(
        pnpm_links(&pnpm_app),
        2,
        "still hard-linked with pnpm's store in the home"
    );
    assert_eq!(run(&pnpm_app, "./node_modules/.bin/tool", &[]), "tool ok\n");
    let prefix = run(
        &ws,
        "venv/bin/python",
        &["-c", "import sys; print(sys.prefix)"],
    );
    assert_eq!(Path::new(prefix.trim()), ws.join("venv"));
    app.shutdown().await;
}

/// A package `name` in the workspace depending on the local package `tool`.
fn app_using_tool(ws: &Path, name: &str) -> PathBuf {
    let dir = ws.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("package.json"),
        format!(
            r#"{{"name":"{name}","version":"1.0.0","dependencies":{{"tool":"file:../tool"}}}}"#
        ),
    )
    .unwrap();
    dir
}

/// Where pnpm puts a local package `tool` (`file:../tool`).
const PNPM_TOOL: &str = ".pnpm/tool@file+..+tool/node_modules/tool";

/// The pnpm the tests install (tests/js).
fn pnpm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules/.bin/pnpm")
}

/// How many names the file pnpm placed for `tool` has (2: it and the store's).
fn pnpm_links(app: &Path) -> u64 {
    std::fs::metadata(app.join("node_modules").join(PNPM_TOOL).join("cli.js"))
        .unwrap()
        .nlink()
}

/// Bytes gzip cannot shrink (xorshift), so a snapshot of them takes parts.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The snapshot in progress: its folder has a part but no manifest yet.
fn in_progress(dir: &Path, after: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().as_ref() > after)
                && p.join("part-00000").exists()
                && !p.join(MANIFEST).exists()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn kill_9_mid_snapshot_keeps_the_previous_and_a_crash_loses_only_the_last_interval() {
    let app = snapshot_app(Duration::from_secs(2)).await;
    let u = app.user("kill@example.com").await;
    let id = app.new_env_from(&u, "k", "python").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    let local = app.local();
    let store = local.snapshot_dir(&id);
    let ws = local.home(&id).join("workspace");
    std::fs::write(ws.join("v.txt"), "1").unwrap();
    let written = chrono::Utc::now();
    // A periodic snapshot taken after the write holds it.
    let kept = wait_for("a periodic snapshot", Duration::from_secs(60), || {
        manifests(&store)
            .into_iter()
            .rfind(|m| m.created_at > written + chrono::Duration::seconds(1))
    })
    .await;
    // Then work the next snapshot must not half-keep: big enough that
    // its parts take a while, and a change to v.txt.
    std::fs::write(ws.join("big.bin"), noise(96 << 20)).unwrap();
    std::fs::write(ws.join("v.txt"), "2").unwrap();
    let agent = local.agent_pid(&id).expect("the agent runs");
    let partial = wait_for("a snapshot in progress", Duration::from_secs(60), || {
        in_progress(&store, &kept.id)
    })
    .await;
    procs::signal(agent, rustix::process::Signal::KILL);
    wait_for("the agent gone", Duration::from_secs(10), || {
        (local.agent_pid(&id) != Some(agent)).then_some(())
    })
    .await;
    assert!(
        !partial.join(MANIFEST).exists(),
        "the killed snapshot got no manifest"
    );
    // Local compute brings the agent back; the start restores a whole snapshot.
    wait_for("a new agent", Duration::from_secs(60), || {
        local.agent_pid(&id).filter(|p| *p != agent)
    })
    .await;
    app.wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    let ws = local.home(&id).join("workspace");
    let v = std::fs::read_to_string(ws.join("v.txt")).unwrap();
    assert_eq!(v, "1", "the last whole snapshot before the crash");
    assert!(
        !ws.join("big.bin").exists(),
        "nothing of the killed snapshot came back"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn a_corrupt_latest_snapshot_falls_back_with_a_warning_in_the_api() {
    let app = snapshot_app(Duration::from_secs(3600)).await;
    let (u, id, store) = running_env(&app, "corrupt@example.com", "golang").await;
    let local = app.local();
    std::fs::write(local.home(&id).join("workspace/v.txt"), "first").unwrap();
    stop_and_start(&app, &u, &id).await;
    std::fs::write(local.home(&id).join("workspace/v.txt"), "second").unwrap();
    assert_eq!(app.action(&u, &id, "stop").await.status, 202);
    app.wait_status(&u, &id, "stopped", Duration::from_secs(120))
        .await;
    let snaps = manifests(&store);
    assert_eq!(snaps.len(), 2, "the latest and the one before it");
    let latest = snaps.last().unwrap();
    let part = store.join(&latest.parts[0].name);
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&part, bytes).unwrap();

    assert_eq!(app.action(&u, &id, "start").await.status, 202);
    app.wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    assert_eq!(
        std::fs::read_to_string(local.home(&id).join("workspace/v.txt")).unwrap(),
        "first",
        "the previous snapshot, not an empty home"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let s = app.environment(&u, &id).await["usage"]["snapshot"].clone();
        if s["warning"].is_string() {
            break s;
        }
        assert!(Instant::now() < deadline, "no warning shown: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let warning = shown["warning"].as_str().unwrap();
    assert!(
        warning.contains(&latest.id) && warning.contains("checksum"),
        "{warning}"
    );
    assert_eq!(shown["intervalSeconds"], 3600);
    // The engine agrees: the store still has a whole previous snapshot.
    assert!(
        snapshot::has_snapshot(&dev8::snapshot::store::FolderStore::new(&store))
            .await
            .unwrap()
    );
    app.shutdown().await;
}

/// The real agent's final-snapshot endpoint, the contract a stop on ACI
/// relies on (`fakes::arm` stands in for it in `aci_snapshot.rs`): only an
/// `agent-control` token for this environment asks; the first request ends
/// the IDE and takes the snapshot, every request reports how it went, and
/// the snapshot holds what was written just before. A stop afterwards takes
/// no second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn the_agent_takes_its_final_snapshot_when_the_control_plane_asks() {
    let app = snapshot_app(Duration::from_secs(3600)).await;
    let (u, id, store) = running_env(&app, "final@example.com", "node").await;
    let local = app.local();
    std::fs::write(local.home(&id).join("workspace/last.txt"), "written last").unwrap();
    let env = app
        .platform
        .store
        .environment(&u.id, &id)
        .await
        .unwrap()
        .unwrap()
        .value;
    let port = reqwest::Url::parse(&app.url).unwrap().port().unwrap();
    let host = format!("e-{id}.localhost:{port}");
    let ask = |token: String| {
        app.client
            .post(format!("{}/_dev8/final-snapshot", app.url))
            .header("host", &host)
            .header("x-dev8-authorization", format!("Bearer {token}"))
            .send()
    };
    // The agent's own token is not the control plane's: refused, nothing taken.
    let agent_token = dev8::jobs::reconcile::agent_params(&app.platform, &env).agent_token;
    assert_eq!(ask(agent_token).await.unwrap().status(), 401);
    assert!(manifests(&store).is_empty());
    let token = || dev8::jobs::reconcile::agent_control_token(&app.platform, &env);
    let first = ask(token()).await.unwrap();
    assert_eq!(first.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    let saved: serde_json::Value = loop {
        let r = ask(token()).await.unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        match (status, body["state"].as_str()) {
            (200, Some("saved")) => break body,
            (202, Some("saving")) => {}
            other => panic!("unexpected answer {other:?}: {body}"),
        }
        assert!(Instant::now() < deadline, "no final snapshot within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let taken = manifests(&store);
    assert_eq!(taken.len(), 1);
    assert_eq!(
        saved["lastAt"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        taken[0].created_at
    );
    // The IDE has ended (readiness no longer answers), the agent still answers.
    let health = app
        .client
        .get(format!("{}/_dev8/healthz", app.url))
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    // What was written last is in it.
    let check = tempfile::tempdir().unwrap();
    let home = check.path().join("home");
    std::fs::create_dir(&home).unwrap();
    snapshot::restore(&home, &dev8::snapshot::store::FolderStore::new(&store))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(home.join("workspace/last.txt")).unwrap(),
        "written last"
    );
    // The stop that follows takes no second snapshot.
    assert_eq!(app.action(&u, &id, "stop").await.status, 202);
    app.wait_status(&u, &id, "stopped", Duration::from_secs(120))
        .await;
    assert_eq!(manifests(&store).len(), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server and Azurite"]
async fn a_renewed_sas_keeps_snapshots_going_and_the_container_is_pruned_and_deleted() {
    // SAS valid 12 s, renewed after 6 s through the report (every 0.5 s); a
    // periodic snapshot every 2 s.
    let lifetime = Duration::from_secs(12);
    let app = snapshot_app_with(Duration::from_secs(2), Store::Blob(lifetime)).await;
    let u = app.user("renew@example.com").await;
    let id = app.new_env_from(&u, "r", "node").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    let local = app.local();
    // The first SAS was minted before the environment ran, so it expired
    // at the latest `lifetime` from now; a snapshot written after that was
    // written with a renewed one.
    let first_expired = chrono::Utc::now() + chrono::Duration::from_std(lifetime).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let snaps = stored_manifests(&app, &id).await;
        if snaps
            .iter()
            .any(|m| m.created_at > first_expired + chrono::Duration::seconds(2))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot after the first SAS expired: {:?}",
            snaps.iter().map(|m| m.created_at).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let agent_log = local.snapshot_dir(&id).with_file_name("agent.log");
    let log = std::fs::read_to_string(&agent_log).unwrap();
    assert!(log.contains("snapshot SAS renewed"), "{log}");
    assert!(!log.contains("sig="), "the agent logged a SAS");
    let warning = app.environment(&u, &id).await["usage"]["snapshot"]["warning"].clone();
    assert!(warning.is_null(), "no failed snapshot: {warning}");

    // Leftovers of a killed agent: parts without a manifest, three days old.
    let store = local.snapshot_store(&id).unwrap();
    let old = ulid::Ulid::from_parts(
        (chrono::Utc::now() - chrono::Duration::days(3)).timestamp_millis() as u64,
        1,
    );
    store
        .put(&format!("{old}/part-00000"), b"left".to_vec())
        .await
        .unwrap();
    assert_eq!(app.action(&u, &id, "stop").await.status, 202);
    app.wait_status(&u, &id, "stopped", Duration::from_secs(120))
        .await;
    let left = store.list().await.unwrap();
    assert!(
        !left.iter().any(|n| n.starts_with(&old.to_string())),
        "the stop pruned the abandoned parts: {left:?}"
    );
    assert!(
        (1..=2).contains(&stored_manifests(&app, &id).await.len()),
        "the newest two kept"
    );

    let deleted = app.delete(&format!("/api/environments/{id}"), &u).await;
    assert_eq!(deleted.status, 202);
    app.wait_gone(&u, &id, Duration::from_secs(60)).await;
    let gone = format!("{:#}", store.list().await.unwrap_err());
    assert!(gone.contains("ContainerNotFound"), "{gone}");
    app.shutdown().await;
}
