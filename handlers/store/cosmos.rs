//! Cosmos DB (NoSQL API) adapter for the `Store` port, on the official SDK
//! (`azure_data_cosmos`). Four containers, each laid out for its access paths
//! (docs/cosmos.md says why):
//!
//! * `users` by `/id`: user documents, plus one email-index document per
//!   account (`id = "email-" + sha256(email)`) so sign-in by email is two point
//!   reads and a duplicate email is a 409 on creating the index document;
//! * `sessions` by `/id`: a session check is one point read;
//! * `environments` by `/userId`, unique key `/name` (unique per user);
//! * `documents` by `/id`, TTL on: quota counters, rate-limit windows, markers,
//!   and one name-index document per environment (`id = "envname-" +
//!   sha256(userId, lower-cased name)`): names are unique per user regardless
//!   of case, which the container's unique key on `/name` (fixed at creation)
//!   cannot say; a duplicate is a 409 on creating the index document.
//!
//! ETags are Cosmos `_etag`s; a stale one is 412 -> `PreconditionFailed`.
//! Throttling (429, honouring `x-ms-retry-after-ms`) and 503 are retried a
//! bounded number of times; every request's charge is logged at debug level.

use super::update::{Attempt, Retries, retry_races};
use super::{
    AuditCursor, CONFLICT_EMAIL, CONFLICT_ENVIRONMENT_NAME, CONFLICT_IDENTITY, Etag, Store,
    StoreError, StoreResult, Versioned, name_key,
};
use crate::domain::{AuditRecord, Environment, Identity, Session, Status, StoredSecret, User};
use anyhow::Context;
use async_trait::async_trait;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::models::{
    ContainerProperties, ItemResponse, TimeToLive, UniqueKey, UniqueKeyPolicy,
};
use azure_data_cosmos::options::{
    ItemReadOptions, ItemWriteOptions, OperationOptionsBuilder, Precondition,
    ThrottlingRetryOptionsBuilder,
};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosError, FeedScope, Query, RoutingStrategy,
};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub const USERS: &str = "users";
pub const SESSIONS: &str = "sessions";
pub const ENVIRONMENTS: &str = "environments";
pub const DOCUMENTS: &str = "documents";
pub const IDENTITIES: &str = "identities";
pub const AUDIT: &str = "audit";
pub const SECRETS: &str = "secrets";

/// The SDK's own throttle retries (it waits what `x-ms-retry-after-ms` asks),
/// per attempt of ours: at most this many, within this much waiting.
const SDK_THROTTLE_RETRIES: u32 = 5;
const SDK_THROTTLE_WAIT: Duration = Duration::from_secs(10);
/// Retries after a 429 or 503 reaches the adapter, before the error is returned.
const MAX_RETRIES: u32 = 3;
/// The longest single wait between retries, whatever the server asks for.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// How long a session document outlives its expiry before Cosmos removes it.
const SESSION_GRACE_SECS: i64 = 7 * 24 * 3600;

/// How to reach the account.
#[derive(Clone)]
pub struct CosmosConfig {
    /// `https://<account>.documents.azure.com/` (or `http://127.0.0.1:<port>` for an emulator).
    pub endpoint: String,
    /// Account key (emulators). `None`: the control plane's `identity`.
    pub key: Option<SecretString>,
    /// Who the control plane is when there is no key (`azure_http`).
    pub identity: crate::azure_http::Identity,
    pub database: String,
    /// Create the database and containers when missing (key auth only).
    pub create_containers: bool,
}

impl std::fmt::Debug for CosmosConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosConfig")
            .field("endpoint", &self.endpoint)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("identity", &self.identity)
            .field("create_containers", &self.create_containers)
            .finish()
    }
}

/// The Cosmos store. Cheap to clone.
#[derive(Clone)]
pub struct CosmosStore {
    inner: Arc<Containers>,
}

struct Containers {
    users: ContainerClient,
    sessions: ContainerClient,
    environments: ContainerClient,
    documents: ContainerClient,
    identities: ContainerClient,
    audit: ContainerClient,
    secrets: ContainerClient,
}

/// The container definitions, shared by start-up creation and `infra/`.
pub fn container_definitions() -> Vec<ContainerProperties> {
    vec![
        ContainerProperties::new(USERS, "/id".into()),
        ContainerProperties::new(SESSIONS, "/id".into()).with_default_ttl(TimeToLive::NoDefault),
        ContainerProperties::new(ENVIRONMENTS, "/userId".into()).with_unique_key_policy(
            UniqueKeyPolicy::default().with_unique_key(UniqueKey::default().with_path("/name")),
        ),
        ContainerProperties::new(DOCUMENTS, "/id".into()).with_default_ttl(TimeToLive::NoDefault),
        ContainerProperties::new(IDENTITIES, "/userId".into()),
        ContainerProperties::new(AUDIT, "/userId".into()),
        ContainerProperties::new(SECRETS, "/userId".into()),
    ]
}

impl CosmosStore {
    /// Connect to the account and open the four containers (creating them
    /// first when `create_containers` is set, which requires key auth).
    pub async fn connect(cfg: &CosmosConfig) -> anyhow::Result<Self> {
        let endpoint: AccountEndpoint = cfg
            .endpoint
            .parse()
            .with_context(|| format!("COSMOS_ENDPOINT {} is not a valid URL", cfg.endpoint))?;
        let account = match &cfg.key {
            Some(key) => {
                AccountReference::with_authentication_key(endpoint, key.expose_secret().to_string())
            }
            None => {
                anyhow::ensure!(
                    !cfg.create_containers,
                    "creating Cosmos containers at start needs key auth (COSMOS_KEY); in Azure the infra creates them"
                );
                let options = crate::azure_http::client_options(Default::default())?;
                let credential = cfg
                    .identity
                    .credential(false, options)
                    .context("creating the Azure credential for Cosmos DB")?;
                AccountReference::with_credential(endpoint, credential)
            }
        };
        let throttling = ThrottlingRetryOptionsBuilder::new()
            .with_max_retry_count(SDK_THROTTLE_RETRIES)
            .with_max_retry_wait_time(SDK_THROTTLE_WAIT)
            .build();
        let operation = OperationOptionsBuilder::new()
            .with_throttling_retry_options(throttling)
            .build();
        let client = CosmosClient::builder()
            .with_default_operation_options(operation)
            .build(account, RoutingStrategy::PreferredRegions(Vec::new()))
            .await
            .context("building the Cosmos DB client")?;
        if cfg.create_containers {
            create_missing(&client, &cfg.database).await?;
        }
        let db = client.database_client(cfg.database.as_str());
        let open = |name: &'static str| {
            let db = &db;
            async move {
                db.container_client(name, None)
                    .await
                    .with_context(|| format!("opening Cosmos container {}/{name}", cfg.database))
            }
        };
        Ok(CosmosStore {
            inner: Arc::new(Containers {
                users: open(USERS).await?,
                sessions: open(SESSIONS).await?,
                environments: open(ENVIRONMENTS).await?,
                documents: open(DOCUMENTS).await?,
                identities: open(IDENTITIES).await?,
                audit: open(AUDIT).await?,
                secrets: open(SECRETS).await?,
            }),
        })
    }
}

async fn create_missing(client: &CosmosClient, database: &str) -> anyhow::Result<()> {
    match client.create_database(database, None).await {
        Ok(_) => tracing::info!(database, "created Cosmos database"),
        Err(e) if e.status().is_conflict() => {}
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("creating Cosmos database {database}"))
            );
        }
    }
    let db = client.database_client(database);
    for props in container_definitions() {
        let name = props.id.to_string();
        match db.create_container(props, None).await {
            Ok(_) => tracing::info!(database, container = %name, "created Cosmos container"),
            Err(e) if e.status().is_conflict() => {}
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("creating Cosmos container {database}/{name}")));
            }
        }
    }
    Ok(())
}

// ---- helpers ----------------------------------------------------------------

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn unavailable(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::unavailable(e)
}

fn cosmos_unavailable(op: &str, e: CosmosError) -> StoreError {
    StoreError::Unavailable(anyhow::Error::new(e).context(format!("cosmos {op}")))
}

/// The email-index document id: a hash, so no email is an id (ids may not
/// hold `/`, `\`, `?` or `#`, and an id is visible in logs and URLs).
fn email_doc_id(email: &str) -> String {
    let digest = Sha256::digest(email.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("email-{hex}")
}

/// The (issuer, subject) index document id, kept in `users` (partition `/id`)
/// like the email index: unique keys only hold within one partition.
fn identity_doc_id(issuer: &str, subject: &str) -> String {
    let digest = Sha256::digest(format!("{issuer}\0{subject}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("identity-{hex}")
}

/// The environment-name index document id (in `documents`): one per user and
/// lower-cased name (`store::name_key`), hashed like the email index.
fn name_doc_id(user_id: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{user_id}\0{}", name_key(name)).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("envname-{hex}")
}

/// An audit record as stored: `atKey` is the time as fixed-width RFC 3339,
/// so string order is time order for the paging query.
fn audit_item(record: &AuditRecord) -> StoreResult<Value> {
    let mut item = serde_json::to_value(record).map_err(unavailable)?;
    item["atKey"] = json!(ts(record.at));
    Ok(item)
}

/// A document key as a Cosmos id: characters ids may not hold (and `%`) are
/// percent-encoded, so the mapping is one-to-one.
fn doc_id(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '/' | '\\' | '?' | '#' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn etag_of(resp: &ItemResponse) -> StoreResult<Etag> {
    resp.headers()
        .etag()
        .map(|e| e.to_string())
        .ok_or_else(|| unavailable(anyhow::anyhow!("Cosmos response without an ETag")))
}

fn log_charge(op: &str, resp: &ItemResponse) {
    if let Some(c) = resp.headers().request_charge() {
        tracing::debug!(op, request_charge = c.value(), "cosmos");
    }
}

/// A create-or-take-over loop that kept losing is a conflict on `what`.
fn contended_as<T>(r: StoreResult<T>, what: &str) -> StoreResult<T> {
    match r {
        Err(StoreError::Contended) => Err(StoreError::Conflict(what.to_string())),
        other => other,
    }
}

fn if_match(etag: &Etag) -> ItemWriteOptions {
    ItemWriteOptions::default().with_precondition(Precondition::IfMatch(etag.clone().into()))
}

/// Run a Cosmos call, retrying throttling (429, waiting as long as the server
/// asks) and 503 a bounded number of times with backoff.
async fn retrying<T, F, Fut>(op: &str, mut call: F) -> Result<T, CosmosError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CosmosError>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e)
                if attempt < MAX_RETRIES
                    && (e.status().is_throttled() || e.status().is_service_unavailable()) =>
            {
                let asked = e
                    .response()
                    .and_then(|r| r.headers().retry_after_ms)
                    .map(Duration::from_millis);
                let wait = asked
                    .unwrap_or(Duration::from_millis(100 << attempt))
                    .min(MAX_RETRY_WAIT);
                tracing::debug!(op, status = %u16::from(e.status().status_code()), wait_ms = wait.as_millis() as u64, "cosmos retry");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A point read; `None` on 404.
async fn read_item(
    c: &ContainerClient,
    op: &str,
    pk: &str,
    id: &str,
) -> StoreResult<Option<ItemResponse>> {
    match retrying(op, || {
        c.read_item(pk.to_string(), id, None::<ItemReadOptions>)
    })
    .await
    {
        Ok(r) => {
            log_charge(op, &r);
            Ok(Some(r))
        }
        Err(e) if e.status().is_not_found() => Ok(None),
        Err(e) => Err(cosmos_unavailable(op, e)),
    }
}

fn model<T: DeserializeOwned>(r: ItemResponse) -> StoreResult<T> {
    r.into_model::<T>()
        .map_err(|e| unavailable(anyhow::Error::new(e).context("decoding a Cosmos item")))
}

/// Run a query to the end, summing the request charge over its pages.
async fn query<T: DeserializeOwned + Send + 'static>(
    c: &ContainerClient,
    op: &str,
    q: Query,
    scope: FeedScope,
) -> StoreResult<Vec<T>> {
    let result = retrying(op, || {
        let (q, scope) = (q.clone(), scope.clone());
        async move {
            let mut pages = c.query_items::<T>(q, scope, None).await?.into_pages();
            let (mut items, mut charge) = (Vec::new(), 0.0);
            while let Some(page) = pages.try_next().await? {
                charge += page
                    .headers()
                    .request_charge()
                    .map(|c| c.value())
                    .unwrap_or(0.0);
                items.extend(page.into_items());
            }
            Ok((items, charge))
        }
    })
    .await;
    match result {
        Ok((items, charge)) => {
            tracing::debug!(op, request_charge = charge, items = items.len(), "cosmos");
            Ok(items)
        }
        Err(e) => Err(cosmos_unavailable(op, e)),
    }
}

fn param(q: Query, name: &str, value: impl serde::Serialize) -> StoreResult<Query> {
    q.with_parameter(name, value)
        .map_err(|e| unavailable(anyhow::Error::new(e)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityIndex {
    user_id: String,
    identity_id: String,
}

/// An item read by a query, with its ETag.
#[derive(Deserialize)]
struct WithEtag<T> {
    #[serde(flatten)]
    value: T,
    #[serde(rename = "_etag")]
    etag: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmailIndex {
    user_id: String,
}

/// What a name-index document holds (`value`, like every document).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameIndex {
    environment_id: String,
    /// When it was claimed (`ts`): a claim younger than `NAME_CLAIM_GRACE`
    /// may belong to an insert or rename still in flight, so it is never
    /// taken over.
    #[serde(default)]
    claimed_at: Option<String>,
}

/// How long a name claim is honoured even though its environment does not
/// (yet) have the name: far longer than an insert or a rename takes.
const NAME_CLAIM_GRACE: chrono::Duration = chrono::Duration::seconds(60);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DocItem {
    value: Value,
    #[serde(default)]
    expires_at: Option<String>,
}

impl DocItem {
    /// Past its expiry (real Cosmos hides such items by TTL; emulators may not).
    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at
            .as_deref()
            .is_some_and(|e| e <= ts(now).as_str())
    }
}

#[derive(Deserialize)]
struct IdEtag {
    id: String,
    #[serde(rename = "_etag")]
    etag: String,
}

fn session_item(s: &Session) -> StoreResult<Value> {
    let mut v = serde_json::to_value(s).map_err(unavailable)?;
    let ttl = (s.expires_at - Utc::now()).num_seconds().max(0) + SESSION_GRACE_SECS;
    v["ttl"] = json!(ttl);
    Ok(v)
}

fn doc_item(key: &str, value: &Value, expires_at: Option<DateTime<Utc>>) -> Value {
    let mut item = json!({ "id": doc_id(key), "key": key, "value": value });
    if let Some(exp) = expires_at {
        item["expiresAt"] = json!(ts(exp));
        // Cosmos TTL is whole seconds from the last write, at least 1.
        let ttl = ((exp - Utc::now()).num_milliseconds() + 999) / 1000;
        item["ttl"] = json!(ttl.max(1));
    }
    item
}

impl CosmosStore {
    async fn email_owner(&self, email: &str) -> StoreResult<Option<(String, Etag)>> {
        let id = email_doc_id(email);
        match read_item(&self.inner.users, "read email index", &id, &id).await? {
            None => Ok(None),
            Some(r) => {
                let etag = etag_of(&r)?;
                let idx: EmailIndex = model(r)?;
                Ok(Some((idx.user_id, etag)))
            }
        }
    }

    /// Claim `email` for `user_id`: create the index document, or take over
    /// one left behind by an insert that never created its user.
    async fn claim_email(&self, email: &str, user_id: &str) -> StoreResult<()> {
        let id = email_doc_id(email);
        let index = json!({ "id": id, "type": "email", "userId": user_id });
        let mut state = (self, email, user_id, &id, &index);
        let claimed = retry_races(
            Retries(5),
            &mut state,
            |&mut (s, email, user_id, id, index)| {
                Box::pin(async move {
                    let c = &s.inner.users;
                    match retrying("create email index", || {
                        c.create_item(id.clone(), id, index, None)
                    })
                    .await
                    {
                        Ok(r) => {
                            log_charge("create email index", &r);
                            return Ok(Attempt::Done(()));
                        }
                        Err(e) if e.status().is_conflict() => {}
                        Err(e) => return Err(cosmos_unavailable("create email index", e)),
                    }
                    let Some((owner, etag)) = s.email_owner(email).await? else {
                        return Ok(Attempt::Raced);
                    };
                    if owner == user_id || s.user(&owner).await?.is_some() {
                        return Err(StoreError::Conflict(CONFLICT_EMAIL.into()));
                    }
                    // An orphan: its user was never written. Take it over conditionally.
                    match retrying("claim email index", || {
                        c.replace_item(id.clone(), id, index, Some(if_match(&etag)))
                    })
                    .await
                    {
                        Ok(_) => Ok(Attempt::Done(())),
                        Err(e)
                            if e.status().is_precondition_failed() || e.status().is_not_found() =>
                        {
                            Ok(Attempt::Raced)
                        }
                        Err(e) => Err(cosmos_unavailable("claim email index", e)),
                    }
                })
            },
        )
        .await;
        contended_as(claimed, CONFLICT_EMAIL)
    }

    async fn release_email(&self, email: &str, user_id: &str) -> StoreResult<()> {
        let id = email_doc_id(email);
        if let Some((owner, etag)) = self.email_owner(email).await?
            && owner == user_id
        {
            match retrying("delete email index", || {
                self.inner
                    .users
                    .delete_item(id.clone(), &id, Some(if_match(&etag)))
            })
            .await
            {
                Ok(_) => {}
                Err(e) if e.status().is_not_found() || e.status().is_precondition_failed() => {}
                Err(e) => return Err(cosmos_unavailable("delete email index", e)),
            }
        }
        Ok(())
    }

    /// The environment holding `name` (case aside) in the user's name index.
    async fn name_owner(&self, user_id: &str, name: &str) -> StoreResult<Option<(String, Etag)>> {
        Ok(self
            .name_index(user_id, name)
            .await?
            .map(|(idx, etag)| (idx.environment_id, etag)))
    }

    async fn name_index(
        &self,
        user_id: &str,
        name: &str,
    ) -> StoreResult<Option<(NameIndex, Etag)>> {
        let id = name_doc_id(user_id, name);
        match read_item(&self.inner.documents, "read name index", &id, &id).await? {
            None => Ok(None),
            Some(r) => {
                let etag = etag_of(&r)?;
                let item: DocItem = model(r)?;
                let idx: NameIndex = serde_json::from_value(item.value).map_err(unavailable)?;
                Ok(Some((idx, etag)))
            }
        }
    }

    /// Whether another of the user's environments is called `env.name`,
    /// case aside (one partition's query; also finds look-alikes written
    /// before the name index existed).
    async fn name_in_use(&self, env: &Environment) -> StoreResult<bool> {
        let key = name_key(&env.name);
        Ok(self
            .environments(&env.user_id)
            .await?
            .iter()
            .any(|e| e.value.id != env.id && name_key(&e.value.name) == key))
    }

    /// Claim `env.name` (case aside) for `env`: create the index document,
    /// or take over one whose environment no longer has that name (deleted
    /// or renamed without giving it back). `Conflict(CONFLICT_ENVIRONMENT_NAME)`
    /// when another environment holds it.
    async fn claim_name(&self, env: &Environment) -> StoreResult<()> {
        let id = name_doc_id(&env.user_id, &env.name);
        let index = json!({
            "id": id,
            "type": "environmentName",
            "value": {
                "userId": env.user_id,
                "environmentId": env.id,
                "claimedAt": ts(Utc::now()),
            },
        });
        let mut state = (self, env, &id, &index);
        let claimed = retry_races(Retries(5), &mut state, |&mut (s, env, id, index)| {
            Box::pin(async move {
                let c = &s.inner.documents;
                match retrying("create name index", || {
                    c.create_item(id.clone(), id, index, None)
                })
                .await
                {
                    Ok(r) => {
                        log_charge("create name index", &r);
                        return Ok(Attempt::Done(()));
                    }
                    Err(e) if e.status().is_conflict() => {}
                    Err(e) => return Err(cosmos_unavailable("create name index", e)),
                }
                let Some((held, etag)) = s.name_index(&env.user_id, &env.name).await? else {
                    return Ok(Attempt::Raced);
                };
                if held.environment_id == env.id {
                    return Ok(Attempt::Done(()));
                }
                let recent = held
                    .claimed_at
                    .as_deref()
                    .is_some_and(|at| at > ts(Utc::now() - NAME_CLAIM_GRACE).as_str());
                let holder = s.environment(&env.user_id, &held.environment_id).await?;
                if recent || holder.is_some_and(|h| name_key(&h.value.name) == name_key(&env.name))
                {
                    return Err(StoreError::Conflict(CONFLICT_ENVIRONMENT_NAME.into()));
                }
                // Stale: its environment is gone or was renamed (and the claim
                // is old enough not to be an insert in flight). Take it over.
                match retrying("claim name index", || {
                    c.replace_item(id.clone(), id, index, Some(if_match(&etag)))
                })
                .await
                {
                    Ok(_) => Ok(Attempt::Done(())),
                    Err(e) if e.status().is_precondition_failed() || e.status().is_not_found() => {
                        Ok(Attempt::Raced)
                    }
                    Err(e) => Err(cosmos_unavailable("claim name index", e)),
                }
            })
        })
        .await;
        contended_as(claimed, CONFLICT_ENVIRONMENT_NAME)?;
        if self.name_in_use(env).await? {
            self.release_name(&env.user_id, &env.name, &env.id).await?;
            return Err(StoreError::Conflict(CONFLICT_ENVIRONMENT_NAME.into()));
        }
        Ok(())
    }

    /// Give `name` back if `environment_id` holds it. Best effort is enough
    /// for correctness: `claim_name` takes over an index left behind.
    async fn release_name(
        &self,
        user_id: &str,
        name: &str,
        environment_id: &str,
    ) -> StoreResult<()> {
        let id = name_doc_id(user_id, name);
        if let Some((owner, etag)) = self.name_owner(user_id, name).await?
            && owner == environment_id
        {
            match retrying("delete name index", || {
                self.inner
                    .documents
                    .delete_item(id.clone(), &id, Some(if_match(&etag)))
            })
            .await
            {
                Ok(_) => {}
                Err(e) if e.status().is_not_found() || e.status().is_precondition_failed() => {}
                Err(e) => return Err(cosmos_unavailable("delete name index", e)),
            }
        }
        Ok(())
    }

    async fn replace_environment_item(
        &self,
        env: &Environment,
        if_match_etag: &Etag,
    ) -> StoreResult<Etag> {
        let c = &self.inner.environments;
        match retrying("replace environment", || {
            c.replace_item(
                env.user_id.clone(),
                &env.id,
                env,
                Some(if_match(if_match_etag)),
            )
        })
        .await
        {
            Ok(r) => {
                log_charge("replace environment", &r);
                etag_of(&r)
            }
            Err(e) if e.status().is_precondition_failed() => Err(StoreError::PreconditionFailed),
            Err(e) if e.status().is_not_found() => Err(StoreError::NotFound),
            Err(e) if e.status().is_conflict() => {
                Err(StoreError::Conflict(CONFLICT_ENVIRONMENT_NAME.into()))
            }
            Err(e) => Err(cosmos_unavailable("replace environment", e)),
        }
    }

    /// Create a document, taking over an expired one with the same key.
    async fn create_document(&self, key: &str, item: &Value) -> StoreResult<Etag> {
        let id = doc_id(key);
        let mut state = (self, key, &id, item);
        let created = retry_races(Retries(5), &mut state, |&mut (s, key, id, item)| {
            Box::pin(async move {
                let c = &s.inner.documents;
                match retrying("create document", || {
                    c.create_item(id.clone(), id, item, None)
                })
                .await
                {
                    Ok(r) => {
                        log_charge("create document", &r);
                        return etag_of(&r).map(Attempt::Done);
                    }
                    Err(e) if e.status().is_conflict() => {}
                    Err(e) => return Err(cosmos_unavailable("create document", e)),
                }
                let Some(r) = read_item(c, "read document", id, id).await? else {
                    return Ok(Attempt::Raced);
                };
                let etag = etag_of(&r)?;
                let existing: DocItem = model(r)?;
                if !existing.expired(Utc::now()) {
                    return Err(StoreError::Conflict(key.to_string()));
                }
                match retrying("replace expired document", || {
                    c.replace_item(id.clone(), id, item, Some(if_match(&etag)))
                })
                .await
                {
                    Ok(r) => etag_of(&r).map(Attempt::Done),
                    Err(e) if e.status().is_precondition_failed() || e.status().is_not_found() => {
                        Ok(Attempt::Raced)
                    }
                    Err(e) => Err(cosmos_unavailable("replace expired document", e)),
                }
            })
        })
        .await;
        contended_as(created, key)
    }

    async fn set_revoked(&self, id: &str) -> StoreResult<()> {
        let mut state = (self, id);
        retry_races(Retries(10), &mut state, |&mut (s, id)| {
            Box::pin(async move {
                let c = &s.inner.sessions;
                let Some(r) = read_item(c, "read session", id, id).await? else {
                    return Ok(Attempt::Done(()));
                };
                let etag = etag_of(&r)?;
                let mut session: Session = model(r)?;
                if session.revoked {
                    return Ok(Attempt::Done(()));
                }
                session.revoked = true;
                let item = session_item(&session)?;
                match retrying("revoke session", || {
                    c.replace_item(id.to_string(), id, &item, Some(if_match(&etag)))
                })
                .await
                {
                    Ok(r) => {
                        log_charge("revoke session", &r);
                        Ok(Attempt::Done(()))
                    }
                    Err(e) if e.status().is_precondition_failed() => Ok(Attempt::Raced),
                    Err(e) if e.status().is_not_found() => Ok(Attempt::Done(())),
                    Err(e) => Err(cosmos_unavailable("revoke session", e)),
                }
            })
        })
        .await
    }
}

/// A secret's document id: the user and the name (ids are unique per
/// partition on Cosmos; the user id keeps them unique on emulators that
/// compare ids across partitions too). Names are `[A-Z0-9_]`, user ids
/// lower-case ULIDs: nothing an id may not hold.
fn secret_doc_id(user_id: &str, name: &str) -> String {
    format!("{user_id}.{name}")
}

#[async_trait]
impl Store for CosmosStore {
    async fn insert_identity(&self, identity: &Identity) -> StoreResult<()> {
        let users = &self.inner.users;
        let idx_id = identity_doc_id(&identity.issuer, &identity.subject);
        let index = json!({"id": idx_id, "type": "identity", "userId": identity.user_id, "identityId": identity.id});
        // Claim (issuer, subject) first; an index whose identity was never
        // written (a crash between the two writes) is taken over.
        let mut state = (self, &idx_id, &index);
        let claimed = retry_races(Retries(5), &mut state, |&mut (s, idx_id, index)| {
            Box::pin(async move {
                let users = &s.inner.users;
                match retrying("create identity index", || {
                    users.create_item(idx_id.clone(), idx_id, index, None)
                })
                .await
                {
                    Ok(r) => {
                        log_charge("create identity index", &r);
                        return Ok(Attempt::Done(()));
                    }
                    Err(e) if e.status().is_conflict() => {}
                    Err(e) => return Err(cosmos_unavailable("create identity index", e)),
                }
                let Some(r) = read_item(users, "read identity index", idx_id, idx_id).await? else {
                    return Ok(Attempt::Raced);
                };
                let etag = etag_of(&r)?;
                let held: IdentityIndex = model(r)?;
                let live = read_item(
                    &s.inner.identities,
                    "read identity",
                    &held.user_id,
                    &held.identity_id,
                )
                .await?;
                if live.is_some() {
                    return Err(StoreError::Conflict(CONFLICT_IDENTITY.into()));
                }
                match retrying("claim identity index", || {
                    users.replace_item(idx_id.clone(), idx_id, index, Some(if_match(&etag)))
                })
                .await
                {
                    Ok(_) => Ok(Attempt::Done(())),
                    Err(e) if e.status().is_precondition_failed() || e.status().is_not_found() => {
                        Ok(Attempt::Raced)
                    }
                    Err(e) => Err(cosmos_unavailable("claim identity index", e)),
                }
            })
        })
        .await;
        contended_as(claimed, CONFLICT_IDENTITY)?;
        let c = &self.inner.identities;
        match retrying("create identity", || {
            c.create_item(identity.user_id.clone(), &identity.id, identity, None)
        })
        .await
        {
            Ok(r) => {
                log_charge("create identity", &r);
                Ok(())
            }
            Err(e) => {
                retrying("delete identity index", || {
                    users.delete_item(idx_id.clone(), &idx_id, None)
                })
                .await
                .ok();
                Err(if e.status().is_conflict() {
                    StoreError::Conflict(CONFLICT_IDENTITY.into())
                } else {
                    cosmos_unavailable("create identity", e)
                })
            }
        }
    }

    async fn identity_by_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<Identity>> {
        let idx_id = identity_doc_id(issuer, subject);
        let Some(r) = read_item(&self.inner.users, "read identity index", &idx_id, &idx_id).await?
        else {
            return Ok(None);
        };
        let held: IdentityIndex = model(r)?;
        let found = read_item(
            &self.inner.identities,
            "read identity",
            &held.user_id,
            &held.identity_id,
        )
        .await?;
        let identity: Option<Identity> = found.map(model).transpose()?;
        Ok(identity.filter(|i| i.issuer == issuer && i.subject == subject))
    }

    async fn identities(&self, user_id: &str) -> StoreResult<Vec<Identity>> {
        let q = param(
            Query::from("SELECT * FROM c WHERE c.userId = @u"),
            "@u",
            user_id,
        )?;
        let mut items: Vec<Identity> = query(
            &self.inner.identities,
            "list identities",
            q,
            FeedScope::partition(user_id.to_string()),
        )
        .await?;
        items.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(items)
    }

    async fn delete_identity(&self, user_id: &str, id: &str) -> StoreResult<()> {
        let c = &self.inner.identities;
        let Some(r) = read_item(c, "read identity", user_id, id).await? else {
            return Err(StoreError::NotFound);
        };
        let identity: Identity = model(r)?;
        match retrying("delete identity", || {
            c.delete_item(user_id.to_string(), id, None)
        })
        .await
        {
            Ok(r) => log_charge("delete identity", &r),
            Err(e) if e.status().is_not_found() => return Err(StoreError::NotFound),
            Err(e) => return Err(cosmos_unavailable("delete identity", e)),
        }
        let idx_id = identity_doc_id(&identity.issuer, &identity.subject);
        match retrying("delete identity index", || {
            self.inner.users.delete_item(idx_id.clone(), &idx_id, None)
        })
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status().is_not_found() => Ok(()),
            Err(e) => Err(cosmos_unavailable("delete identity index", e)),
        }
    }

    async fn put_secret(&self, secret: &StoredSecret) -> StoreResult<()> {
        let id = secret_doc_id(&secret.user_id, &secret.name);
        let mut item = serde_json::to_value(secret).map_err(StoreError::unavailable)?;
        item["id"] = Value::String(id.clone());
        let c = &self.inner.secrets;
        match retrying("upsert secret", || {
            c.upsert_item(secret.user_id.clone(), &id, &item, None)
        })
        .await
        {
            Ok(r) => {
                log_charge("upsert secret", &r);
                Ok(())
            }
            Err(e) => Err(cosmos_unavailable("upsert secret", e)),
        }
    }

    async fn secrets(&self, user_id: &str) -> StoreResult<Vec<StoredSecret>> {
        let q = param(
            Query::from("SELECT * FROM c WHERE c.userId = @u"),
            "@u",
            user_id,
        )?;
        let mut items: Vec<StoredSecret> = query(
            &self.inner.secrets,
            "list secrets",
            q,
            FeedScope::partition(user_id.to_string()),
        )
        .await?;
        items.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(items)
    }

    async fn delete_secret(&self, user_id: &str, name: &str) -> StoreResult<()> {
        let id = secret_doc_id(user_id, name);
        let c = &self.inner.secrets;
        match retrying("delete secret", || {
            c.delete_item(user_id.to_string(), &id, None)
        })
        .await
        {
            Ok(r) => {
                log_charge("delete secret", &r);
                Ok(())
            }
            Err(e) if e.status().is_not_found() => Err(StoreError::NotFound),
            Err(e) => Err(cosmos_unavailable("delete secret", e)),
        }
    }

    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        let item = audit_item(record)?;
        let c = &self.inner.audit;
        match retrying("create audit record", || {
            c.create_item(record.user_id.clone(), &record.id, &item, None)
        })
        .await
        {
            Ok(r) => {
                log_charge("create audit record", &r);
                Ok(())
            }
            // A redelivered job writes the same deterministic id: already recorded.
            Err(e) if e.status().is_conflict() => Ok(()),
            Err(e) => Err(cosmos_unavailable("create audit record", e)),
        }
    }

    async fn audit_records(
        &self,
        user_id: &str,
        environment_id: Option<&str>,
        before: Option<&AuditCursor>,
        limit: usize,
    ) -> StoreResult<Vec<AuditRecord>> {
        // One partition (`/userId`); an environment's history adds an
        // equality filter on `environmentId`, served by the default
        // (consistent, all paths) indexing policy.
        let mut sql = String::from("SELECT * FROM c WHERE c.userId = @u");
        if environment_id.is_some() {
            sql.push_str(" AND c.environmentId = @e");
        }
        if before.is_some() {
            sql.push_str(" AND (c.atKey < @at OR (c.atKey = @at AND c.id < @id))");
        }
        let mut q = param(Query::from(sql), "@u", user_id)?;
        if let Some(e) = environment_id {
            q = param(q, "@e", e)?;
        }
        if let Some(b) = before {
            q = param(param(q, "@at", ts(b.at))?, "@id", b.id.clone())?;
        }
        // One partition; ordered here rather than by ORDER BY, which the
        // Cosmos-compatible test server does not implement for two keys.
        let mut items: Vec<AuditRecord> = query(
            &self.inner.audit,
            "list audit records",
            q,
            FeedScope::partition(user_id.to_string()),
        )
        .await?;
        items.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
        items.truncate(limit);
        Ok(items)
    }

    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        self.claim_email(&user.email, &user.id).await?;
        let mut item = serde_json::to_value(user).map_err(unavailable)?;
        item["type"] = json!("user");
        let c = &self.inner.users;
        match retrying("create user", || {
            c.create_item(user.id.clone(), &user.id, &item, None)
        })
        .await
        {
            Ok(r) => log_charge("create user", &r),
            Err(e) => {
                // Give the email back (only if this insert holds it).
                let conflict = e.status().is_conflict();
                self.release_email(&user.email, &user.id).await.ok();
                return Err(if conflict {
                    StoreError::Conflict("id".into())
                } else {
                    cosmos_unavailable("create user", e)
                });
            }
        }
        // A concurrent insert may have taken the index over as an orphan
        // between our two writes; then this user must not exist.
        match self.email_owner(&user.email).await? {
            Some((owner, _)) if owner == user.id => Ok(()),
            _ => {
                retrying("delete user", || {
                    c.delete_item(user.id.clone(), &user.id, None)
                })
                .await
                .ok();
                Err(StoreError::Conflict(CONFLICT_EMAIL.into()))
            }
        }
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        match read_item(&self.inner.users, "read user", id, id).await? {
            Some(r) => {
                let v: Value = model(r)?;
                if v.get("type").and_then(Value::as_str) != Some("user") {
                    return Ok(None);
                }
                serde_json::from_value(v).map(Some).map_err(unavailable)
            }
            None => Ok(None),
        }
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let Some((owner, _)) = self.email_owner(email).await? else {
            return Ok(None);
        };
        Ok(self.user(&owner).await?.filter(|u| u.email == email))
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        let c = &self.inner.users;
        let Some(r) = read_item(c, "read user", &user.id, &user.id).await? else {
            return Err(StoreError::NotFound);
        };
        let etag = etag_of(&r)?;
        let stored: Value = model(r)?;
        if stored.get("type").and_then(Value::as_str) != Some("user") {
            return Err(StoreError::NotFound);
        }
        if stored.get("email").and_then(Value::as_str) != Some(user.email.as_str()) {
            return Err(StoreError::Conflict(CONFLICT_EMAIL.into()));
        }
        let mut item = serde_json::to_value(user).map_err(unavailable)?;
        item["type"] = json!("user");
        match retrying("replace user", || {
            c.replace_item(user.id.clone(), &user.id, &item, Some(if_match(&etag)))
        })
        .await
        {
            Ok(r) => {
                log_charge("replace user", &r);
                Ok(())
            }
            Err(e) if e.status().is_not_found() => Err(StoreError::NotFound),
            Err(e) if e.status().is_precondition_failed() => Err(StoreError::PreconditionFailed),
            Err(e) => Err(cosmos_unavailable("replace user", e)),
        }
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let Some(user) = self.user(id).await? else {
            return Ok(());
        };
        match retrying("delete user", || {
            self.inner.users.delete_item(id.to_string(), id, None)
        })
        .await
        {
            Ok(r) => log_charge("delete user", &r),
            Err(e) if e.status().is_not_found() => {}
            Err(e) => return Err(cosmos_unavailable("delete user", e)),
        }
        self.release_email(&user.email, id).await
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        let mut state = (self, user_id, hash);
        retry_races(Retries::RECORD, &mut state, |&mut (s, id, hash)| {
            Box::pin(async move {
                let c = &s.inner.users;
                let Some(r) = read_item(c, "read user", id, id).await? else {
                    return Err(StoreError::NotFound);
                };
                let etag = etag_of(&r)?;
                let mut user: Value = model(r)?;
                if user.get("type").and_then(Value::as_str) != Some("user") {
                    return Err(StoreError::NotFound);
                }
                user["passwordHash"] = json!(hash);
                match retrying("set password hash", || {
                    c.replace_item(id.to_string(), id, &user, Some(if_match(&etag)))
                })
                .await
                {
                    Ok(r) => {
                        log_charge("set password hash", &r);
                        Ok(Attempt::Done(()))
                    }
                    Err(e) if e.status().is_precondition_failed() => Ok(Attempt::Raced),
                    Err(e) if e.status().is_not_found() => Err(StoreError::NotFound),
                    Err(e) => Err(cosmos_unavailable("set password hash", e)),
                }
            })
        })
        .await
    }

    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        let item = session_item(session)?;
        let c = &self.inner.sessions;
        match retrying("create session", || {
            c.create_item(session.id.clone(), &session.id, &item, None)
        })
        .await
        {
            Ok(r) => {
                log_charge("create session", &r);
                Ok(())
            }
            Err(e) if e.status().is_conflict() => Err(StoreError::Conflict("session".into())),
            Err(e) => Err(cosmos_unavailable("create session", e)),
        }
    }

    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        read_item(&self.inner.sessions, "read session", id, id)
            .await?
            .map(model)
            .transpose()
    }

    async fn revoke_session(&self, id: &str) -> StoreResult<()> {
        self.set_revoked(id).await
    }

    async fn revoke_user_sessions(&self, user_id: &str, keep: Option<&str>) -> StoreResult<()> {
        let q = param(
            Query::from("SELECT c.id, c._etag FROM c WHERE c.userId = @u AND NOT c.revoked"),
            "@u",
            user_id,
        )?;
        let ids: Vec<IdEtag> = query(
            &self.inner.sessions,
            "query user sessions",
            q,
            FeedScope::full_container(),
        )
        .await?;
        for s in ids.iter().filter(|s| Some(s.id.as_str()) != keep) {
            self.set_revoked(&s.id).await?;
        }
        Ok(())
    }

    async fn insert_environment(&self, env: &Environment) -> StoreResult<Etag> {
        let c = &self.inner.environments;
        if read_item(c, "read environment", &env.user_id, &env.id)
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict("id".into()));
        }
        self.claim_name(env).await?;
        match retrying("create environment", || {
            c.create_item(env.user_id.clone(), &env.id, env, None)
        })
        .await
        {
            Ok(r) => {
                log_charge("create environment", &r);
                etag_of(&r)
            }
            Err(e) => {
                // Give the name back: this environment was not written.
                self.release_name(&env.user_id, &env.name, &env.id)
                    .await
                    .ok();
                if e.status().is_conflict() {
                    // A duplicate id (written since the read) or a duplicate
                    // exact name (the container's unique key).
                    let id_taken = read_item(c, "read environment", &env.user_id, &env.id)
                        .await?
                        .is_some();
                    return Err(StoreError::Conflict(if id_taken {
                        "id".into()
                    } else {
                        CONFLICT_ENVIRONMENT_NAME.into()
                    }));
                }
                Err(cosmos_unavailable("create environment", e))
            }
        }
    }

    async fn environment(
        &self,
        user_id: &str,
        id: &str,
    ) -> StoreResult<Option<Versioned<Environment>>> {
        match read_item(&self.inner.environments, "read environment", user_id, id).await? {
            None => Ok(None),
            Some(r) => {
                let etag = etag_of(&r)?;
                let env: Environment = model(r)?;
                Ok(Some(Versioned { value: env, etag }))
            }
        }
    }

    async fn environments(&self, user_id: &str) -> StoreResult<Vec<Versioned<Environment>>> {
        // Scoped to the partition, and filtered by the partition key too: some
        // emulators ignore the partition-key header when filtering.
        let q = param(
            Query::from("SELECT * FROM c WHERE c.userId = @u"),
            "@u",
            user_id,
        )?;
        let items: Vec<WithEtag<Environment>> = query(
            &self.inner.environments,
            "list environments",
            q,
            FeedScope::partition(user_id.to_string()),
        )
        .await?;
        let mut envs: Vec<Versioned<Environment>> = items
            .into_iter()
            .map(|i| Versioned {
                value: i.value,
                etag: i.etag,
            })
            .collect();
        // Sorted here (a per-user list is small), the same order as SQLite;
        // ORDER BY on two fields would need a composite index.
        envs.sort_by(|a, b| {
            (b.value.last_activity_at, b.value.created_at, &b.value.id).cmp(&(
                a.value.last_activity_at,
                a.value.created_at,
                &a.value.id,
            ))
        });
        Ok(envs)
    }

    async fn replace_environment(
        &self,
        env: &Environment,
        if_match_etag: &Etag,
    ) -> StoreResult<Etag> {
        // The common case, a write that keeps the name, costs one point read
        // of the name index. Otherwise the stored record says whether this is
        // a rename (claim the new name, then give the old one back) or an
        // environment from before the index (index it if no look-alike has).
        let mut renamed_from = None;
        let indexed = self
            .name_owner(&env.user_id, &env.name)
            .await?
            .is_some_and(|(owner, _)| owner == env.id);
        if !indexed {
            let Some(stored) = self.environment(&env.user_id, &env.id).await? else {
                return Err(StoreError::NotFound);
            };
            if stored.value.name == env.name {
                match self.claim_name(env).await {
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            } else {
                self.claim_name(env).await?;
                renamed_from = Some(stored.value.name);
            }
        }
        let result = self.replace_environment_item(env, if_match_etag).await;
        if let Some(old) = renamed_from {
            let (keep, give_back) = if result.is_ok() {
                (&env.name, old)
            } else {
                (&old, env.name.clone())
            };
            if name_key(keep) != name_key(&give_back) {
                self.release_name(&env.user_id, &give_back, &env.id)
                    .await
                    .ok();
            }
        }
        result
    }

    async fn delete_environment(
        &self,
        user_id: &str,
        id: &str,
        if_match_etag: &Etag,
    ) -> StoreResult<()> {
        let c = &self.inner.environments;
        let name = self.environment(user_id, id).await?.map(|e| e.value.name);
        match retrying("delete environment", || {
            c.delete_item(user_id.to_string(), id, Some(if_match(if_match_etag)))
        })
        .await
        {
            Ok(r) => {
                log_charge("delete environment", &r);
                if let Some(name) = name {
                    // Best effort: a claim takes over an index left behind.
                    self.release_name(user_id, &name, id).await.ok();
                }
                Ok(())
            }
            Err(e) if e.status().is_precondition_failed() => Err(StoreError::PreconditionFailed),
            Err(e) if e.status().is_not_found() => Err(StoreError::NotFound),
            Err(e) => Err(cosmos_unavailable("delete environment", e)),
        }
    }

    async fn active_environments(&self) -> StoreResult<Vec<Versioned<Environment>>> {
        let active: Vec<&str> = Status::ALL
            .into_iter()
            .filter(|s| s.is_transitional() || *s == Status::Running)
            .map(Status::as_str)
            .collect();
        // `IN` over parameters: served by the index on `status`.
        let names: Vec<String> = (0..active.len()).map(|i| format!("@s{i}")).collect();
        let mut q = Query::from(format!(
            "SELECT * FROM c WHERE c.status IN ({})",
            names.join(", ")
        ));
        for (name, status) in names.iter().zip(&active) {
            q = param(q, name, status)?;
        }
        let items: Vec<WithEtag<Environment>> = query(
            &self.inner.environments,
            "sweep environments",
            q,
            FeedScope::full_container(),
        )
        .await?;
        Ok(items
            .into_iter()
            .map(|i| Versioned {
                value: i.value,
                etag: i.etag,
            })
            .collect())
    }

    async fn environment_counts(&self) -> StoreResult<Vec<(Status, u64)>> {
        // A projection, not `GROUP BY`: cross-partition aggregates need the
        // query plan the Rust SDK does not run. One small string per record.
        let statuses: Vec<String> = query(
            &self.inner.environments,
            "count environments",
            Query::from("SELECT VALUE c.status FROM c"),
            FeedScope::full_container(),
        )
        .await?;
        Ok(Status::ALL
            .into_iter()
            .map(|s| {
                let n = statuses.iter().filter(|t| t.as_str() == s.as_str()).count();
                (s, n as u64)
            })
            .collect())
    }

    async fn document(&self, key: &str) -> StoreResult<Option<Versioned<Value>>> {
        let id = doc_id(key);
        let Some(r) = read_item(&self.inner.documents, "read document", &id, &id).await? else {
            return Ok(None);
        };
        let etag = etag_of(&r)?;
        let item: DocItem = model(r)?;
        if item.expired(Utc::now()) {
            return Ok(None);
        }
        Ok(Some(Versioned {
            value: item.value,
            etag,
        }))
    }

    async fn put_document(
        &self,
        key: &str,
        value: &Value,
        if_match_etag: Option<&Etag>,
        expires_at: Option<DateTime<Utc>>,
    ) -> StoreResult<Etag> {
        let item = doc_item(key, value, expires_at);
        let Some(etag) = if_match_etag else {
            return self.create_document(key, &item).await;
        };
        let c = &self.inner.documents;
        let id = doc_id(key);
        match retrying("replace document", || {
            c.replace_item(id.clone(), &id, &item, Some(if_match(etag)))
        })
        .await
        {
            Ok(r) => {
                log_charge("replace document", &r);
                etag_of(&r)
            }
            // Gone (expired by TTL) or changed: either way the ETag is not current.
            Err(e) if e.status().is_precondition_failed() || e.status().is_not_found() => {
                Err(StoreError::PreconditionFailed)
            }
            Err(e) => Err(cosmos_unavailable("replace document", e)),
        }
    }

    async fn purge_expired_documents(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let q = param(
            Query::from(
                "SELECT c.id, c._etag FROM c WHERE IS_STRING(c.expiresAt) AND c.expiresAt <= @now",
            ),
            "@now",
            ts(now),
        )?;
        let c = &self.inner.documents;
        let expired: Vec<IdEtag> =
            query(c, "query expired documents", q, FeedScope::full_container()).await?;
        let mut purged = 0;
        for d in expired {
            match retrying("purge document", || {
                c.delete_item(d.id.clone(), &d.id, Some(if_match(&d.etag)))
            })
            .await
            {
                Ok(_) => purged += 1,
                // Rewritten (a fresh window) or already gone: not ours to purge.
                Err(e) if e.status().is_precondition_failed() || e.status().is_not_found() => {}
                Err(e) => return Err(cosmos_unavailable("purge document", e)),
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_are_valid_and_one_to_one() {
        assert_eq!(doc_id("quota:user:01abc"), "quota:user:01abc");
        assert_eq!(doc_id("a/b?c#d\\e%f"), "a%2Fb%3Fc%23d%5Ce%25f");
        assert_ne!(doc_id("a/b"), doc_id("a%2Fb"));
    }

    #[test]
    fn email_index_ids_hide_the_address() {
        let id = email_doc_id("someone@example.com");
        assert!(id.starts_with("email-") && !id.contains('@') && id.len() == 6 + 64);
    }

    #[tokio::test]
    async fn creating_containers_needs_key_auth() {
        let cfg = CosmosConfig {
            endpoint: "https://example.documents.azure.com/".into(),
            key: None,
            database: "dev8".into(),
            identity: Default::default(),
            create_containers: true,
        };
        let err = CosmosStore::connect(&cfg).await.err().expect("refused");
        assert!(format!("{err:#}").contains("needs key auth"), "{err:#}");
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let cfg = CosmosConfig {
            endpoint: "http://127.0.0.1:8081".into(),
            key: Some(SecretString::from("c2VjcmV0".to_string())),
            database: "dev8".into(),
            identity: Default::default(),
            create_containers: true,
        };
        assert!(!format!("{cfg:?}").contains("c2VjcmV0"));
    }
}
