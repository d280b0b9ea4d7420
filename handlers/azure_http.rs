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

/// The control plane's Azure credential: its managed identity in Azure (or
/// when `force_managed`), the user-assigned one when `client_id` names it;
/// developer tools (Azure CLI, azd) elsewhere. Its token requests use the
/// tree's transport through `options`.
pub fn control_plane_credential(
    client_id: Option<&str>,
    force_managed: bool,
    options: ClientOptions,
) -> anyhow::Result<Arc<dyn azure_core::credentials::TokenCredential>> {
    let in_azure = std::env::var_os("IDENTITY_ENDPOINT").is_some()
        || std::env::var_os("MSI_ENDPOINT").is_some();
    Ok(if force_managed || in_azure {
        azure_identity::ManagedIdentityCredential::new(Some(
            azure_identity::ManagedIdentityCredentialOptions {
                user_assigned_id: client_id
                    .map(|id| azure_identity::UserAssignedId::ClientId(id.to_string())),
                client_options: options,
            },
        ))?
    } else {
        azure_identity::DeveloperToolsCredential::new(None)?
    })
}
