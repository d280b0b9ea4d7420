//! The Azure SDK's HTTP transport, backed by the tree's own `reqwest` 0.12
//! (rustls + ring). `azure_core`'s built-in transport would pull in
//! `reqwest` 0.13 with aws-lc-rs: a second HTTP client and a second TLS
//! crypto provider for the same job. Every Azure SDK client in Dev8 gets
//! this transport through `client_options()`.

use azure_core::error::{Error, ErrorKind};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::response::PinnedStream;
use azure_core::http::{
    AsyncRawResponse, Body, ClientOptions, HttpClient, Method, Request, Transport,
};
use futures::{AsyncReadExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A `reqwest` 0.12 client speaking the SDK's `HttpClient` trait.
#[derive(Debug, Clone)]
pub struct ReqwestTransport(reqwest::Client);

impl ReqwestTransport {
    pub fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            // Azure REST guidelines discourage redirects; the SDK handles none.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self(client))
    }
}

/// Client options with this transport and `retry` (the SDK's default retry
/// policy waits over a minute on a dead endpoint; callers choose).
pub fn client_options(retry: azure_core::http::RetryOptions) -> anyhow::Result<ClientOptions> {
    Ok(ClientOptions {
        transport: Some(Transport::new(Arc::new(ReqwestTransport::new()?))),
        retry,
        ..Default::default()
    })
}

fn method(m: Method) -> azure_core::Result<reqwest::Method> {
    Ok(match m {
        Method::Delete => reqwest::Method::DELETE,
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Patch => reqwest::Method::PATCH,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        other => {
            return Err(Error::with_message(
                ErrorKind::Other,
                format!("unsupported HTTP method {other:?}"),
            ));
        }
    })
}

#[async_trait::async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let mut req = self
            .0
            .request(method(request.method())?, request.url().clone());
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        let body = match request.body().clone() {
            Body::Bytes(bytes) => bytes.to_vec(),
            Body::SeekableStream(mut stream) => {
                // Dev8 sends small bodies only; read the stream into memory.
                stream.reset().await?;
                let mut buf = Vec::new();
                stream
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|e| Error::with_error(ErrorKind::Io, e, "reading the request body"))?;
                buf
            }
        };
        let rsp = self.0.execute(req.body(body).build().map_err(|e| {
            Error::with_error(ErrorKind::Other, e.without_url(), "building the request")
        })?);
        let rsp = rsp.await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            // The URL may carry a SAS signature: keep it out of errors and logs.
            Error::with_error(kind, e.without_url(), "sending the request")
        })?;
        let status = rsp.status().as_u16();
        let headers: HashMap<HeaderName, HeaderValue> = rsp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                let v = v.to_str().ok()?;
                Some((
                    HeaderName::from(k.as_str().to_owned()),
                    HeaderValue::from(v.to_owned()),
                ))
            })
            .collect();
        let stream: PinnedStream = Box::pin(rsp.bytes_stream().map_err(|e| {
            Error::with_error(ErrorKind::Io, e.without_url(), "reading the response body")
        }));
        Ok(AsyncRawResponse::new(
            status.into(),
            Headers::from(headers),
            stream,
        ))
    }
}

/// Which managed identity the control plane's Azure credentials name.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IdentitySettings {
    /// Client id of the control plane's user-assigned managed identity, named
    /// by every Azure credential (Cosmos DB, Storage, ARM). Unset: the
    /// system-assigned identity in Azure, developer tools elsewhere.
    #[arg(
        long = "azure-client-id",
        id = "azure_client_id",
        env = "AZURE_CLIENT_ID"
    )]
    pub client_id: Option<String>,
}

/// The control plane's identity, resolved once at start: every Azure
/// credential in the tree is built here, by `credential`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    client_id: Option<String>,
}

/// What `Identity::credential` builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialChoice {
    /// The managed identity: the user-assigned one with this client id, or
    /// the system-assigned one (`None`).
    Managed { client_id: Option<String> },
    /// The developer's Azure CLI / azd login (outside Azure).
    DeveloperTools,
}

impl Identity {
    /// The identity `AZURE_CLIENT_ID` names, or else the Functions host's
    /// `AzureWebJobsStorage__clientId` (in Dev8's deployment both are the
    /// control plane's one user-assigned identity; two different ids are refused).
    pub fn resolve(
        azure_client_id: Option<&str>,
        storage_client_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let clean = |v: Option<&str>| v.map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let (a, s) = (clean(azure_client_id), clean(storage_client_id));
        if let (Some(a), Some(s)) = (&a, &s) {
            anyhow::ensure!(
                a.eq_ignore_ascii_case(s),
                "AZURE_CLIENT_ID and AzureWebJobsStorage__clientId name different identities; \
                 the control plane has one"
            );
        }
        Ok(Identity { client_id: a.or(s) })
    }

    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The managed identity in Azure (App Service's `IDENTITY_ENDPOINT`, or
    /// `MSI_ENDPOINT`) or when `force_managed`; developer tools elsewhere.
    pub fn choice(&self, force_managed: bool) -> CredentialChoice {
        let in_azure = std::env::var_os("IDENTITY_ENDPOINT").is_some()
            || std::env::var_os("MSI_ENDPOINT").is_some();
        if force_managed || in_azure {
            CredentialChoice::Managed {
                client_id: self.client_id.clone(),
            }
        } else {
            CredentialChoice::DeveloperTools
        }
    }

    /// The credential `choice` says, its token requests sent through
    /// `options` (the tree's transport). A configured user-assigned identity
    /// is always named: App Service's identity endpoint refuses a token
    /// request without `client_id` when the app has user-assigned identities only.
    pub fn credential(
        &self,
        force_managed: bool,
        options: ClientOptions,
    ) -> anyhow::Result<Arc<dyn azure_core::credentials::TokenCredential>> {
        Ok(match self.choice(force_managed) {
            CredentialChoice::Managed { client_id } => {
                azure_identity::ManagedIdentityCredential::new(Some(
                    azure_identity::ManagedIdentityCredentialOptions {
                        user_assigned_id: client_id.map(azure_identity::UserAssignedId::ClientId),
                        client_options: options,
                    },
                ))?
            }
            CredentialChoice::DeveloperTools => {
                azure_identity::DeveloperToolsCredential::new(None)?
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_identity_from_either_setting() {
        let id = |a, s| {
            Identity::resolve(a, s)
                .unwrap()
                .client_id()
                .map(String::from)
        };
        assert_eq!(id(Some("c1"), None), Some("c1".into()));
        assert_eq!(id(None, Some("c1")), Some("c1".into()));
        assert_eq!(id(Some("c1"), Some("C1")), Some("c1".into()));
        assert_eq!(id(Some(" "), None), None);
        assert_eq!(id(None, None), None);
        assert!(Identity::resolve(Some("c1"), Some("c2")).is_err());
    }

    #[test]
    fn a_forced_managed_credential_names_the_user_assigned_identity() {
        let identity = Identity::resolve(Some("c1"), None).unwrap();
        assert_eq!(
            identity.choice(true),
            CredentialChoice::Managed {
                client_id: Some("c1".into())
            }
        );
    }
}
