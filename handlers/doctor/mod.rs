//! `handler doctor`: an operator's preflight of an Azure deployment, run with
//! the operator's own Azure CLI sign-in (`az login`; tokens come from
//! `az account get-access-token`, through `azure_identity`'s Azure CLI
//! credential) and the deployment's app settings (`--settings`, the output of
//! `az functionapp config appsettings list`, else the environment). It prints
//! one line per check, each failure with its fix, and tells `main` whether
//! all passed. The checks and the ARM and Key Vault calls they make are in
//! `checks`; the permission matrix they hold the role assignments to is
//! docs/deploy.md's table (`matrix`).

pub mod checks;
pub mod matrix;

use crate::config::{DoctorArgs, settings_from_map};
use anyhow::Context;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail { problem: String, fix: String },
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Pass(detail.into()),
        }
    }

    pub fn fail(
        name: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Fail {
                problem: problem.into(),
                fix: fix.into(),
            },
        }
    }

    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Pass(_))
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Pass(detail) => write!(f, "ok    {}: {detail}", self.name),
            Outcome::Fail { problem, fix } => {
                write!(f, "FAIL  {}: {problem} -> fix: {fix}", self.name)
            }
        }
    }
}

/// App settings from `az functionapp config appsettings list -o json`
/// (`[{"name", "value", "slotSetting"}]`), or a plain `{"name": "value"}` object.
pub fn read_settings_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let pairs: Option<BTreeMap<String, String>> = match &json {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| {
                Some((
                    i.get("name")?.as_str()?.to_string(),
                    i.get("value")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string(),
                ))
            })
            .collect(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        _ => None,
    };
    pairs.with_context(|| {
        format!(
            "{}: expected the output of `az functionapp config appsettings list -o json`",
            path.display()
        )
    })
}

/// Run every check, print the report; `true` when all passed.
pub async fn run(args: DoctorArgs) -> anyhow::Result<bool> {
    let map = match &args.settings {
        Some(p) => read_settings_file(p)?,
        None => std::env::vars().collect(),
    };
    let settings = settings_from_map(&map).context("reading the app settings")?;
    let credential: Arc<dyn azure_core::credentials::TokenCredential> =
        azure_identity::AzureCliCredential::new(None)?;
    let report = checks::run_all(&settings, args.vault_url.as_deref(), credential).await;
    for check in &report {
        println!("{check}");
    }
    let failed = report.iter().filter(|c| !c.passed()).count();
    println!(
        "{} of {} checks passed{}",
        report.len() - failed,
        report.len(),
        if failed == 0 {
            ""
        } else {
            "; fix the FAIL lines and run `handler doctor` again"
        }
    );
    Ok(failed == 0)
}
