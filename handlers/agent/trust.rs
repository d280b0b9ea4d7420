//! Workspace Trust for the starter project. code-server 4.100.3's web
//! workbench keeps its trusted folders in the browser (application storage:
//! IndexedDB `vscode-web-state-db-global`, key `content.trust.model.key`);
//! no server-side setting names one. So when the environment has no
//! repository, the agent holds the workbench page's main module behind a
//! same-origin script of its own (`trust.js`, allowed by the page's
//! `script-src 'self'`), which adds the starter folder to that list once per
//! browser and then imports the workbench. An environment created from a
//! repository gets nothing: its clone opens in Restricted Mode. Every other
//! response passes through untouched. See docs/agent.md.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Response, StatusCode, header};
use futures::StreamExt;
use http_body_util::BodyExt;
use std::path::{Component, Path, PathBuf};

/// Where the agent serves the script (behind the IDE session).
pub const SCRIPT_PATH: &str = "/_dev8/trust.js";
/// The script, with `PLACEHOLDER` for the starter folder's path.
const SCRIPT: &str = include_str!("trust.js");
const PLACEHOLDER: &str = "\"__DEV8_STARTER__\"";
/// The workbench page's main-module tag as code-server 4.100.3 renders it
/// (`lib/vscode/out/vs/code/browser/workbench/workbench.html`):
/// `<script type="module" src="<base>/out/vs/code/browser/workbench/workbench.js"></script>`.
const MAIN_OPEN: &str = "<script type=\"module\" src=\"";
const MAIN_CLOSE: &str = "/out/vs/code/browser/workbench/workbench.js\"></script>";
/// A workbench page is a few kilobytes; a longer HTML answer is not one.
const PAGE_LIMIT: usize = 256 * 1024;

/// The seed script for an environment whose starter project is `starter`
/// (the folder VS Code opens when there is no repository). `None` when the
/// path is not absolute UTF-8 (nothing is pre-trusted then).
pub fn script(starter: &Path) -> Option<String> {
    let path = resolved(starter)?;
    let literal = serde_json::to_string(path.to_str()?).ok()?;
    Some(SCRIPT.replacen(PLACEHOLDER, &literal, 1))
}

/// `path` as code-server names the folder it opens (node's `path.resolve`:
/// `.`, `..`, repeated and trailing separators resolved lexically).
fn resolved(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// The workbench page with its main module held behind the seed script
/// (and preloaded meanwhile, so the download does not wait); `None` when
/// `html` does not hold exactly one main-module tag as this code-server
/// version renders it.
pub fn hold_workbench(html: &str) -> Option<String> {
    let close = html.find(MAIN_CLOSE)?;
    if html[close + MAIN_CLOSE.len()..].contains(MAIN_CLOSE) {
        return None;
    }
    let open = html[..close].rfind(MAIN_OPEN)?;
    let base = &html[open + MAIN_OPEN.len()..close];
    if base.contains(['"', '<', '>']) {
        return None;
    }
    let main = format!("{base}/out/vs/code/browser/workbench/workbench.js");
    Some(format!(
        "{}<link rel=\"modulepreload\" href=\"{main}\">\n\t<script type=\"module\" src=\"{SCRIPT_PATH}\" data-dev8-main=\"{main}\"></script>{}",
        &html[..open],
        &html[close + MAIN_CLOSE.len()..]
    ))
}

/// Could this request be for the workbench page? code-server serves it at
/// `/` (its vscode router mounted at `/` and `/vscode`). Only these are
/// asked for uncompressed and read by `hold_in`; everything else, the
/// remote resources included, passes as code-server sends it.
pub fn may_be_workbench(path: &str) -> bool {
    matches!(path, "/" | "/vscode" | "/vscode/")
}

/// code-server's answer, with the workbench page's main module held behind
/// the seed script when it is that page; anything else unchanged.
pub async fn hold_in(resp: Response<Body>) -> Response<Body> {
    let html = resp.status() == StatusCode::OK
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
        && !resp.headers().contains_key(header::CONTENT_ENCODING);
    if !html {
        return resp;
    }
    let (mut parts, mut body) = resp.into_parts();
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return super::proxy::bad_gateway();
        };
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
        }
        if read.len() > PAGE_LIMIT {
            // Not the workbench: what was read, then the rest, as it comes.
            let head = futures::stream::once(async move { Ok(Bytes::from(read)) });
            let rest = body.into_data_stream();
            return Response::from_parts(parts, Body::from_stream(head.chain(rest)));
        }
    }
    let page = match std::str::from_utf8(&read).ok().map(hold_workbench) {
        Some(Some(page)) => {
            tracing::debug!("workbench page held behind the starter project's trust seed");
            Bytes::from(page)
        }
        _ => {
            if std::str::from_utf8(&read)
                .is_ok_and(|t| t.contains("vscode-workbench-web-configuration"))
            {
                tracing::warn!(
                    "a workbench page without code-server 4.100.3's main-module tag: the starter project is not pre-trusted"
                );
            }
            Bytes::from(read)
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Ok(v) = HeaderValue::from_str(&page.len().to_string()) {
        parts.headers.insert(header::CONTENT_LENGTH, v);
    }
    Response::from_parts(parts, Body::from(page))
}

/// The script as the agent answers it.
pub fn script_response(script: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(script.to_string()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's end as code-server 4.100.3 renders workbench.html.
    const PAGE: &str = "<html><head><meta id=\"vscode-workbench-web-configuration\" data-settings=\"{}\"></head><body></body>\n\
        <script type=\"module\" src=\"./stable-abc/static/out/nls.messages.js\"></script>\n\
        <script type=\"module\" src=\"./stable-abc/static/out/vs/code/browser/workbench/workbench.js\"></script>\n</html>";

    #[test]
    fn the_main_module_is_held_behind_the_seed_script_and_preloaded() {
        let held = hold_workbench(PAGE).unwrap();
        let main = "./stable-abc/static/out/vs/code/browser/workbench/workbench.js";
        assert!(!held.contains(&format!("<script type=\"module\" src=\"{main}\"")));
        assert!(held.contains(&format!(
            "<link rel=\"modulepreload\" href=\"{main}\">\n\t<script type=\"module\" src=\"/_dev8/trust.js\" data-dev8-main=\"{main}\"></script>\n</html>"
        )));
        // Everything before it is untouched (the NLS modules still run first).
        assert!(
            held.starts_with(
                &PAGE[..PAGE
                    .find("<script type=\"module\" src=\"./stable-abc/static/out/vs/code")
                    .unwrap()]
            )
        );
    }

    #[test]
    fn a_page_without_exactly_one_main_module_tag_is_left_alone() {
        assert_eq!(hold_workbench("<html><body>hi</body></html>"), None);
        let twice = format!("{PAGE}{PAGE}");
        assert_eq!(hold_workbench(&twice), None);
        let quoted = PAGE.replace("./stable-abc", "./x\" onload=\"y");
        assert_eq!(hold_workbench(&quoted), None);
    }

    #[test]
    fn the_script_names_the_starter_folder_as_code_server_does() {
        let s = script(Path::new("/data/envs/x/home/./workspace/")).unwrap();
        assert!(
            s.contains("const STARTER = \"/data/envs/x/home/workspace\";"),
            "{s}"
        );
        assert!(!s.contains("__DEV8_STARTER__"));
        let s = script(Path::new("/a/b/../c\"d")).unwrap();
        assert!(s.contains(r#"const STARTER = "/a/c\"d";"#), "{s}");
        assert_eq!(script(Path::new("relative/workspace")), None);
    }

    #[test]
    fn only_the_workbench_paths_are_read() {
        assert!(may_be_workbench("/"));
        assert!(may_be_workbench("/vscode"));
        assert!(may_be_workbench("/vscode/"));
        assert!(!may_be_workbench("/vscode-remote-resource"));
        assert!(!may_be_workbench(
            "/stable-abc/static/out/vs/code/browser/workbench/workbench.js"
        ));
        assert!(!may_be_workbench("/manifest.json"));
        assert!(!may_be_workbench("/_dev8/trust"));
    }

    #[tokio::test]
    async fn only_an_html_workbench_answer_is_changed() {
        let answer = |ct: &str, body: &str| {
            Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, ct)
                .header(header::CONTENT_LENGTH, body.len())
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let text = |r: Response<Body>| async move {
            let len = r.headers()[header::CONTENT_LENGTH]
                .to_str()
                .unwrap()
                .to_string();
            let b = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(len, b.len().to_string());
            String::from_utf8(b.to_vec()).unwrap()
        };
        let held = text(hold_in(answer("text/html", PAGE)).await).await;
        assert!(held.contains("data-dev8-main"));
        assert_eq!(text(hold_in(answer("text/plain", PAGE)).await).await, PAGE);
        let other = "<html><body>webview</body></html>";
        assert_eq!(text(hold_in(answer("text/html", other)).await).await, other);
        let big = "x".repeat(PAGE_LIMIT * 2);
        let r = hold_in(
            Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "text/html")
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(b.len(), big.len(), "a long page passes through whole");
    }
}
