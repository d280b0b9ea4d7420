//! The first start's setup, before code-server opens: clone the
//! environment's repository into the workspace and check out its ref, then
//! clone the account's dotfiles to `~/.dotfiles` and run the first of
//! `install.sh`, `bootstrap.sh`, `setup.sh` that exists. Everything runs as
//! the IDE's user (never root) with the same cleared environment code-server
//! gets, so nothing of the agent's is visible to what a repository runs.
//!
//! "First start" is known durably by a marker in the persistent home
//! (`~/.dev8/setup.json`), written only once the setup has ended, whether it
//! succeeded or failed; it also keeps the outcome (the folder VS Code opens,
//! the clone error the periodic report carries). Later starts read it and
//! never clone again. Clones go to a temporary folder renamed into place, so
//! an interrupted start retries cleanly and never touches a finished clone.

use super::code_server::CodeServer;
use crate::domain::{folder_name, steps};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The marker, relative to the home.
pub const MARKER_FILE: &str = ".dev8/setup.json";
/// The dotfiles install script's output, relative to the home.
pub const DOTFILES_LOG: &str = ".dotfiles.log";
/// Where the dotfiles are cloned, relative to the home.
pub const DOTFILES_DIR: &str = ".dotfiles";
/// The scripts looked for in the dotfiles, in this order; the first found runs.
pub const INSTALL_SCRIPTS: [&str; 3] = ["install.sh", "bootstrap.sh", "setup.sh"];
/// The longest a clone may take (within the 15 minutes a create may last).
const CLONE_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest the dotfiles' install script may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest error kept from git's output.
const ERROR_MAX: usize = 400;

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
    /// The dotfiles script that ran, if any.
    #[serde(default)]
    pub dotfiles_script: Option<String>,
    /// Why the dotfiles could not be installed.
    #[serde(default)]
    pub dotfiles_error: Option<String>,
}

/// Run the setup unless the marker says it ran; `step` is told what is
/// happening (the readiness answer names it). Returns the outcome, old or new.
pub async fn run_once(plan: &Plan, cs: &CodeServer, step: impl Fn(&'static str)) -> Outcome {
    let marker = cs.home.join(MARKER_FILE);
    if let Some(done) = std::fs::read(&marker)
        .ok()
        .and_then(|b| serde_json::from_slice::<Outcome>(&b).ok())
    {
        return done;
    }
    let mut outcome = Outcome::default();
    let git = Git { cs };
    if let Some(url) = &plan.repository_url {
        step(steps::CLONING_REPOSITORY);
        let folder = folder_name(url);
        match git
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
        match git.install_dotfiles(url).await {
            Ok(script) => outcome.dotfiles_script = script,
            Err(e) => {
                tracing::warn!(error = %e, "the dotfiles were not installed");
                outcome.dotfiles_error = Some(e);
            }
        }
    }
    if let Err(e) = write_marker(&marker, &outcome) {
        tracing::warn!(error = %e, "could not write the setup marker; the next start sets up again");
    }
    outcome
}

fn write_marker(marker: &Path, outcome: &Outcome) -> std::io::Result<()> {
    if let Some(dir) = marker.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = marker.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(outcome)?)?;
    std::fs::rename(&tmp, marker)
}

/// git (and the dotfiles script) as the IDE's user.
struct Git<'a> {
    cs: &'a CodeServer,
}

impl Git<'_> {
    fn command(&self, program: &str, cwd: &Path) -> tokio::process::Command {
        let mut cmd = self.cs.user_command(program);
        // Never wait for a password nobody can type.
        cmd.env("GIT_TERMINAL_PROMPT", "0").current_dir(cwd);
        cmd
    }

    /// Run git with `args` in `cwd`; the error is git's own last words.
    async fn git(&self, cwd: &Path, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let mut cmd = self.command("git", cwd);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let run = async {
            let out = cmd
                .output()
                .await
                .map_err(|e| format!("could not run git: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(git_error(&String::from_utf8_lossy(&out.stderr)))
            }
        };
        tokio::time::timeout(CLONE_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "git took longer than {} s",
                    CLONE_TIMEOUT.as_secs()
                ))
            })
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
    /// `~/.dotfiles.log`). `Ok(Some(script))`: that script ran and succeeded.
    async fn install_dotfiles(&self, url: &str) -> Result<Option<String>, String> {
        let dir = self.cs.home.join(DOTFILES_DIR);
        if let Some(e) = self.clone_into(url, &dir, None).await? {
            return Err(e);
        }
        let Some(script) = INSTALL_SCRIPTS.iter().find(|s| dir.join(s).is_file()) else {
            return Ok(None);
        };
        let log_path = self.cs.home.join(DOTFILES_LOG);
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        if let Some(user) = self.cs.user {
            let _ = user.own(&log_path);
        }
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = self.command("/bin/sh", &dir);
        cmd.arg(dir.join(script)).stdout(log).stderr(err);
        let run = async {
            let status = cmd
                .status()
                .await
                .map_err(|e| format!("could not run {script}: {e}"))?;
            if status.success() {
                Ok(Some(script.to_string()))
            } else {
                Err(format!(
                    "{script} failed ({status}); its output is in ~/{DOTFILES_LOG}"
                ))
            }
        };
        tokio::time::timeout(INSTALL_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{script} took longer than {} s",
                    INSTALL_TIMEOUT.as_secs()
                ))
            })
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
