//! The Blob snapshot store against Azurite's Blob service (full tier):
//! `BlobStore`'s requests (Put Blob, Get Blob, Get Blob Properties, List
//! Blobs across pages, Delete Blob) as a real Blob service answers them;
//! the per-environment container SAS the control plane mints
//! (`snapshot_grant`) refused on another environment's container and
//! once expired, a renewed one taken by the same store; the container
//! gone with the environment; the control plane's pruning of leftovers.

use crate::peers::azurite::blob_account;
use dev8::snapshot::blob::BlobStore;
use dev8::snapshot::store::SnapshotStore;
use dev8::snapshot::{self, MANIFEST};
use dev8::snapshot_grant::{self, SnapshotGrant};
use secrecy::ExposeSecret;
use std::time::Duration;

/// A fresh environment id (lower-case ULID, as the control plane makes them).
fn env_id() -> String {
    ulid::Ulid::new().to_string().to_ascii_lowercase()
}

async fn granted(lifetime: Duration) -> (String, SnapshotGrant) {
    let id = env_id();
    let g = snapshot_grant::grant(&blob_account(lifetime), &id, chrono::Utc::now())
        .await
        .expect("Azurite grants a container");
    (id, g)
}

fn store(g: &SnapshotGrant) -> BlobStore {
    BlobStore::new(&g.container_url, g.sas.clone()).unwrap()
}

fn refused(e: anyhow::Error) -> String {
    let text = format!("{e:#}");
    assert!(text.contains("refused the snapshot SAS"), "{text}");
    assert!(!text.contains("sig="), "an error carries the SAS: {text}");
    text
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn the_blob_store_keeps_objects_and_lists_them_across_pages() {
    let (_, g) = granted(Duration::from_secs(3600)).await;
    let s = store(&g).with_page_size(3);
    assert_eq!(s.list().await.unwrap(), Vec::<String>::new());
    assert_eq!(s.get("01a/manifest.json").await.unwrap(), None);
    assert_eq!(s.size("01a/manifest.json").await.unwrap(), None);
    let mut written = Vec::new();
    for i in 0..7 {
        let name = format!("01a/part-{i:05}");
        s.put(&name, vec![i as u8; 1000 + i]).await.unwrap();
        written.push(name);
    }
    // A put replaces (a retried write of the same part).
    s.put("01a/part-00000", b"again".to_vec()).await.unwrap();
    assert_eq!(
        s.get("01a/part-00000").await.unwrap().as_deref(),
        Some(&b"again"[..])
    );
    assert_eq!(s.size("01a/part-00003").await.unwrap(), Some(1003));
    let mut listed = s.list().await.unwrap();
    listed.sort();
    assert_eq!(listed, written, "7 objects over pages of 3");
    s.delete("01a/part-00006").await.unwrap();
    s.delete("01a/part-00006").await.unwrap();
    assert_eq!(s.list().await.unwrap().len(), 6);
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn a_snapshot_and_its_restore_go_through_the_blob_store() {
    let (_, g) = granted(Duration::from_secs(3600)).await;
    let s = store(&g);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("w")).unwrap();
    std::fs::write(home.join("w/a.txt"), "kept").unwrap();
    std::os::unix::fs::symlink("a.txt", home.join("w/link")).unwrap();
    let m = snapshot::snapshot(&home, &s, None).await.unwrap();
    assert!(
        s.list()
            .await
            .unwrap()
            .contains(&format!("{}/{MANIFEST}", m.id))
    );
    std::fs::remove_dir_all(&home).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let restored = snapshot::restore(&home, &s).await.unwrap();
    assert_eq!(restored.manifest.unwrap().id, m.id);
    assert_eq!(
        std::fs::read_to_string(home.join("w/a.txt")).unwrap(),
        "kept"
    );
    assert_eq!(
        std::fs::read_link(home.join("w/link")).unwrap(),
        std::path::Path::new("a.txt")
    );
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn a_sas_for_one_environments_container_is_refused_on_anothers() {
    let (_, mine) = granted(Duration::from_secs(3600)).await;
    let (_, theirs) = granted(Duration::from_secs(3600)).await;
    store(&theirs)
        .put("01b/part-00000", b"theirs".to_vec())
        .await
        .unwrap();
    // Their container's URL with my SAS: read, write and list are all 403.
    let crossed = BlobStore::new(&theirs.container_url, mine.sas.clone()).unwrap();
    refused(crossed.get("01b/part-00000").await.unwrap_err());
    refused(crossed.size("01b/part-00000").await.unwrap_err());
    refused(
        crossed
            .put("01b/part-00001", b"mine".to_vec())
            .await
            .unwrap_err(),
    );
    refused(crossed.list().await.unwrap_err());
    refused(crossed.delete("01b/part-00000").await.unwrap_err());
    // Nothing changed there, and my SAS still works on my own container.
    assert_eq!(
        store(&theirs).list().await.unwrap(),
        vec!["01b/part-00000".to_string()]
    );
    store(&mine).put("01b/x", b"ok".to_vec()).await.unwrap();
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn an_expired_sas_is_refused_and_a_renewed_one_is_taken() {
    let account = blob_account(Duration::from_secs(3600));
    let id = env_id();
    let now = chrono::Utc::now();
    snapshot_grant::grant(&account, &id, now).await.unwrap();
    // Minted two hours ago with a one-hour life: expired an hour ago.
    let old = account.mint(&id, now - chrono::Duration::hours(2)).unwrap();
    let s = BlobStore::new(&old.container_url, old.sas.clone()).unwrap();
    refused(s.put("01c/part-00000", b"x".to_vec()).await.unwrap_err());
    let fresh = account.mint(&id, now).unwrap();
    assert_ne!(fresh.sas.expose_secret(), old.sas.expose_secret());
    s.set_sas(fresh.sas);
    s.put("01c/part-00000", b"x".to_vec()).await.unwrap();
    assert_eq!(s.list().await.unwrap(), vec!["01c/part-00000".to_string()]);
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn the_container_goes_with_the_environment_and_a_second_delete_is_fine() {
    let account = blob_account(Duration::from_secs(3600));
    let (id, g) = granted(Duration::from_secs(3600)).await;
    store(&g)
        .put("01d/manifest.json", b"{}".to_vec())
        .await
        .unwrap();
    // Granting again (the next start) keeps what is there.
    let again = snapshot_grant::grant(&account, &id, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(store(&again).list().await.unwrap().len(), 1);
    snapshot_grant::delete_container(&account, &id, chrono::Utc::now())
        .await
        .unwrap();
    let err = format!("{:#}", store(&g).list().await.unwrap_err());
    assert!(
        err.contains("404") && err.contains("ContainerNotFound"),
        "{err}"
    );
    // A redelivered delete job.
    snapshot_grant::delete_container(&account, &id, chrono::Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn pruning_keeps_the_two_newest_and_snapshots_still_being_written() {
    let account = blob_account(Duration::from_secs(3600));
    let (id, g) = granted(Duration::from_secs(3600)).await;
    let s = store(&g);
    let now = chrono::Utc::now();
    let at = |hours_ago: i64| {
        let t = now - chrono::Duration::hours(hours_ago);
        ulid::Ulid::from_parts(t.timestamp_millis() as u64, 7).to_string()
    };
    // Four complete snapshots (the agent was killed before pruning), one
    // abandoned three days ago, one being written right now.
    let complete: Vec<String> = [80, 50, 30, 20].into_iter().map(at).collect();
    for id in &complete {
        s.put(&format!("{id}/part-00000"), b"p".to_vec())
            .await
            .unwrap();
        s.put(&format!("{id}/{MANIFEST}"), b"{}".to_vec())
            .await
            .unwrap();
    }
    let abandoned = at(72);
    s.put(&format!("{abandoned}/part-00000"), b"p".to_vec())
        .await
        .unwrap();
    s.put(&format!("{abandoned}/part-00001"), b"p".to_vec())
        .await
        .unwrap();
    let writing = at(0);
    s.put(&format!("{writing}/part-00000"), b"p".to_vec())
        .await
        .unwrap();

    // Bounded: three objects this run, the rest the next.
    let first = snapshot_grant::prune(&account, &id, now, 3).await.unwrap();
    assert_eq!(first, 3);
    let second = snapshot_grant::prune(&account, &id, now, 100)
        .await
        .unwrap();
    assert_eq!(
        second, 3,
        "6 in all: 2 old snapshots of 2 objects, 2 abandoned parts"
    );
    assert_eq!(
        snapshot_grant::prune(&account, &id, now, 100)
            .await
            .unwrap(),
        0
    );
    let mut left = s.list().await.unwrap();
    left.sort();
    let mut expected = vec![
        format!("{}/{MANIFEST}", complete[2]),
        format!("{}/part-00000", complete[2]),
        format!("{}/{MANIFEST}", complete[3]),
        format!("{}/part-00000", complete[3]),
        format!("{writing}/part-00000"),
    ];
    expected.sort();
    assert_eq!(left, expected);
}
