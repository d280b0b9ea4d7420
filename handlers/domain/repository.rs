//! Git repositories an environment starts from: the one a create names
//! (`repository`) and the account's dotfiles (`dotfilesRepository`). The URL
//! rules are input validation, not a security boundary (an environment's
//! own terminal has the same network reach): `https://` only, no embedded
//! credentials, a host name (no IP address, no `localhost`), bounded length.

use serde::{Deserialize, Serialize};

/// The longest repository URL accepted.
pub const URL_MAX: usize = 2048;
/// The longest `ref` accepted (git's own limit on a ref name is the file
/// system's, 255 bytes for one component).
pub const REF_MAX: usize = 255;

/// A repository to clone on an environment's first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub url: String,
    /// The branch, tag or commit to check out; `None`: the remote's default branch.
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
}

/// Which URLs are accepted besides `https://<host name>/…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlRules {
    /// `https://` to a host name only (every deployment).
    #[default]
    Public,
    /// Also `http://127.0.0.1:<port>/…`: the test-only setting
    /// `DEV8_TEST_ALLOW_LOOPBACK_GIT`, refused at start-up unless compute is
    /// local and the control plane is on loopback.
    AlsoLoopbackHttp,
}

/// Check a repository URL; the error says what is wrong (no trailing period).
pub fn repository_url(raw: &str, rules: UrlRules) -> Result<String, String> {
    if raw.is_empty() || raw.len() > URL_MAX {
        return Err(format!("must be 1 to {URL_MAX} characters"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let url = url::Url::parse(raw).map_err(|_| "must be an https:// URL".to_string())?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".into());
    }
    let loopback_test = rules == UrlRules::AlsoLoopbackHttp
        && url.scheme() == "http"
        && url.host() == Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST));
    if loopback_test {
        return Ok(url.to_string());
    }
    if url.scheme() != "https" {
        return Err("must be an https:// URL".into());
    }
    match url.host() {
        Some(url::Host::Domain(host)) => {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            if host == "localhost" || host.ends_with(".localhost") {
                return Err("must name a public host, not localhost".into());
            }
        }
        Some(_) => return Err("must name a host, not an IP address".into()),
        None => return Err("must name a host".into()),
    }
    if url.path().trim_matches('/').is_empty() {
        return Err("must name a repository on the host".into());
    }
    Ok(url.to_string())
}

/// Check a git ref name (a branch, tag or commit) by git's own rules
/// (`git check-ref-format`), bounded, and never starting with `-` (so it
/// can never be read as an option).
pub fn git_ref(raw: &str) -> Result<String, String> {
    let bad = || Err("must be a valid git branch, tag or commit name".to_string());
    if raw.is_empty() || raw.len() > REF_MAX {
        return Err(format!("must be 1 to {REF_MAX} characters"));
    }
    if raw.starts_with('-')
        || raw.starts_with('/')
        || raw.ends_with('/')
        || raw.ends_with('.')
        || raw == "@"
        || raw.contains("..")
        || raw.contains("//")
        || raw.contains("@{")
    {
        return bad();
    }
    if raw
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return bad();
    }
    if raw
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return bad();
    }
    Ok(raw.to_string())
}

/// The folder a repository is cloned into, under the workspace: the last
/// segment of its path without `.git`, made safe (`repo` when nothing is left).
pub fn folder_name(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let last = last.strip_suffix(".git").unwrap_or(last);
    let safe: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.').to_string();
    if safe.is_empty() { "repo".into() } else { safe }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_urls_to_host_names_pass() {
        for ok in [
            "https://github.com/dev8/app",
            "https://github.com/dev8/app.git",
            "https://git.example.org:8443/team/app.git",
        ] {
            assert!(repository_url(ok, UrlRules::Public).is_ok(), "{ok}");
        }
    }

    #[test]
    fn every_refused_form_says_why() {
        let long = format!("https://github.com/{}", "a".repeat(URL_MAX));
        for (bad, why) in [
            ("", "characters"),
            (long.as_str(), "characters"),
            ("http://github.com/dev8/app", "https://"),
            ("git@github.com:dev8/app.git", "https://"),
            ("ssh://github.com/dev8/app", "https://"),
            ("file:///etc", "https://"),
            ("https://user:pw@github.com/dev8/app", "credentials"),
            ("https://token@github.com/dev8/app", "credentials"),
            ("https://127.0.0.1/dev8/app", "IP address"),
            ("https://[::1]/dev8/app", "IP address"),
            ("https://2130706433/dev8/app", "IP address"),
            ("https://localhost/dev8/app", "localhost"),
            ("https://git.localhost/dev8/app", "localhost"),
            ("https://github.com/", "repository"),
            ("https://github.com/a b", "spaces"),
            ("https://github.com/a?x=1", "query"),
            ("not a url", "spaces"),
            ("http://127.0.0.1:9/x.git", "https://"),
        ] {
            let err = repository_url(bad, UrlRules::Public).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn loopback_http_only_with_the_test_setting() {
        let url = "http://127.0.0.1:9418/app.git";
        assert!(repository_url(url, UrlRules::Public).is_err());
        assert!(repository_url(url, UrlRules::AlsoLoopbackHttp).is_ok());
        // The setting opens exactly that address, nothing else.
        for still_bad in [
            "http://localhost:9418/app.git",
            "http://10.0.0.1/app.git",
            "http://u:p@127.0.0.1/app.git",
        ] {
            assert!(
                repository_url(still_bad, UrlRules::AlsoLoopbackHttp).is_err(),
                "{still_bad}"
            );
        }
    }

    #[test]
    fn refs_follow_gits_rules() {
        for ok in [
            "main",
            "feature/x-1",
            "v1.2.3",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(git_ref(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-b",
            "--upload-pack=x",
            "a..b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "/a",
            "a/",
            "a.",
            "a.lock",
            ".hidden",
            "a/.b",
            "a//b",
            "a@{1}",
            "@",
            "a\u{7}",
        ] {
            assert!(git_ref(bad).is_err(), "{bad:?}");
        }
        assert!(git_ref(&"a".repeat(REF_MAX + 1)).is_err());
    }

    #[test]
    fn folders_come_from_the_last_path_segment() {
        assert_eq!(folder_name("https://github.com/dev8/app.git"), "app");
        assert_eq!(folder_name("https://github.com/dev8/my app/"), "my-app");
        assert_eq!(folder_name("https://github.com/dev8/.git"), "repo");
    }
}
