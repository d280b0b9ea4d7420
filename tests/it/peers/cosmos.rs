//! The Cosmos-compatible server (`@vercel/cosmosdb-server`, patched, on
//! loopback; `scripts/peers.sh start`). Tests that need it are full tier and
//! fail, never skip, when it is not there. Each call of `cosmos_config` names
//! a fresh database so tests never collide.

use dev8::store::{CosmosConfig, CosmosStore, Store};
use secrecy::SecretString;
use std::sync::Arc;

/// The Cosmos emulator's well-known public key (not a secret).
pub const EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

/// Settings the Cosmos tests need from the environment (what
/// `scripts/peers.sh env` prints). The SDK reads them from the process
/// environment only, and tests may not set variables (no `unsafe`).
const REQUIRED_ENV: [(&str, &str); 3] = [
    // Without it the SDK asks the instance-metadata address (off-loopback).
    ("COSMOS_DISABLE_IMDS", "1"),
    // The Cosmos-compatible server speaks HTTP/1.1 and text JSON only.
    ("AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED", "false"),
    ("AZURE_COSMOS_BINARY_ENCODING_ENABLED", "false"),
];

/// The loopback endpoint of the Cosmos-compatible server, checked to be up.
pub fn cosmos_endpoint() -> String {
    let hint = "start it and load its settings with: eval \"$(scripts/peers.sh start)\"";
    for (name, want) in REQUIRED_ENV {
        let got = std::env::var(name).unwrap_or_default();
        assert!(
            got.eq_ignore_ascii_case(want),
            "Cosmos tests need {name}={want} in the environment (got {got:?}); {hint}"
        );
    }
    let endpoint =
        std::env::var("COSMOS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8081".into());
    let url = reqwest::Url::parse(&endpoint).expect("COSMOS_ENDPOINT is a URL");
    assert_eq!(
        url.host_str(),
        Some("127.0.0.1"),
        "tests only talk to loopback; COSMOS_ENDPOINT={endpoint}"
    );
    let addr = format!("127.0.0.1:{}", url.port_or_known_default().unwrap_or(8081));
    if std::net::TcpStream::connect_timeout(
        &addr.parse().expect("socket address"),
        std::time::Duration::from_secs(2),
    )
    .is_err()
    {
        panic!("the Cosmos-compatible server is not answering at {endpoint}; {hint}");
    }
    endpoint
}

/// Settings for a fresh database on the local server, created at connect.
pub fn cosmos_config() -> CosmosConfig {
    CosmosConfig {
        endpoint: cosmos_endpoint(),
        key: Some(SecretString::from(
            std::env::var("COSMOS_KEY").unwrap_or_else(|_| EMULATOR_KEY.into()),
        )),
        database: format!("t-{}", ulid::Ulid::new().to_string().to_lowercase()),
        identity: Default::default(),
        create_containers: true,
    }
}

pub async fn cosmos_store_for(config: &CosmosConfig) -> Arc<dyn Store> {
    Arc::new(
        CosmosStore::connect(config)
            .await
            .unwrap_or_else(|e| panic!("connecting to Cosmos: {e:#}")),
    )
}

pub async fn cosmos_store() -> Arc<dyn Store> {
    cosmos_store_for(&cosmos_config()).await
}
