//! The control plane's side of the Blob snapshot store: every environment
//! in snapshot mode has ONE Blob container, `<prefix>-<environment id>`, in
//! the workspace storage account, and its agent reaches it only with a
//! short-lived service SAS for that container (`sr=c`), minted here with the
//! account key — which never leaves the control plane.
//!
//! * `grant` creates the container (idempotently) and mints the agent's
//!   SAS; the compute backend passes it as `agent_env::SNAPSHOT_URL` and
//!   `agent_env::SNAPSHOT_SAS` (a secret).
//! * `BlobAccount::mint` mints a fresh SAS without I/O: the renewal the
//!   answer to the agent's periodic report carries (`snapshotSas`) once
//!   the agent's SAS is past half its life (`needs_renewal`).
//! * `delete_container` removes an environment's container with it;
//!   `prune` removes what an agent left behind (`snapshot::prune_leftovers`).
//!
//! The agent's permissions are `rwdl` and no more: `r` (Get Blob, Get Blob
//! Properties: restore and verify), `w` (Put Blob: parts and the manifest;
//! `c` alone would refuse a retried Put whose first try landed), `d` (the
//! agent prunes to its newest two snapshots), `l` (List Blobs: find the
//! snapshots). No `a` (no append blobs), no tags, versions or
//! immutability. Container operations (create, delete) use an account SAS
//! (`ss=b`, `srt=c`, `sp=c` or `sp=d`) the control plane mints for itself,
//! for 15 minutes.

use crate::snapshot::blob::{self, BlobStore};
use crate::storage_sas::{AccountSas, ContainerSas, SasProtocol, sas_time};
use anyhow::{Context, anyhow};
use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// What the agent's SAS allows (see the module doc for why each).
pub const AGENT_PERMISSIONS: &str = "rwdl";
/// How long an agent's SAS is valid by default. Renewed after half of it
/// (`needs_renewal`), at the next periodic report (every minute), so an
/// agent whose reports stop for two hours still has a valid SAS.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(4 * 3600);
/// The default container-name prefix.
pub const DEFAULT_PREFIX: &str = "dev8";
/// How long the control plane's own account SAS for a container operation
/// lives: one request's worth, with room for a clock a few minutes behind
/// the storage service's.
const OPERATION_SAS: chrono::Duration = chrono::Duration::minutes(15);

/// The SAS an agent gets for its environment's container.
#[derive(Clone)]
pub struct SnapshotGrant {
    /// `<blob endpoint>/<prefix>-<environment id>`, no query.
    pub container_url: String,
    /// The query string without `?`.
    pub sas: SecretString,
    pub expires_on: DateTime<Utc>,
}

impl std::fmt::Debug for SnapshotGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotGrant")
            .field("container_url", &self.container_url)
            .field("sas", &"<redacted>")
            .field("expires_on", &self.expires_on)
            .finish()
    }
}

impl SnapshotGrant {
    /// The agent's variables: the URL (plain) and the SAS (secret).
    pub fn variables(&self) -> Vec<crate::agent_env::Variable> {
        vec![
            crate::agent_env::Variable {
                name: crate::agent_env::SNAPSHOT_URL.into(),
                value: self.container_url.clone(),
                secret: false,
            },
            crate::agent_env::Variable {
                name: crate::agent_env::SNAPSHOT_SAS.into(),
                value: self.sas.expose_secret().to_string(),
                secret: true,
            },
        ]
    }
}

/// The workspace storage account's Blob service, as the control plane
/// reaches it (with the key).
#[derive(Clone)]
pub struct BlobAccount {
    pub name: String,
    /// The account key, base64 (as `listKeys` gives it).
    pub key: SecretString,
    /// The Blob service's URL without a trailing `/`:
    /// `https://<name>.blob.core.windows.net`, or Azurite's
    /// `http://127.0.0.1:<port>/<name>`.
    pub endpoint: String,
    /// `spr` of every SAS: HTTPS only unless a setting says otherwise.
    pub protocol: SasProtocol,
    /// Containers are `<prefix>-<environment id>`.
    pub prefix: String,
    /// How long an agent's SAS is valid.
    pub lifetime: Duration,
}

impl std::fmt::Debug for BlobAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobAccount")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("prefix", &self.prefix)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl BlobAccount {
    /// An Azure account (`https://<name>.blob.core.windows.net`, HTTPS only,
    /// the default prefix and lifetime), with the key `listKeys` gave.
    pub fn azure(name: &str, key: SecretString) -> Self {
        BlobAccount {
            name: name.to_string(),
            key,
            endpoint: format!("https://{name}.blob.core.windows.net"),
            protocol: SasProtocol::Https,
            prefix: DEFAULT_PREFIX.to_string(),
            lifetime: DEFAULT_LIFETIME,
        }
    }

    /// Check what cannot work: an HTTP endpoint with an HTTPS-only SAS.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.endpoint.starts_with("http://") || self.protocol == SasProtocol::HttpsAndHttp,
            "the snapshot store {} is plain HTTP but its SAS allows HTTPS only (set DEV8_SNAPSHOT_SAS_PROTOCOL=https,http for an emulator)",
            self.endpoint
        );
        anyhow::ensure!(
            self.lifetime >= Duration::from_secs(10),
            "a snapshot SAS must live at least 10 seconds"
        );
        self.key_bytes().map(|_| ())
    }

    fn key_bytes(&self) -> anyhow::Result<Vec<u8>> {
        base64::engine::general_purpose::STANDARD
            .decode(self.key.expose_secret().trim())
            .map_err(|_| anyhow!("the snapshot storage account key is not base64"))
    }

    /// The container of an environment: `<prefix>-<id>` (Blob container
    /// names: 3–63 lower-case letters, digits and single hyphens).
    pub fn container(&self, environment_id: &str) -> anyhow::Result<String> {
        let name = format!("{}-{environment_id}", self.prefix);
        let ok = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.contains("--")
            && !name.starts_with('-')
            && !name.ends_with('-');
        anyhow::ensure!(ok, "{name:?} cannot name a Blob container");
        Ok(name)
    }

    /// The URL of an environment's container (no query).
    pub fn container_url(&self, environment_id: &str) -> anyhow::Result<String> {
        Ok(format!(
            "{}/{}",
            self.endpoint.trim_end_matches('/'),
            self.container(environment_id)?
        ))
    }

    /// A fresh agent SAS for an environment's container, valid for
    /// `lifetime` from `now`. No I/O.
    pub fn mint(&self, environment_id: &str, now: DateTime<Utc>) -> anyhow::Result<SnapshotGrant> {
        let container = self.container(environment_id)?;
        let lifetime = chrono::Duration::from_std(self.lifetime).context("SAS lifetime")?;
        // Whole seconds: what `se` carries is what the grant says.
        let expires_on = DateTime::parse_from_rfc3339(&sas_time(now + lifetime))
            .expect("sas_time is RFC 3339")
            .with_timezone(&Utc);
        let sas = ContainerSas {
            account: &self.name,
            container: &container,
            permissions: AGENT_PERMISSIONS,
            expiry: expires_on,
            protocol: self.protocol,
        }
        .sign(&self.key_bytes()?);
        Ok(SnapshotGrant {
            container_url: self.container_url(environment_id)?,
            sas: SecretString::from(sas),
            expires_on,
        })
    }

    /// The control plane's own account SAS for container operations.
    fn operation_sas(&self, permissions: &str, now: DateTime<Utc>) -> anyhow::Result<String> {
        Ok(AccountSas {
            account: &self.name,
            permissions,
            services: "b",
            resource_types: "c",
            expiry: now + OPERATION_SAS,
            protocol: self.protocol,
        }
        .sign(&self.key_bytes()?))
    }

    /// The environment's container as a store, with a fresh SAS of the
    /// agent's permissions (what the control plane prunes with).
    pub fn store(&self, environment_id: &str, now: DateTime<Utc>) -> anyhow::Result<BlobStore> {
        let g = self.mint(environment_id, now)?;
        BlobStore::new(&g.container_url, g.sas)
    }
}

/// Where the control plane gets the account from when it renews a SAS
/// (`Platform::snapshot_grants`): a fixed account (local compute's
/// setting), or the workspace account with a key read when needed (ACI).
#[async_trait]
pub trait GrantAuthority: Send + Sync {
    async fn account(&self) -> anyhow::Result<BlobAccount>;
}

#[async_trait]
impl GrantAuthority for BlobAccount {
    async fn account(&self) -> anyhow::Result<BlobAccount> {
        Ok(self.clone())
    }
}

/// Is a SAS expiring at `expires_on` past half its life at `now`? (Then
/// the report's answer carries a new one.)
pub fn needs_renewal(expires_on: DateTime<Utc>, lifetime: Duration, now: DateTime<Utc>) -> bool {
    let half = chrono::Duration::from_std(lifetime / 2).unwrap_or(chrono::Duration::MAX);
    expires_on - now <= half
}

fn container_request(
    account: &BlobAccount,
    method: reqwest::Method,
    environment_id: &str,
    sas: &str,
) -> anyhow::Result<(reqwest::Client, reqwest::Method, url::Url)> {
    let mut url = url::Url::parse(&account.container_url(environment_id)?)
        .context("the snapshot container's URL")?;
    url.set_query(Some(&format!("restype=container&{sas}")));
    Ok((blob::http_client(), method, url))
}

/// Create the environment's container if it does not exist yet, then mint
/// its agent SAS. Idempotent: an existing container is fine.
pub async fn grant(
    account: &BlobAccount,
    environment_id: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<SnapshotGrant> {
    account.check()?;
    let sas = account.operation_sas("c", now)?;
    let (http, method, url) =
        container_request(account, reqwest::Method::PUT, environment_id, &sas)?;
    let what = "creating the snapshot container";
    let r = blob::send(|| http.request(method.clone(), url.clone()), what).await?;
    match r.status() {
        StatusCode::CREATED | StatusCode::CONFLICT => {}
        _ => return Err(blob::refused(what, &r)),
    }
    account.mint(environment_id, now)
}

/// Delete the environment's container and every snapshot in it. Absent
/// (already deleted, or never made) is fine, so a redelivered delete is.
pub async fn delete_container(
    account: &BlobAccount,
    environment_id: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    account.check()?;
    let sas = account.operation_sas("d", now)?;
    let (http, method, url) =
        container_request(account, reqwest::Method::DELETE, environment_id, &sas)?;
    let what = "deleting the snapshot container";
    let r = blob::send(|| http.request(method.clone(), url.clone()), what).await?;
    match r.status() {
        StatusCode::ACCEPTED | StatusCode::NOT_FOUND => Ok(()),
        // Being deleted already (a redelivered delete right after the first).
        StatusCode::CONFLICT => Ok(()),
        _ => Err(blob::refused(what, &r)),
    }
}

/// Remove what the agent left behind in the environment's container (see
/// `snapshot::prune_leftovers`), at most `budget` objects.
pub async fn prune(
    account: &BlobAccount,
    environment_id: &str,
    now: DateTime<Utc>,
    budget: usize,
) -> anyhow::Result<usize> {
    account.check()?;
    let store = account.store(environment_id, now)?;
    crate::snapshot::prune_leftovers(&store, now, budget).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage_sas::tests::{DEV_KEY, at};

    fn account() -> BlobAccount {
        BlobAccount::azure("devstoreaccount1", SecretString::from(DEV_KEY))
    }

    #[test]
    fn a_grant_is_for_one_container_with_the_agents_permissions() {
        let g = account()
            .mint("01jd3ksz0000000000000000ab", at("2030-01-01T00:00:00.700Z"))
            .unwrap();
        assert_eq!(
            g.container_url,
            "https://devstoreaccount1.blob.core.windows.net/dev8-01jd3ksz0000000000000000ab"
        );
        assert_eq!(g.expires_on, at("2030-01-01T04:00:00Z"));
        let p: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(g.sas.expose_secret().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            (p["sr"].as_str(), p["sp"].as_str(), p["spr"].as_str()),
            ("c", "rwdl", "https")
        );
        assert_eq!(p["se"], "2030-01-01T04:00:00Z");
        assert!(!format!("{g:?}").contains(&p["sig"]));
        let vars = g.variables();
        assert!(
            vars.iter()
                .any(|v| v.name == crate::agent_env::SNAPSHOT_SAS && v.secret)
        );
        assert!(!format!("{vars:?}").contains(&p["sig"]));
    }

    #[test]
    fn container_names_follow_the_blob_rules() {
        let a = account();
        assert!(a.container("01jd3ksz0000000000000000ab").is_ok());
        assert!(a.container("Upper").is_err());
        assert!(a.container("a_b").is_err());
        assert!(a.container(&"x".repeat(60)).is_err());
        let mut http = account();
        http.endpoint = "http://127.0.0.1:10000/devstoreaccount1".into();
        assert!(
            http.check().is_err(),
            "plain HTTP needs the protocol setting"
        );
        http.protocol = SasProtocol::HttpsAndHttp;
        assert!(http.check().is_ok());
    }

    #[test]
    fn a_sas_is_renewed_past_half_its_life() {
        let life = Duration::from_secs(4 * 3600);
        let now = at("2030-01-01T00:00:00Z");
        assert!(!needs_renewal(at("2030-01-01T03:00:00Z"), life, now));
        assert!(needs_renewal(at("2030-01-01T02:00:00Z"), life, now));
        assert!(needs_renewal(at("2029-12-31T23:00:00Z"), life, now));
    }
}
