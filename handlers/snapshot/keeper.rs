//! When the agent takes snapshots (snapshot mode): the home is restored
//! before code-server starts, a full snapshot is taken every interval while
//! it runs (so a crash loses at most one interval), and a final one after
//! code-server and every process of the environment have stopped (the only
//! point where files such as a SQLite database and its `-wal` are sure to
//! be consistent with each other). One snapshot at a time. What the last
//! one was, and any warning, goes out with the periodic report.

use super::store::SnapshotStore;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

pub use crate::agent_env::DEFAULT_SNAPSHOT_INTERVAL as DEFAULT_INTERVAL;

/// What the control plane is told about snapshots (`usage.snapshot`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub last_at: Option<DateTime<Utc>>,
    pub stored_bytes: Option<u64>,
    pub warning: Option<String>,
}

/// The snapshots of one home.
pub struct Keeper {
    pub home: PathBuf,
    pub store: Arc<dyn SnapshotStore>,
    pub interval: Duration,
    /// `storageGB`: a snapshot may not store more.
    pub limit_bytes: u64,
    status: Mutex<Status>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Keeper {
    pub fn new(
        home: PathBuf,
        store: Arc<dyn SnapshotStore>,
        interval: Duration,
        limit_bytes: u64,
    ) -> Self {
        Keeper {
            home,
            store,
            interval,
            limit_bytes,
            status: Mutex::new(Status::default()),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    pub fn status(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    /// Put the newest whole snapshot in the home (before code-server starts).
    pub async fn restore(&self) -> anyhow::Result<()> {
        let restored = super::restore(&self.home, self.store.as_ref()).await?;
        let mut s = self.status.lock().expect("status lock");
        if let Some(m) = &restored.manifest {
            tracing::info!(snapshot = %m.id, bytes = m.stored_bytes(), "home restored");
            s.last_at = Some(m.created_at);
            s.stored_bytes = Some(m.stored_bytes());
        }
        s.warning = restored.warning;
        Ok(())
    }

    /// Take one snapshot now (waiting for one in progress to finish).
    pub async fn take(&self) -> anyhow::Result<()> {
        let _one = self.one_at_a_time.lock().await;
        let started = std::time::Instant::now();
        let result = super::snapshot(&self.home, self.store.as_ref(), Some(self.limit_bytes)).await;
        let mut s = self.status.lock().expect("status lock");
        match &result {
            Ok(m) => {
                let bytes = m.stored_bytes();
                tracing::info!(snapshot = %m.id, bytes, took_ms = started.elapsed().as_millis() as u64, "snapshot taken");
                s.last_at = Some(m.created_at);
                s.stored_bytes = Some(bytes);
                s.warning = (bytes as f64 > self.limit_bytes as f64 * super::WARN_SHARE).then(|| {
                    format!(
                        "the last snapshot took {} of this environment's {} of storage; when it no longer fits, snapshots fail and a crash loses everything since the last one",
                        human(bytes),
                        human(self.limit_bytes)
                    )
                });
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "snapshot failed");
                s.warning = Some(format!("the last snapshot failed: {e:#}"));
            }
        }
        result.map(|_| ())
    }

    /// A snapshot every interval until `stop`; one in progress finishes.
    pub async fn periodic(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let _ = self.take().await;
        }
    }
}

fn human(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / f64::from(1u32 << 30))
}
