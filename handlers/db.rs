//! SQLite used off the async threads, with schema migrations by
//! `PRAGMA user_version`. Used by the embedded store and the embedded queue
//! (each with its own file and migrations).
//!
//! One writer connection takes every write (`with`); a file database can
//! also have a small pool of read-only connections (`read`). In WAL mode readers
//! see the last committed write and neither wait for the writer nor block
//! it, so reads do not queue behind writes. Every statement is its own
//! transaction (or `with` opens one), so a read after a write has returned
//! sees it.

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// Empty when opened without readers (an in-memory database's readers
    /// would see another database).
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<AtomicUsize>,
}

fn lock(conn: &Mutex<Connection>) -> anyhow::Result<MutexGuard<'_, Connection>> {
    conn.lock()
        .map_err(|_| anyhow::anyhow!("sqlite connection lock poisoned"))
}

impl Db {
    /// Open (creating if needed) `path` and apply `migrations` not yet
    /// applied; one connection, which also serves `read`.
    pub fn open(path: &Path, migrations: &[&str]) -> anyhow::Result<Self> {
        Self::open_with_readers(path, migrations, 0)
    }

    /// `open`, plus `readers` read-only connections for `read`.
    pub fn open_with_readers(
        path: &Path,
        migrations: &[&str],
        readers: usize,
    ) -> anyhow::Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut db = Self::init(conn, migrations)?;
        let readers = (0..readers)
            .map(|_| {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI;
                let c = Connection::open_with_flags(path, flags)
                    .with_context(|| format!("opening {} to read", path.display()))?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                Ok(Mutex::new(c))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        db.readers = readers.into();
        Ok(db)
    }

    /// A private in-memory database.
    pub fn in_memory(migrations: &[&str]) -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory()?, migrations)
    }

    fn init(conn: Connection, migrations: &[&str]) -> anyhow::Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in migrations.iter().enumerate().skip(version) {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .with_context(|| format!("applying migration {}", i + 1))?;
        }
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new([]),
            next_reader: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Run `f` with the connection on the blocking pool.
    pub async fn with<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut *lock(&conn)?))
            .await
            .map_err(|e| E::from(anyhow::Error::new(e)))?
    }

    /// Run the read-only `f` on a read connection on the blocking pool (the
    /// writer for an in-memory database): a free one if any, else the next
    /// in turn. A write through a read connection fails.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        if self.readers.is_empty() {
            return self.with(move |c| f(c)).await;
        }
        let (readers, next) = (self.readers.clone(), self.next_reader.clone());
        tokio::task::spawn_blocking(move || {
            let start = next.fetch_add(1, Ordering::Relaxed);
            let n = readers.len();
            let free = (0..n).find_map(|i| readers[(start + i) % n].try_lock().ok());
            match free {
                Some(guard) => f(&guard),
                None => f(&*lock(&readers[start % n])?),
            }
        })
        .await
        .map_err(|e| E::from(anyhow::Error::new(e)))?
    }
}
