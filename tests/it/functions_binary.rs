//! The real `handler functions` binary behind the host simulator
//! (`fakes::host_sim`): packaged with `handler package` into an app folder,
//! started from it the way the Functions host starts a custom handler
//! (host.json's executable and arguments, app settings as environment,
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, readiness wait), its HTTP functions
//! forwarded, and its queue and timer functions invoked from the Azurite
//! queue the binary itself writes to.
//!
//! The two tests that run the binary to readiness are full tier: they need
//! Azurite, and code-server, because the binary runs with
//! `DEV8_COMPUTE=local`, the only compute a bare machine has. The start-up
//! checks run the binary alone (fast tier). The same simulator drives the
//! envelope in-process with a fake compute in `functions_host`.

use crate::fakes::host_sim::{HostSim, Poll};
use crate::fakes::identity::{self, IdentityEndpoint};
use crate::peers::{azurite, code_server, cosmos};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Lay the app out as `handler package` does and start it like the host.
async fn start_packaged(app_dir: &Path, queue: &str, data_dir: &Path) -> HostSim {
    start_packaged_with(app_dir, settings(queue, data_dir)).await
}

/// A user signs up through the forwarded API and is who the API says.
async fn signs_up(sim: &HostSim) -> String {
    let origin = sim.handler.clone();
    let token = sim.user("ada@x.io", &origin).await;
    let me = sim
        .api(reqwest::Method::GET, "/api/auth/me", &token, None)
        .await;
    assert_eq!(me.body["user"]["email"], "ada@x.io");
    token
}

/// The app settings of a packaged app on Azurite, SQLite and local compute.
fn settings(queue: &str, data_dir: &Path) -> BTreeMap<String, String> {
    let mut settings: BTreeMap<String, String> = [
        ("AzureWebJobsStorage", azurite::connection_string()),
        ("DEV8_QUEUE_BACKEND", "storage".into()),
        ("DEV8_QUEUE_NAME", queue.into()),
        ("DEV8_STORE", "sqlite".into()),
        ("DEV8_DATA_DIR", data_dir.display().to_string()),
        ("DEV8_COMPUTE", "local".into()),
        ("DEV8_SIGNUP", "open".into()),
        ("DEV8_RECONCILE_INTERVAL_MS", "200".into()),
        ("DEV8_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    settings.insert(
        "DEV8_CODE_SERVER".into(),
        code_server::entry().display().to_string(),
    );
    settings
}

async fn start_packaged_with(app_dir: &Path, settings: BTreeMap<String, String>) -> HostSim {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["package", "--root", env!("CARGO_MANIFEST_DIR"), "--out"])
        .arg(app_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sim = HostSim::start(app_dir, &settings).await;
    sim.config.visibility_timeout = Duration::from_secs(1);
    sim
}

#[tokio::test]
#[ignore = "full tier: needs Azurite and code-server"]
async fn the_binary_starts_like_a_custom_handler_and_speaks_the_protocol() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let tmp = tempfile::tempdir().unwrap();
        let queue = azurite::unique_queue("bin");
        let mut sim =
            start_packaged(&tmp.path().join("app"), &queue, &tmp.path().join("data")).await;

        // Forwarded HTTP.
        let h = sim
            .http(reqwest::Method::GET, "/api/health", &[], None)
            .await;
        assert_eq!(h.status, 200, "{}", h.body);
        signs_up(&sim).await;

        // Timer.
        let t = sim.timer(false).await;
        assert_eq!(t.status, 200, "{:?}", t.logs);
        assert!(
            t.logs
                .iter()
                .any(|l| l.contains(&t.invocation_id) && l.contains("sweep")),
            "{:?}",
            t.logs
        );

        // Queue: a message that is not a job, redelivered then poisoned.
        use base64::Engine;
        sim.queue
            .put_text(&base64::engine::general_purpose::STANDARD.encode("not a job"))
            .await;
        let polls = sim
            .pump_until(Duration::from_secs(30), || async {
                !sim.queue.poison().peek().await.is_empty()
            })
            .await;
        assert_eq!(
            polls,
            [
                Poll::Retried,
                Poll::Retried,
                Poll::Retried,
                Poll::Retried,
                Poll::Poisoned
            ]
        );

        // Per-invocation lines reach stdout tagged with the invocation id.
        let out = sim.output();
        assert!(
            out.contains(&t.invocation_id),
            "stdout carries invocation ids:\n{out}"
        );
        assert!(
            !out.contains("AccountKey"),
            "no connection string in the output"
        );
        assert!(
            out.split("sig=")
                .skip(1)
                .all(|rest| rest.starts_with("REDACTED")),
            "no SAS signature in the output"
        );
        sim.stop().await;
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
#[ignore = "full tier: needs Azurite and code-server"]
async fn the_full_lifecycle_runs_through_the_real_binary() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let tmp = tempfile::tempdir().unwrap();
        let queue = azurite::unique_queue("binlife");
        let mut sim =
            start_packaged(&tmp.path().join("app"), &queue, &tmp.path().join("data")).await;
        let origin = sim.handler.clone();
        let token = sim.user("ada@x.io", &origin).await;
        sim.lifecycle(&token, Duration::from_secs(60)).await;
        sim.stop().await;
    })
    .await
    .expect("bounded in time");
}

/// Run `handler functions` with host-like settings and return (exit status, output) once it exits.
fn run_to_exit(settings: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("functions")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", "0")
        .env("FUNCTIONS_WORKER_RUNTIME", "Custom")
        .env("DEV8_DATA_DIR", tmp.path())
        .envs(settings.iter().copied())
        .output()
        .expect("handler runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

#[test]
fn the_binary_refuses_settings_the_functions_host_cannot_work_with() {
    // The queue trigger only sees the Storage queue.
    let (status, out) = run_to_exit(&[("DEV8_QUEUE_BACKEND", "embedded")]);
    assert!(
        !status.success() && out.contains("needs DEV8_QUEUE_BACKEND=storage"),
        "{out}"
    );
    // Instances of a scaled-out app must share signing keys.
    let (status, out) = run_to_exit(&[("DEV8_QUEUE_BACKEND", "storage"), ("DEV8_STORE", "cosmos")]);
    assert!(
        !status.success() && out.contains("needs DEV8_SIGNING_KEYS"),
        "{out}"
    );
    // ... and the key that seals personal secrets.
    let keys = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    let (status, out) = run_to_exit(&[
        ("DEV8_QUEUE_BACKEND", "storage"),
        ("DEV8_STORE", "cosmos"),
        ("DEV8_SIGNING_KEYS", keys),
    ]);
    assert!(
        !status.success() && out.contains("needs DEV8_SECRETS_KEY"),
        "{out}"
    );
    // No port from the host: a usage error (`--port`, env FUNCTIONS_CUSTOMHANDLER_PORT).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("functions")
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--port"));
}

/// In Azure a store or token failure at start must not become a crash loop:
/// the real binary, its Storage account unreachable, keeps listening; the
/// host's readiness (`GET /`), the forwarded API and the queue function
/// answer 503 `application/problem+json` naming the cause (no key), and it
/// tries again with backoff (fast tier: a closed loopback port stands for
/// the account).
#[tokio::test]
async fn an_unreachable_storage_account_makes_readiness_fail_with_its_cause_not_a_crash() {
    let port = |_: ()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (closed, handler_port) = (port(()), port(()));
    let key = "c2VjcmV0LWtleS1kby1ub3QtbG9n";
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};QueueEndpoint=http://127.0.0.1:{closed}/devstoreaccount1"
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("functions")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", handler_port.to_string())
        .env("FUNCTIONS_WORKER_RUNTIME", "Custom")
        .env("DEV8_DATA_DIR", tmp.path())
        .env("DEV8_QUEUE_BACKEND", "storage")
        .env("AzureWebJobsStorage", &cs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{handler_port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Until the first attempt has failed, the cause is "not finished".
    let answer = loop {
        if let Ok(r) = client.get(format!("{url}/")).send().await {
            assert_eq!(r.status(), 503);
            let body: serde_json::Value = r.json().await.unwrap();
            if body["detail"]
                .as_str()
                .unwrap()
                .contains("connecting to the Storage queue")
            {
                break body;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no named cause");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer["status"], 503);
    for (method, path) in [
        (reqwest::Method::GET, "/api/health"),
        (reqwest::Method::POST, "/ReconcileJob"),
    ] {
        let r = client
            .request(method, format!("{url}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let text = r.text().await.unwrap();
        assert!(text.contains("connecting to the Storage queue"), "{text}");
        assert!(!text.contains(key), "{text}");
    }
    // Still running (no exit); the failed attempt is logged without a backtrace.
    assert!(child.try_wait().unwrap().is_none(), "the handler exited");
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("not ready: initialisation failed"), "{text}");
    assert!(!text.contains(key), "no key in the output:\n{text}");
    assert!(
        !text.contains("panicked") && !text.contains("stack backtrace"),
        "{text}"
    );
    // The SDK logs failed requests with the SAS signature redacted.
    assert!(
        text.split("sig=")
            .skip(1)
            .all(|rest| rest.starts_with("REDACTED")),
        "no SAS signature in the output:\n{text}"
    );
}

/// The control plane's one user-assigned identity, as infra names it.
const CONTROL_CLIENT_ID: &str = "6f1d3c0e-control-plane-identity";

/// What App Service gives a Function App with a user-assigned identity, and
/// what `infra/modules/functionapp.bicep` sets: the identity endpoint, its
/// secret, and the identity's client id for Dev8 and for the host's storage.
fn in_app_service(endpoint: &IdentityEndpoint) -> Vec<(String, String)> {
    [
        ("IDENTITY_ENDPOINT", endpoint.url.as_str()),
        ("IDENTITY_HEADER", identity::SECRET),
        ("AZURE_CLIENT_ID", CONTROL_CLIENT_ID),
        ("AzureWebJobsStorage__clientId", CONTROL_CLIENT_ID),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// In the Bicep deployment the Function App has only a user-assigned
/// identity, and App Service's identity endpoint refuses a token request
/// that does not name it. The real binary in `functions` mode, with no
/// Cosmos key, gets its Cosmos token from the endpoint's stand-in and works
/// against the Cosmos-compatible server (which takes AAD tokens). Storage
/// stays on the Azurite connection string here: azure_core sends bearer
/// tokens over https only, and Azurite is plain http; identity access to
/// Storage is covered in-process (`queue::storage_queue` tests).
#[tokio::test]
#[ignore = "full tier: needs Azurite, the Cosmos-compatible server and code-server"]
async fn in_app_service_the_binary_gets_its_cosmos_token_for_its_user_assigned_identity() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let tmp = tempfile::tempdir().unwrap();
        // The database and containers exist (in Azure, infra makes them).
        let cosmos = cosmos::cosmos_config();
        cosmos::cosmos_store_for(&cosmos).await;
        let endpoint = IdentityEndpoint::user_assigned_only(&[CONTROL_CLIENT_ID]).await;
        let mut settings = settings(&azurite::unique_queue("msi"), &tmp.path().join("data"));
        settings.extend(in_app_service(&endpoint));
        for (k, v) in [
            ("DEV8_STORE", "cosmos"),
            ("COSMOS_ENDPOINT", cosmos.endpoint.as_str()),
            ("COSMOS_DATABASE", cosmos.database.as_str()),
            ("DEV8_COSMOS_CREATE_CONTAINERS", "false"),
            (
                "DEV8_SIGNING_KEYS",
                "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            ),
            (
                "DEV8_SECRETS_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
            ("COSMOS_DISABLE_IMDS", "1"),
            ("AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED", "false"),
            ("AZURE_COSMOS_BINARY_ENCODING_ENABLED", "false"),
        ] {
            settings.insert(k.into(), v.into());
        }
        assert!(!settings.contains_key("COSMOS_KEY"));
        let mut sim = start_packaged_with(&tmp.path().join("app"), settings).await;
        signs_up(&sim).await;
        let requests = endpoint.requests();
        assert!(
            !requests.is_empty(),
            "the Cosmos token came from the endpoint"
        );
        for r in &requests {
            assert_eq!(r.client_id.as_deref(), Some(CONTROL_CLIENT_ID), "{r:?}");
            assert_eq!(
                r.api_version.as_deref(),
                Some(identity::API_VERSION),
                "{r:?}"
            );
            assert_eq!(r.answered, 200, "{r:?}");
        }
        assert!(
            !sim.output().contains("fake-aad-token"),
            "no token in the output"
        );
        sim.stop().await;
    })
    .await
    .expect("bounded in time");
}

/// `serve` with `DEV8_STORE=cosmos` and no key, where App Service's identity
/// endpoint is: the first token request names the user-assigned identity
/// (today's main asked for the system-assigned one, which the endpoint
/// refuses, and `serve` exited at start). Fast tier: the Cosmos endpoint is
/// a closed loopback port, so only the token request is looked at.
#[tokio::test]
async fn serve_asks_the_identity_endpoint_for_its_user_assigned_identity() {
    let endpoint = IdentityEndpoint::user_assigned_only(&[CONTROL_CLIENT_ID]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["serve", "--port", "0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DEV8_DATA_DIR", tmp.path())
        .env("DEV8_STORE", "cosmos")
        .env("COSMOS_ENDPOINT", format!("http://127.0.0.1:{closed}"))
        .env("COSMOS_DISABLE_IMDS", "1")
        .env("AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED", "false")
        .envs(
            in_app_service(&endpoint)
                .into_iter()
                .filter(|(k, _)| k != "AzureWebJobsStorage__clientId"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while endpoint.requests().is_empty() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve exited ({status}) before asking for a token");
        }
        assert!(std::time::Instant::now() < deadline, "no token request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;
    let first = &endpoint.requests()[0];
    assert_eq!(
        first.client_id.as_deref(),
        Some(CONTROL_CLIENT_ID),
        "{first:?}"
    );
    assert_eq!(first.answered, 200, "{first:?}");
    assert!(
        first.resource.as_deref().is_some_and(|r| !r.is_empty()),
        "{first:?}"
    );
}
