//! Workspace Trust's starter seed (`handlers/agent/trust.rs`, full tier):
//! what the real agent changes in real code-server's answers — the
//! workbench page of a starter project, and nothing else — and the check,
//! against the shipped code-server bundle, that the trusted-folder list is
//! still kept where and how the seed writes it. The browser side (the
//! starter opens trusted, a clone in Restricted Mode) is
//! `tests/js/e2e/trust.test.mjs`.

use crate::harness::git_server::GitServer;
use crate::harness::ide::{agent_client, redeem};
use crate::harness::{Compute, LocalOpts, TestApp, User};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const MAIN: &str = "/out/vs/code/browser/workbench/workbench.js";

struct Tab {
    client: reqwest::Client,
    ide_url: String,
    cookie: String,
}

impl Tab {
    /// A browser's session with the environment's agent.
    async fn open(app: &TestApp, u: &User, id: &str) -> Tab {
        let env = app
            .wait_status(u, id, "running", Duration::from_secs(90))
            .await;
        let ide_url = env["ideUrl"].as_str().unwrap().to_string();
        let client = agent_client(&ide_url);
        let cookie = redeem(&client, &app.open_url(u, id).await).await;
        Tab {
            client,
            ide_url,
            cookie,
        }
    }

    /// GET `path` as a browser would (compression accepted), with the session.
    async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(path, "gzip, deflate, br").await
    }

    async fn get_as(&self, path: &str, encodings: &str) -> reqwest::Response {
        let url = reqwest::Url::parse(&self.ide_url)
            .unwrap()
            .join(path)
            .unwrap();
        self.client
            .get(url)
            .header("cookie", &self.cookie)
            .header("accept-encoding", encodings)
            .send()
            .await
            .unwrap()
    }

    /// The workbench page (code-server first redirects `/` to `?folder=`),
    /// asked for with `encodings` accepted.
    async fn workbench(&self, encodings: &str) -> (reqwest::header::HeaderMap, String) {
        let mut r = self.get_as("/", encodings).await;
        if r.status().is_redirection() {
            let to = r.headers()["location"].to_str().unwrap().to_string();
            r = self.get_as(&to, encodings).await;
        }
        assert_eq!(r.status(), 200);
        let headers = r.headers().clone();
        (headers, r.text().await.unwrap())
    }
}

/// The `<base>` of the page's workbench module (`<base>/out/vs/...`).
fn main_module(page: &str) -> String {
    let end = page.find(MAIN).expect("the page names its main module");
    let start = page[..end].rfind('"').unwrap() + 1;
    format!("{}{MAIN}", &page[start..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn only_a_starter_projects_workbench_page_is_held_behind_the_seed_script() {
    let git_server = GitServer::start().await;
    let (repo, _) = git_server.repository("tools", &[("README.md", "# tools\n")]);
    let app = TestApp::builder()
        .compute(Compute::Local(LocalOpts::default()))
        .settings(|s| s.test_allow_loopback_git = true)
        .spawn()
        .await;
    let u = app.user("trust@example.com").await;
    let starter = app.new_env_from(&u, "starter", "node").await;
    let r = app
        .post(
            "/api/environments",
            json!({"name": "cloned", "baseImage": "node", "preset": "small", "repository": {"url": repo}}),
            &u,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let cloned = r.body["environment"]["id"].as_str().unwrap().to_string();

    // The starter project: the main module is held behind the seed script
    // (and preloaded); code-server's CSP is unchanged and allows it ('self').
    let tab = Tab::open(&app, &u, &starter).await;
    // Asked for compressed, it comes plain: the agent reads it.
    let (headers, page) = tab.workbench("gzip, deflate, br").await;
    let main = main_module(&page);
    assert!(
        !page.contains(&format!("<script type=\"module\" src=\"{main}\"")),
        "the workbench would start before the seed"
    );
    assert!(
        page.contains(&format!(
            "<link rel=\"modulepreload\" href=\"{main}\">\n\t<script type=\"module\" src=\"/_dev8/trust.js\" data-dev8-main=\"{main}\"></script>"
        )),
        "{page}"
    );
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        page.len().to_string()
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self' "), "{csp}");

    // The script, behind the session, names the folder VS Code opens.
    let r = tab
        .client
        .get(format!("{}_dev8/trust.js", tab.ide_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "no session, no script");
    let r = tab.get("/_dev8/trust.js").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    let script = r.text().await.unwrap();
    let workspace = app.local().home(&starter).join("workspace");
    assert!(
        script.contains(&format!(
            "const STARTER = {};",
            serde_json::to_string(workspace.to_str().unwrap()).unwrap()
        )),
        "{script}"
    );

    // Nothing else is read or changed: the module itself, the manifest, a
    // webview's HTML page (compressed as code-server sends them).
    for path in [
        main.clone(),
        main.replace(
            "/vs/code/browser/workbench/workbench.js",
            "/vs/workbench/contrib/webview/browser/pre/index.html",
        ),
        "/manifest.json".to_string(),
    ] {
        let r = tab.get(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers().get("content-encoding").is_some(),
            "{path} was read by the agent"
        );
        let body = r.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("data-dev8-main") && !text.contains("_dev8/trust.js"));
    }

    // An environment created from a repository: code-server's page as it is.
    let tab = Tab::open(&app, &u, &cloned).await;
    let (_, page) = tab.workbench("identity").await;
    let main = main_module(&page);
    assert!(page.contains(&format!("<script type=\"module\" src=\"{main}\"></script>")));
    assert!(!page.contains("_dev8/trust.js") && !page.contains("data-dev8-main"));
    let r = tab.get("/_dev8/trust.js").await;
    assert_ne!(r.status(), 200, "no seed script for a clone");
    app.shutdown().await;
}

/// A file of the installed code-server package.
fn code_server_file(path: &str) -> String {
    let entry = crate::peers::code_server::entry();
    let package: PathBuf = entry.ancestors().nth(3).unwrap().to_path_buf();
    std::fs::read_to_string(package.join(path))
        .unwrap_or_else(|e| panic!("{path} in {}: {e}", package.display()))
}

/// The seed writes into a private storage format of code-server 4.100.3's
/// web workbench. An upgrade fails here, loudly, until the seed
/// (`handlers/agent/trust.js`, `trust.rs`) is checked against the new
/// bundle and this test with it.
#[test]
#[ignore = "full tier: needs code-server"]
fn code_server_still_keeps_trusted_folders_where_the_seed_writes_them() {
    let seed = include_str!("../../handlers/agent/trust.js");
    let package: serde_json::Value =
        serde_json::from_str(&code_server_file("package.json")).unwrap();
    assert_eq!(package["version"], "4.100.3");
    assert!(seed.contains("const CODE_SERVER = '4.100.3';"));

    // The page: one main-module tag, as `trust::hold_workbench` expects.
    let html = code_server_file("lib/vscode/out/vs/code/browser/workbench/workbench.html");
    assert_eq!(
        html.matches(
            "<script type=\"module\" src=\"{{WORKBENCH_WEB_BASE_URL}}/out/vs/code/browser/workbench/workbench.js\"></script>"
        )
        .count(),
        1
    );
    assert!(html.contains("<meta id=\"vscode-workbench-web-configuration\""));

    // Its CSP lets a same-origin script run.
    let server = code_server_file("lib/vscode/out/server-main.js");
    assert!(server.contains("`script-src 'self' 'unsafe-eval' "));

    let bundle = code_server_file("lib/vscode/out/vs/code/browser/workbench/workbench.js");
    for (what, text) in [
        // The list's key, read from application storage (-1) at start.
        ("the storage key", "=\"content.trust.model.key\""),
        (
            "the list read at start",
            "R(){const e=this.G.get(this.a,-1);let t;try{e&&(t=JSON.parse(e))}catch{}return t||(t={uriTrustInfo:[]}),t.uriTrustInfo||(t.uriTrustInfo=[]),t.uriTrustInfo=t.uriTrustInfo.map(s=>({uri:N.revive(s.uri),trusted:s.trusted}))",
        ),
        // Application storage: IndexedDB `vscode-web-state-db-global`, store `ItemTable`.
        (
            "application storage",
            "createApplicationStorage(e){return sD.create({id:\"global\",broadcastChanges:!0},e)}",
        ),
        (
            "the database name",
            "static{this.a=\"vscode-web-state-db-\"}",
        ),
        ("the object store", "static{this.b=\"ItemTable\"}"),
        (
            "a missing store created as the seed does",
            "o.onupgradeneeded=()=>{const a=o.result;for(const l of s)a.objectStoreNames.contains(l)||a.createObjectStore(l)}",
        ),
        // The folder's URI: vscode-remote://<page host><path>.
        ("the remote authority", "remoteAuthority:location.host}"),
        (
            "the folder URI",
            "folderUri:N.from({scheme:K.vscodeRemote,path:o,authority:e.remoteAuthority})",
        ),
        // No server-side answer overrides the list for a remote folder.
        (
            "the resolver's canonical URI",
            "async getCanonicalURI(e){return e}",
        ),
    ] {
        assert!(bundle.contains(text), "code-server changed {what}: {text}");
    }
}
