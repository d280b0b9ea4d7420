//! code-server under supervision: its folders inside the environment's
//! persistent home, a cleared environment plus an allowlist (so nothing of
//! the agent's — its token, the control plane's keys — is visible from an
//! IDE terminal), a Unix socket in a 0700 folder instead of a TCP port, a
//! restart with backoff when it dies, and a graceful stop.

use super::procs::{self, MARKER};
use rustix::process::Signal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Environment variables code-server (and so every IDE terminal) inherits
/// from the agent; everything else is dropped.
pub const ALLOWED_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TERM",
    "SHELL",
    "USER",
    "LOGNAME",
];

/// User settings written on first start (never over the user's own file).
pub const DEFAULT_SETTINGS: &str = r#"{
  "files.autoSave": "afterDelay",
  "files.autoSaveDelay": 1000,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "security.workspace.trust.enabled": false
}
"#;

/// How code-server is started for one environment.
#[derive(Debug, Clone)]
pub struct CodeServer {
    /// The `node` executable.
    pub node: PathBuf,
    /// code-server's `out/node/entry.js`.
    pub entry: PathBuf,
    /// The environment's persistent home (HOME for code-server).
    pub home: PathBuf,
    /// The Unix socket code-server listens on.
    pub socket: PathBuf,
    pub environment_id: String,
}

impl CodeServer {
    /// The code-server package folder (`.../node_modules/code-server`): every
    /// process started from inside it is code-server's own, not the user's.
    pub fn package_dir(&self) -> PathBuf {
        self.entry
            .ancestors()
            .nth(3)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.entry.clone())
    }

    pub fn workspace(&self) -> PathBuf {
        self.home.join("workspace")
    }

    pub fn user_data_dir(&self) -> PathBuf {
        self.home.join(".local/share/code-server")
    }

    pub fn extensions_dir(&self) -> PathBuf {
        self.user_data_dir().join("extensions")
    }

    pub fn settings_file(&self) -> PathBuf {
        self.user_data_dir().join("User/settings.json")
    }

    /// Create the folders and the default user settings (only if absent).
    pub fn prepare(&self) -> std::io::Result<()> {
        for dir in [
            self.workspace(),
            self.extensions_dir(),
            self.user_data_dir().join("User"),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.settings_file())
        {
            Ok(mut f) => std::io::Write::write_all(&mut f, DEFAULT_SETTINGS.as_bytes()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The command line and environment (no secrets in either).
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.node);
        cmd.arg(&self.entry)
            .arg("--socket")
            .arg(&self.socket)
            .args([
                "--auth",
                "none",
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
            ])
            .arg("--user-data-dir")
            .arg(self.user_data_dir())
            .arg("--extensions-dir")
            .arg(self.extensions_dir())
            .arg(self.workspace())
            .current_dir(self.workspace())
            .env_clear();
        for name in ALLOWED_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env(MARKER, &self.environment_id)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

/// The pid of the running code-server (0 when none).
#[derive(Debug, Default)]
pub struct Running(AtomicI32);

impl Running {
    pub fn pid(&self) -> Option<i32> {
        Some(self.0.load(Ordering::Acquire)).filter(|p| *p > 0)
    }
}

/// Restart delay after a crash: 0.5 s doubling to 30 s; a run of a minute resets it.
fn next_backoff(prev: Duration, ran: Duration) -> Duration {
    if ran >= Duration::from_secs(60) {
        Duration::from_millis(500)
    } else {
        (prev * 2).min(Duration::from_secs(30))
    }
}

/// Keep code-server running until `stop` turns true; then stop it
/// (SIGTERM, SIGKILL after `grace`).
pub async fn supervise(
    cs: Arc<CodeServer>,
    running: Arc<Running>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut backoff = Duration::from_millis(250);
    while !*stop.borrow() {
        let _ = std::fs::remove_file(&cs.socket);
        let started = Instant::now();
        let mut child = match cs.command().spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, node = %cs.node.display(), "could not start code-server");
                backoff = next_backoff(backoff, Duration::ZERO);
                tokio::select! { _ = tokio::time::sleep(backoff) => continue, _ = stop.wait_for(|s| *s) => return }
            }
        };
        let pid = child.id().map_or(0, |p| p as i32);
        running.0.store(pid, Ordering::Release);
        tracing::info!(pid, "code-server started");
        let exited = tokio::select! {
            status = child.wait() => Some(status),
            _ = stop.wait_for(|s| *s) => None,
        };
        running.0.store(0, Ordering::Release);
        match exited {
            Some(status) => {
                backoff = next_backoff(backoff, started.elapsed());
                tracing::warn!(status = ?status.ok(), restart_in_ms = backoff.as_millis() as u64, "code-server exited; restarting");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.wait_for(|s| *s) => return }
            }
            None => {
                procs::signal(pid, Signal::TERM);
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    tracing::warn!("code-server did not stop in time; killing it");
                    let _ = child.kill().await;
                }
                tracing::info!("code-server stopped");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_written_once_and_never_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let cs = CodeServer {
            node: "node".into(),
            entry: "/opt/cs/node_modules/code-server/out/node/entry.js".into(),
            home: dir.path().join("home"),
            socket: dir.path().join("s.sock"),
            environment_id: "e1".into(),
        };
        assert_eq!(
            cs.package_dir(),
            PathBuf::from("/opt/cs/node_modules/code-server")
        );
        cs.prepare().unwrap();
        let text = std::fs::read_to_string(cs.settings_file()).unwrap();
        assert!(text.contains("\"files.autoSave\": \"afterDelay\""));
        std::fs::write(cs.settings_file(), r#"{"editor.fontSize": 18}"#).unwrap();
        cs.prepare().unwrap();
        assert_eq!(
            std::fs::read_to_string(cs.settings_file()).unwrap(),
            r#"{"editor.fontSize": 18}"#
        );
        assert!(cs.workspace().is_dir() && cs.extensions_dir().is_dir());
    }

    #[test]
    fn backoff_grows_and_resets() {
        let b = next_backoff(Duration::from_millis(500), Duration::from_secs(1));
        assert_eq!(b, Duration::from_secs(1));
        assert_eq!(
            next_backoff(Duration::from_secs(20), Duration::ZERO),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_backoff(Duration::from_secs(20), Duration::from_secs(90)),
            Duration::from_millis(500)
        );
    }
}
