//! Tidy check: every environment variable the control plane reads is set by
//! the infrastructure (`infra/modules/functionapp.bicep` app settings), or is
//! named below with the reason it is not. The Bicep CLI cannot run here, so
//! this reads the Bicep text.

use std::collections::BTreeSet;
use std::path::Path;

/// Settings the Function App deliberately leaves unset, and why.
pub(crate) const NOT_SET_IN_AZURE: &[(&str, &str)] = &[
    (
        "DEV8_CODE_SERVER",
        "local compute only; ACI images carry code-server",
    ),
    (
        "DEV8_LOCAL_SHARED_USER",
        "local compute only; ACI runs each environment in its own container",
    ),
    (
        "DEV8_TEST_ALLOW_LOOPBACK_GIT",
        "tests only; refused unless compute is local on loopback",
    ),
    (
        "DEV8_TEST_IDLE_MINUTE_SECONDS",
        "tests only; refused unless compute is local on loopback",
    ),
    (
        "DEV8_LOCAL_HOME_MODE",
        "local compute only; on ACI DEV8_ACI_LOCAL_DISK_GB decides each environment's home mode",
    ),
    (
        "DEV8_LOCAL_SNAPSHOT_BLOB_ENDPOINT",
        "local compute only; ACI uses the workspace account",
    ),
    (
        "DEV8_LOCAL_SNAPSHOT_BLOB_ACCOUNT",
        "local compute only; ACI uses the workspace account",
    ),
    (
        "DEV8_LOCAL_SNAPSHOT_BLOB_KEY",
        "local compute only; ACI reads the workspace account's key with listKeys",
    ),
    (
        "DEV8_SNAPSHOT_SAS_PROTOCOL",
        "the default (https) is what Azure needs; https,http is for Azurite only",
    ),
    (
        "DEV8_SNAPSHOT_SAS_LIFETIME_SECONDS",
        "optional; the default (4 h) is meant for Azure",
    ),
    (
        "DEV8_STATIC_DIR",
        "serve only; the Static Web App serves the dashboard",
    ),
    (
        "DEV8_SWEEP_INTERVAL_SECONDS",
        "serve only; Functions uses DEV8_SWEEP_SCHEDULE",
    ),
    (
        "DEV8_METRICS_TOKEN",
        "serve only; Functions has no /metrics (metrics go to Application Insights)",
    ),
    (
        "DEV8_IDLE_WARNING_MINUTES",
        "optional; unset keeps the default lead (5 minutes or a third of the idle timeout)",
    ),
    (
        "COSMOS_KEY",
        "emulators only; Azure uses the managed identity",
    ),
    (
        "AzureWebJobsStorage",
        "a connection string for local emulators; Azure uses the __ identity settings",
    ),
    (
        "AzureWebJobsStorage__blobServiceUri",
        "derived by the host from __accountName",
    ),
];

fn app_settings() -> BTreeSet<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/modules/functionapp.bicep"),
    )
    .expect("infra/modules/functionapp.bicep");
    text.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("{ name: '")?;
            Some(rest.split('\'').next()?.to_string())
        })
        .collect()
}

#[test]
fn every_setting_the_binary_reads_is_set_by_infra() {
    let set = app_settings();
    let exempt: BTreeSet<&str> = NOT_SET_IN_AZURE.iter().map(|(n, _)| *n).collect();
    let read = dev8::config::setting_names();
    assert!(read.len() > 20, "settings found: {read:?}");
    let missing: Vec<&String> = read
        .iter()
        .filter(|n| !set.contains(*n) && !exempt.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "settings read by the binary but not set in infra/modules/functionapp.bicep: {missing:?}"
    );
}

#[test]
fn secrets_come_from_key_vault() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/modules/functionapp.bicep"),
    )
    .unwrap();
    for secret in [
        "DEV8_SIGNING_KEYS",
        "DEV8_SECRETS_KEY",
        "DEV8_SETUP_CODE",
        "DEV8_GITHUB_CLIENT_SECRET",
        "DEV8_OIDC_CLIENT_SECRET",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("name: '{secret}'")))
            .unwrap_or_else(|| panic!("{secret} is not set"));
        assert!(
            line.contains("kvRef("),
            "{secret} must be a Key Vault reference: {line}"
        );
    }
}
