//! `BlobStore`: snapshots as block blobs in ONE Azure Blob container,
//! reached with a service SAS for that container only (never an account
//! key), over the Blob REST API with `x-ms-version` pinned: Put Blob (a
//! part is at most `PART_BYTES`, 16 MiB, far below Put Blob's 5000 MiB),
//! Get Blob, Get Blob Properties (`HEAD`, for `size`), List Blobs (flat,
//! following `NextMarker`), Delete Blob. Object names are blob names
//! (`<snapshot id>/<file>`). A blob appears whole or not at all, so a `put`
//! is atomic as the trait asks.
//!
//! The SAS can be replaced while the store is in use (`set_sas`: the
//! agent's renewal through the periodic report). Transient failures (a
//! connection error, a timeout, 5xx, 429) are retried `ATTEMPTS` times in
//! all with a growing pause; a 403 says plainly that the SAS was refused.
//! Errors never carry a URL (the SAS's `sig` would be in it).

use super::store::{SnapshotStore, valid_name};
use crate::storage_sas::SAS_VERSION;
use anyhow::{Context, anyhow};
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use std::sync::RwLock;
use std::time::Duration;

/// The REST API version every request names (`x-ms-version`): the SAS's.
pub const API_VERSION: &str = SAS_VERSION;
/// Tries per request, the first included.
pub const ATTEMPTS: u32 = 4;
/// The pause before the first retry; doubled for each next one.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// One request's bound (a 16 MiB part over a slow link included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The HTTP client of Blob requests (rustls, bounded requests).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client builds")
}

/// Send the request `build` makes, retrying transient failures; any other
/// answer (success or not) is returned for the caller to judge.
pub async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    what: &str,
) -> anyhow::Result<reqwest::Response> {
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        let sent = build().header("x-ms-version", API_VERSION).send().await;
        let transient = match &sent {
            Ok(r) => r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS,
            Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
        };
        if !transient || attempt >= ATTEMPTS {
            return match sent {
                Ok(r) => Ok(r),
                Err(e) => Err(anyhow!("{what}: {}", e.without_url())),
            };
        }
        tracing::debug!(what, attempt, "transient Blob storage failure; retrying");
        tokio::time::sleep(pause).await;
        pause *= 2;
        attempt += 1;
    }
}

/// The error for an answer that is not what `what` expects. A 403 names
/// the SAS (expired, or for another container); the rest the status and
/// Azure's error code.
pub fn refused(what: &str, r: &reqwest::Response) -> anyhow::Error {
    let code = r
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if r.status() == StatusCode::FORBIDDEN {
        anyhow!(
            "{what}: Blob storage refused the snapshot SAS (expired, or not for this container; 403 {code})"
        )
    } else {
        anyhow!(
            "{what}: Blob storage answered {} {code}",
            r.status().as_u16()
        )
    }
}

/// When a SAS expires (its `se`), if it says.
pub fn sas_expiry(sas: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
        .find(|(k, _)| k == "se")
        .and_then(|(_, v)| chrono::DateTime::parse_from_rfc3339(&v).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Snapshots in one Blob container, through its SAS.
pub struct BlobStore {
    http: reqwest::Client,
    /// The container's URL, without a query.
    container: url::Url,
    sas: RwLock<SecretString>,
    /// `maxresults` of a List Blobs page (`None`: the service's, 5000).
    page_size: Option<u32>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("container", &self.container.as_str())
            .field("sas", &"<redacted>")
            .finish()
    }
}

impl BlobStore {
    /// The store of the container at `container_url` (no query), with `sas`
    /// (a query string without `?`).
    pub fn new(container_url: &str, sas: SecretString) -> anyhow::Result<Self> {
        let container = url::Url::parse(container_url.trim_end_matches('/'))
            .context("the snapshot container's URL")?;
        anyhow::ensure!(
            matches!(container.scheme(), "https" | "http") && container.query().is_none(),
            "the snapshot container's URL must be http(s) without a query"
        );
        Ok(BlobStore {
            http: http_client(),
            container,
            sas: RwLock::new(sas),
            page_size: None,
        })
    }

    /// List in pages of `n` (tests follow `NextMarker` with a few objects).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n);
        self
    }

    /// Use `sas` from now on (a renewal); requests in flight keep the old one.
    pub fn set_sas(&self, sas: SecretString) {
        *self.sas.write().expect("sas lock") = sas;
    }

    /// The URL of `name` (or the container), with `params` and the SAS.
    fn url(&self, name: Option<&str>, params: &[(&str, &str)]) -> url::Url {
        let mut url = self.container.clone();
        if let Some(name) = name {
            let path = format!("{}/{name}", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            query.append_pair(k, v);
        }
        let mut query = query.finish();
        let sas = self.sas.read().expect("sas lock");
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(sas.expose_secret());
        url.set_query(Some(&query));
        url
    }

    fn object_url(&self, name: &str) -> anyhow::Result<url::Url> {
        anyhow::ensure!(valid_name(name), "{name:?} is not a snapshot object's name");
        Ok(self.url(Some(name), &[]))
    }

    async fn request(
        &self,
        method: Method,
        url: url::Url,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        send(|| self.http.request(method.clone(), url.clone()), what).await
    }
}

#[async_trait]
impl SnapshotStore for BlobStore {
    async fn put(&self, name: &str, data: Vec<u8>) -> anyhow::Result<()> {
        let url = self.object_url(name)?;
        let what = format!("writing {name}");
        let body = bytes::Bytes::from(data);
        let r = send(
            || {
                self.http
                    .put(url.clone())
                    .header("x-ms-blob-type", "BlockBlob")
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            },
            &what,
        )
        .await?;
        if r.status() == StatusCode::CREATED {
            Ok(())
        } else {
            Err(refused(&what, &r))
        }
    }

    async fn get(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let what = format!("reading {name}");
        let r = self
            .request(Method::GET, self.object_url(name)?, &what)
            .await?;
        match r.status() {
            StatusCode::OK => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| anyhow!("{what}: {}", e.without_url()))?
                    .to_vec(),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(refused(&what, &r)),
        }
    }

    async fn size(&self, name: &str) -> anyhow::Result<Option<u64>> {
        let what = format!("reading the properties of {name}");
        let r = self
            .request(Method::HEAD, self.object_url(name)?, &what)
            .await?;
        match r.status() {
            StatusCode::OK => r
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| anyhow!("{what}: no Content-Length")),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(refused(&what, &r)),
        }
    }

    async fn list(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let page_size = self.page_size.map(|n| n.to_string());
            let mut params = vec![("restype", "container"), ("comp", "list")];
            if let Some(n) = &page_size {
                params.push(("maxresults", n.as_str()));
            }
            if !marker.is_empty() {
                params.push(("marker", marker.as_str()));
            }
            let url = self.url(None, &params);
            let r = self.request(Method::GET, url, "listing snapshots").await?;
            if r.status() != StatusCode::OK {
                return Err(refused("listing snapshots", &r));
            }
            let body = r
                .text()
                .await
                .map_err(|e| anyhow!("listing snapshots: {}", e.without_url()))?;
            let page = parse_list(&body);
            names.extend(page.names);
            match page.next_marker {
                Some(m) if !m.is_empty() => marker = m,
                _ => return Ok(names),
            }
        }
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let what = format!("deleting {name}");
        let r = self
            .request(Method::DELETE, self.object_url(name)?, &what)
            .await?;
        match r.status() {
            StatusCode::ACCEPTED | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(refused(&what, &r)),
        }
    }
}

/// One page of a List Blobs answer: the blob names and the marker of the
/// next page (`None` or empty: the last page).
#[derive(Debug, Default, PartialEq)]
pub struct ListPage {
    pub names: Vec<String>,
    pub next_marker: Option<String>,
}

/// Read a List Blobs answer (`EnumerationResults`): every `Blob`'s `Name`
/// and the `NextMarker`. Only these elements are read; the XML's five
/// predefined entities are decoded.
pub fn parse_list(xml: &str) -> ListPage {
    let mut page = ListPage::default();
    let mut rest = xml;
    while let Some(at) = rest.find("<Blob>") {
        rest = &rest[at + "<Blob>".len()..];
        let end = rest.find("</Blob>").unwrap_or(rest.len());
        if let Some(name) = element(&rest[..end], "Name") {
            page.names.push(name);
        }
        rest = &rest[end..];
    }
    page.next_marker = element(xml, "NextMarker");
    page
}

fn element(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(unescape(&xml[start..start + len]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_list_page_gives_names_and_the_next_marker() {
        // The shape of the List Blobs answer as documented ("List Blobs",
        // response body), trimmed to what is read.
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="dev8-e1">
  <MaxResults>2</MaxResults>
  <Blobs>
    <Blob><Name>01J/part-00000</Name><Properties><Content-Length>3</Content-Length></Properties></Blob>
    <Blob><Name>01J/a&amp;b</Name><Properties /></Blob>
  </Blobs>
  <NextMarker>2!92!MDAwMDIx</NextMarker>
</EnumerationResults>"#;
        assert_eq!(
            parse_list(xml),
            ListPage {
                names: vec!["01J/part-00000".into(), "01J/a&b".into()],
                next_marker: Some("2!92!MDAwMDIx".into()),
            }
        );
        let last = "<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>";
        assert_eq!(parse_list(last), ListPage::default());
    }

    /// A Blob service under load, as documented for Put Blob: `503 Server
    /// Busy` for the first `busy` requests, then `201 Created`; or always
    /// `403 AuthenticationFailed` (a refused SAS). Counts what it got.
    async fn busy_service(busy: usize, refuse: bool) -> (String, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        let app = axum::Router::new().fallback(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let (status, code) = if refuse {
                    (403, "AuthenticationFailed")
                } else if n < busy {
                    (503, "ServerBusy")
                } else {
                    (201, "")
                };
                axum::response::Response::builder()
                    .status(status)
                    .header("x-ms-error-code", code)
                    .body(axum::body::Body::empty())
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/acct/c", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn transient_failures_are_retried_a_bounded_number_of_times() {
        let (url, seen) = busy_service(2, false).await;
        let store = BlobStore::new(&url, "sig=S".into()).unwrap();
        store.put("a/b", b"x".to_vec()).await.unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 3, "two 503s, then it landed");

        let (url, seen) = busy_service(usize::MAX, false).await;
        let store = BlobStore::new(&url, "sig=S".into()).unwrap();
        let e = format!("{:#}", store.put("a/b", b"x".to_vec()).await.unwrap_err());
        assert!(e.contains("503 ServerBusy"), "{e}");
        assert_eq!(seen.load(Ordering::SeqCst), ATTEMPTS as usize);

        let (url, seen) = busy_service(0, true).await;
        let store = BlobStore::new(&url, "sig=S".into()).unwrap();
        let e = format!("{:#}", store.get("a/b").await.unwrap_err());
        assert!(
            e.contains("refused the snapshot SAS") && !e.contains("sig="),
            "{e}"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 1, "a 403 is not retried");
    }

    #[test]
    fn the_sas_is_in_urls_but_never_in_debug() {
        let store = BlobStore::new(
            "http://127.0.0.1:1/acct/dev8-e1/",
            SecretString::from("sv=2020-12-06&sig=SECRET"),
        )
        .unwrap();
        let url = store.object_url("01J/manifest.json").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/acct/dev8-e1/01J/manifest.json?sv=2020-12-06&sig=SECRET"
        );
        let list = store.url(None, &[("restype", "container"), ("comp", "list")]);
        assert_eq!(
            list.as_str(),
            "http://127.0.0.1:1/acct/dev8-e1?restype=container&comp=list&sv=2020-12-06&sig=SECRET"
        );
        store.set_sas(SecretString::from("sig=NEW"));
        assert!(
            store
                .object_url("a/b")
                .unwrap()
                .as_str()
                .ends_with("?sig=NEW")
        );
        assert!(!format!("{store:?}").contains("SECRET"));
        assert!(store.object_url("../x").is_err());
    }
}
