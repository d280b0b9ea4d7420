//! Snapshot mode's engine on a big home: the time to snapshot and to
//! restore a home of 1 GB in 50,000 files (500 folders of 100; half of
//! the bytes text that compresses as source code does, half that does not,
//! as in `node_modules` with its binaries), into and out of a folder store,
//! or with `DEV8_BENCH_BLOB_PORT` a Blob container on Azurite's Blob
//! service at that port (`scripts/peers.sh start`), through its SAS as an
//! agent reaches it.
//!
//!     cargo bench --bench snapshot
//!     DEV8_BENCH_HOME_MB=100 DEV8_BENCH_FILES=5000 cargo bench --bench snapshot
//!     DEV8_BENCH_BLOB_PORT=10000 cargo bench --bench snapshot
//!
//! Prints the times, the bytes stored and the throughput. No goal is
//! asserted: the figures go to docs/performance.md.

use dev8::snapshot::store::{FolderStore, SnapshotStore};
use dev8::snapshot::{self, blob::BlobStore};
use std::time::Instant;

#[path = "support/home.rs"]
mod home;
use home::{noise, setting, text};

#[tokio::main]
async fn main() {
    let total = setting("DEV8_BENCH_HOME_MB", 1024) << 20;
    let files = setting("DEV8_BENCH_FILES", 50_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    let per_file = total / files;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let made = Instant::now();
    for n in 0..files {
        let folder = home.join(format!("workspace/pkg{:03}", n / 100));
        if n % 100 == 0 {
            std::fs::create_dir_all(&folder).unwrap();
        }
        let body = if n % 2 == 0 {
            text(per_file, n)
        } else {
            noise(per_file, &mut seed)
        };
        std::fs::write(folder.join(format!("f{n}.js")), body).unwrap();
    }
    println!(
        "home: {} files, {} MB (written in {:.1} s)",
        files,
        total >> 20,
        made.elapsed().as_secs_f64()
    );

    let store: Box<dyn SnapshotStore> = match std::env::var("DEV8_BENCH_BLOB_PORT") {
        Ok(port) => {
            // Azurite's well-known development account (public, not a secret).
            let account = dev8::snapshot_grant::BlobAccount {
                name: "devstoreaccount1".into(),
                key: "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
                    .into(),
                endpoint: format!("http://127.0.0.1:{port}/devstoreaccount1"),
                protocol: dev8::storage_sas::SasProtocol::HttpsAndHttp,
                prefix: "bench".into(),
                lifetime: dev8::snapshot_grant::DEFAULT_LIFETIME,
            };
            let id = ulid::Ulid::new().to_string().to_ascii_lowercase();
            let g = dev8::snapshot_grant::grant(&account, &id, chrono::Utc::now())
                .await
                .expect("Azurite grants a container");
            println!("store: Blob container {}", g.container_url);
            Box::new(BlobStore::new(&g.container_url, g.sas).expect("store"))
        }
        Err(_) => {
            println!("store: folder");
            Box::new(FolderStore::new(dir.path().join("snapshots")))
        }
    };
    let store = store.as_ref();
    let t = Instant::now();
    let m = snapshot::snapshot(&home, store, None)
        .await
        .expect("snapshot");
    let took = t.elapsed().as_secs_f64();
    println!(
        "snapshot: {took:.1} s, {} entries, {} MB stored in {} parts ({:.0} MB/s of content)",
        m.entries,
        m.stored_bytes() >> 20,
        m.parts.len(),
        (m.content_bytes >> 20) as f64 / took
    );

    let back = dir.path().join("restored/home");
    let t = Instant::now();
    let r = snapshot::restore(&back, store).await.expect("restore");
    let took = t.elapsed().as_secs_f64();
    assert_eq!(r.manifest.map(|m| m.id), Some(m.id));
    println!(
        "restore: {took:.1} s ({:.0} MB/s of content)",
        (m.content_bytes >> 20) as f64 / took
    );
}
