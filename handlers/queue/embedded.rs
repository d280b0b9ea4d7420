//! The embedded queue: Storage-Queue semantics on a SQLite file in the data
//! dir, so jobs survive a restart of `serve`. Time comes from the injected
//! clock, so tests make delayed messages visible by moving the clock.

use super::{Delivery, JobQueue, QueueError, QueueResult};
use crate::clock::Clock;
use crate::db::Db;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    inserted_at TEXT NOT NULL,
    visible_at TEXT NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    pop_receipt TEXT
);
CREATE INDEX messages_visible ON messages (queue, visible_at, inserted_at);
"#];

#[derive(Clone)]
pub struct EmbeddedQueue {
    db: Db,
    name: String,
    poison_name: String,
    clock: Arc<dyn Clock>,
    /// Wakes a waiting worker when a message is sent.
    notify: Arc<tokio::sync::Notify>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn after(now: DateTime<Utc>, d: Duration) -> String {
    ts(now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(7)))
}

fn db_err(e: rusqlite::Error) -> QueueError {
    QueueError::Unavailable(e.into())
}

impl EmbeddedQueue {
    pub fn open(path: &Path, name: &str, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Ok(Self::with_db(Db::open(path, MIGRATIONS)?, name, clock))
    }

    pub fn in_memory(name: &str, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Ok(Self::with_db(Db::in_memory(MIGRATIONS)?, name, clock))
    }

    fn with_db(db: Db, name: &str, clock: Arc<dyn Clock>) -> Self {
        EmbeddedQueue {
            db,
            name: name.to_string(),
            poison_name: format!("{name}-poison"),
            clock,
            notify: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Resolves when a message may have been sent since the last call.
    pub fn notified(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.notify.notified()
    }

    /// Insert messages `(body, delay)` into `queue` in one transaction.
    async fn insert(&self, queue: String, messages: &[(String, Duration)]) -> QueueResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let rows: Vec<[String; 4]> = messages
            .iter()
            .map(|(body, delay)| {
                [
                    crate::domain::new_id(),
                    body.clone(),
                    ts(now),
                    after(now, *delay),
                ]
            })
            .collect();
        self.db
            .with(move |c| {
                let tx = c.transaction().map_err(db_err)?;
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO messages (id, queue, body, inserted_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .map_err(db_err)?;
                    for [id, body, inserted, visible] in &rows {
                        insert
                            .execute(params![id, queue, body, inserted, visible])
                            .map_err(db_err)?;
                    }
                }
                tx.commit().map_err(db_err)
            })
            .await?;
        self.notify.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    fn sent_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.notify.clone())
    }

    async fn send(&self, body: &str, delay: Duration) -> QueueResult<()> {
        self.insert(self.name.clone(), &[(body.to_string(), delay)])
            .await
    }

    async fn send_all(&self, messages: &[(String, Duration)]) -> QueueResult<()> {
        self.insert(self.name.clone(), messages).await
    }

    async fn receive(&self, visibility: Duration) -> QueueResult<Option<Delivery>> {
        let now = self.clock.now();
        let (queue, now_s, hidden_until) = (self.name.clone(), ts(now), after(now, visibility));
        self.db
            .with(move |c| {
                let tx = c.transaction().map_err(db_err)?;
                let row: Option<(String, String, u32)> = tx
                    .query_row(
                        "SELECT id, body, dequeue_count FROM messages
                         WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, inserted_at LIMIT 1",
                        params![queue, now_s],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(db_err)?;
                let Some((id, body, count)) = row else { return Ok(None) };
                let receipt = crate::domain::new_id();
                tx.execute(
                    "UPDATE messages SET visible_at = ?1, dequeue_count = dequeue_count + 1, pop_receipt = ?2 WHERE id = ?3",
                    params![hidden_until, receipt, id],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(Some(Delivery { id, pop_receipt: receipt, dequeue_count: count + 1, body }))
            })
            .await
    }

    async fn delete(&self, d: &Delivery) -> QueueResult<()> {
        let (id, receipt) = (d.id.clone(), d.pop_receipt.clone());
        self.db
            .with(move |c| {
                let n = c
                    .execute(
                        "DELETE FROM messages WHERE id = ?1 AND pop_receipt = ?2",
                        params![id, receipt],
                    )
                    .map_err(db_err)?;
                if n == 1 {
                    Ok(())
                } else {
                    Err(QueueError::NotFound)
                }
            })
            .await
    }

    async fn release(&self, d: &Delivery, delay: Duration) -> QueueResult<()> {
        let (id, receipt, visible) = (
            d.id.clone(),
            d.pop_receipt.clone(),
            after(self.clock.now(), delay),
        );
        self.db
            .with(move |c| {
                let n = c
                    .execute(
                        "UPDATE messages SET visible_at = ?1, pop_receipt = NULL WHERE id = ?2 AND pop_receipt = ?3",
                        params![visible, id, receipt],
                    )
                    .map_err(db_err)?;
                if n == 1 { Ok(()) } else { Err(QueueError::NotFound) }
            })
            .await?;
        self.notify.notify_waiters();
        Ok(())
    }

    async fn poison(&self, d: &Delivery) -> QueueResult<()> {
        self.delete(d).await?;
        self.insert(
            self.poison_name.clone(),
            &[(d.body.clone(), Duration::ZERO)],
        )
        .await
    }

    async fn poisoned(&self) -> QueueResult<Vec<String>> {
        let queue = self.poison_name.clone();
        self.db
            .with(move |c| {
                let mut stmt = c
                    .prepare("SELECT body FROM messages WHERE queue = ?1 ORDER BY inserted_at")
                    .map_err(db_err)?;
                let rows = stmt.query_map([queue], |r| r.get(0)).map_err(db_err)?;
                rows.collect::<Result<Vec<String>, _>>().map_err(db_err)
            })
            .await
    }

    async fn approximate_len(&self) -> QueueResult<u64> {
        let queue = self.name.clone();
        self.db
            .with(move |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM messages WHERE queue = ?1",
                    [queue],
                    |r| r.get(0),
                )
                .map_err(db_err)
            })
            .await
    }
}
