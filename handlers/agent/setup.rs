//! The first start's setup, before code-server opens: clone the
//! environment's repository into the workspace and check out its ref, then
//! clone the account's dotfiles to `~/.dotfiles` and run the first of
//! `install.sh`, `bootstrap.sh`, `setup.sh` that exists. Everything runs as
//! the IDE's user (never root) with the same cleared environment code-server
//! gets, so nothing of the agent's is visible to what a repository runs.
//! The whole setup has one time budget (`SETUP_BUDGET`); each command runs
//! in a process group of its own, killed with everything it started when
//! the command ends, the budget runs out or the setup is dropped (a stop).
//!
//! "First start" is known durably by a marker in the persistent home
//! (`~/.dev8/setup.json`), written once the setup has ended, whether it
//! succeeded or failed, and already before the dotfiles' script starts (so
//! the script runs once, even if the start is interrupted); it keeps the
//! outcome (the folder VS Code opens, the clone error the periodic report
//! carries). Later starts read it and never clone again. Clones go to a
//! temporary folder renamed into place, so an interrupted start retries
//! cleanly and never touches a finished clone. The agent may be root while
//! the home is the user's: what it writes there (the marker, the dotfiles'
//! log) is created afresh, never through a link, and handed to the user.

use super::code_server::{CodeServer, IdeUser};
use crate::domain::{START_DEADLINE, folder_name, steps};
use crate::procs;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::time::Instant;

/// The marker's folder, relative to the home.
pub const MARKER_DIR: &str = ".dev8";
/// The marker's name in `MARKER_DIR`.
pub const MARKER_NAME: &str = "setup.json";
/// The marker's temporary name while it is written.
const MARKER_TMP: &str = "setup.json.tmp";
/// The dotfiles install script's output, relative to the home.
pub const DOTFILES_LOG: &str = ".dotfiles.log";
/// Where the dotfiles are cloned, relative to the home.
pub const DOTFILES_DIR: &str = ".dotfiles";
/// The scripts looked for in the dotfiles, in this order; the first found runs.
pub const INSTALL_SCRIPTS: [&str; 3] = ["install.sh", "bootstrap.sh", "setup.sh"];
/// Room left inside a start's deadline after the setup: code-server's first
/// boot (seconds), a snapshot restore before the agent starts (about a
/// minute for a few GB, docs/performance.md), the reconcile's polling and
/// the sweep's interval.
const ROOM_AFTER_SETUP: u64 = 4 * 60;
/// The longest the whole setup (every clone and the dotfiles' script) may
/// take: the shortest deadline a start with a setup meets (a start retried
/// after an interrupted create, `START_DEADLINE`, 10 minutes) less
/// `ROOM_AFTER_SETUP`, so an environment whose setup stalls still ends
/// `running`, with the error shown, and never "Timed out".
pub const SETUP_BUDGET: Duration =
    Duration::from_secs(START_DEADLINE.num_seconds() as u64 - ROOM_AFTER_SETUP);
/// The longest error kept from git's output.
const ERROR_MAX: usize = 400;
/// Runs the dotfiles' script (`$1`) as Codespaces does: made executable and
/// executed, so its `#!` line chooses the interpreter; a script without
/// one is read by `/bin/sh`. Run as the IDE's user, like the script.
const RUN_SCRIPT: &str = r#"chmod u+x "$1"
IFS= read -r first < "$1" || :
case "$first" in
  '#!'*) exec "$1" ;;
  *) exec /bin/sh "$1" ;;
esac"#;

/// What to set up, from the agent's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub repository_url: Option<String>,
    pub repository_ref: Option<String>,
    pub dotfiles_url: Option<String>,
}

/// How the first start's setup ended (the marker's content).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The repository's folder under the workspace (VS Code opens it).
    #[serde(default)]
    pub folder: Option<String>,
    /// Why the repository's clone or checkout failed.
    #[serde(default)]
    pub clone_error: Option<String>,
    /// The dotfiles script that was started, if any.
    #[serde(default)]
    pub dotfiles_script: Option<String>,
    /// Why the dotfiles could not be installed.
    #[serde(default)]
    pub dotfiles_error: Option<String>,
}

/// Run the setup unless the marker says it ran; `step` is told what is
/// happening (the readiness answer names it). Returns the outcome, old or new.
pub async fn run_once(plan: &Plan, cs: &CodeServer, step: impl Fn(&'static str)) -> Outcome {
    run_once_within(plan, cs, step, SETUP_BUDGET).await
}

/// `run_once` with the budget as a parameter (the unit tests give a short one).
async fn run_once_within(
    plan: &Plan,
    cs: &CodeServer,
    step: impl Fn(&'static str),
    budget: Duration,
) -> Outcome {
    if let Some(done) = read_marker(&cs.home) {
        return done;
    }
    let mut outcome = Outcome::default();
    let setup = Setup {
        cs,
        budget,
        deadline: Instant::now() + budget,
    };
    if let Some(url) = &plan.repository_url {
        step(steps::CLONING_REPOSITORY);
        let folder = folder_name(url);
        match setup
            .clone_into(
                url,
                &cs.workspace().join(&folder),
                plan.repository_ref.as_deref(),
            )
            .await
        {
            Ok(None) => outcome.folder = Some(folder),
            // Cloned, but the ref could not be checked out: the folder is
            // there (on the default branch) and the error is reported.
            Ok(Some(e)) => {
                outcome.folder = Some(folder);
                outcome.clone_error = Some(e);
            }
            Err(e) => outcome.clone_error = Some(e),
        }
        if let Some(e) = &outcome.clone_error {
            tracing::warn!(error = %e, "the repository's clone failed");
        }
    }
    if let Some(url) = &plan.dotfiles_url {
        step(steps::INSTALLING_DOTFILES);
        match setup.install_dotfiles(url, &outcome).await {
            Ok(script) => outcome.dotfiles_script = script,
            Err(e) => {
                tracing::warn!(error = %e.message, "the dotfiles were not installed");
                if let Some(script) = &e.script {
                    outcome.dotfiles_script = Some(script.clone());
                } else {
                    setup.log_dotfiles_error(&e.message);
                }
                outcome.dotfiles_error = Some(e.message);
            }
        }
    }
    if let Err(e) = write_marker(&cs.home, cs.user, &outcome) {
        tracing::warn!(error = %e, "could not write the setup marker; the next start sets up again");
    }
    outcome
}

/// Open the home (the agent's folder or the share's root, not the user's
/// to replace).
fn open_home(home: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        home,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open the folder `name` in `dir`, refusing a symbolic link.
fn open_dir_at(dir: impl AsFd, name: &str) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Hand `fd`'s file to the IDE's user, if there is one.
fn give_to(fd: impl AsFd, user: Option<IdeUser>) -> std::io::Result<()> {
    if let Some(u) = user {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(u.uid)),
            Some(rustix::fs::Gid::from_raw(u.gid)),
        )?;
    }
    Ok(())
}

/// Create the file `name` in `dir` afresh, owned by the IDE's user: what
/// was there is removed first and the new file is created exclusively, so
/// neither a symbolic link nor a hard link the user planted is written
/// through.
fn create_at(dir: impl AsFd, name: &str, user: Option<IdeUser>) -> std::io::Result<File> {
    match rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    give_to(&fd, user)?;
    Ok(File::from(fd))
}

/// The marker's outcome, if there is a readable one (never through a link).
fn read_marker(home: &Path) -> Option<Outcome> {
    let dir = open_dir_at(open_home(home).ok()?, MARKER_DIR).ok()?;
    let fd = rustix::fs::openat(
        dir,
        MARKER_NAME,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut bytes = Vec::new();
    File::from(fd).take(1 << 20).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Write the marker through a temporary file renamed into place; a
/// `~/.dev8` that is not a real folder (say a link the dotfiles' script
/// made) is refused.
fn write_marker(home: &Path, user: Option<IdeUser>, outcome: &Outcome) -> std::io::Result<()> {
    let home = open_home(home)?;
    let created = match rustix::fs::mkdirat(&home, MARKER_DIR, Mode::from_raw_mode(0o755)) {
        Ok(()) => true,
        Err(rustix::io::Errno::EXIST) => false,
        Err(e) => return Err(e.into()),
    };
    let dir = open_dir_at(&home, MARKER_DIR)?;
    if created {
        give_to(&dir, user)?;
    }
    let mut file = create_at(&dir, MARKER_TMP, user)?;
    file.write_all(&serde_json::to_vec_pretty(outcome)?)?;
    file.sync_all()?;
    Ok(rustix::fs::renameat(&dir, MARKER_TMP, &dir, MARKER_NAME)?)
}

/// Why the dotfiles were not installed; `script` is set when their script
/// was started (its output, and so the error's context, is in the log).
struct DotfilesError {
    message: String,
    script: Option<String>,
}

impl From<String> for DotfilesError {
    fn from(message: String) -> Self {
        DotfilesError {
            message,
            script: None,
        }
    }
}

/// A command's process group, killed (with everything in it) when this is
/// dropped: when the command ended, timed out, or the setup was dropped.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        procs::signal_group(self.0, rustix::process::Signal::KILL);
    }
}

/// "6 minutes" or "90 s".
fn span(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} s")
    }
}

/// git and the dotfiles script as the IDE's user, within one budget.
struct Setup<'a> {
    cs: &'a CodeServer,
    budget: Duration,
    deadline: Instant,
}

impl Setup<'_> {
    fn command(&self, program: &str, cwd: &Path) -> tokio::process::Command {
        let mut cmd = self.cs.user_command(program);
        // Never wait for a password nobody can type.
        cmd.env("GIT_TERMINAL_PROMPT", "0").current_dir(cwd);
        cmd
    }

    /// Run `cmd` (named `what` in errors) in a process group of its own,
    /// until it ends or the setup's budget does.
    async fn run(
        &self,
        mut cmd: tokio::process::Command,
        what: &str,
    ) -> Result<std::process::Output, String> {
        let over = || {
            format!(
                "the setup took longer than {}; {what} was stopped",
                span(self.budget)
            )
        };
        if Instant::now() >= self.deadline {
            return Err(over().replace("was stopped", "was not started"));
        }
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("could not run {what}: {e}"))?;
        let _group = Group(child.id().map_or(0, |p| p as i32));
        match tokio::time::timeout_at(self.deadline, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(over()),
        }
    }

    /// Run git with `args` in `cwd`; the error is git's own last words.
    async fn git(&self, cwd: &Path, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let mut cmd = self.command("git", cwd);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let what = format!("git {}", args[0].to_string_lossy());
        let out = self.run(cmd, &what).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(git_error(&String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Clone `url` to `dest` (through a temporary folder beside it), then
    /// check out `git_ref`. `Ok(Some(e))`: cloned, but the checkout failed.
    async fn clone_into(
        &self,
        url: &str,
        dest: &Path,
        git_ref: Option<&str>,
    ) -> Result<Option<String>, String> {
        if dest.exists() {
            // A previous start finished this clone (the rename is its last step).
            return Ok(None);
        }
        let parent = dest.parent().ok_or("no parent folder")?;
        let tmp = parent.join(format!(
            ".{}.dev8-clone",
            dest.file_name().unwrap_or_default().to_string_lossy()
        ));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .map_err(|e| format!("clearing {}: {e}", tmp.display()))?;
        }
        let cloned = self
            .git(
                parent,
                &[
                    "clone".as_ref(),
                    "--quiet".as_ref(),
                    "--".as_ref(),
                    url.as_ref(),
                    tmp.as_os_str(),
                ],
            )
            .await;
        if let Err(e) = cloned {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let checkout = match git_ref {
            None => None,
            Some(r) => self
                .git(
                    &tmp,
                    &[
                        "checkout".as_ref(),
                        "--quiet".as_ref(),
                        r.as_ref(),
                        "--".as_ref(),
                    ],
                )
                .await
                .err()
                .map(|e| format!("ref {r}: {e}")),
        };
        std::fs::rename(&tmp, dest).map_err(|e| format!("moving the clone into place: {e}"))?;
        Ok(checkout)
    }

    /// Clone the dotfiles and run the first install script found (output to
    /// `~/.dotfiles.log`), once: the marker says it started before it does
    /// (`so_far` is the outcome until then). `Ok(Some(script))`: that
    /// script ran and succeeded.
    async fn install_dotfiles(
        &self,
        url: &str,
        so_far: &Outcome,
    ) -> Result<Option<String>, DotfilesError> {
        let home = &self.cs.home;
        let dir = home.join(DOTFILES_DIR);
        if let Some(e) = self.clone_into(url, &dir, None).await? {
            return Err(e.into());
        }
        let Some(script) = INSTALL_SCRIPTS.iter().find(|s| dir.join(s).is_file()) else {
            return Ok(None);
        };
        let log = open_home(home)
            .and_then(|h| create_at(h, DOTFILES_LOG, self.cs.user))
            .map_err(|e| format!("creating ~/{DOTFILES_LOG}: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let started = Outcome {
            dotfiles_script: Some(script.to_string()),
            dotfiles_error: Some(format!(
                "{script} was started but the start was interrupted before it ended"
            )),
            ..so_far.clone()
        };
        if let Err(e) = write_marker(home, self.cs.user, &started) {
            return Err(
                format!("{script} was not run: could not record that it started ({e})").into(),
            );
        }
        let failed = |message: String| DotfilesError {
            message,
            script: Some(script.to_string()),
        };
        let mut cmd = self.command("/bin/sh", &dir);
        cmd.args(["-c", RUN_SCRIPT, "dev8-dotfiles"])
            .arg(dir.join(script))
            .stdout(log)
            .stderr(err);
        let status = self.run(cmd, script).await.map_err(failed)?.status;
        if status.success() {
            Ok(Some(script.to_string()))
        } else {
            Err(failed(format!(
                "{script} failed ({status}); its output is in ~/{DOTFILES_LOG}"
            )))
        }
    }

    /// Tell the user in `~/.dotfiles.log` why no dotfiles script ran.
    fn log_dotfiles_error(&self, error: &str) {
        let written = open_home(&self.cs.home)
            .and_then(|h| create_at(h, DOTFILES_LOG, self.cs.user))
            .and_then(|mut f| writeln!(f, "dev8: the dotfiles were not installed: {error}"));
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not write ~/{DOTFILES_LOG}");
        }
    }
}

/// git's error output, reduced to what a person needs: its `fatal:`/`error:`
/// lines (else its last line), bounded.
fn git_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("fatal:") || l.starts_with("error:"))
        .collect();
    let text = if lines.is_empty() {
        stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("git failed")
            .trim()
            .to_string()
    } else {
        lines.join(" ")
    };
    text.chars().take(ERROR_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A home and its agent's view of code-server, for one test.
    struct Bed {
        dir: tempfile::TempDir,
        cs: CodeServer,
    }

    fn bed(name: &str) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let id = format!("setup-test-{name}-{}", std::process::id());
        let cs = CodeServer::in_dir(dir.path(), &id);
        std::fs::create_dir_all(cs.workspace()).unwrap();
        Bed { dir, cs }
    }

    /// git with a committer identity of its own, in `dir`.
    fn git(dir: &Path, args: &[&str]) {
        let identity = [
            "-c",
            "user.name=Dev8 Test",
            "-c",
            "user.email=test@example.com",
        ];
        let status = std::process::Command::new("git")
            .args(identity)
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    /// A bare repository of `files` beside the home; its path is its URL.
    fn repository(bed: &Bed, name: &str, files: &[(&str, &str)]) -> String {
        let work = bed.dir.path().join(format!("{name}-work"));
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        for (path, text) in files {
            std::fs::write(work.join(path), text).unwrap();
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "first"]);
        let bare = bed.dir.path().join(format!("{name}.git"));
        git(
            bed.dir.path(),
            &[
                "clone",
                "-q",
                "--bare",
                &format!("{name}-work"),
                &format!("{name}.git"),
            ],
        );
        bare.to_string_lossy().into_owned()
    }

    fn dotfiles(url: String) -> Plan {
        Plan {
            dotfiles_url: Some(url),
            ..Plan::default()
        }
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(&path).unwrap_or_default()
    }

    /// The environment's processes, once the killed ones are gone.
    async fn left_over(id: &str) -> Vec<i32> {
        for _ in 0..50 {
            if procs::marked(id, &[]).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        procs::marked(id, &[])
    }

    #[test]
    fn the_budget_leaves_room_inside_the_shortest_deadline() {
        assert_eq!(SETUP_BUDGET, Duration::from_secs(6 * 60));
        assert!(SETUP_BUDGET.as_secs() + ROOM_AFTER_SETUP <= START_DEADLINE.num_seconds() as u64);
        assert_eq!(span(SETUP_BUDGET), "6 minutes");
        assert_eq!(span(Duration::from_secs(2)), "2 s");
    }

    #[tokio::test]
    async fn one_budget_ends_a_stalled_clone_and_the_rest_of_the_setup() {
        // A server that accepts and never answers: git would wait forever.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().collect();
            drop(held);
        });
        let b = bed("stall");
        let dots = repository(&b, "dots", &[("install.sh", "touch \"$HOME/ran\"\n")]);
        let plan = Plan {
            repository_url: Some(format!("http://127.0.0.1:{port}/app.git")),
            repository_ref: None,
            dotfiles_url: Some(dots),
        };
        let began = std::time::Instant::now();
        let outcome = run_once_within(&plan, &b.cs, |_| {}, Duration::from_secs(3)).await;
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(
            outcome.clone_error.as_deref(),
            Some("the setup took longer than 3 s; git clone was stopped")
        );
        assert_eq!(outcome.folder, None);
        // The budget is the whole setup's: the dotfiles do not get their own.
        assert!(
            outcome
                .dotfiles_error
                .as_deref()
                .unwrap()
                .contains("was not started"),
            "{outcome:?}"
        );
        assert!(!b.cs.home.join("ran").exists());
        assert!(read(b.cs.home.join(DOTFILES_LOG)).contains("took longer than 3 s"));
        assert!(
            left_over(&b.cs.environment_id).await.is_empty(),
            "git is gone"
        );
        assert!(!b.cs.workspace().join(".app.dev8-clone").exists());
        // The outcome is kept: the next start does nothing.
        assert_eq!(read_marker(&b.cs.home), Some(outcome));
    }

    #[tokio::test]
    async fn a_script_over_budget_is_stopped_with_everything_it_started() {
        let b = bed("tree");
        let script = "#!/bin/sh\necho started\n(sleep 4; touch \"$HOME/late\") &\nsleep 300\n";
        let url = repository(&b, "dots", &[("install.sh", script)]);
        let outcome = run_once_within(&dotfiles(url), &b.cs, |_| {}, Duration::from_secs(2)).await;
        assert_eq!(
            outcome.dotfiles_error.as_deref(),
            Some("the setup took longer than 2 s; install.sh was stopped")
        );
        assert_eq!(outcome.dotfiles_script.as_deref(), Some("install.sh"));
        assert!(left_over(&b.cs.environment_id).await.is_empty());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !b.cs.home.join("late").exists(),
            "a child outlived the budget"
        );
        assert_eq!(read(b.cs.home.join(DOTFILES_LOG)), "started\n");
    }

    #[tokio::test]
    async fn a_dropped_setup_kills_the_script_which_never_runs_again() {
        let b = bed("drop");
        let script = "echo run >> \"$HOME/runs\"\n(sleep 3; touch \"$HOME/late\") &\nsleep 300\n";
        let url = repository(&b, "dots", &[("install.sh", script)]);
        let plan = dotfiles(url);
        // A stop while the script runs drops the setup.
        let stopped = tokio::time::timeout(
            Duration::from_secs(2),
            run_once_within(&plan, &b.cs, |_| {}, Duration::from_secs(60)),
        )
        .await;
        assert!(stopped.is_err());
        assert!(left_over(&b.cs.environment_id).await.is_empty());
        // The next start finds it started and does not run it again.
        let outcome = run_once_within(&plan, &b.cs, |_| {}, Duration::from_secs(60)).await;
        assert_eq!(read(b.cs.home.join("runs")), "run\n");
        assert!(
            outcome.dotfiles_error.unwrap().contains("interrupted"),
            "the interruption is the outcome"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!b.cs.home.join("late").exists());
    }

    #[tokio::test]
    async fn scripts_run_by_their_own_interpreter() {
        let b = bed("bash");
        let script = "#!/bin/bash\nparts=(a b c)\nif [[ ${#parts[@]} == 3 ]]; then echo \"bash ${parts[1]}\"; fi\n";
        let url = repository(&b, "dots", &[("install.sh", script)]);
        let outcome = run_once_within(&dotfiles(url), &b.cs, |_| {}, SETUP_BUDGET).await;
        assert_eq!(outcome.dotfiles_error, None);
        assert_eq!(outcome.dotfiles_script.as_deref(), Some("install.sh"));
        assert_eq!(read(b.cs.home.join(DOTFILES_LOG)), "bash b\n");
        // Without a `#!` line, /bin/sh reads it.
        let b = bed("plain");
        let url = repository(&b, "dots", &[("install.sh", "echo \"plain $0\"\n")]);
        let outcome = run_once_within(&dotfiles(url), &b.cs, |_| {}, SETUP_BUDGET).await;
        assert_eq!(outcome.dotfiles_error, None);
        let log = read(b.cs.home.join(DOTFILES_LOG));
        assert!(
            log.starts_with("plain ") && log.ends_with("install.sh\n"),
            "{log}"
        );
    }

    #[tokio::test]
    async fn bootstrap_wins_over_setup_without_install() {
        let b = bed("order");
        let url = repository(
            &b,
            "dots",
            &[
                ("setup.sh", "touch \"$HOME/setup-ran\"\n"),
                ("bootstrap.sh", "touch \"$HOME/bootstrap-ran\"\n"),
            ],
        );
        let outcome = run_once_within(&dotfiles(url), &b.cs, |_| {}, SETUP_BUDGET).await;
        assert_eq!(outcome.dotfiles_script.as_deref(), Some("bootstrap.sh"));
        assert!(b.cs.home.join("bootstrap-ran").exists());
        assert!(!b.cs.home.join("setup-ran").exists());
    }

    #[tokio::test]
    async fn the_marker_is_never_written_through_a_planted_link() {
        let b = bed("link");
        let target = b.dir.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let script = format!(
            "echo run >> \"$HOME/runs\"\nrm -rf \"$HOME/.dev8\"\nln -s '{}' \"$HOME/.dev8\"\n",
            target.display()
        );
        let url = repository(&b, "dots", &[("install.sh", &script)]);
        let plan = dotfiles(url);
        let outcome = run_once_within(&plan, &b.cs, |_| {}, SETUP_BUDGET).await;
        assert_eq!(outcome.dotfiles_error, None, "{outcome:?}");
        assert!(write_marker(&b.cs.home, None, &outcome).is_err());
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            0,
            "target untouched"
        );
        // Nor is a planted link read; the next start sets up again but the
        // script, already started once, does not run twice.
        std::fs::write(target.join(MARKER_NAME), "{}").unwrap();
        assert_eq!(read_marker(&b.cs.home), None);
        let again = run_once_within(&plan, &b.cs, |_| {}, SETUP_BUDGET).await;
        assert_eq!(read(b.cs.home.join("runs")), "run\n");
        assert!(again.dotfiles_error.unwrap().contains("was not run"));
        assert_eq!(read(target.join(MARKER_NAME)), "{}");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_dotfiles_clone_failure_is_in_the_log() {
        let b = bed("gone");
        let gone = b.dir.path().join("gone.git").to_string_lossy().into_owned();
        // Whatever was in the log before is replaced, never written through.
        let elsewhere = b.dir.path().join("elsewhere.txt");
        std::fs::write(&elsewhere, "keep\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, b.cs.home.join(DOTFILES_LOG)).unwrap();
        let outcome = run_once_within(&dotfiles(gone), &b.cs, |_| {}, SETUP_BUDGET).await;
        let error = outcome.dotfiles_error.unwrap();
        assert!(error.starts_with("fatal:"), "{error}");
        assert_eq!(outcome.dotfiles_script, None);
        let log = b.cs.home.join(DOTFILES_LOG);
        assert!(!log.is_symlink());
        assert_eq!(
            read(log),
            format!("dev8: the dotfiles were not installed: {error}\n")
        );
        assert_eq!(read(elsewhere), "keep\n");
    }

    #[test]
    fn git_errors_keep_the_fatal_lines() {
        assert_eq!(
            git_error("Cloning into 'x'...\nfatal: repository 'https://h/x/' not found\n"),
            "fatal: repository 'https://h/x/' not found"
        );
        assert_eq!(git_error("something odd\n\n"), "something odd");
        assert_eq!(git_error(""), "git failed");
    }
}
