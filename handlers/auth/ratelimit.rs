//! Fixed-window rate limits kept as store documents with conditional writes,
//! so every instance of the control plane counts against the same windows.
//! Keys are hashed: no email address or client address is stored in clear.

use crate::store::update::{Change, Retries, update_document};
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
    let mut decision = Decision::Allowed;
    update_document(
        store,
        &doc_key(scope, key),
        Retries::RECORD,
        |window: &mut Option<Window>| {
            let next = match window.take() {
                Some(w) if now < w.start + limit.window => {
                    if w.count >= limit.max {
                        let secs = (w.start + limit.window - now).num_seconds().max(1) as u64;
                        decision = Decision::Limited {
                            retry_after_secs: secs,
                        };
                        return Ok::<_, StoreError>(Change::Unchanged);
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
            *window = Some(next);
            decision = Decision::Allowed;
            Ok(Change::Write)
        },
        |window: &Option<Window>| window.as_ref().map(|w| w.start + limit.window),
    )
    .await?;
    Ok(decision)
}

/// Take back one attempt `hit` counted, because it turned out not to be
/// what the limit is about (a sign-in that succeeded). Counting first and
/// taking back after keeps concurrent attempts from slipping past the limit.
pub async fn forgive(
    store: &dyn Store,
    scope: &str,
    key: &str,
    limit: Limit,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    update_document(
        store,
        &doc_key(scope, key),
        Retries::RECORD,
        |window: &mut Option<Window>| {
            Ok::<_, StoreError>(match window.as_mut() {
                Some(w) if now < w.start + limit.window && w.count > 0 => {
                    w.count -= 1;
                    Change::Write
                }
                _ => Change::Unchanged,
            })
        },
        |window: &Option<Window>| window.as_ref().map(|w| w.start + limit.window),
    )
    .await
}
