//! A git server on 127.0.0.1 for tests: git's own `git http-backend` (the
//! smart HTTP protocol, as git ships it) behind a tiny HTTP server that
//! speaks CGI to it, serving bare repositories the test makes in a
//! temporary folder. It counts the clones it served (`git-upload-pack`
//! requests), so a test can prove a later start did not clone again.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;

struct Shared {
    root: PathBuf,
    uploads: AtomicUsize,
    /// Milliseconds every clone (`git-upload-pack`) is held before it is served.
    delay_ms: std::sync::atomic::AtomicU64,
}

pub struct GitServer {
    pub url: String,
    shared: Arc<Shared>,
    _root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Run git with `args` in `dir`, panicking with its output on failure;
/// returns its standard output, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Dev8 Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Dev8 Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitServer {
    pub async fn start() -> GitServer {
        let root = tempfile::tempdir().expect("temp dir");
        let shared = Arc::new(Shared {
            root: root.path().to_path_buf(),
            uploads: AtomicUsize::new(0),
            delay_ms: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new().fallback(cgi).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        GitServer {
            url,
            shared,
            _root: root,
            task,
        }
    }

    /// Make the bare repository `<name>.git` from `files` committed on
    /// `main`; returns its URL and the commit.
    pub fn repository(&self, name: &str, files: &[(&str, &str)]) -> (String, String) {
        let work = self.shared.root.join(format!("{name}-work"));
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        let head = self.commit(name, files, "first");
        git(
            &self.shared.root,
            &[
                "clone",
                "-q",
                "--bare",
                &format!("{name}-work"),
                &format!("{name}.git"),
            ],
        );
        (format!("{}/{name}.git", self.url), head)
    }

    /// Commit `files` in the repository's working copy on the current
    /// branch and push every branch and tag; returns the commit.
    pub fn commit(&self, name: &str, files: &[(&str, &str)], message: &str) -> String {
        let work = self.shared.root.join(format!("{name}-work"));
        for (path, text) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", message]);
        let bare = self.shared.root.join(format!("{name}.git"));
        if bare.exists() {
            git(&work, &["push", "-q", "--all", bare.to_str().unwrap()]);
            git(&work, &["push", "-q", "--tags", bare.to_str().unwrap()]);
        }
        git(&work, &["rev-parse", "HEAD"])
    }

    /// Switch the working copy of `name` to a new branch.
    pub fn branch(&self, name: &str, branch: &str) {
        let work = self.shared.root.join(format!("{name}-work"));
        git(&work, &["checkout", "-q", "-b", branch]);
    }

    /// Hold every clone this long before serving it (a slow network), so a
    /// test can see the step a start is at while it clones.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many fetches or clones (`git-upload-pack` requests) were served.
    pub fn uploads(&self) -> usize {
        self.shared.uploads.load(Ordering::SeqCst)
    }
}

/// One request through `git http-backend` (RFC 3875 CGI: the request in
/// environment variables and on standard input, the answer as headers, a
/// blank line and the body on standard output).
async fn cgi(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    if parts.uri.path().ends_with("/git-upload-pack") {
        shared.uploads.fetch_add(1, Ordering::SeqCst);
        let delay = shared.delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("git http-backend starts");
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child
        .wait_with_output()
        .await
        .expect("git http-backend ran");
    let _ = writer.await;
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::empty())
            .unwrap();
    };
    let mut resp = Response::new(Body::from(raw[end + gap..].to_vec()));
    for line in String::from_utf8_lossy(&raw[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().and_then(|c| c.parse().ok());
            *resp.status_mut() = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}
