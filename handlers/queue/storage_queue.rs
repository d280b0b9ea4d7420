//! Azure Storage Queues behind the `JobQueue` port (`DEV8_QUEUE_BACKEND=storage`),
//! through `azure_storage_queue`.
//!
//! The connection is read the way the Functions host reads it, so the app
//! and its queue trigger always agree on the account:
//! * `AzureWebJobsStorage` (a connection string: `UseDevelopmentStorage=true`,
//!   or account name + key + endpoints, or a SAS). The SDK has no shared-key
//!   auth, so every request is signed with an account SAS computed here from
//!   the key (HMAC-SHA256), renewed before it expires;
//! * otherwise `AzureWebJobsStorage__queueServiceUri` (or `__accountName`)
//!   with an Entra ID token: managed identity in Azure (`__credential =
//!   managedidentity`, `__clientId` for a user-assigned one), the developer's
//!   `az`/`azd` login elsewhere.
//!
//! Message text is the job body base64-encoded, which is what the queue
//! trigger decodes by default; host.json says `messageEncoding: base64` and
//! the two must agree.

use super::{Delivery, JobQueue, QueueError, QueueResult};
use crate::azure_http;
use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    Context as PipelineContext, ExponentialRetryOptions, Request, RetryOptions, Url,
};
use azure_storage_queue::models::{
    QueueClientGetPropertiesResultHeaders, QueueClientPeekMessagesOptions,
    QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Azurite/Storage Emulator account: public, well-known development values.
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_QUEUE_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";

/// Lifetime of a computed SAS; renewed when less than `SAS_RENEW` is left.
const SAS_LIFETIME: chrono::Duration = chrono::Duration::hours(1);
const SAS_RENEW: chrono::Duration = chrono::Duration::minutes(10);

fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s.to_string()))
}

/// Where the Storage account for queues is, named exactly as the Functions
/// host names it (the queue trigger's `connection: AzureWebJobsStorage`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StorageSettings {
    /// Connection string of the Storage account (`UseDevelopmentStorage=true`
    /// for Azurite). Takes precedence over the identity-based settings.
    #[arg(long = "storage-connection-string", env = "AzureWebJobsStorage", value_parser = secret, hide_env_values = true)]
    pub connection_string: Option<SecretString>,
    /// Queue service URL for identity-based access, e.g. `https://acct.queue.core.windows.net`.
    #[arg(
        long = "storage-queue-service-uri",
        env = "AzureWebJobsStorage__queueServiceUri"
    )]
    pub queue_service_uri: Option<String>,
    /// Storage account name for identity-based access (when no service URL is given).
    #[arg(
        long = "storage-account-name",
        env = "AzureWebJobsStorage__accountName"
    )]
    pub account_name: Option<String>,
    /// `managedidentity` to use the app's managed identity.
    #[arg(long = "storage-credential", env = "AzureWebJobsStorage__credential")]
    pub credential: Option<String>,
    /// Client id of a user-assigned managed identity (the control plane's
    /// one: the same as `AZURE_CLIENT_ID`, which is used when this is unset).
    #[arg(long = "storage-client-id", env = "AzureWebJobsStorage__clientId")]
    pub client_id: Option<String>,
}

/// How requests are authorised.
enum Auth {
    /// An account key: an account SAS is computed from it.
    Key {
        account: String,
        key: SecretBox<Vec<u8>>,
    },
    /// A SAS given in the connection string.
    Sas(SecretString),
    /// An Entra ID token.
    Token(Arc<dyn TokenCredential>),
}

struct Connection {
    service_url: Url,
    auth: Auth,
}

fn parse_connection_string(s: &str) -> anyhow::Result<Connection> {
    let mut kv = std::collections::HashMap::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("AzureWebJobsStorage: a part is not key=value"))?;
        kv.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let get = |k: &str| {
        kv.get(&k.to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .cloned()
    };
    if get("UseDevelopmentStorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let endpoint = match get("DevelopmentStorageProxyUri") {
            Some(proxy) => format!("{}/{DEV_ACCOUNT}", proxy.trim_end_matches('/')),
            None => DEV_QUEUE_ENDPOINT.to_string(),
        };
        return Ok(Connection {
            service_url: service_url(&endpoint)?,
            auth: Auth::Key {
                account: DEV_ACCOUNT.into(),
                key: SecretBox::new(Box::new(B64.decode(DEV_KEY)?)),
            },
        });
    }
    let account = get("AccountName");
    let endpoint = match (get("QueueEndpoint"), &account) {
        (Some(e), _) => e,
        (None, Some(a)) => {
            let proto = get("DefaultEndpointsProtocol").unwrap_or_else(|| "https".into());
            let suffix = get("EndpointSuffix").unwrap_or_else(|| "core.windows.net".into());
            format!("{proto}://{a}.queue.{suffix}")
        }
        (None, None) => bail!(
            "AzureWebJobsStorage: needs AccountName or QueueEndpoint (or UseDevelopmentStorage=true)"
        ),
    };
    let auth = match (get("AccountKey"), get("SharedAccessSignature")) {
        (Some(key), _) => Auth::Key {
            account: account
                .ok_or_else(|| anyhow!("AzureWebJobsStorage: AccountKey needs AccountName"))?,
            key: SecretBox::new(Box::new(
                B64.decode(key)
                    .context("AzureWebJobsStorage: AccountKey is not base64")?,
            )),
        },
        (None, Some(sas)) => Auth::Sas(SecretString::from(sas.trim_start_matches('?').to_string())),
        (None, None) => bail!("AzureWebJobsStorage: needs AccountKey or SharedAccessSignature"),
    };
    Ok(Connection {
        service_url: service_url(&endpoint)?,
        auth,
    })
}

/// The service URL, without a trailing `/` (the client appends segments).
fn service_url(s: &str) -> anyhow::Result<Url> {
    let url =
        Url::parse(s.trim_end_matches('/')).with_context(|| format!("queue service URL {s:?}"))?;
    if url.cannot_be_a_base() || url.query().is_some() {
        bail!("queue service URL {s:?} must be a plain http(s) URL");
    }
    Ok(url)
}

/// `AzureWebJobsStorage__credential=managedidentity`: the managed identity
/// even where no identity endpoint is seen.
fn forced_managed(settings: &StorageSettings) -> bool {
    settings
        .credential
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("managedidentity"))
}

fn identity_connection(
    settings: &StorageSettings,
    identity: &azure_http::Identity,
) -> anyhow::Result<Connection> {
    let endpoint = match (&settings.queue_service_uri, &settings.account_name) {
        (Some(uri), _) => uri.clone(),
        (None, Some(account)) => format!("https://{account}.queue.core.windows.net"),
        (None, None) => bail!(
            "DEV8_QUEUE_BACKEND=storage needs AzureWebJobsStorage (a connection string) or \
             AzureWebJobsStorage__queueServiceUri / AzureWebJobsStorage__accountName"
        ),
    };
    let options = azure_http::client_options(retry_options())?;
    let credential = identity.credential(forced_managed(settings), options)?;
    Ok(Connection {
        service_url: service_url(&endpoint)?,
        auth: Auth::Token(credential),
    })
}

/// A few quick retries: enough for a throttled or reset request, short
/// enough that a dead endpoint fails the job (which the queue retries)
/// instead of hanging it.
fn retry_options() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(200),
        max_retries: 3,
        max_total_elapsed: azure_core::time::Duration::seconds(10),
        max_delay: azure_core::time::Duration::seconds(2),
    })
}

/// Signs every request with an account SAS (queue service, all resource
/// types), computed from the account key and renewed before it expires.
struct SasPolicy {
    source: SasSource,
    cached: Mutex<Option<(SecretString, DateTime<Utc>)>>,
}

enum SasSource {
    Key {
        account: String,
        key: SecretBox<Vec<u8>>,
    },
    Fixed(SecretString),
}

impl std::fmt::Debug for SasPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SasPolicy(<redacted>)")
    }
}

/// The account SAS query for `account`, valid until `expiry`: the queue
/// service, every resource type, over HTTPS or HTTP (Azurite).
pub fn account_sas(account: &str, key: &[u8], expiry: DateTime<Utc>) -> String {
    crate::storage_sas::AccountSas {
        account,
        permissions: "rwdlacup",
        services: "q",
        resource_types: "sco",
        expiry,
        protocol: crate::storage_sas::SasProtocol::HttpsAndHttp,
    }
    .sign(key)
}

impl SasPolicy {
    fn current(&self) -> SecretString {
        match &self.source {
            SasSource::Fixed(sas) => sas.clone(),
            SasSource::Key { account, key } => {
                let mut cached = self.cached.lock().expect("sas lock");
                let now = Utc::now();
                match &*cached {
                    Some((sas, expiry)) if *expiry - now > SAS_RENEW => sas.clone(),
                    _ => {
                        let expiry = now + SAS_LIFETIME;
                        let sas =
                            SecretString::from(account_sas(account, key.expose_secret(), expiry));
                        *cached = Some((sas.clone(), expiry));
                        sas
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Policy for SasPolicy {
    async fn send(
        &self,
        ctx: &PipelineContext,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let url = request.url_mut();
        // A retry sends the same request again: sign it once.
        if !url.query_pairs().any(|(k, _)| k == "sig") {
            let sas = self.current();
            let query = match url.query() {
                Some(q) if !q.is_empty() => format!("{q}&{}", sas.expose_secret()),
                _ => sas.expose_secret().to_string(),
            };
            url.set_query(Some(&query));
        }
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// The Storage Queue adapter: the jobs queue and its poison queue.
#[derive(Clone)]
pub struct StorageQueue {
    queue: Arc<QueueClient>,
    poison: Arc<QueueClient>,
    name: String,
}

impl std::fmt::Debug for StorageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageQueue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Seconds for a visibility value: whole seconds, rounded up (Storage counts in seconds).
fn seconds(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    // Storage caps visibility at 7 days.
    s.min(7 * 24 * 3600) as i32
}

fn unavailable(what: &str, e: azure_core::Error) -> QueueError {
    QueueError::Unavailable(anyhow::Error::new(e).context(what.to_string()))
}

/// A delete or update whose message is gone or whose pop receipt is stale.
fn receipt_error(what: &str, e: azure_core::Error) -> QueueError {
    use azure_core::error::ErrorKind;
    match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = error_code.as_deref().unwrap_or_default();
            if u16::from(*status) == 404
                || code == "PopReceiptMismatch"
                || code == "MessageNotFound"
            {
                QueueError::NotFound
            } else {
                unavailable(what, e)
            }
        }
        _ => unavailable(what, e),
    }
}

impl StorageQueue {
    /// Connect with the Functions host's connection settings and create the
    /// queue and its poison queue if missing.
    /// Identity-based access authenticates as `identity` (`azure_http`).
    pub async fn connect(
        settings: &StorageSettings,
        name: &str,
        identity: &azure_http::Identity,
    ) -> anyhow::Result<Self> {
        let connection = match &settings.connection_string {
            Some(cs) => parse_connection_string(cs.expose_secret())?,
            None => identity_connection(settings, identity)?,
        };
        let queue = Self::open(connection, name)?;
        queue.create_if_missing().await?;
        Ok(queue)
    }

    fn open(connection: Connection, name: &str) -> anyhow::Result<Self> {
        let poison_name = format!("{name}-poison");
        let (policy, credential): (Option<Arc<dyn Policy>>, _) = match connection.auth {
            Auth::Key { account, key } => (
                Some(Arc::new(SasPolicy {
                    source: SasSource::Key { account, key },
                    cached: Mutex::new(None),
                })),
                None,
            ),
            Auth::Sas(sas) => (
                Some(Arc::new(SasPolicy {
                    source: SasSource::Fixed(sas),
                    cached: Mutex::new(None),
                })),
                None,
            ),
            Auth::Token(credential) => (None, Some(credential)),
        };
        let client = |queue: &str| -> anyhow::Result<QueueClient> {
            let mut url = connection.service_url.clone();
            url.path_segments_mut()
                .map_err(|_| anyhow!("queue service URL cannot take a path"))?
                .push(queue);
            let mut client_options = azure_http::client_options(retry_options())?;
            client_options.per_try_policies.extend(policy.clone());
            let options = QueueClientOptions {
                client_options,
                ..Default::default()
            };
            QueueClient::new(url, credential.clone(), Some(options))
                .context("creating the queue client")
        };
        Ok(StorageQueue {
            queue: Arc::new(client(name)?),
            poison: Arc::new(client(&poison_name)?),
            name: name.into(),
        })
    }

    async fn create_if_missing(&self) -> anyhow::Result<()> {
        for q in [&self.queue, &self.poison] {
            match q.create(None).await {
                Ok(_) => {}
                // Exists with other metadata: it exists, which is all we need.
                Err(e) if e.http_status().map(u16::from) == Some(409) => {}
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("creating queue {}", q.url().path()))
                    );
                }
            }
        }
        Ok(())
    }

    async fn put(&self, client: &QueueClient, body: &str, delay: Duration) -> QueueResult<()> {
        let message = QueueMessage {
            message_text: Some(B64.encode(body.as_bytes())),
        };
        let options = QueueClientSendMessageOptions {
            visibility_timeout: (!delay.is_zero()).then(|| seconds(delay)),
            ..Default::default()
        };
        let content = message
            .try_into()
            .map_err(|e| unavailable("encoding the message", e))?;
        client
            .send_message(content, Some(options))
            .await
            .map_err(|e| unavailable("sending a message", e))?;
        Ok(())
    }
}

/// The job body from message text: base64 as the queue trigger expects; text
/// that is not base64 is passed on as-is (it fails as a job and ends in the
/// poison queue, where an operator can read it).
fn decode(text: &str) -> String {
    match B64
        .decode(text.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    {
        Some(body) => body,
        None => {
            tracing::warn!("queue message text is not base64; passing it on undecoded");
            text.to_string()
        }
    }
}

#[async_trait]
impl JobQueue for StorageQueue {
    async fn send(&self, body: &str, delay: Duration) -> QueueResult<()> {
        self.put(&self.queue, body, delay).await
    }

    /// No batch send in Storage Queues: separate requests, 8 in flight.
    async fn send_all(&self, messages: &[(String, Duration)]) -> QueueResult<()> {
        use futures::{StreamExt, TryStreamExt};
        let sends: Vec<_> = messages
            .iter()
            .map(|(body, delay)| self.put(&self.queue, body, *delay))
            .collect();
        futures::stream::iter(sends)
            .buffer_unordered(8)
            .try_collect()
            .await
    }

    async fn receive(&self, visibility: Duration) -> QueueResult<Option<Delivery>> {
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(1),
            visibility_timeout: Some(seconds(visibility).max(1)),
            ..Default::default()
        };
        let rsp = self
            .queue
            .receive_messages(Some(options))
            .await
            .map_err(|e| unavailable("receiving", e))?;
        let messages = rsp
            .into_model()
            .map_err(|e| unavailable("reading received messages", e))?;
        let Some(m) = messages.items.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let (Some(id), Some(pop_receipt)) = (m.message_id, m.pop_receipt) else {
            return Err(QueueError::Unavailable(anyhow!(
                "received a message without id or pop receipt"
            )));
        };
        Ok(Some(Delivery {
            id,
            pop_receipt,
            dequeue_count: m.dequeue_count.unwrap_or(1).clamp(1, i64::from(u32::MAX)) as u32,
            body: decode(m.message_text.as_deref().unwrap_or_default()),
        }))
    }

    async fn delete(&self, d: &Delivery) -> QueueResult<()> {
        self.queue
            .delete_message(&d.id, &d.pop_receipt, None)
            .await
            .map_err(|e| receipt_error("deleting", e))?;
        Ok(())
    }

    async fn release(&self, d: &Delivery, delay: Duration) -> QueueResult<()> {
        self.queue
            .update_message(&d.id, &d.pop_receipt, seconds(delay), None)
            .await
            .map_err(|e| receipt_error("releasing", e))?;
        Ok(())
    }

    async fn poison(&self, d: &Delivery) -> QueueResult<()> {
        // Copy first, then delete: a failure in between leaves a duplicate
        // for an operator to see, never a lost job.
        self.put(&self.poison, &d.body, Duration::ZERO).await?;
        self.delete(d).await
    }

    async fn poisoned(&self) -> QueueResult<Vec<String>> {
        let options = QueueClientPeekMessagesOptions {
            number_of_messages: Some(32),
            ..Default::default()
        };
        let rsp = self
            .poison
            .peek_messages(Some(options))
            .await
            .map_err(|e| unavailable("peeking", e))?;
        let peeked = rsp
            .into_model()
            .map_err(|e| unavailable("reading peeked messages", e))?;
        Ok(peeked
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|m| decode(m.message_text.as_deref().unwrap_or_default()))
            .collect())
    }

    async fn approximate_len(&self) -> QueueResult<u64> {
        let rsp = self
            .queue
            .get_properties(None)
            .await
            .map_err(|e| unavailable("reading queue properties", e))?;
        let n = rsp
            .approximate_messages_count()
            .map_err(|e| unavailable("reading the message count", e))?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identity auth, in-process: azure_core sends bearer tokens over https
    /// only, so the real binary's tests reach Azurite with the connection
    /// string; here the credential the adapter asks `azure_http` for is
    /// checked to name the control plane's user-assigned identity, as the
    /// Function App's deployment configures it (`__credential`, no
    /// `__clientId` of its own, `AZURE_CLIENT_ID`). The token request itself
    /// is covered by the binary's Cosmos test against the identity-endpoint
    /// stand-in (the same `Identity::credential`).
    #[test]
    fn identity_access_names_the_user_assigned_identity() {
        let settings = StorageSettings {
            queue_service_uri: Some("https://acct.queue.core.windows.net".into()),
            credential: Some("managedidentity".into()),
            ..Default::default()
        };
        let identity = azure_http::Identity::resolve(Some("control-client-id"), None).unwrap();
        assert_eq!(
            identity.choice(forced_managed(&settings)),
            azure_http::CredentialChoice::Managed {
                client_id: Some("control-client-id".into())
            }
        );
        let c = identity_connection(&settings, &identity).unwrap();
        assert!(matches!(c.auth, Auth::Token(_)));
        assert_eq!(
            c.service_url.as_str(),
            "https://acct.queue.core.windows.net/"
        );
    }

    #[test]
    fn connection_strings() {
        let c = parse_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(
            c.service_url.as_str(),
            "http://127.0.0.1:10001/devstoreaccount1"
        );
        let c = parse_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(
            c.service_url.as_str(),
            "https://acct.queue.core.windows.net/"
        );
        let c = parse_connection_string(
            "AccountName=a;AccountKey=a2V5;QueueEndpoint=http://127.0.0.1:9/a/;",
        )
        .unwrap();
        assert_eq!(c.service_url.as_str(), "http://127.0.0.1:9/a");
        assert!(matches!(
            parse_connection_string("QueueEndpoint=https://x/;SharedAccessSignature=?sv=1&sig=2")
                .unwrap()
                .auth,
            Auth::Sas(_)
        ));
        for bad in [
            "AccountName=a",
            "AccountKey=a2V5",
            "nonsense",
            "AccountName=a;AccountKey=!!",
        ] {
            let err = parse_connection_string(bad).err().expect(bad).to_string();
            assert!(!err.contains("a2V5"), "errors never echo the key: {err}");
        }
    }

    #[test]
    fn account_sas_matches_the_documented_string_to_sign() {
        // The expected signature was computed independently with
        // `openssl dgst -sha256 -mac HMAC` over the documented string-to-sign
        // for sv=2020-12-06 (account, sp, ss, srt, st, se, sip, spr, sv, ses, each + "\n").
        let expiry = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let sas = account_sas("devstoreaccount1", &B64.decode(DEV_KEY).unwrap(), expiry);
        let url = Url::parse(&format!("http://x/?{sas}")).unwrap();
        let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["sv"], "2020-12-06");
        assert_eq!(pairs["ss"], "q");
        assert_eq!(pairs["srt"], "sco");
        assert_eq!(pairs["sp"], "rwdlacup");
        assert_eq!(pairs["spr"], "https,http");
        assert_eq!(pairs["se"], "2030-01-01T00:00:00Z");
        assert_eq!(pairs["sig"], "FI2XpYko8fcyX1wirsx0tM4JETMqIixWs9t0I/Ly3gI=");
    }

    #[test]
    fn visibility_rounds_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::from_millis(50)), 1);
        assert_eq!(seconds(Duration::from_secs(2)), 2);
        assert_eq!(seconds(Duration::from_secs(30 * 24 * 3600)), 7 * 24 * 3600);
    }
}
