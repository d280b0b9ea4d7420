//! The Ed25519 signing key set. The first key signs; every key verifies, so a
//! rotated-out key keeps verifying until its tokens expire. Serialised as
//! `kid:base64url(32-byte seed)` entries separated by commas (the format of
//! `DEV8_SIGNING_KEYS` and of the key file `serve` generates).

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use std::path::Path;

pub struct Key {
    pub kid: String,
    seed: [u8; 32],
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// The public key, base64url (the JWK `x`).
    pub x: String,
}

impl Key {
    fn from_seed(kid: String, seed: [u8; 32]) -> anyhow::Result<Self> {
        if kid.is_empty()
            || !kid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("signing key id must be non-empty [A-Za-z0-9_-]");
        }
        let signing = SigningKey::from_bytes(&seed);
        let der = signing.to_pkcs8_der().context("encoding signing key")?;
        let x = B64.encode(signing.verifying_key().as_bytes());
        Ok(Key {
            kid,
            seed,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&x).context("decoding public key")?,
            x,
        })
    }
}

pub struct KeySet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// A fresh single-key set.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let kid = format!("k{:016x}", rand::random::<u64>());
        KeySet {
            keys: vec![Key::from_seed(kid, seed).expect("generated key is valid")],
        }
    }

    /// Parse `kid:seed,kid:seed`.
    pub fn parse(setting: &str) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for entry in setting.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, seed) = entry
                .split_once(':')
                .context("signing key entry must be kid:base64url-seed")?;
            let bytes = B64
                .decode(seed.trim())
                .context("signing key seed is not base64url")?;
            let seed: [u8; 32] = bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("signing key seed must be 32 bytes"))?;
            if keys.iter().any(|k: &Key| k.kid == kid) {
                bail!("duplicate signing key id {kid}");
            }
            keys.push(Key::from_seed(kid.to_string(), seed)?);
        }
        if keys.is_empty() {
            bail!("no signing keys given");
        }
        Ok(KeySet { keys })
    }

    /// The serialised form (a secret: write it only to protected places).
    pub fn to_setting(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("{}:{}", k.kid, B64.encode(k.seed)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Load the key file in `dir`, generating it (mode 0600) on first use.
    pub fn load_or_generate(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("signing-keys");
        match std::fs::read_to_string(&path) {
            Ok(s) => Self::parse(&s).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let set = Self::generate();
                write_private(&path, &set.to_setting())?;
                Ok(set)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The key ids, signing key first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    pub fn signing(&self) -> &Key {
        &self.keys[0]
    }

    pub fn find(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.kid, "x": k.x})
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// A verify-only key set from a JWKS document (the agent's view).
    pub fn verifier_from_jwks(jwks: &serde_json::Value) -> anyhow::Result<VerifyingKeys> {
        let mut keys = Vec::new();
        for k in jwks["keys"].as_array().context("JWKS has no keys")? {
            if k["kty"] != "OKP" || k["crv"] != "Ed25519" {
                continue;
            }
            let kid = k["kid"].as_str().context("JWK without kid")?.to_string();
            let x = k["x"].as_str().context("JWK without x")?;
            keys.push((kid, DecodingKey::from_ed_components(x)?));
        }
        if keys.is_empty() {
            bail!("JWKS has no Ed25519 keys");
        }
        Ok(VerifyingKeys { keys })
    }
}

/// Public keys only: what an agent holds.
pub struct VerifyingKeys {
    pub(crate) keys: Vec<(String, DecodingKey)>,
}

/// Write a file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
