//! Where snapshots are kept: a flat namespace of named, immutable objects.
//! `FolderStore` keeps them as files (local compute's snapshot mode, tests,
//! the benchmark). Every `put` is atomic: an object is either absent or
//! complete under its name (written aside, then renamed).

use async_trait::async_trait;
use std::path::{Path, PathBuf};

/// A snapshot store. Names are `<snapshot id>/<file>` (ASCII, no `..`).
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Write an object whole; an existing object of that name is replaced.
    async fn put(&self, name: &str, data: Vec<u8>) -> anyhow::Result<()>;
    /// Read an object; `None` when it does not exist.
    async fn get(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// An object's size; `None` when it does not exist.
    async fn size(&self, name: &str) -> anyhow::Result<Option<u64>>;
    /// Every object's name, in no particular order.
    async fn list(&self) -> anyhow::Result<Vec<String>>;
    /// Remove an object (absent is fine).
    async fn delete(&self, name: &str) -> anyhow::Result<()>;
}

/// Objects as files below one folder (`<root>/<id>/<file>`).
pub struct FolderStore {
    root: PathBuf,
}

impl FolderStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FolderStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(valid_name(name), "{name:?} is not a snapshot object's name");
        Ok(self.root.join(name))
    }
}

/// `<id>/<file>`: two plain segments of letters, digits, `-`, `_` and `.`
/// (never `.` or `..` alone).
pub fn valid_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

#[async_trait]
impl SnapshotStore for FolderStore {
    async fn put(&self, name: &str, data: Vec<u8>) -> anyhow::Result<()> {
        let path = self.path(name)?;
        blocking(move || {
            use std::io::Write;
            let dir = path.parent().expect("a name has a folder");
            std::fs::create_dir_all(dir)?;
            let aside = dir.join(format!(".tmp-{}", ulid::Ulid::new()));
            let mut f = std::fs::File::create(&aside)?;
            f.write_all(&data)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&aside, &path)?;
            // The rename itself is durable once the folder is.
            std::fs::File::open(dir)?.sync_all()?;
            Ok(())
        })
        .await
    }

    async fn get(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.path(name)?;
        blocking(move || match std::fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    async fn size(&self, name: &str) -> anyhow::Result<Option<u64>> {
        let path = self.path(name)?;
        blocking(move || match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    async fn list(&self) -> anyhow::Result<Vec<String>> {
        let root = self.root.clone();
        blocking(move || {
            let mut names = Vec::new();
            let dirs = match std::fs::read_dir(&root) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
                Err(e) => return Err(e.into()),
            };
            for dir in dirs {
                let dir = dir?;
                let Some(id) = dir.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if !dir.file_type()?.is_dir() {
                    continue;
                }
                for file in std::fs::read_dir(dir.path())? {
                    let file = file?;
                    if let Some(f) = file.file_name().to_str()
                        && !f.starts_with(".tmp-")
                    {
                        names.push(format!("{id}/{f}"));
                    }
                }
            }
            Ok(names)
        })
        .await
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let path = self.path(name)?;
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            // The snapshot's folder goes with its last object (and any
            // object left half-written aside by a killed writer).
            if let Some(dir) = path.parent()
                && let Ok(rest) = std::fs::read_dir(dir)
            {
                let rest: Vec<_> = rest.flatten().collect();
                if rest
                    .iter()
                    .all(|f| f.file_name().to_string_lossy().starts_with(".tmp-"))
                {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Ok(())
        })
        .await
    }
}
