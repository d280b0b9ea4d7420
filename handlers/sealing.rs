//! Sealing secret values at rest: XChaCha20-Poly1305 (AEAD) under one
//! 32-byte key that is never in the database (`DEV8_SECRETS_KEY`; `serve`
//! generates it once into the data dir's `secrets-key` file, 0600, next to
//! `signing-keys`; in Azure a Key Vault reference). Every write takes a
//! fresh random 192-bit nonce, and the user id and the secret's name are the
//! associated data, so a sealed value copied to another name or account does
//! not open.
//!
//! Format: `v1.` + base64(nonce ‖ ciphertext ‖ tag). The version names the
//! scheme, so a later key rotation can tell old values from new.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::SecretString;
use std::path::Path;

const VERSION: &str = "v1.";
const NONCE_LEN: usize = 24;
/// The key file `serve` keeps in its data dir when `DEV8_SECRETS_KEY` is unset.
pub const KEY_FILE: &str = "secrets-key";

/// The key secrets are sealed with. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretsKey(XChaCha20Poly1305);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(<redacted>)")
    }
}

/// The associated data: the scheme, the account and the name, each ended by NUL.
fn associated_data(user_id: &str, name: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(16 + user_id.len() + name.len());
    for part in ["dev8-secret-v1", user_id, name] {
        ad.extend_from_slice(part.as_bytes());
        ad.push(0);
    }
    ad
}

impl SecretsKey {
    /// A key from its setting: 32 bytes, base64 (`openssl rand -base64 32`).
    pub fn parse(setting: &str) -> anyhow::Result<Self> {
        let bytes = B64
            .decode(setting.trim())
            .context("the secrets key is not base64")?;
        if bytes.len() != 32 {
            bail!("the secrets key must be 32 bytes (openssl rand -base64 32)");
        }
        Ok(SecretsKey(XChaCha20Poly1305::new_from_slice(&bytes)?))
    }

    /// Load `dir/secrets-key`, generating it (mode 0600) on first use.
    pub fn load_or_generate(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) => Self::parse(&s).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                crate::auth::keys::write_private(&path, &B64.encode(key))?;
                Self::parse(&B64.encode(key))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Seal `value` as `user_id`'s secret `name` (a fresh nonce each time).
    pub fn seal(&self, user_id: &str, name: &str, value: &str) -> anyhow::Result<String> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(user_id, name);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing a secret failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{VERSION}{}", B64.encode(out)))
    }

    /// Open what `seal` made for the same user and name. Errors never
    /// include any part of the value.
    pub fn open(&self, user_id: &str, name: &str, sealed: &str) -> anyhow::Result<SecretString> {
        let raw = sealed
            .strip_prefix(VERSION)
            .and_then(|b| B64.decode(b).ok())
            .filter(|raw| raw.len() > NONCE_LEN)
            .context("a stored secret is not in the v1 format")?;
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().context("a stored secret's nonce")?;
        let aad = associated_data(user_id, name);
        let plain = self
            .0
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "secret {name} does not open with this key (was DEV8_SECRETS_KEY changed?)"
                )
            })?;
        let text = String::from_utf8(plain).context("a stored secret is not UTF-8")?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn key() -> SecretsKey {
        SecretsKey::parse(&B64.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_user_and_name_and_key() {
        let k = key();
        let sealed = k.seal("u1", "TOKEN", "hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            k.open("u1", "TOKEN", &sealed).unwrap().expose_secret(),
            "hunter2"
        );
        assert!(k.open("u2", "TOKEN", &sealed).is_err());
        assert!(k.open("u1", "OTHER", &sealed).is_err());
        let other = SecretsKey::parse(&B64.encode([8u8; 32])).unwrap();
        assert!(other.open("u1", "TOKEN", &sealed).is_err());
        assert!(k.open("u1", "TOKEN", "v1.AAAA").is_err());
    }

    #[test]
    fn every_seal_takes_a_fresh_nonce() {
        let k = key();
        let a = k.seal("u", "N", "same").unwrap();
        let b = k.seal("u", "N", "same").unwrap();
        assert_ne!(a, b);
        assert_ne!(a[3..35], b[3..35]);
    }

    #[test]
    fn keys_are_32_bytes_of_base64_and_debug_shows_nothing() {
        assert!(SecretsKey::parse("not base64!").is_err());
        assert!(SecretsKey::parse(&B64.encode([1u8; 16])).is_err());
        assert_eq!(format!("{:?}", key()), "SecretsKey(<redacted>)");
    }

    #[test]
    fn the_generated_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = SecretsKey::load_or_generate(dir.path()).unwrap();
        let sealed = k1.seal("u", "N", "v").unwrap();
        let k2 = SecretsKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(k2.open("u", "N", &sealed).unwrap().expose_secret(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
