//! The Azurite peer (Microsoft's Storage emulator, started on loopback by
//! `scripts/peers.sh start`). Tests that need it fail, never skip, when it
//! is missing.

use dev8::queue::{StorageQueue, StorageSettings};
use secrecy::SecretString;
use std::time::Duration;

const HOW: &str =
    "run `eval \"$(scripts/peers.sh start)\"` (it starts Azurite and exports AzureWebJobsStorage)";

/// The `AzureWebJobsStorage` connection string of the running Azurite.
pub fn connection_string() -> String {
    match std::env::var("AzureWebJobsStorage") {
        Ok(s) if !s.trim().is_empty() => s,
        _ => panic!("AzureWebJobsStorage is not set: {HOW}"),
    }
}

/// Storage settings pointing at Azurite.
pub fn storage_settings() -> StorageSettings {
    StorageSettings {
        connection_string: Some(SecretString::from(connection_string())),
        ..Default::default()
    }
}

/// Azurite's Blob service (`AZURITE_BLOB_PORT`) as the workspace account
/// of the snapshot store: the well-known development account, over plain
/// HTTP (so SAS allow `https,http`), SAS valid for `lifetime`.
pub fn blob_account(lifetime: Duration) -> dev8::snapshot_grant::BlobAccount {
    let port = match std::env::var("AZURITE_BLOB_PORT") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => panic!("AZURITE_BLOB_PORT is not set: {HOW}"),
    };
    let name = "devstoreaccount1";
    dev8::snapshot_grant::BlobAccount {
        name: name.into(),
        key: SecretString::from(DEV_KEY),
        endpoint: format!("http://127.0.0.1:{port}/{name}"),
        protocol: dev8::storage_sas::SasProtocol::HttpsAndHttp,
        prefix: dev8::snapshot_grant::DEFAULT_PREFIX.into(),
        lifetime,
    }
}

/// Azurite's well-known development key (public, not a secret).
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A queue name no other test uses (Storage: 3-63 lower-case letters, digits, dashes).
pub fn unique_queue(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// Connect to a fresh queue (and its poison queue) on Azurite.
pub async fn storage_queue(name: &str) -> StorageQueue {
    match tokio::time::timeout(
        Duration::from_secs(20),
        StorageQueue::connect(&storage_settings(), name, &Default::default()),
    )
    .await
    {
        Ok(Ok(q)) => q,
        Ok(Err(e)) => panic!("Azurite refused queue {name}: {e:#}; {HOW}"),
        Err(_) => panic!("Azurite did not answer within 20 s; {HOW}"),
    }
}
