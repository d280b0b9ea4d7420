//! A real OpenID Connect provider: npm `oidc-provider`
//! (tests/oidc/provider.mjs) in a Node child process on 127.0.0.1 (full
//! tier; `scripts/ci-deps.sh` installs it into tests/js).

use crate::fakes::idp::{CLIENT_ID, CLIENT_SECRET};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// npm `oidc-provider`, started on loopback; killed when dropped.
pub struct RealProvider {
    pub issuer: String,
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl RealProvider {
    /// Start the provider; it knows its client once `register` is called.
    pub async fn start() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let installed = root.join("tests/js/node_modules/oidc-provider/package.json");
        assert!(
            installed.is_file(),
            "npm oidc-provider is not installed ({} is missing): run scripts/ci-deps.sh (or `npm ci` in tests/js)",
            installed.display()
        );
        let mut child = tokio::process::Command::new(crate::peers::node())
            .arg(root.join("tests/oidc/provider.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs tests/oidc/provider.mjs");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), stdout.next_line())
            .await
            .expect("oidc-provider starts within 30 s")
            .unwrap()
            .expect("oidc-provider printed its issuer");
        let issuer = serde_json::from_str::<Value>(&line).unwrap()["issuer"]
            .as_str()
            .unwrap()
            .to_string();
        RealProvider {
            issuer,
            child,
            stdin,
            stdout,
        }
    }

    /// Register Dev8 as a confidential client; every account signs in as `email`.
    pub async fn register(&mut self, redirect_uri: &str, email: &str) {
        let line = json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "redirectUri": redirect_uri, "email": email});
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let ready =
            tokio::time::timeout(std::time::Duration::from_secs(30), self.stdout.next_line())
                .await
                .expect("oidc-provider configures within 30 s")
                .unwrap()
                .unwrap();
        assert!(ready.contains("ready"), "{ready}");
    }
}

impl Drop for RealProvider {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
