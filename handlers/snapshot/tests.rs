use super::store::{FolderStore, SnapshotStore};
use super::*;
use std::os::unix::fs::PermissionsExt;

fn home_in(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(home.join("workspace/src")).unwrap();
    home
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Bytes that do not compress (a small xorshift stream).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn manifests(store: &FolderStore) -> Vec<String> {
    let mut m: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(MANIFEST))
        .collect();
    m.sort();
    m
}

#[tokio::test]
async fn a_home_comes_back_exactly_links_modes_and_a_wal_database() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_in(dir.path());
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(ssh.join("id_ed25519"), "KEY").unwrap();
    std::fs::set_permissions(
        ssh.join("id_ed25519"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(home.join("workspace/src/a.txt"), "A").unwrap();
    std::os::unix::fs::symlink("src/a.txt", home.join("workspace/link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", home.join("dangling")).unwrap();
    std::fs::hard_link(
        home.join("workspace/src/a.txt"),
        home.join("workspace/hard.txt"),
    )
    .unwrap();
    std::fs::create_dir(home.join("empty")).unwrap();
    let script = home.join("workspace/run.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let long = home.join(format!("workspace/{}", "n".repeat(150)));
    std::fs::write(&long, "long name").unwrap();
    // A database in WAL mode, its last commits still in the -wal file.
    let db = rusqlite::Connection::open(home.join("app.db")).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    db.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    db.execute_batch("CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('kept');")
        .unwrap();
    assert!(home.join("app.db-wal").metadata().unwrap().len() > 0);

    let store = FolderStore::new(dir.path().join("snapshots"));
    let m = snapshot(&home, &store, None).await.unwrap();
    drop(db);
    assert_eq!(m.parts.len(), 1);
    assert!(m.entries >= 10, "{m:?}");

    let back = dir.path().join("restored/home");
    let r = restore(&back, &store).await.unwrap();
    assert_eq!(r.manifest.as_ref().map(|m| &m.id), Some(&m.id));
    assert_eq!(r.warning, None);
    assert_eq!(mode(&back.join(".ssh")), 0o700);
    assert_eq!(mode(&back.join(".ssh/id_ed25519")), 0o600);
    assert_eq!(mode(&back.join("workspace/run.sh")), 0o755);
    assert_eq!(
        std::fs::read_link(back.join("workspace/link")).unwrap(),
        Path::new("src/a.txt")
    );
    assert_eq!(
        std::fs::read_to_string(back.join("workspace/link")).unwrap(),
        "A"
    );
    assert_eq!(
        std::fs::read_link(back.join("dangling")).unwrap(),
        Path::new("/nowhere/at/all")
    );
    let a = std::fs::metadata(back.join("workspace/src/a.txt")).unwrap();
    let h = std::fs::metadata(back.join("workspace/hard.txt")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (h.ino(), 2), "still one file, twice");
    assert!(back.join("empty").is_dir());
    assert_eq!(
        std::fs::read_to_string(back.join("workspace").join(long.file_name().unwrap())).unwrap(),
        "long name"
    );
    let db = rusqlite::Connection::open(back.join("app.db")).unwrap();
    let v: String = db.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "kept");
    assert!(!staging_of(&back).exists(), "staging folder left behind");
}

#[tokio::test]
async fn a_snapshot_without_its_manifest_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_in(dir.path());
    std::fs::write(home.join("workspace/v"), "1").unwrap();
    let store = FolderStore::new(dir.path().join("snapshots"));
    assert!(!has_snapshot(&store).await.unwrap());
    let first = snapshot(&home, &store, None).await.unwrap();
    // A writer killed after its parts, before its manifest.
    let later = ulid::Ulid::new().to_string();
    store
        .put(&format!("{later}/part-00000"), b"half a snapshot".to_vec())
        .await
        .unwrap();
    let back = dir.path().join("back");
    let r = restore(&back, &store).await.unwrap();
    assert_eq!(r.manifest.unwrap().id, first.id);
    assert_eq!(r.warning, None, "an unfinished snapshot is no failure");
    assert_eq!(
        std::fs::read_to_string(back.join("workspace/v")).unwrap(),
        "1"
    );
    // The next snapshot clears the leftovers.
    snapshot(&home, &store, None).await.unwrap();
    assert!(
        !store
            .list()
            .await
            .unwrap()
            .iter()
            .any(|n| n.starts_with(&later)),
        "leftover parts pruned"
    );
}

#[tokio::test]
async fn a_corrupt_latest_falls_back_to_the_previous_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_in(dir.path());
    std::fs::write(home.join("workspace/v"), "old").unwrap();
    let store = FolderStore::new(dir.path().join("snapshots"));
    let old = snapshot(&home, &store, None).await.unwrap();
    std::fs::write(home.join("workspace/v"), "new").unwrap();
    let new = snapshot(&home, &store, None).await.unwrap();
    assert_eq!(manifests(&store).await.len(), 2, "the previous is kept");
    let part = &new.parts[0];
    let mut bytes = store.get(&part.name).await.unwrap().unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    store.put(&part.name, bytes).await.unwrap();

    let back = dir.path().join("back");
    std::fs::create_dir_all(back.join("workspace")).unwrap();
    std::fs::write(back.join("workspace/v"), "scratch").unwrap();
    let r = restore(&back, &store).await.unwrap();
    assert_eq!(r.manifest.unwrap().id, old.id);
    let warning = r.warning.expect("a visible warning");
    assert!(warning.contains(&new.id), "{warning}");
    assert!(warning.contains("checksum"), "{warning}");
    assert_eq!(
        std::fs::read_to_string(back.join("workspace/v")).unwrap(),
        "old"
    );

    // A missing part is the same kind of failure.
    store.delete(&old.parts[0].name).await.unwrap();
    let err = restore(&back, &store).await.unwrap_err();
    assert!(format!("{err:#}").contains("no snapshot"), "{err:#}");
    assert_eq!(
        std::fs::read_to_string(back.join("workspace/v")).unwrap(),
        "old",
        "a failed restore leaves the home as it was"
    );
}

#[tokio::test]
async fn only_the_newest_two_are_kept_and_big_homes_take_several_parts() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_in(dir.path());
    std::fs::write(home.join("big"), noise(PART_BYTES + PART_BYTES / 2, 7)).unwrap();
    let store = FolderStore::new(dir.path().join("snapshots"));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(snapshot(&home, &store, None).await.unwrap());
    }
    assert_eq!(ids[2].parts.len(), 2, "{:?}", ids[2].parts);
    let kept = manifests(&store).await;
    assert_eq!(
        kept,
        vec![
            format!("{}/{MANIFEST}", ids[1].id),
            format!("{}/{MANIFEST}", ids[2].id)
        ]
    );
    let back = dir.path().join("back");
    restore(&back, &store).await.unwrap();
    assert_eq!(
        std::fs::read(back.join("big")).unwrap(),
        std::fs::read(home.join("big")).unwrap()
    );
}

#[tokio::test]
async fn a_snapshot_over_the_storage_limit_fails_and_keeps_the_previous() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_in(dir.path());
    std::fs::write(home.join("small"), "s").unwrap();
    let store = FolderStore::new(dir.path().join("snapshots"));
    let first = snapshot(&home, &store, Some(1 << 20)).await.unwrap();
    std::fs::write(home.join("big"), noise(PART_BYTES + 10, 3)).unwrap();
    let err = snapshot(&home, &store, Some(PART_BYTES as u64))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("larger than"), "{err:#}");
    let names = store.list().await.unwrap();
    assert!(
        names.iter().all(|n| n.starts_with(&first.id)),
        "nothing of the failed snapshot is left: {names:?}"
    );
    let back = dir.path().join("back");
    let r = restore(&back, &store).await.unwrap();
    assert_eq!(r.manifest.unwrap().id, first.id);
}

#[test]
fn object_names_stay_inside_the_store() {
    for bad in ["a", "../x/y", "a/..", "a/b/c", "a/", "/a", "a/b c"] {
        assert!(!store::valid_name(bad), "{bad}");
    }
    assert!(store::valid_name("01HZX/part-00001"));
    assert!(store::valid_name("01HZX/manifest.json"));
}
