//! Shared access signatures for Azure Storage, signed with an account key
//! (HMAC-SHA256 over the documented string-to-sign of version
//! `SAS_VERSION`): the account SAS the Storage Queue adapter signs its
//! requests with and the snapshot store's container operations use, and the
//! service SAS for one Blob container an environment's agent gets
//! (`snapshot_grant`). A leaf module: no I/O, no other module's types.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signed version (`sv`) of every SAS Dev8 mints; its string-to-sign
/// ends with the signed encryption scope (empty).
pub const SAS_VERSION: &str = "2020-12-06";

/// Which protocols a SAS allows (`spr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SasProtocol {
    /// `https`: Azure. The default everywhere.
    Https,
    /// `https,http`: only for an emulator reached over plain HTTP (Azurite).
    #[value(name = "https,http")]
    HttpsAndHttp,
}

impl SasProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SasProtocol::Https => "https",
            SasProtocol::HttpsAndHttp => "https,http",
        }
    }
}

/// The SAS form of a time: whole seconds, UTC.
pub fn sas_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn sign(key: &[u8], string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// What an account SAS grants.
#[derive(Debug, Clone, Copy)]
pub struct AccountSas<'a> {
    pub account: &'a str,
    /// `sp`, in the documented order (`rwdlacup…`).
    pub permissions: &'a str,
    /// `ss`: `b`, `q`, …
    pub services: &'a str,
    /// `srt`: `s`, `c`, `o`.
    pub resource_types: &'a str,
    pub expiry: DateTime<Utc>,
    pub protocol: SasProtocol,
}

impl AccountSas<'_> {
    /// The SAS query string (no leading `?`). String-to-sign: account, sp,
    /// ss, srt, st, se, sip, spr, sv, ses, each followed by a newline.
    pub fn sign(&self, key: &[u8]) -> String {
        let expiry = sas_time(self.expiry);
        let string_to_sign = format!(
            "{}\n{}\n{}\n{}\n\n{expiry}\n\n{}\n{SAS_VERSION}\n\n",
            self.account,
            self.permissions,
            self.services,
            self.resource_types,
            self.protocol.as_str()
        );
        let sig = sign(key, &string_to_sign);
        query(&[
            ("sv", SAS_VERSION),
            ("ss", self.services),
            ("srt", self.resource_types),
            ("sp", self.permissions),
            ("se", &expiry),
            ("spr", self.protocol.as_str()),
            ("sig", &sig),
        ])
    }
}

/// A service SAS for one Blob container (`sr=c`): valid for that
/// container's blobs only, since the canonical resource
/// `/blob/<account>/<container>` is part of what is signed.
#[derive(Debug, Clone, Copy)]
pub struct ContainerSas<'a> {
    pub account: &'a str,
    pub container: &'a str,
    /// `sp`, in the documented order (`racwdxltmeop`).
    pub permissions: &'a str,
    pub expiry: DateTime<Utc>,
    pub protocol: SasProtocol,
}

impl ContainerSas<'_> {
    /// The SAS query string (no leading `?`). String-to-sign (version
    /// 2020-12-06 and later): sp, st, se, canonicalized resource, si, sip,
    /// spr, sv, sr, snapshot time, ses, rscc, rscd, rsce, rscl, rsct —
    /// newline-separated, the last without one.
    pub fn sign(&self, key: &[u8]) -> String {
        let expiry = sas_time(self.expiry);
        let string_to_sign = format!(
            "{}\n\n{expiry}\n/blob/{}/{}\n\n\n{}\n{SAS_VERSION}\nc\n\n\n\n\n\n\n",
            self.permissions,
            self.account,
            self.container,
            self.protocol.as_str()
        );
        let sig = sign(key, &string_to_sign);
        query(&[
            ("sv", SAS_VERSION),
            ("sr", "c"),
            ("sp", self.permissions),
            ("se", &expiry),
            ("spr", self.protocol.as_str()),
            ("sig", &sig),
        ])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Azurite's well-known development key (public, documented).
    pub(crate) const DEV_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    pub(crate) fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn pairs(sas: &str) -> std::collections::HashMap<String, String> {
        url::form_urlencoded::parse(sas.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn a_container_sas_matches_the_documented_string_to_sign() {
        // The expected signature was computed independently with
        //   printf 'rwdl\n\n2030-01-01T00:00:00Z\n/blob/devstoreaccount1/dev8-e1\n\n\nhttps\n2020-12-06\nc\n\n\n\n\n\n\n' \
        //     | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(echo $DEV_KEY | base64 -d | xxd -p -c 256) -binary | base64
        // over the string-to-sign learn.microsoft.com's "Create a service
        // SAS" gives for version 2020-12-06 and later (sp, st, se,
        // canonicalizedResource, si, sip, spr, sv, sr, snapshot time, ses,
        // rscc, rscd, rsce, rscl, rsct).
        let sas = ContainerSas {
            account: "devstoreaccount1",
            container: "dev8-e1",
            permissions: "rwdl",
            expiry: at("2030-01-01T00:00:00Z"),
            protocol: SasProtocol::Https,
        }
        .sign(&B64.decode(DEV_KEY).unwrap());
        let p = pairs(&sas);
        assert_eq!(p["sv"], "2020-12-06");
        assert_eq!(p["sr"], "c");
        assert_eq!(p["sp"], "rwdl");
        assert_eq!(p["se"], "2030-01-01T00:00:00Z");
        assert_eq!(p["spr"], "https");
        assert_eq!(p["sig"], "NenLIjacSNiKigha61O3Y3L8Ea6DRg9zxMd0Sd+murg=");
        assert!(!p.contains_key("st") && !p.contains_key("sip"));
    }

    #[test]
    fn a_container_sas_names_its_container_and_protocol_in_what_is_signed() {
        let key = B64.decode(DEV_KEY).unwrap();
        let sas = |container, protocol| {
            pairs(
                &ContainerSas {
                    account: "devstoreaccount1",
                    container,
                    permissions: "rwdl",
                    expiry: at("2030-01-01T00:00:00Z"),
                    protocol,
                }
                .sign(&key),
            )["sig"]
                .clone()
        };
        assert_ne!(
            sas("dev8-e1", SasProtocol::Https),
            sas("dev8-e2", SasProtocol::Https)
        );
        assert_ne!(
            sas("dev8-e1", SasProtocol::Https),
            sas("dev8-e1", SasProtocol::HttpsAndHttp)
        );
    }
}
