//! Tidy checks for the Functions app: every `functions/*/function.json`
//! matches an API route (`http::ROUTES`) or a `/{FunctionName}` handler of
//! the envelope, methods agree, every route has its function; host.json
//! agrees with the code; every setting is in local.settings.example.json
//! and documented.
//!
//! `DEV8_BLESS=1 cargo test --test it functions_tidy` rewrites the function
//! folders from the route table (then review and commit them).

use crate::harness::TestApp;
use axum::body::Body;
use axum::http::{Method, Request};
use dev8::host::{self, manifest};
use dev8::http::{ROUTES, RouteSpec};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tower::ServiceExt;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The committed function folders: name -> function.json.
fn committed() -> BTreeMap<String, Value> {
    let Ok(dir) = std::fs::read_dir(root().join("functions")) else {
        return BTreeMap::new();
    };
    dir.map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read_json(&p.join("function.json")),
            )
        })
        .collect()
}

/// Every disagreement between a route table and function folders.
fn problems(routes: &[RouteSpec], files: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for spec in routes {
        let Some(f) = files.get(spec.function) else {
            out.push(format!(
                "route {} {} has no functions/{}/function.json",
                spec.method, spec.path, spec.function
            ));
            continue;
        };
        let b = &f["bindings"];
        let trigger = &b[0];
        if b.as_array().map(Vec::len) != Some(2)
            || trigger["type"] != "httpTrigger"
            || trigger["direction"] != "in"
            || b[1]["type"] != "http"
            || b[1]["direction"] != "out"
        {
            out.push(format!(
                "{}: an HTTP function has exactly an httpTrigger in and an http out",
                spec.function
            ));
        }
        if trigger["methods"] != serde_json::json!([spec.method.to_ascii_lowercase()]) {
            out.push(format!(
                "{}: methods {} but the route is {}",
                spec.function, trigger["methods"], spec.method
            ));
        }
        if trigger["route"].as_str() != Some(manifest::function_route(spec.path)) {
            out.push(format!(
                "{}: route {} but the API path is {}",
                spec.function, trigger["route"], spec.path
            ));
        }
        if trigger["authLevel"] != "anonymous" {
            out.push(format!(
                "{}: authLevel must be anonymous (the app authenticates)",
                spec.function
            ));
        }
    }
    let handlers = [host::QUEUE_FUNCTION, host::TIMER_FUNCTION];
    for (name, f) in files {
        let is_route = routes.iter().any(|r| r.function == name);
        if !is_route && !handlers.contains(&name.as_str()) {
            out.push(format!(
                "functions/{name} has neither an API route nor a /{name} handler"
            ));
        }
        if handlers.contains(&name.as_str()) && f["bindings"][0]["type"] == "httpTrigger" {
            out.push(format!(
                "functions/{name} is an envelope handler, not an HTTP route"
            ));
        }
    }
    for h in handlers {
        if !files.contains_key(h) {
            out.push(format!(
                "the /{h} handler has no functions/{h}/function.json"
            ));
        }
    }
    out
}

fn bless() {
    let dir = root().join("functions");
    let wanted: BTreeMap<String, Value> = manifest::functions().into_iter().collect();
    for name in committed().keys().filter(|n| !wanted.contains_key(*n)) {
        std::fs::remove_dir_all(dir.join(name)).unwrap();
    }
    for (name, json) in &wanted {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("function.json"), manifest::render(json)).unwrap();
    }
}

#[test]
fn every_function_json_matches_a_route_or_handler_and_every_route_has_one() {
    if std::env::var_os("DEV8_BLESS").is_some() {
        bless();
    }
    let files = committed();
    let found = problems(ROUTES, &files);
    assert!(
        found.is_empty(),
        "{}\n(fix, or run DEV8_BLESS=1 cargo test --test it functions_tidy)",
        found.join("\n")
    );
    // The files are exactly what the manifest generates (queue and timer included).
    for (name, json) in manifest::functions() {
        assert_eq!(
            files.get(&name),
            Some(&json),
            "functions/{name}/function.json is stale"
        );
        let text =
            std::fs::read_to_string(root().join("functions").join(&name).join("function.json"))
                .unwrap();
        assert_eq!(
            text,
            manifest::render(&json),
            "functions/{name}/function.json is not in canonical form"
        );
    }
}

#[test]
fn a_route_without_its_function_fails_the_check() {
    let mut routes = ROUTES.to_vec();
    routes.push(RouteSpec {
        function: "EnvironmentRestart",
        method: "POST",
        path: "/api/environments/{id}/restart",
        handler: || axum::routing::post(|| async {}),
    });
    let found = problems(&routes, &committed());
    assert_eq!(
        found,
        vec![
            "route POST /api/environments/{id}/restart has no functions/EnvironmentRestart/function.json"
        ]
    );
    // And a function whose method disagrees with its route.
    let mut files = committed();
    files.get_mut("EnvironmentStop").unwrap()["bindings"][0]["methods"] =
        serde_json::json!(["get"]);
    assert!(
        problems(ROUTES, &files)
            .iter()
            .any(|p| p.contains("EnvironmentStop: methods"))
    );
}

#[tokio::test]
async fn the_handler_serves_every_function_with_its_method() {
    // A configured provider, so `{provider}` routes reach their handlers.
    let app = TestApp::builder()
        .settings(|s| {
            s.oauth.github_client_id = Some("tidy-client".into());
            s.oauth.github_client_secret =
                Some(secrecy::SecretString::from("tidy-secret".to_string()));
        })
        .spawn()
        .await;
    let router = host::router(app.platform.clone());
    let call = |method: &str, path: String| {
        let router = router.clone();
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        async move { router.oneshot(req).await.unwrap().status().as_u16() }
    };
    for spec in ROUTES {
        let path = spec
            .path
            .replace("{id}", "01j0000000000000000000000a")
            .replace("{provider}", "github");
        let status = call(spec.method, path.clone()).await;
        assert!(
            status != 404 && status != 405,
            "{} {path} -> {status}: the router does not serve it",
            spec.method
        );
        // Another method on the same path is not this function.
        if !ROUTES
            .iter()
            .any(|r| r.path == spec.path && r.method == "PUT")
        {
            assert_eq!(call("PUT", path.clone()).await, 405, "PUT {path}");
        }
    }
    // The envelope's own functions exist: a queue payload without a message
    // is refused, a timer payload runs the sweep.
    assert_eq!(
        call("POST", format!("/{}", host::QUEUE_FUNCTION)).await,
        400
    );
    assert_eq!(
        call("POST", format!("/{}", host::TIMER_FUNCTION)).await,
        200
    );
    assert_eq!(call("POST", "/NoSuchFunction".into()).await, 404);
    assert_eq!(call("GET", "/".into()).await, 200, "readiness");
}

#[test]
fn host_json_agrees_with_the_code() {
    let host_json = read_json(&root().join("host.json"));
    assert_eq!(host_json["version"], "2.0");
    let ch = &host_json["customHandler"];
    assert_eq!(
        ch["description"]["defaultExecutablePath"],
        host::package::EXECUTABLE
    );
    assert_eq!(
        ch["description"]["arguments"],
        serde_json::json!(["functions"])
    );
    use clap::CommandFactory;
    assert!(
        dev8::config::Cli::command()
            .find_subcommand("functions")
            .is_some(),
        "`handler functions` exists"
    );
    assert_eq!(
        ch["enableForwardingHttpRequest"], true,
        "HTTP functions are forwarded as-is"
    );
    assert_eq!(
        host_json["extensions"]["http"]["routePrefix"],
        manifest::ROUTE_PREFIX
    );
    let q = &host_json["extensions"]["queues"];
    assert_eq!(
        q["maxDequeueCount"],
        dev8::queue::MAX_DELIVERIES,
        "the host poisons when the worker would"
    );
    assert_eq!(
        q["messageEncoding"], "base64",
        "the Storage adapter writes base64 message text"
    );
    for key in ["batchSize", "visibilityTimeout"] {
        assert!(q.get(key).is_some(), "queues.{key} is set");
    }
    assert!(host_json["functionTimeout"].is_string());
    assert_eq!(
        host_json["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
}

/// Settings from shared/DESIGN.md that code on other branches reads (Cosmos,
/// ACI, OAuth); they are in the example and the docs already.
const DESIGN_SETTINGS: &[&str] = &[
    "COSMOS_ENDPOINT",
    "COSMOS_KEY",
    "COSMOS_DATABASE",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_RESOURCE_GROUP",
    "AZURE_REGION",
    "DEV8_WORKSPACE_STORAGE_ACCOUNT",
    "DEV8_IMAGE_REGISTRY",
    "DEV8_ACR_PULL_IDENTITY",
    "DEV8_ARM_ENDPOINT",
    "DEV8_GITHUB_CLIENT_ID",
    "DEV8_GITHUB_CLIENT_SECRET",
    "DEV8_GITHUB_URL",
    "DEV8_GITHUB_API_URL",
    "DEV8_OIDC_ISSUER",
    "DEV8_OIDC_CLIENT_ID",
    "DEV8_OIDC_CLIENT_SECRET",
    "DEV8_OIDC_NAME",
    "DEV8_LOG",
];

fn env_names(cmd: &clap::Command, out: &mut BTreeSet<String>) {
    for arg in cmd.get_arguments() {
        if let Some(env) = arg.get_env() {
            out.insert(env.to_string_lossy().into_owned());
        }
    }
    for sub in cmd.get_subcommands() {
        // The agent's variables are set inside each environment by the
        // compute backend, not as app settings of the control plane.
        if sub.get_name() != "agent" {
            env_names(sub, out);
        }
    }
}

#[test]
fn every_setting_is_in_the_example_settings_and_documented() {
    use clap::CommandFactory;
    let mut wanted = BTreeSet::new();
    env_names(&dev8::config::Cli::command(), &mut wanted);
    // Set by the Functions host itself, not an app setting.
    wanted.remove("FUNCTIONS_CUSTOMHANDLER_PORT");
    wanted.extend(DESIGN_SETTINGS.iter().map(|s| s.to_string()));
    wanted.insert("FUNCTIONS_WORKER_RUNTIME".into());

    let example = read_json(&root().join("local.settings.example.json"));
    assert_eq!(example["Values"]["FUNCTIONS_WORKER_RUNTIME"], "Custom");
    let mut listed = BTreeSet::new();
    for section in ["Values", "_unset"] {
        for (k, v) in example[section].as_object().unwrap() {
            assert!(listed.insert(k.clone()), "{k} is listed twice");
            assert!(v.is_string(), "{k}: Values are strings");
            if section == "_unset" {
                assert_eq!(v, "", "{k}: _unset lists names only");
            }
        }
    }
    let missing: Vec<_> = wanted.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "not in local.settings.example.json: {missing:?}"
    );
    let docs =
        std::fs::read_to_string(root().join("docs/functions.md")).expect("docs/functions.md");
    let undocumented: Vec<_> = listed
        .iter()
        .filter(|k| !docs.contains(&format!("`{k}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not documented in docs/functions.md: {undocumented:?}"
    );
}
