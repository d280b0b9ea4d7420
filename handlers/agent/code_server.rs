//! code-server under supervision: its folders inside the environment's
//! persistent home, a cleared environment plus an allowlist (so nothing of
//! the agent's — its token, the control plane's keys — is visible from an
//! IDE terminal), a Unix socket in a 0700 folder instead of a TCP port, a
//! restart with backoff when it dies, and a graceful stop.

use crate::agent_env::PASSED_TO_IDE;
use crate::procs::{self, MARKER};
use rustix::process::Signal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// User settings written on first start (never over the user's own file).
/// Workspace Trust stays on: a folder not yet trusted opens in restricted
/// mode, so a cloned repository's tools (say `node_modules/eslint`, which
/// the ESLint extension would load) do not run until the person trusts it.
pub const DEFAULT_SETTINGS: &str = r#"{
  "files.autoSave": "afterDelay",
  "files.autoSaveDelay": 1000,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "security.workspace.trust.enabled": true
}
"#;

/// What earlier versions wrote (Workspace Trust off): a file still exactly
/// so was never edited by its user, and is replaced by `DEFAULT_SETTINGS`.
const OLD_DEFAULT_SETTINGS: &str = r#"{
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
    /// Run code-server as this uid/gid (the image's non-root user).
    pub user: Option<IdeUser>,
    /// The folder VS Code opens, once the first start's setup has decided
    /// it (a cloned repository); unset: the workspace.
    pub open: std::sync::OnceLock<PathBuf>,
}

/// The account code-server runs as, resolved from `/etc/passwd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdeUser {
    pub uid: u32,
    pub gid: u32,
}

impl IdeUser {
    /// Look `name` up in a passwd-format file.
    pub fn lookup(passwd: &str, name: &str) -> Option<IdeUser> {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0] != name {
                return None;
            }
            Some(IdeUser {
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
    }

    /// Resolve `name` from the system's `/etc/passwd`; refuses root.
    pub fn resolve(name: &str) -> anyhow::Result<IdeUser> {
        let passwd = std::fs::read_to_string("/etc/passwd")?;
        let user = IdeUser::lookup(&passwd, name)
            .ok_or_else(|| anyhow::anyhow!("DEV8_IDE_USER {name} is not in /etc/passwd"))?;
        anyhow::ensure!(user.uid != 0, "DEV8_IDE_USER must not be root");
        Ok(user)
    }

    /// Hand `path` to this user (the agent itself may run as root).
    pub fn own(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
    }
}

/// Nothing a person's repository, dotfiles or terminal runs may run as
/// root: an agent running as root (ACI's) must have an IDE user to drop to.
/// Local compute is the one exception it says so for: there the IDE's user
/// is, by design, whoever runs `serve`.
pub fn never_as_root(
    agent_is_root: bool,
    has_ide_user: bool,
    ide_as_agent_user: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !agent_is_root || has_ide_user || ide_as_agent_user,
        "the agent runs as root and DEV8_IDE_USER is not set: code-server, the repository's clone \
         and the dotfiles would run as root; the image must name its non-root user"
    );
    Ok(())
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

    /// The folder VS Code opens: the cloned repository's, else the workspace.
    pub fn folder(&self) -> PathBuf {
        self.open
            .get()
            .filter(|f| f.is_dir())
            .cloned()
            .unwrap_or_else(|| self.workspace())
    }

    pub fn user_data_dir(&self) -> PathBuf {
        self.home.join(".local/share/code-server")
    }

    pub fn extensions_dir(&self) -> PathBuf {
        self.user_data_dir().join("extensions")
    }

    /// Where the agent hears from Dev8's extension: beside code-server's
    /// socket, in the agent's 0700 runtime folder.
    pub fn activity_socket(&self) -> PathBuf {
        self.socket.with_file_name("activity.sock")
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
            std::fs::create_dir_all(&dir)?;
        }
        if let Some(user) = self.user {
            // The folders code-server writes to, and the socket's folder.
            for dir in [
                self.home.clone(),
                self.workspace(),
                self.extensions_dir(),
                self.user_data_dir(),
                self.user_data_dir().join("User"),
            ] {
                user.own(&dir)?;
            }
            if let Some(run_dir) = self.socket.parent() {
                user.own(run_dir)?;
            }
        }
        let file = self.settings_file();
        if std::fs::read_to_string(&file).is_ok_and(|t| t == OLD_DEFAULT_SETTINGS) {
            return std::fs::write(&file, DEFAULT_SETTINGS);
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
        {
            Ok(mut f) => std::io::Write::write_all(&mut f, DEFAULT_SETTINGS.as_bytes()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A process as the IDE's user, with what every such process gets: a
    /// cleared environment plus the allowlist (nothing of the agent's), the
    /// home and its XDG folders, the environment's marker, no standard input.
    /// code-server, and the first start's git and dotfiles script, start so.
    pub fn user_command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_clear();
        for name in PASSED_TO_IDE {
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
        if let Some(user) = self.user {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    /// The command line and environment (no secrets in either).
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = self.user_command(&self.node);
        cmd.arg(&self.entry)
            .arg("--socket")
            .arg(&self.socket)
            .args([
                "--auth",
                "none",
                "--disable-telemetry",
                "--disable-update-check",
            ])
            .arg("--user-data-dir")
            .arg(self.user_data_dir())
            .arg("--extensions-dir")
            .arg(self.extensions_dir())
            .arg(self.folder())
            .current_dir(self.folder());
        // The user's personal secrets, under their own names (never the
        // agent's own variables: `user_command` cleared those).
        for (name, value) in crate::agent_env::user_secrets_from(std::env::vars_os()) {
            cmd.env(name, value);
        }
        // code-server's own sockets (VS Code IPC, git askpass) go to the
        // agent's 0700 runtime folder, removed when the agent stops, rather
        // than accumulating in the machine's /tmp.
        if let Some(run_dir) = self.socket.parent() {
            cmd.env("TMPDIR", run_dir);
        }
        cmd.env(super::extension::SOCKET_VAR, self.activity_socket());
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
impl CodeServer {
    /// For unit tests: environment `environment_id`, its home and socket in
    /// `dir`, run as the current user (node and code-server are not started).
    pub fn in_dir(dir: &Path, environment_id: &str) -> CodeServer {
        CodeServer {
            node: "node".into(),
            entry: "/opt/cs/node_modules/code-server/out/node/entry.js".into(),
            home: dir.join("home"),
            socket: dir.join("s.sock"),
            environment_id: environment_id.into(),
            user: None,
            open: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_written_once_and_never_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let cs = CodeServer::in_dir(dir.path(), "e1");
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
    fn workspace_trust_is_on() {
        let dir = tempfile::tempdir().unwrap();
        let cs = CodeServer::in_dir(dir.path(), "e1");
        let args: Vec<String> = cs
            .command()
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            !args.iter().any(|a| a.contains("workspace-trust")),
            "{args:?}"
        );
        cs.prepare().unwrap();
        let fresh: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cs.settings_file()).unwrap()).unwrap();
        assert_eq!(fresh["security.workspace.trust.enabled"], true);
        // A file exactly as an earlier version wrote it turns trust on...
        std::fs::write(cs.settings_file(), OLD_DEFAULT_SETTINGS).unwrap();
        cs.prepare().unwrap();
        assert_eq!(
            std::fs::read_to_string(cs.settings_file()).unwrap(),
            DEFAULT_SETTINGS
        );
        // ...while a person's own choice stays theirs.
        let own = OLD_DEFAULT_SETTINGS.replace("1000", "500");
        std::fs::write(cs.settings_file(), &own).unwrap();
        cs.prepare().unwrap();
        assert_eq!(std::fs::read_to_string(cs.settings_file()).unwrap(), own);
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

    #[test]
    fn ide_users_are_looked_up_in_passwd_format() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\ndev:x:1000:1001::/home/dev:/bin/bash\nbad:x:nope:1::/:/bin/sh\n";
        assert_eq!(
            IdeUser::lookup(passwd, "dev"),
            Some(IdeUser {
                uid: 1000,
                gid: 1001
            })
        );
        assert_eq!(
            IdeUser::lookup(passwd, "root"),
            Some(IdeUser { uid: 0, gid: 0 })
        );
        assert_eq!(IdeUser::lookup(passwd, "bad"), None);
        assert_eq!(IdeUser::lookup(passwd, "nobody-here"), None);
        assert!(IdeUser::resolve("root").is_err(), "never root");
    }

    #[test]
    fn a_root_agent_needs_an_ide_user_unless_local_compute_says_otherwise() {
        // ACI's agent is root: without DEV8_IDE_USER it refuses to start.
        let refused = never_as_root(true, false, false).unwrap_err().to_string();
        assert!(refused.contains("DEV8_IDE_USER"), "{refused}");
        assert!(never_as_root(true, true, false).is_ok());
        // Local compute, run by root: the IDE is root's, as `serve` is.
        assert!(never_as_root(true, false, true).is_ok());
        // Not root: nothing to drop.
        assert!(never_as_root(false, false, false).is_ok());
    }

    #[test]
    fn the_command_runs_as_the_ide_user_when_one_is_set() {
        let cs = CodeServer {
            node: "node".into(),
            entry: "/opt/cs/out/node/entry.js".into(),
            home: "/home/dev".into(),
            socket: "/tmp/x/s.sock".into(),
            environment_id: "e1".into(),
            user: Some(IdeUser {
                uid: 1000,
                gid: 1000,
            }),
            open: Default::default(),
        };
        // The uid/gid are applied at spawn; what we can check here is that the
        // environment handed to code-server is still only the allowlist.
        let cmd = cs.command();
        let envs: Vec<String> = cmd
            .as_std()
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(
            envs.iter().all(|k| !k.starts_with("DEV8_AGENT")),
            "{envs:?}"
        );
        assert!(envs.contains(&"HOME".to_string()));
    }
}
