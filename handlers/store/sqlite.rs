//! SQLite adapter for the `Store` port: one file in the data dir, WAL mode,
//! schema migrations by `PRAGMA user_version`. Each record is kept as its JSON
//! document (the same shape Cosmos stores) next to the columns that are
//! indexed; ETags are row versions.

use super::{
    AuditCursor, CONFLICT_EMAIL, CONFLICT_ENVIRONMENT_NAME, CONFLICT_IDENTITY, Etag, Store,
    StoreError, StoreResult, Versioned, name_key,
};
use crate::db::Db;
use crate::domain::{AuditRecord, Environment, Identity, Session, Status, StoredSecret, User};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use std::path::Path;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE TABLE environments (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    last_activity_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (user_id, name)
);
CREATE INDEX environments_by_user_recent ON environments (user_id, last_activity_at DESC, created_at DESC);
CREATE INDEX environments_by_status ON environments (status);
CREATE TABLE documents (
    key TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    expires_at TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX documents_by_expiry ON documents (expires_at) WHERE expires_at IS NOT NULL;
"#,
    r#"
CREATE TABLE identities (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (issuer, subject)
);
CREATE INDEX identities_by_user ON identities (user_id, created_at);
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX audit_by_user_recent ON audit (user_id, at DESC, id DESC);
"#,
    // An environment's history (`GET /api/audit?environmentId=`): the id in
    // its own column (filled from the documents already written) and an
    // index on (environment, time).
    r#"
ALTER TABLE audit ADD COLUMN environment_id TEXT;
UPDATE audit SET environment_id = json_extract(doc, '$.environmentId');
CREATE INDEX audit_by_environment_recent ON audit (environment_id, at DESC, id DESC)
    WHERE environment_id IS NOT NULL;
"#,
    // Personal secrets: the sealed value only (`crate::sealing`).
    r#"
CREATE TABLE secrets (
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
"#,
];

/// Whether `e`'s name is taken, case aside, by another of its user's
/// environments. Runs on the writer connection inside the write's
/// transaction, so two writes cannot both pass it. The user's names are
/// compared here (Unicode lower case, which SQLite's `lower` is not); there
/// are at most `DEV8_MAX_ENVIRONMENTS_PER_USER` of them, read through
/// `environments_by_user_recent`. Not a unique index: look-alike names made
/// before this check keep working.
fn name_taken(c: &Connection, e: &Environment) -> StoreResult<bool> {
    let key = name_key(&e.name);
    let mut stmt = c
        .prepare_cached("SELECT name FROM environments WHERE user_id = ?1 AND id <> ?2")
        .map_err(unavailable)?;
    let names = stmt
        .query_map(params![e.user_id, e.id], |r| r.get::<_, String>(0))
        .map_err(unavailable)?;
    for name in names {
        if name_key(&name.map_err(unavailable)?) == key {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An environment's audit records, newest first (see `audit_records`).
pub const ENVIRONMENT_AUDIT_SQL: &str = "SELECT doc FROM audit
     WHERE environment_id = ?1 AND user_id = ?2
     AND (?3 IS NULL OR at < ?3 OR (at = ?3 AND id < ?4))
     ORDER BY at DESC, id DESC LIMIT ?5";

/// The sweep's scan: the active environments, found through
/// `environments_by_status` (O(active) rows, not O(all)).
pub const ACTIVE_ENVIRONMENTS_SQL: &str = "SELECT doc, version FROM environments
     WHERE status IN ('creating', 'starting', 'running', 'stopping', 'deleting')";

/// Read connections of a file store: enough for the blocking pool to serve
/// reads on both cores of a small machine while a write is in progress.
pub const READERS: usize = 3;

/// The embedded store. Cheap to clone; all clones share one writer
/// connection and `READERS` read connections (`Db`).
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
}

impl From<anyhow::Error> for StoreError {
    fn from(e: anyhow::Error) -> Self {
        StoreError::Unavailable(e)
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn unavailable(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::unavailable(e)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(unavailable)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(unavailable)
}

impl SqliteStore {
    /// Open (creating if needed) the database file and bring its schema up to date.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(SqliteStore {
            db: Db::open_with_readers(path, MIGRATIONS, READERS)?,
        })
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> anyhow::Result<Self> {
        Ok(SqliteStore {
            db: Db::in_memory(MIGRATIONS)?,
        })
    }

    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        self.db.with(f).await
    }

    /// A read: on a read connection, never queued behind a write.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.db.read(f).await
    }
}

fn read_env(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64)> {
    Ok((row.get(0)?, row.get(1)?))
}

fn versioned_envs(rows: Vec<(String, i64)>) -> StoreResult<Vec<Versioned<Environment>>> {
    rows.into_iter()
        .map(|(doc, v)| {
            Ok(Versioned {
                value: from_json(&doc)?,
                etag: v.to_string(),
            })
        })
        .collect()
}

/// The documents one query with one parameter selects, decoded.
fn docs_where<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    param: &str,
) -> StoreResult<Vec<T>> {
    let mut stmt = c.prepare_cached(sql).map_err(unavailable)?;
    let rows = stmt
        .query_map([param], |r| r.get::<_, String>(0))
        .map_err(unavailable)?;
    rows.map(|r| from_json(&r.map_err(unavailable)?)).collect()
}

/// A delete of one keyed row: `NotFound` when it removed nothing.
fn deleted_one(removed: usize) -> StoreResult<()> {
    if removed == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

fn parse_etag(etag: &Etag) -> StoreResult<i64> {
    etag.parse().map_err(|_| StoreError::PreconditionFailed)
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        let (id, email, doc) = (user.id.clone(), user.email.clone(), to_json(user)?);
        self.with(move |c| {
            c.execute(
                "INSERT INTO users (id, email, doc) VALUES (?1, ?2, ?3)",
                params![id, email, doc],
            )
            .map(|_| ())
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(CONFLICT_EMAIL.into())
                } else {
                    unavailable(e)
                }
            })
        })
        .await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_string();
        self.read(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM users WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            doc.map(|d| from_json(&d)).transpose()
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_string();
        self.read(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM users WHERE email = ?1", [email], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(unavailable)?;
            doc.map(|d| from_json(&d)).transpose()
        })
        .await
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        let (id, email, doc) = (user.id.clone(), user.email.clone(), to_json(user)?);
        self.with(move |c| {
            let stored: Option<String> = c
                .query_row("SELECT email FROM users WHERE id = ?1", [&id], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            match stored {
                None => Err(StoreError::NotFound),
                Some(e) if e != email => Err(StoreError::Conflict(CONFLICT_EMAIL.into())),
                Some(_) => c
                    .execute("UPDATE users SET doc = ?2 WHERE id = ?1", params![id, doc])
                    .map(|_| ())
                    .map_err(unavailable),
            }
        })
        .await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.with(move |c| {
            c.execute("DELETE FROM users WHERE id = ?1", [id])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        let (user_id, hash) = (user_id.to_string(), hash.to_string());
        self.with(move |c| {
            let changed = c
                .execute(
                    "UPDATE users SET doc = json_set(doc, '$.passwordHash', ?2) WHERE id = ?1",
                    params![user_id, hash],
                )
                .map_err(unavailable)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::NotFound)
            }
        })
        .await
    }

    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        let (id, user, exp, doc) = (
            session.id.clone(),
            session.user_id.clone(),
            ts(session.expires_at),
            to_json(session)?,
        );
        self.with(move |c| {
            c.execute(
                "INSERT INTO sessions (id, user_id, expires_at, doc) VALUES (?1, ?2, ?3, ?4)",
                params![id, user, exp, doc],
            )
            .map(|_| ())
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("session".into())
                } else {
                    unavailable(e)
                }
            })
        })
        .await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        let id = id.to_string();
        self.read(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM sessions WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            doc.map(|d| from_json(&d)).transpose()
        })
        .await
    }

    async fn revoke_session(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.with(move |c| {
            c.execute(
                "UPDATE sessions SET doc = json_set(doc, '$.revoked', json('true')) WHERE id = ?1",
                [id],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn revoke_user_sessions(&self, user_id: &str, keep: Option<&str>) -> StoreResult<()> {
        let (user_id, keep) = (user_id.to_string(), keep.map(str::to_string));
        self.with(move |c| {
            c.execute(
                "UPDATE sessions SET doc = json_set(doc, '$.revoked', json('true'))
                 WHERE user_id = ?1 AND (?2 IS NULL OR id <> ?2)",
                params![user_id, keep],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn insert_environment(&self, env: &Environment) -> StoreResult<Etag> {
        let doc = to_json(env)?;
        let e = env.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            if name_taken(&tx, &e)? {
                return Err(StoreError::Conflict(CONFLICT_ENVIRONMENT_NAME.into()));
            }
            tx.execute(
                "INSERT INTO environments (id, user_id, name, status, last_activity_at, created_at, version, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
                params![e.id, e.user_id, e.name, e.status.as_str(), ts(e.last_activity_at), ts(e.created_at), doc],
            )
            .map_err(|err| {
                if is_unique_violation(&err) {
                    let msg = err.to_string();
                    if msg.contains("environments.id") { StoreError::Conflict("id".into()) } else {
                        StoreError::Conflict(CONFLICT_ENVIRONMENT_NAME.into())
                    }
                } else {
                    unavailable(err)
                }
            })?;
            tx.commit().map_err(unavailable)?;
            Ok("1".to_string())
        })
        .await
    }

    async fn environment(
        &self,
        user_id: &str,
        id: &str,
    ) -> StoreResult<Option<Versioned<Environment>>> {
        let (user_id, id) = (user_id.to_string(), id.to_string());
        self.read(move |c| {
            let row = c
                .query_row(
                    "SELECT doc, version FROM environments WHERE id = ?1 AND user_id = ?2",
                    params![id, user_id],
                    read_env,
                )
                .optional()
                .map_err(unavailable)?;
            Ok(versioned_envs(row.into_iter().collect())?.pop())
        })
        .await
    }

    async fn environments(&self, user_id: &str) -> StoreResult<Vec<Versioned<Environment>>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc, version FROM environments WHERE user_id = ?1
                     ORDER BY last_activity_at DESC, created_at DESC, id DESC",
                )
                .map_err(unavailable)?;
            let rows = stmt.query_map([user_id], read_env).map_err(unavailable)?;
            versioned_envs(rows.collect::<Result<_, _>>().map_err(unavailable)?)
        })
        .await
    }

    async fn replace_environment(&self, env: &Environment, if_match: &Etag) -> StoreResult<Etag> {
        let expected = parse_etag(if_match)?;
        let doc = to_json(env)?;
        let e = env.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let stored: Option<String> = tx
                .query_row(
                    "SELECT name FROM environments WHERE id = ?1 AND user_id = ?2",
                    params![e.id, e.user_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            // Only a new name is checked: an unchanged one (even a look-alike
            // from before the check) keeps working.
            if stored.as_ref().is_some_and(|name| *name != e.name) && name_taken(&tx, &e)? {
                return Err(StoreError::Conflict(CONFLICT_ENVIRONMENT_NAME.into()));
            }
            let changed = tx
                .execute(
                    "UPDATE environments SET name = ?1, status = ?2, last_activity_at = ?3, version = version + 1, doc = ?4
                     WHERE id = ?5 AND user_id = ?6 AND version = ?7",
                    params![e.name, e.status.as_str(), ts(e.last_activity_at), doc, e.id, e.user_id, expected],
                )
                .map_err(|err| {
                    if is_unique_violation(&err) {
                        StoreError::Conflict(CONFLICT_ENVIRONMENT_NAME.into())
                    } else {
                        unavailable(err)
                    }
                })?;
            if changed == 1 {
                tx.commit().map_err(unavailable)?;
                return Ok((expected + 1).to_string());
            }
            Err(if stored.is_some() { StoreError::PreconditionFailed } else { StoreError::NotFound })
        })
        .await
    }

    async fn delete_environment(
        &self,
        user_id: &str,
        id: &str,
        if_match: &Etag,
    ) -> StoreResult<()> {
        let expected = parse_etag(if_match)?;
        let (user_id, id) = (user_id.to_string(), id.to_string());
        self.with(move |c| {
            let changed = c
                .execute(
                    "DELETE FROM environments WHERE id = ?1 AND user_id = ?2 AND version = ?3",
                    params![id, user_id, expected],
                )
                .map_err(unavailable)?;
            if changed == 1 {
                return Ok(());
            }
            let exists: Option<i64> = c
                .query_row(
                    "SELECT version FROM environments WHERE id = ?1 AND user_id = ?2",
                    params![id, user_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            Err(if exists.is_some() {
                StoreError::PreconditionFailed
            } else {
                StoreError::NotFound
            })
        })
        .await
    }

    async fn active_environments(&self) -> StoreResult<Vec<Versioned<Environment>>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(ACTIVE_ENVIRONMENTS_SQL)
                .map_err(unavailable)?;
            let rows = stmt.query_map([], read_env).map_err(unavailable)?;
            versioned_envs(rows.collect::<Result<_, _>>().map_err(unavailable)?)
        })
        .await
    }

    async fn environment_counts(&self) -> StoreResult<Vec<(Status, u64)>> {
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT status, COUNT(*) FROM environments GROUP BY status")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(unavailable)?;
            let mut counts = Vec::new();
            for row in rows {
                let (status, n) = row.map_err(unavailable)?;
                // A status this version does not know is not counted.
                if let Some(s) = Status::ALL.into_iter().find(|s| s.as_str() == status) {
                    counts.push((s, u64::try_from(n).unwrap_or(0)));
                }
            }
            Ok(counts)
        })
        .await
    }

    async fn document(&self, key: &str) -> StoreResult<Option<Versioned<serde_json::Value>>> {
        let key = key.to_string();
        let now = ts(Utc::now());
        self.read(move |c| {
            let row: Option<(String, i64)> = c
                .query_row(
                    "SELECT doc, version FROM documents WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                    params![key, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(doc, v)| {
                Ok(Versioned {
                    value: from_json(&doc)?,
                    etag: v.to_string(),
                })
            })
            .transpose()
        })
        .await
    }

    async fn put_document(
        &self,
        key: &str,
        value: &serde_json::Value,
        if_match: Option<&Etag>,
        expires_at: Option<DateTime<Utc>>,
    ) -> StoreResult<Etag> {
        let key = key.to_string();
        let doc = to_json(value)?;
        let exp = expires_at.map(ts);
        let expected = if_match.map(parse_etag).transpose()?;
        let now = ts(Utc::now());
        self.with(move |c| match expected {
            None => {
                // A document past its expiry is gone (as Cosmos hides it by
                // TTL): a create takes its key over.
                let version: Option<i64> = c
                    .query_row(
                        "INSERT INTO documents (key, version, expires_at, doc) VALUES (?1, 1, ?2, ?3)
                         ON CONFLICT (key) DO UPDATE SET version = version + 1, expires_at = excluded.expires_at, doc = excluded.doc
                         WHERE documents.expires_at IS NOT NULL AND documents.expires_at <= ?4
                         RETURNING version",
                        params![key, exp, doc, now],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(unavailable)?;
                version.map(|v| v.to_string()).ok_or(StoreError::Conflict(key))
            }
            Some(v) => {
                let changed = c
                    .execute(
                        "UPDATE documents SET version = version + 1, expires_at = ?1, doc = ?2
                         WHERE key = ?3 AND version = ?4 AND (expires_at IS NULL OR expires_at > ?5)",
                        params![exp, doc, key, v, now],
                    )
                    .map_err(unavailable)?;
                if changed == 1 { Ok((v + 1).to_string()) } else { Err(StoreError::PreconditionFailed) }
            }
        })
        .await
    }

    async fn purge_expired_documents(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let now = ts(now);
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM documents WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                    [now],
                )
                .map_err(unavailable)?;
            Ok(n as u64)
        })
        .await
    }

    async fn insert_identity(&self, identity: &Identity) -> StoreResult<()> {
        let doc = to_json(identity)?;
        let i = identity.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO identities (id, user_id, issuer, subject, created_at, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![i.id, i.user_id, i.issuer, i.subject, ts(i.created_at), doc],
            )
            .map(|_| ())
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(CONFLICT_IDENTITY.into())
                } else {
                    unavailable(e)
                }
            })
        })
        .await
    }

    async fn identity_by_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<Identity>> {
        let (issuer, subject) = (issuer.to_string(), subject.to_string());
        self.read(move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM identities WHERE issuer = ?1 AND subject = ?2",
                    params![issuer, subject],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            doc.map(|d| from_json(&d)).transpose()
        })
        .await
    }

    async fn identities(&self, user_id: &str) -> StoreResult<Vec<Identity>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            docs_where(
                c,
                "SELECT doc FROM identities WHERE user_id = ?1 ORDER BY created_at, id",
                &user_id,
            )
        })
        .await
    }

    async fn delete_identity(&self, user_id: &str, id: &str) -> StoreResult<()> {
        let (user_id, id) = (user_id.to_string(), id.to_string());
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM identities WHERE id = ?1 AND user_id = ?2",
                    params![id, user_id],
                )
                .map_err(unavailable)?;
            deleted_one(n)
        })
        .await
    }

    async fn put_secret(&self, secret: &StoredSecret) -> StoreResult<()> {
        let doc = to_json(secret)?;
        let (user_id, name) = (secret.user_id.clone(), secret.name.clone());
        self.with(move |c| {
            c.execute(
                "INSERT INTO secrets (user_id, name, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, name) DO UPDATE SET doc = excluded.doc",
                params![user_id, name, doc],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn secrets(&self, user_id: &str) -> StoreResult<Vec<StoredSecret>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            docs_where(
                c,
                "SELECT doc FROM secrets WHERE user_id = ?1 ORDER BY name",
                &user_id,
            )
        })
        .await
    }

    async fn delete_secret(&self, user_id: &str, name: &str) -> StoreResult<()> {
        let (user_id, name) = (user_id.to_string(), name.to_string());
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM secrets WHERE user_id = ?1 AND name = ?2",
                    params![user_id, name],
                )
                .map_err(unavailable)?;
            deleted_one(n)
        })
        .await
    }

    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        let doc = to_json(record)?;
        let r = record.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO audit (id, user_id, at, doc, environment_id) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                params![r.id, r.user_id, ts(r.at), doc, r.environment_id],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn audit_records(
        &self,
        user_id: &str,
        environment_id: Option<&str>,
        before: Option<&AuditCursor>,
        limit: usize,
    ) -> StoreResult<Vec<AuditRecord>> {
        let user_id = user_id.to_string();
        let environment_id = environment_id.map(str::to_string);
        let (at, id) = before.map_or((None, None), |b| (Some(ts(b.at)), Some(b.id.clone())));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let docs: Vec<String> = match environment_id {
                Some(env) => c
                    .prepare_cached(ENVIRONMENT_AUDIT_SQL)
                    .map_err(unavailable)?
                    .query_map(params![env, user_id, at, id, limit], |r| r.get(0))
                    .map_err(unavailable)?
                    .collect::<Result<_, _>>(),
                None => c
                    .prepare_cached(
                        "SELECT doc FROM audit WHERE user_id = ?1
                         AND (?2 IS NULL OR at < ?2 OR (at = ?2 AND id < ?3))
                         ORDER BY at DESC, id DESC LIMIT ?4",
                    )
                    .map_err(unavailable)?
                    .query_map(params![user_id, at, id, limit], |r| r.get(0))
                    .map_err(unavailable)?
                    .collect::<Result<_, _>>(),
            }
            .map_err(unavailable)?;
            docs.iter().map(|d| from_json(d)).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AuditOutcome;

    /// A database written before environment histories existed: opening it
    /// fills the new column from the records already there, so their
    /// environment's history includes them.
    #[tokio::test]
    async fn the_history_migration_fills_in_existing_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev8.db");
        drop(Db::open(&path, &MIGRATIONS[..2]).unwrap());
        let record = AuditRecord {
            id: "r1".into(),
            user_id: "u1".into(),
            at: Utc::now(),
            action: "environment.start".into(),
            outcome: AuditOutcome::Success,
            environment_id: Some("e1".into()),
            client_address: None,
            detail: None,
            idle_timeout_minutes: None,
            reason: None,
            desired_state: None,
        };
        let old = Connection::open(&path).unwrap();
        old.execute(
            "INSERT INTO audit (id, user_id, at, doc) VALUES (?1, ?2, ?3, ?4)",
            params![
                record.id,
                record.user_id,
                ts(record.at),
                to_json(&record).unwrap()
            ],
        )
        .unwrap();
        drop(old);

        let store = SqliteStore::open(&path).unwrap();
        let history = store
            .audit_records("u1", Some("e1"), None, 10)
            .await
            .unwrap();
        assert_eq!(history, vec![record]);
        assert!(
            store
                .audit_records("u1", Some("e2"), None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
