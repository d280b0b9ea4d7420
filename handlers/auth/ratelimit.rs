//! Fixed-window rate limits kept as store documents with conditional writes,
//! so every instance of the control plane counts against the same windows.
//! Keys are hashed: no email address or client address is stored in clear.

use crate::store::{Store, StoreError};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit; try again after this many seconds.
    Limited {
        retry_after_secs: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Window {
    start: DateTime<Utc>,
    count: u32,
}

fn doc_key(scope: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{scope}\0{key}").as_bytes());
    format!(
        "ratelimit:{scope}:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
    )
}

/// Count one attempt against `scope`/`key` and say whether it is allowed.
pub async fn hit(
    store: &dyn Store,
    scope: &str,
    key: &str,
    limit: Limit,
    now: DateTime<Utc>,
) -> Result<Decision, StoreError> {
    let doc_key = doc_key(scope, key);
    for _ in 0..20 {
        let current = store.document(&doc_key).await?;
        let (window, etag) = match &current {
            Some(v) => (
                serde_json::from_value::<Window>(v.value.clone()).ok(),
                Some(&v.etag),
            ),
            None => (None, None),
        };
        let next = match window {
            Some(w) if now < w.start + limit.window => {
                if w.count >= limit.max {
                    let secs = (w.start + limit.window - now).num_seconds().max(1) as u64;
                    return Ok(Decision::Limited {
                        retry_after_secs: secs,
                    });
                }
                Window {
                    start: w.start,
                    count: w.count + 1,
                }
            }
            _ => Window {
                start: now,
                count: 1,
            },
        };
        let value = serde_json::to_value(&next).expect("window serialises");
        match store
            .put_document(&doc_key, &value, etag, Some(next.start + limit.window))
            .await
        {
            Ok(_) => return Ok(Decision::Allowed),
            Err(StoreError::PreconditionFailed | StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!(
        "rate-limit window too contended"
    )))
}
