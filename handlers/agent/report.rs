//! The agent's periodic report: the one channel from an environment's agent
//! to the control plane for its state. `POST /api/environments/{id}/report`
//! with the agent token, body `{"usage": {...}}` (see `usage`), the first
//! `FIRST_AFTER` after code-server answers, then every report interval. The
//! control plane answers with a JSON object, read leniently (unknown fields
//! are ignored): later fields carry instructions. A report is not activity.

use super::activity::Activity;
use super::proxy::Upstream;
use super::usage::Meter;
use crate::snapshot::blob::BlobStore;
use crate::snapshot::keeper::Keeper;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long after code-server first answers the first report goes out.
pub const FIRST_AFTER: Duration = Duration::from_secs(5);

/// The report: the usage measured and, once the first start's setup has
/// ended, its outcome (`setup.cloneError`; repeated in every report, the
/// control plane keeps the first and records it once); with a Blob
/// snapshot store, when its SAS expires (`snapshotSas.expiresOn`: the
/// control plane answers with a new one once it is past half its life).
fn report_body(
    usage: serde_json::Value,
    setup: Option<&super::setup::Outcome>,
    sas: Option<&SnapshotSas>,
) -> serde_json::Value {
    let mut body = serde_json::json!({ "usage": usage });
    if let Some(s) = setup {
        body["setup"] = serde_json::json!({ "cloneError": s.clone_error });
    }
    if let Some(s) = sas {
        body["snapshotSas"] = serde_json::json!({ "expiresOn": s.expires_on() });
    }
    body
}

/// The Blob snapshot store's SAS, which the report's answer renews.
pub struct SnapshotSas {
    store: Arc<BlobStore>,
    expires_on: std::sync::Mutex<DateTime<Utc>>,
}

impl SnapshotSas {
    pub fn new(store: Arc<BlobStore>, expires_on: DateTime<Utc>) -> Self {
        SnapshotSas {
            store,
            expires_on: std::sync::Mutex::new(expires_on),
        }
    }

    pub fn expires_on(&self) -> DateTime<Utc> {
        *self.expires_on.lock().expect("sas lock")
    }

    /// Take a renewed SAS (a later expiry than the one held).
    fn renew(&self, grant: &RenewedSas) {
        let mut held = self.expires_on.lock().expect("sas lock");
        if grant.expires_on > *held {
            self.store.set_sas(grant.sas.clone());
            *held = grant.expires_on;
            tracing::info!(expires_on = %grant.expires_on, "snapshot SAS renewed");
        }
    }
}

/// A new SAS for the snapshot store (`snapshotSas` in the answer).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewedSas {
    #[serde(deserialize_with = "secret_string")]
    pub sas: SecretString,
    pub expires_on: DateTime<Utc>,
}

fn secret_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

impl std::fmt::Debug for RenewedSas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewedSas")
            .field("sas", &"<redacted>")
            .field("expires_on", &self.expires_on)
            .finish()
    }
}

/// Where and how often to report.
pub struct ReportTarget {
    pub url: String,
    pub token: SecretString,
    pub every: Duration,
    /// With a Blob snapshot store: its SAS, renewed by the answers.
    pub snapshot_sas: Option<Arc<SnapshotSas>>,
}

/// The control plane's answer. Every field is optional and unknown ones are
/// ignored, so a newer control plane can add instructions.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// Was the usage kept? `false` while the control plane does not yet
    /// count the environment as running: the agent reports again soon.
    #[serde(default)]
    pub usage_recorded: Option<bool>,
    /// A new SAS for the Blob snapshot store (sent once the one held is
    /// past half its life; never to a stopped environment).
    #[serde(default)]
    pub snapshot_sas: Option<RenewedSas>,
}

/// The usage, and in snapshot mode the last snapshot's time, size and any
/// warning (`usage.snapshot`).
fn with_snapshot(mut usage: serde_json::Value, snapshots: Option<&Keeper>) -> serde_json::Value {
    if let (Some(k), Some(u)) = (snapshots, usage.as_object_mut()) {
        let s = k.status();
        u.insert(
            "snapshot".into(),
            serde_json::json!({
                "lastAt": s.last_at,
                "storedBytes": s.stored_bytes,
                "intervalSeconds": k.interval.as_secs(),
                "warning": s.warning,
            }),
        );
    }
    usage
}

/// Parse an answer body leniently: anything unreadable is an empty answer.
pub fn parse_answer(body: &[u8]) -> Answer {
    serde_json::from_slice(body).unwrap_or_default()
}

/// Measure and report until `stop`. The idle times in each answer go to
/// `activity` (as those in the activity post's answers do), so a change of
/// the idle timeout reaches the agent within one report interval.
pub async fn report_loop(
    activity: Arc<Activity>,
    setup: Arc<std::sync::OnceLock<super::setup::Outcome>>,
    mut meter: Meter,
    upstream: Upstream,
    target: ReportTarget,
    snapshots: Option<Arc<Keeper>>,
    mut stop: watch::Receiver<bool>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client builds");
    let soon = FIRST_AFTER.min(target.every);
    // Wait for code-server to answer: usage before that says nothing.
    while !upstream.healthy().await {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
    // The first measurement starts the CPU window.
    let mut meter = tokio::task::spawn_blocking(move || {
        meter.measure();
        meter
    })
    .await
    .expect("measuring does not panic");
    let mut wait = soon;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let (m, measured) = tokio::task::spawn_blocking(move || {
            let measured = meter.measure();
            (meter, measured)
        })
        .await
        .expect("measuring does not panic");
        meter = m;
        let sent = client
            .post(&target.url)
            // Not `Authorization`: a proxy in front of the API (the Static
            // Web App) replaces that header with its own.
            .header(
                crate::auth::tokens::DEV8_AUTHORIZATION,
                format!("Bearer {}", target.token.expose_secret()),
            )
            .json(&report_body(
                with_snapshot(measured.json(), snapshots.as_deref()),
                setup.get(),
                target.snapshot_sas.as_deref(),
            ))
            .send()
            .await;
        wait = target.every;
        match sent {
            Ok(r) if r.status().is_success() => {
                let body = r.bytes().await.unwrap_or_default();
                let answer = parse_answer(&body);
                tracing::debug!(?answer, "usage reported");
                activity.learn_idle_from(&body);
                if answer.usage_recorded == Some(false) {
                    wait = soon;
                }
                if let (Some(held), Some(renewed)) = (&target.snapshot_sas, &answer.snapshot_sas) {
                    held.renew(renewed);
                }
            }
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                "the control plane refused the report"
            ),
            Err(e) => tracing::warn!(error = %e.without_url(), "could not report"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_leniently() {
        assert_eq!(parse_answer(b"{}").usage_recorded, None);
        assert_eq!(
            parse_answer(br#"{"usageRecorded":false,"idleStopAt":"2026-12-02T03:00:00Z","x":[1]}"#)
                .usage_recorded,
            Some(false)
        );
        assert_eq!(parse_answer(b"not json").usage_recorded, None);
    }

    #[test]
    fn a_renewed_sas_is_read_from_the_answer_and_never_shown() {
        let answer = parse_answer(
            br#"{"usageRecorded":true,"snapshotSas":{"sas":"sv=2020-12-06&sig=SECRET","expiresOn":"2026-12-02T12:00:00Z"}}"#,
        );
        let renewed = answer.snapshot_sas.as_ref().expect("a renewed SAS");
        assert_eq!(renewed.sas.expose_secret(), "sv=2020-12-06&sig=SECRET");
        assert_eq!(
            renewed.expires_on,
            "2026-12-02T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(!format!("{answer:?}").contains("SECRET"));
    }

    #[test]
    fn only_a_later_sas_replaces_the_one_held() {
        let store = Arc::new(BlobStore::new("http://127.0.0.1:9/a/c", "sig=OLD".into()).unwrap());
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let held = SnapshotSas::new(store, t("2026-12-02T12:00:00Z"));
        let renew = |sas: &str, at: &str| RenewedSas {
            sas: sas.into(),
            expires_on: t(at),
        };
        held.renew(&renew("sig=EARLIER", "2026-12-02T11:00:00Z"));
        assert_eq!(held.expires_on(), t("2026-12-02T12:00:00Z"));
        held.renew(&renew("sig=NEW", "2026-12-02T16:00:00Z"));
        assert_eq!(held.expires_on(), t("2026-12-02T16:00:00Z"));
        let body = report_body(serde_json::json!({}), None, Some(&held));
        assert_eq!(body["snapshotSas"]["expiresOn"], "2026-12-02T16:00:00Z");
    }
}
