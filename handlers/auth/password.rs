//! Password hashing with argon2id at OWASP's minimum cost (m = 19456 KiB,
//! t = 2, p = 1), run on the blocking pool.
//!
//! Each hash works in 19 MiB of memory. At most `PARALLEL` hashes run at
//! once (more sign-ins wait their turn), so a burst holds at most
//! `PARALLEL` x 19 MiB. The working memory is allocated for each hash so
//! that the allocator returns it to the system afterwards (`with_memory`):
//! an idle server does not keep 19 MiB per past sign-in resident.

use argon2::password_hash::{
    Ident, Output, ParamsString, PasswordHash, Salt, SaltString, rand_core::OsRng,
    rand_core::RngCore,
};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};
use std::sync::OnceLock;
#[cfg(test)]
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Memory cost in KiB (= argon2 blocks).
const M_COST: u32 = 19_456;

/// How many hashes may run at once: both cores of a small machine, while
/// argon2's memory stays bounded at `PARALLEL` x 19 MiB under any burst.
pub const PARALLEL: usize = 2;

static PERMITS: Semaphore = Semaphore::const_new(PARALLEL);

/// Hashes running right now, and the most ever at once (for the bound's test).
#[cfg(test)]
static RUNNING: AtomicUsize = AtomicUsize::new(0);
#[cfg(test)]
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// glibc serves an allocation above its mmap threshold with a private
/// mapping and unmaps it on free; but freeing a mapped chunk of up to
/// 32 MiB (the ceiling of the dynamic threshold on 64-bit, mallopt(3))
/// raises the threshold to its size, after which every 19 MiB hash came
/// from the heap and stayed resident. Reserving 33 MiB of address space
/// per hash (only the 19 MiB used are ever touched) keeps each hash's
/// memory a mapping of its own that goes back to the system when freed.
const RESERVE_BLOCKS: usize = 33 * 1024;

fn params() -> Params {
    Params::new(M_COST, 2, 1, None).expect("valid argon2 params")
}

/// Run argon2id with `params` into `out`, in working memory that is
/// returned to the system afterwards.
fn run(params: Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> anyhow::Result<()> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let needed = argon.params().block_count();
    let mut memory: Vec<Block> = Vec::with_capacity(RESERVE_BLOCKS.max(needed));
    memory.resize(needed, Block::new());
    argon
        .hash_password_into_with_memory(password, salt, out, &mut memory[..])
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Run `f` on the blocking pool once one of the `PARALLEL` permits is free.
/// The permit moves into the blocking task, so a caller that gives up
/// (a dropped request) still counts until the hash has finished.
async fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let permit = PERMITS.acquire().await?;
    let out = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        #[cfg(test)]
        PEAK.fetch_max(RUNNING.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        let out = f();
        #[cfg(test)]
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        out
    })
    .await?;
    Ok(out)
}

fn hash_blocking(password: &[u8]) -> anyhow::Result<String> {
    let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
    OsRng.fill_bytes(&mut salt);
    let params = params();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    run(params.clone(), password, &salt, &mut out)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Does `password` match the PHC string `phc`? Only argon2id hashes are
/// accepted (they are the only kind Dev8 writes).
fn verify_blocking(password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    if parsed.algorithm != Ident::from(Algorithm::Argon2id)
        || parsed
            .version
            .is_some_and(|v| v != u32::from(Version::V0x13))
    {
        return false;
    }
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buf = [0u8; Salt::MAX_LENGTH];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    // `params` carries the stored hash's length as its output length.
    let mut out = vec![0u8; expected.len()];
    run(params, password, salt, &mut out).is_ok()
        // `Output`'s equality is constant-time.
        && Output::new(&out).is_ok_and(|o| o == expected)
}

/// Hash a password into a PHC string.
pub async fn hash(password: String) -> anyhow::Result<String> {
    bounded(move || hash_blocking(password.as_bytes())).await?
}

/// Check a password against a PHC string. With `None` (unknown account) a
/// dummy hash is checked, so both failures take about the same time.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let known = phc.is_some();
    bounded(move || {
        let phc = phc.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| hash_blocking(b"dev8-dummy-password").expect("dummy hash"))
                .clone()
        });
        verify_blocking(password.as_bytes(), &phc) && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_parameters() {
        let h = super::hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(super::verify("correct horse".into(), Some(h.clone())).await);
        assert!(!super::verify("wrong horse".into(), Some(h)).await);
        assert!(!super::verify("anything".into(), None).await);
    }

    /// Hashes made by the argon2 crate's own `PasswordHasher` (the format
    /// stored before this module managed the memory) still verify.
    #[tokio::test]
    async fn verifies_hashes_written_by_the_crates_hasher() {
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert!(super::verify("old password".into(), Some(stored.clone())).await);
        assert!(!super::verify("old passwore".into(), Some(stored)).await);
        assert!(
            !super::verify(
                "x".into(),
                Some("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA".into())
            )
            .await
        );
    }

    /// A burst of sign-ins runs at most `PARALLEL` hashes at once, uses
    /// that parallelism, and every one of them finishes (no permit is lost,
    /// even for callers that gave up).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_is_bounded_and_finishes() {
        let h = super::hash("pw".into()).await.unwrap();
        // Callers that give up while their hashes run: the permits still
        // come back (else the burst below could never finish).
        let abandoned: Vec<_> = (0..PARALLEL)
            .map(|_| tokio::spawn(super::verify("pw".into(), Some(h.clone()))))
            .collect();
        for _ in 0..2000 {
            if PERMITS.available_permits() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        abandoned.iter().for_each(|t| t.abort());
        let burst: Vec<_> = (0..3 * PARALLEL)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        super::verify("pw".into(), Some(h)).await
                    } else {
                        super::hash("pw".into()).await.is_ok()
                    }
                })
            })
            .collect();
        let all = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            futures::future::join_all(burst),
        )
        .await
        .expect("every hash of the burst finishes");
        assert!(all.into_iter().all(|r| r.unwrap()));
        let peak = PEAK.load(Ordering::SeqCst);
        assert!(peak <= PARALLEL, "{peak} hashes ran at once");
        assert_eq!(peak, PARALLEL, "the burst never ran hashes in parallel");
    }
}
