//! Where a new password's strength is estimated (`validation::password_strength`,
//! zxcvbn). zxcvbn builds its dictionaries — hash maps over its frequency
//! lists — on first use and keeps them for the life of the process: about
//! 9 MB resident in `handler serve` after the first sign-up
//! (docs/performance.md). `handler serve` and `handler functions` therefore
//! estimate in a short-lived child, `handler password-strength`, which
//! reads `{"password","context"}` on its standard input (never on its
//! command line or in its environment) and answers `{"error": null | "…"}`
//! on its standard output; its memory goes with it. A child that cannot run
//! or answers nonsense is not a reason to skip the check: it falls back to
//! estimating here, with a warning. Library users (tests, benches) estimate
//! in-process by default.

use crate::domain::validation;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The subcommand the child runs.
pub const SUBCOMMAND: &str = "password-strength";
/// The longest a child may take (zxcvbn on a 128-character password, plus
/// building its dictionaries, is well under a second).
const CHILD_TIMEOUT: Duration = Duration::from_secs(10);
/// The most the child may answer.
const ANSWER_MAX: u64 = 4096;

/// Where the estimate runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Estimator {
    /// In this process (the dictionaries stay).
    #[default]
    InProcess,
    /// In a child: this executable, run with `SUBCOMMAND`.
    Child(PathBuf),
}

#[derive(Serialize, Deserialize)]
struct Question {
    password: String,
    context: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    error: Option<String>,
}

/// The verdict on `password` for this person (`context`: their email and
/// name): `Err` with the reason it is too easy to guess.
pub async fn verdict(
    estimator: &Estimator,
    password: &str,
    context: &[&str],
) -> Result<(), String> {
    match estimator {
        Estimator::InProcess => validation::password_strength(password, context),
        Estimator::Child(exe) => match in_child(exe, password, context).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the password-strength child failed; estimating here");
                validation::password_strength(password, context)
            }
        },
    }
}

async fn in_child(
    exe: &std::path::Path,
    password: &str,
    context: &[&str],
) -> anyhow::Result<Result<(), String>> {
    let question = serde_json::to_vec(&Question {
        password: password.to_string(),
        context: context.iter().map(|c| c.to_string()).collect(),
    })?;
    let mut child = tokio::process::Command::new(exe)
        .arg(SUBCOMMAND)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let run = async {
        stdin.write_all(&question).await?;
        drop(stdin);
        let mut out = Vec::new();
        (&mut stdout).take(ANSWER_MAX).read_to_end(&mut out).await?;
        let status = child.wait().await?;
        anyhow::ensure!(status.success(), "it exited with {status}");
        let answer: Answer = serde_json::from_slice(&out)?;
        Ok(answer.error.map_or(Ok(()), Err))
    };
    tokio::time::timeout(CHILD_TIMEOUT, run)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} s", CHILD_TIMEOUT.as_secs()))?
}

/// `handler password-strength`: one question on `input`, its answer on `output`.
pub fn child_main(input: impl Read, mut output: impl Write) -> anyhow::Result<()> {
    let q: Question = serde_json::from_reader(input.take(64 * 1024))?;
    let context: Vec<&str> = q.context.iter().map(String::as_str).collect();
    let answer = Answer {
        error: validation::password_strength(&q.password, &context).err(),
    };
    serde_json::to_writer(&mut output, &answer)?;
    output.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(password: &str, context: &[&str]) -> Option<String> {
        let q = serde_json::to_vec(&Question {
            password: password.into(),
            context: context.iter().map(|c| c.to_string()).collect(),
        })
        .unwrap();
        let mut out = Vec::new();
        child_main(&q[..], &mut out).unwrap();
        serde_json::from_slice::<Answer>(&out).unwrap().error
    }

    #[test]
    fn the_child_answers_what_the_estimate_says() {
        assert!(ask("correct horse battery staple", &["ada@example.com"]).is_none());
        let weak = ask("password12345", &[]).expect("too easy");
        assert!(weak.starts_with("is too easy to guess"), "{weak}");
        // The person's own details count against it.
        assert!(ask("adalovelace1815", &["adalovelace1815@example.com"]).is_some());
    }

    #[tokio::test]
    async fn a_child_that_cannot_run_falls_back_to_estimating_here() {
        let gone = Estimator::Child("/nonexistent/handler".into());
        assert!(verdict(&gone, "password12345", &[]).await.is_err());
        assert!(
            verdict(&gone, "correct horse battery staple", &[])
                .await
                .is_ok()
        );
    }
}
