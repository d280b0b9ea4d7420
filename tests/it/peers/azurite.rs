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
