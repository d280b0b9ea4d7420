//! Snapshot mode's engine (`handler agent` keeps the home with it; local compute
//! and the benchmark read the same stores): the home lives on a local scratch folder while
//! the environment runs, and is kept as snapshots in a `SnapshotStore`.
//!
//! A snapshot is a tar stream of the home (symlinks as symlinks, hard links
//! as links to their first path, modes, owners and times kept), gzip-
//! compressed and cut into parts of `PART_BYTES`, each written as a new
//! object `<id>/part-NNNNN`, then `<id>/manifest.json` **last**, naming
//! every part with its size and SHA-256. A snapshot without its manifest
//! does not exist: a writer killed half-way leaves parts nobody reads, and
//! the previous snapshot untouched. Ids are ULIDs, so the newest sorts last.
//!
//! After a snapshot is written, its manifest is read back and every part's
//! size checked (`verify`); only then are older snapshots pruned, and the
//! one before it is always kept, so a latest that later turns out corrupt
//! still has a fallback. `restore` tries the newest manifest first, checks
//! every part's size and hash while unpacking into a staging folder beside
//! the home, and moves it into place only when all of it arrived; a corrupt
//! or missing part makes it try the previous snapshot, with a warning that
//! says so. If snapshots exist and none restores, it fails: never a
//! silently empty home.

pub mod blob;
pub mod keeper;
pub mod store;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use store::SnapshotStore;
use tokio::sync::mpsc;

/// The size of one part before the last (compressed bytes): big enough that
/// a 10 GB home is a few hundred objects, small enough to hold in memory.
pub const PART_BYTES: usize = 16 * 1024 * 1024;
/// The manifest's object name inside a snapshot.
pub const MANIFEST: &str = "manifest.json";
/// A warning is shown once a snapshot takes this share of `storageGB`.
pub const WARN_SHARE: f64 = 0.8;

/// What a snapshot holds, written last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub version: u32,
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub parts: Vec<Part>,
    /// Entries in the archive (files, folders, links).
    pub entries: u64,
    /// Bytes of file content before compression.
    pub content_bytes: u64,
}

impl Manifest {
    /// Bytes the snapshot takes in the store.
    pub fn stored_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// How a restore went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// The snapshot now in the home; `None`: there was none (a new environment).
    pub manifest: Option<Manifest>,
    /// Set when a newer snapshot could not be restored and an older one was.
    pub warning: Option<String>,
}

/// The ids of complete snapshots (a manifest exists), oldest first, and
/// every object name by snapshot id.
async fn inventory(
    store: &dyn SnapshotStore,
) -> anyhow::Result<(Vec<String>, HashMap<String, Vec<String>>)> {
    let mut by_id: HashMap<String, Vec<String>> = HashMap::new();
    for name in store.list().await.context("listing snapshots")? {
        if let Some((id, _)) = name.split_once('/') {
            by_id.entry(id.to_string()).or_default().push(name.clone());
        }
    }
    let mut complete: Vec<String> = by_id
        .iter()
        .filter(|(id, names)| names.contains(&format!("{id}/{MANIFEST}")))
        .map(|(id, _)| id.clone())
        .collect();
    complete.sort();
    Ok((complete, by_id))
}

/// Is there at least one complete snapshot?
pub async fn has_snapshot(store: &dyn SnapshotStore) -> anyhow::Result<bool> {
    Ok(!inventory(store).await?.0.is_empty())
}

/// Take a snapshot of `home`, verify it, then prune all but it and the one
/// before it. `limit_bytes` (the environment's `storageGB`) bounds what it
/// may store: a bigger snapshot fails (and the previous stays).
pub async fn snapshot(
    home: &Path,
    store: &dyn SnapshotStore,
    limit_bytes: Option<u64>,
) -> anyhow::Result<Manifest> {
    let id = ulid::Ulid::new().to_string();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
    let root = home.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || archive(&root, tx));
    let mut parts = Vec::new();
    let mut stored = 0u64;
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        stored += chunk.len() as u64;
        if let Some(limit) = limit_bytes
            && stored > limit
        {
            failed = Some(anyhow!(
                "the snapshot is larger than the environment's storage ({limit} bytes)"
            ));
            break;
        }
        let name = format!("{id}/part-{:05}", parts.len());
        let part = Part {
            name: name.clone(),
            bytes: chunk.len() as u64,
            sha256: hex(&Sha256::digest(&chunk)),
        };
        if let Err(e) = store.put(&name, chunk).await {
            failed = Some(e.context(format!("writing {name}")));
            break;
        }
        parts.push(part);
    }
    // Dropping the receiver ends the archive writer at its next part.
    drop(rx);
    let counted = writer.await.context("the archive writer panicked")?;
    if let Some(e) = failed {
        discard(store, &id).await;
        return Err(e);
    }
    let (entries, content_bytes) = match counted {
        Ok(c) => c,
        Err(e) => {
            discard(store, &id).await;
            return Err(e.context(format!("archiving {}", home.display())));
        }
    };
    let manifest = Manifest {
        version: 1,
        id: id.clone(),
        created_at: Utc::now(),
        parts,
        entries,
        content_bytes,
    };
    let name = format!("{id}/{MANIFEST}");
    store
        .put(&name, serde_json::to_vec(&manifest)?)
        .await
        .with_context(|| format!("writing {name}"))?;
    verify(store, &manifest)
        .await
        .with_context(|| format!("verifying snapshot {id}"))?;
    if let Err(e) = prune(store, &id).await {
        tracing::warn!(error = %format!("{e:#}"), "could not prune old snapshots");
    }
    Ok(manifest)
}

/// The snapshot as stored is the one written: the manifest reads back the
/// same and every part has its size.
pub async fn verify(store: &dyn SnapshotStore, manifest: &Manifest) -> anyhow::Result<()> {
    let back = read_manifest(store, &manifest.id).await?;
    anyhow::ensure!(&back == manifest, "the manifest read back differs");
    for part in &manifest.parts {
        let size = store.size(&part.name).await?;
        anyhow::ensure!(
            size == Some(part.bytes),
            "{} has {size:?} bytes, not {}",
            part.name,
            part.bytes
        );
    }
    Ok(())
}

async fn read_manifest(store: &dyn SnapshotStore, id: &str) -> anyhow::Result<Manifest> {
    let name = format!("{id}/{MANIFEST}");
    let body = store
        .get(&name)
        .await?
        .ok_or_else(|| anyhow!("{name} is missing"))?;
    let m: Manifest = serde_json::from_slice(&body).with_context(|| format!("reading {name}"))?;
    anyhow::ensure!(
        m.version == 1 && m.id == id,
        "{name} is not version 1 of {id}"
    );
    for p in &m.parts {
        anyhow::ensure!(
            p.name.starts_with(&format!("{id}/part-")),
            "{name} names a part of another snapshot"
        );
    }
    Ok(m)
}

/// Remove every snapshot but `keep` and the newest complete one before it,
/// manifest first (a half-removed snapshot is incomplete, never corrupt).
async fn prune(store: &dyn SnapshotStore, keep: &str) -> anyhow::Result<()> {
    let (complete, by_id) = inventory(store).await?;
    let previous = complete.iter().rfind(|id| id.as_str() < keep).cloned();
    for (id, mut names) in by_id {
        if id == keep || Some(&id) == previous.as_ref() {
            continue;
        }
        names.sort_by_key(|n| !n.ends_with(MANIFEST));
        for n in names {
            store.delete(&n).await?;
        }
    }
    Ok(())
}

/// How old an incomplete snapshot (parts, no manifest) must be before the
/// control plane removes it: far longer than any snapshot takes, so one
/// being written now is never touched.
pub const ABANDONED_AFTER: chrono::Duration = chrono::Duration::days(1);

/// The control plane's pruning of what an agent left behind (a killed
/// agent prunes nothing): objects of complete snapshots older than the two
/// newest complete ones (manifest first), and parts of snapshots that never
/// got a manifest, older than `ABANDONED_AFTER` (a snapshot's age is its
/// ULID's time). At most `budget` objects per call, so one run's work is
/// bounded; the next run goes on. Returns how many were removed.
pub async fn prune_leftovers(
    store: &dyn SnapshotStore,
    now: DateTime<Utc>,
    budget: usize,
) -> anyhow::Result<usize> {
    let (complete, by_id) = inventory(store).await?;
    let kept: Vec<&String> = complete.iter().rev().take(2).collect();
    let mut ids: Vec<(&String, &Vec<String>)> = by_id.iter().collect();
    ids.sort();
    let mut removed = 0;
    for (id, names) in ids {
        if kept.contains(&id) {
            continue;
        }
        let abandoned = || {
            ulid::Ulid::from_string(id)
                .ok()
                .map(|u| DateTime::<Utc>::from(u.datetime()))
                .is_some_and(|at| at < now - ABANDONED_AFTER)
        };
        if !complete.contains(id) && !abandoned() {
            continue;
        }
        let mut names = names.clone();
        names.sort_by_key(|n| !n.ends_with(MANIFEST));
        for n in names {
            if removed >= budget {
                return Ok(removed);
            }
            store.delete(&n).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

async fn discard(store: &dyn SnapshotStore, id: &str) {
    if let Ok((_, by_id)) = inventory(store).await {
        for n in by_id.get(id).into_iter().flatten() {
            let _ = store.delete(n).await;
        }
    }
}

/// Restore the newest snapshot that is whole into `home` (replacing what is
/// there), falling back to older ones with a warning. No snapshot at all:
/// `home` is left as it is.
pub async fn restore(home: &Path, store: &dyn SnapshotStore) -> anyhow::Result<Restored> {
    let (complete, _) = inventory(store).await?;
    let mut failures: Vec<String> = Vec::new();
    for id in complete.iter().rev() {
        match restore_one(home, store, id).await {
            Ok(manifest) => {
                let warning = (!failures.is_empty()).then(|| {
                    format!(
                        "restored the snapshot of {} because the newer one could not be read ({})",
                        manifest.created_at.format("%Y-%m-%d %H:%M UTC"),
                        failures.join("; ")
                    )
                });
                if let Some(w) = &warning {
                    tracing::warn!(warning = %w, "restored an older snapshot");
                }
                return Ok(Restored {
                    manifest: Some(manifest),
                    warning,
                });
            }
            Err(e) => {
                tracing::warn!(snapshot = %id, error = %format!("{e:#}"), "snapshot could not be restored");
                failures.push(format!("{id}: {e:#}"));
            }
        }
    }
    if failures.is_empty() {
        return Ok(Restored::default());
    }
    Err(anyhow!(
        "no snapshot of the home could be restored ({})",
        failures.join("; ")
    ))
}

fn staging_of(home: &Path) -> PathBuf {
    let name = home
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "home".into());
    home.with_file_name(format!(".{name}.restoring"))
}

async fn restore_one(home: &Path, store: &dyn SnapshotStore, id: &str) -> anyhow::Result<Manifest> {
    let manifest = read_manifest(store, id).await?;
    let staging = staging_of(home);
    let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let target = staging.clone();
    let unpacker = tokio::task::spawn_blocking(move || unpack(&target, rx));
    let mut fetch_error = None;
    for part in &manifest.parts {
        let got = match store.get(&part.name).await {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(anyhow!("{} is missing", part.name)),
            Err(e) => Err(e),
        }
        .and_then(|d| {
            anyhow::ensure!(
                d.len() as u64 == part.bytes && hex(&Sha256::digest(&d)) == part.sha256,
                "{} does not match its size and checksum",
                part.name
            );
            Ok(d)
        });
        match got {
            Ok(d) => {
                if tx.send(Ok(d)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(format!("{e:#}")))).await;
                fetch_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let unpacked = unpacker.await.context("the unpacker panicked")?;
    let result = match (fetch_error, unpacked) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Ok(()),
    };
    if let Err(e) = result {
        let _ = tokio::fs::remove_dir_all(&staging).await;
        return Err(e);
    }
    let home = home.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        match std::fs::remove_dir_all(&home) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        std::fs::rename(&staging, &home)
            .with_context(|| format!("moving the restored home to {}", home.display()))
    })
    .await??;
    Ok(manifest)
}

/// Reads the parts a channel delivers, in order.
struct PartsReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(Ok(next)) => self.current = std::io::Cursor::new(next),
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

fn unpack(target: &Path, rx: mpsc::Receiver<std::io::Result<Vec<u8>>>) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::create_dir_all(target)?;
    let reader = PartsReader {
        rx,
        current: std::io::Cursor::new(Vec::new()),
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    // Owners are kept when the agent may set them (root on ACI, where the
    // IDE runs as the image's user); otherwise everything is the agent's.
    archive.set_preserve_ownerships(rustix::process::geteuid().is_root());
    archive.set_overwrite(true);
    archive.unpack(target).context("unpacking")?;
    Ok(())
}

/// Cuts the compressed stream into parts for the uploader.
struct PartWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl PartWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_BYTES));
        self.tx
            .blocking_send(part)
            .map_err(|_| std::io::Error::other("the snapshot was abandoned"))
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(PART_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A file's first `len` bytes, padded with zeros if it shrank while read
/// (a periodic snapshot reads files that may be written meanwhile).
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left as usize);
        let mut n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            buf[..max].fill(0);
            n = max;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Write the home as a gzip'd tar stream into parts; (entries, content bytes).
fn archive(root: &Path, tx: mpsc::Sender<Vec<u8>>) -> anyhow::Result<(u64, u64)> {
    let sink = PartWriter {
        tx,
        buf: Vec::with_capacity(PART_BYTES),
    };
    let gz = flate2::write::GzEncoder::new(sink, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Complete);
    tar.follow_symlinks(false);
    let mut seen: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(d) => d.flatten().map(|e| e.file_name()).collect(),
            // Removed while being read: what is gone is not in the snapshot.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !rel.as_os_str().is_empty() => {
                continue;
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!("reading {}", dir.display())));
            }
        };
        names.sort();
        // Reversed onto the stack so folders are visited in name order.
        let mut subdirs = Vec::new();
        for name in names {
            let rel_path = rel.join(&name);
            let path = root.join(&rel_path);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let ft = meta.file_type();
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            if ft.is_dir() {
                tar.append_data(&mut header, &rel_path, std::io::empty())?;
                subdirs.push(rel_path);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path)?;
                header.set_size(0);
                tar.append_link(&mut header, &rel_path, &target)?;
            } else if ft.is_file() {
                let key = (meta.dev(), meta.ino());
                if meta.nlink() > 1
                    && let Some(first) = seen.get(&key)
                {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    tar.append_link(&mut header, &rel_path, first)?;
                } else {
                    let file = match std::fs::File::open(&path) {
                        Ok(f) => f,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e.into()),
                    };
                    if meta.nlink() > 1 {
                        seen.insert(key, rel_path.clone());
                    }
                    bytes += meta.len();
                    let data = Exactly {
                        inner: file,
                        left: meta.len(),
                    };
                    tar.append_data(&mut header, &rel_path, data)?;
                }
            } else {
                // Sockets, FIFOs, devices: nothing a restart could use.
                continue;
            }
            entries += 1;
        }
        stack.extend(subdirs.into_iter().rev());
    }
    let gz = tar.into_inner()?;
    let mut sink = gz.finish()?;
    if !sink.buf.is_empty() {
        sink.send()?;
    }
    Ok((entries, bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
