//! Dev8's VS Code extension (`extension/`: plain JS, no build step, embedded
//! in the binary) and the channel it talks to. At every launch the agent
//! writes it into the environment's extensions folder and registers it in
//! the folder's `extensions.json` (VS Code loads only what that file lists),
//! keeping every other entry as it is. The extension reports input a person
//! makes to a Unix socket in the agent's 0700 runtime folder (its path is
//! passed to code-server as `DEV8_ACTIVITY_SOCKET`), and asks the agent when
//! the environment stops for inactivity, to warn before it does.
//!
//! Its manifest also gives the IDE tab's title, `window.title`, a default
//! that starts with the environment's name (`contributes.configurationDefaults`:
//! a default, so a title the person set in their own settings still wins).
//! code-server keeps scanned manifests in a cache it checks only after
//! serving them, so when the manifest changed (a rename since the last
//! start) that cache is removed and the first page already has the new title.

use super::activity::{Activity, Kind};
use super::code_server::IdeUser;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The variable that tells the extension where the agent listens.
pub const SOCKET_VAR: &str = "DEV8_ACTIVITY_SOCKET";
/// The extension's id (`publisher.name` in its `package.json`).
pub const ID: &str = "dev8.activity";
const PACKAGE_JSON: &str = include_str!("extension/package.json");
const MAIN_JS: &str = include_str!("extension/extension.js");

/// What the extension may report. Anything else is refused and never counts.
pub const SIGNALS: &[&str] = &[
    "editor-input",
    "open-editor",
    "window-focus",
    "terminal-command",
    "task",
    "debug",
    "keep-running",
];

fn version() -> String {
    serde_json::from_str::<serde_json::Value>(PACKAGE_JSON)
        .ok()
        .and_then(|p| p["version"].as_str().map(str::to_string))
        .unwrap_or_else(|| "0.0.0".into())
}

/// VS Code's default `window.title` in a browser (code-server 4.100.3's
/// workbench), after the environment's name.
const DEFAULT_TITLE: &str = "${dirty}${activeEditorShort}${separator}${rootName}${separator}${profileName}${separator}${appName}${separator}${remoteName}";

/// The manifest as written for an environment named `name`: the embedded
/// one, plus a `window.title` default that starts with the name. `${` in a
/// name is broken up so the title shows it instead of reading a variable.
fn manifest(name: Option<&str>) -> String {
    let Some(name) = name else {
        return PACKAGE_JSON.to_string();
    };
    let mut manifest: serde_json::Value =
        serde_json::from_str(PACKAGE_JSON).expect("the embedded package.json is JSON");
    let title = format!("{}${{separator}}{DEFAULT_TITLE}", name.replace("${", "$ {"));
    manifest["contributes"] = serde_json::json!({"configurationDefaults": {"window.title": title}});
    serde_json::to_string_pretty(&manifest).expect("JSON")
}

/// Write the extension into `<user_data_dir>/extensions` (code-server's
/// extensions folder) and register it there; `name` is the environment's,
/// for the tab's title. An `extensions.json` that is not a JSON array is
/// left alone (and the extension is then not loaded): nothing a person or
/// VS Code wrote is lost.
pub fn install(
    user_data_dir: &Path,
    user: Option<IdeUser>,
    name: Option<&str>,
) -> std::io::Result<PathBuf> {
    let extensions_dir = user_data_dir.join("extensions");
    let folder_name = format!("{ID}-{}", version());
    let folder = extensions_dir.join(&folder_name);
    std::fs::create_dir_all(&folder)?;
    let package_json = manifest(name);
    let changed = std::fs::read_to_string(folder.join("package.json"))
        .map_or(true, |before| before != package_json);
    for (file, text) in [
        ("package.json", package_json.as_str()),
        ("extension.js", MAIN_JS),
    ] {
        std::fs::write(folder.join(file), text)?;
    }
    if changed {
        forget_scanned_manifests(user_data_dir)?;
    }
    let index = extensions_dir.join("extensions.json");
    let mut entries = match std::fs::read_to_string(&index) {
        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(entries)) => entries,
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a JSON array; left as it is", index.display()),
                ));
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    entries.retain(|e| {
        !e["identifier"]["id"]
            .as_str()
            .is_some_and(|id| id.eq_ignore_ascii_case(ID))
    });
    entries.push(serde_json::json!({
        "identifier": {"id": ID},
        "version": version(),
        "location": {"$mid": 1, "path": folder.to_string_lossy(), "scheme": "file"},
        "relativeLocation": folder_name,
        "metadata": {"installedTimestamp": 0, "pinned": true, "source": "vsix"},
    }));
    let tmp = extensions_dir.join(".extensions.json.dev8");
    std::fs::write(&tmp, serde_json::to_vec(&entries).unwrap_or_default())?;
    std::fs::rename(&tmp, &index)?;
    if let Some(user) = user {
        for path in [
            &folder,
            &folder.join("package.json"),
            &folder.join("extension.js"),
            &index,
        ] {
            user.own(path)?;
        }
    }
    Ok(folder)
}

/// Remove code-server's cache of scanned user extensions
/// (`CachedProfilesData/<profile>/extensions.user.cache`, rebuilt at the next
/// scan), which would otherwise serve the old manifest to the first page.
fn forget_scanned_manifests(user_data_dir: &Path) -> std::io::Result<()> {
    let profiles = match std::fs::read_dir(user_data_dir.join("CachedProfilesData")) {
        Ok(profiles) => profiles,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for profile in profiles {
        match std::fs::remove_file(profile?.path().join("extensions.user.cache")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Signal {
    signal: String,
}

/// The channel's routes: `POST /use {"signal"}` counts an input event and
/// answers what `GET /idle` answers (`{"idleStopAt","idleWarningAt"}`).
pub fn router(activity: Arc<Activity>) -> Router {
    Router::new()
        .route("/use", post(report_use))
        .route("/idle", get(idle))
        .with_state(activity)
}

async fn report_use(State(activity): State<Arc<Activity>>, body: axum::body::Bytes) -> Response {
    let signal = serde_json::from_slice::<Signal>(&body).map(|s| s.signal);
    match signal {
        Ok(signal) if SIGNALS.contains(&signal.as_str()) => {
            tracing::debug!(%signal, "VS Code input counted as use");
            activity.touch(Kind::Ide);
            Json(activity.idle()).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "signal: not one of the known input events",
        )
            .into_response(),
    }
}

async fn idle(State(activity): State<Arc<Activity>>) -> Json<serde_json::Value> {
    Json(activity.idle())
}

/// Listen on `socket` (inside the agent's 0700 runtime folder, handed to the
/// IDE user) until `stop` turns true.
pub async fn serve(
    socket: PathBuf,
    user: Option<IdeUser>,
    activity: Arc<Activity>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    if let Some(user) = user {
        user.own(&socket)?;
    }
    axum::serve(listener, router(activity))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_registers_the_extension_and_keeps_every_other_entry() {
        let dir = tempfile::tempdir().unwrap();
        let other = serde_json::json!({"identifier": {"id": "ms-python.python"}, "version": "1"});
        let old_self =
            serde_json::json!({"identifier": {"id": "Dev8.Activity"}, "version": "0.1.0"});
        let index = dir.path().join("extensions/extensions.json");
        std::fs::create_dir_all(dir.path().join("extensions")).unwrap();
        std::fs::write(&index, serde_json::json!([other, old_self]).to_string()).unwrap();
        let folder = install(dir.path(), None, None).unwrap();
        assert!(folder.join("extension.js").is_file());
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("package.json")).unwrap())
                .unwrap();
        assert_eq!(
            manifest["capabilities"]["untrustedWorkspaces"]["supported"],
            true
        );
        let entries: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
        let ids: Vec<&str> = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["identifier"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["ms-python.python", ID],
            "one entry of ours, the others kept"
        );
        assert_eq!(
            entries[1]["location"]["path"],
            folder.to_string_lossy().as_ref()
        );
        // Installing again changes nothing.
        install(dir.path(), None, None).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&index).unwrap())
                .unwrap(),
            entries
        );
    }

    #[test]
    fn an_unreadable_index_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("extensions/extensions.json");
        std::fs::create_dir_all(dir.path().join("extensions")).unwrap();
        std::fs::write(&index, "{ half written").unwrap();
        assert!(install(dir.path(), None, None).is_err());
        assert_eq!(std::fs::read_to_string(&index).unwrap(), "{ half written");
    }

    fn title_default(folder: &Path) -> serde_json::Value {
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("package.json")).unwrap())
                .unwrap();
        manifest["contributes"]["configurationDefaults"]["window.title"].clone()
    }

    #[test]
    fn the_tab_title_starts_with_the_environment_name_and_a_rename_forgets_the_scan_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir
            .path()
            .join("CachedProfilesData/__default__profile__/extensions.user.cache");
        let builtin = cache.with_file_name("extensions.builtin.cache");
        std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
        let folder = install(dir.path(), None, Some("web-app")).unwrap();
        assert_eq!(
            title_default(&folder),
            format!("web-app${{separator}}{DEFAULT_TITLE}")
        );
        // The same name at the next start: code-server's scan cache is kept.
        for file in [&cache, &builtin] {
            std::fs::write(file, "[]").unwrap();
        }
        install(dir.path(), None, Some("web-app")).unwrap();
        assert!(cache.is_file(), "an unchanged manifest keeps the cache");
        // Renamed: the new title, and the cache that would serve the old
        // manifest is gone (the built-in extensions' cache stays).
        install(dir.path(), None, Some("api ${rootName}")).unwrap();
        assert_eq!(
            title_default(&folder),
            format!("api $ {{rootName}}${{separator}}{DEFAULT_TITLE}")
        );
        assert!(!cache.exists() && builtin.is_file());
        // No name (an agent started without one): VS Code's own default.
        install(dir.path(), None, None).unwrap();
        assert_eq!(title_default(&folder), serde_json::Value::Null);
    }
}
