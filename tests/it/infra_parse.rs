//! The Bicep checked from a real parse (PyPI `pycep-parser` through
//! `tests/specs/bicep.py`; the Bicep CLI cannot run here): every `.bicep`
//! file parses; every setting the binary reads is set among the Function
//! App's app settings; every API version used is listed below with its
//! source; every globally named resource carries a uniqueness suffix that
//! survives any `take(…, n)` at the parameters' longest values. Full tier:
//! the parser is installed by `scripts/ci-deps.sh`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every resource type and API version the Bicep uses, with where the
/// version is published (a stable folder of Azure/azure-rest-api-specs; the
/// two the binary also speaks are judged by the PyPI packages in
/// `tests/specs/requirements.txt`).
const API_VERSIONS: &[(&str, &str, &str)] = &[
    (
        "Microsoft.Authorization/roleAssignments",
        "2022-04-01",
        "specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01",
    ),
    (
        "Microsoft.Authorization/roleDefinitions",
        "2022-04-01",
        "specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01",
    ),
    (
        "Microsoft.ContainerRegistry/registries",
        "2023-07-01",
        "specification/containerregistry/resource-manager/Microsoft.ContainerRegistry/stable/2023-07-01",
    ),
    (
        "Microsoft.DocumentDB/databaseAccounts",
        "2024-11-15",
        "specification/cosmos-db/resource-manager/Microsoft.DocumentDB/stable/2024-11-15",
    ),
    (
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases",
        "2024-11-15",
        "specification/cosmos-db/resource-manager/Microsoft.DocumentDB/stable/2024-11-15",
    ),
    (
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers",
        "2024-11-15",
        "specification/cosmos-db/resource-manager/Microsoft.DocumentDB/stable/2024-11-15",
    ),
    (
        "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
        "2024-11-15",
        "specification/cosmos-db/resource-manager/Microsoft.DocumentDB/stable/2024-11-15",
    ),
    (
        "Microsoft.Insights/actionGroups",
        "2023-01-01",
        "specification/monitor/resource-manager/Microsoft.Insights/stable/2023-01-01",
    ),
    (
        "Microsoft.Insights/scheduledQueryRules",
        "2023-03-15-preview",
        "specification/monitor/resource-manager/Microsoft.Insights/preview/2023-03-15-preview",
    ),
    (
        "Microsoft.Insights/components",
        "2020-02-02",
        "specification/applicationinsights/resource-manager/Microsoft.Insights/stable/2020-02-02",
    ),
    (
        "Microsoft.KeyVault/vaults",
        "2023-07-01",
        "specification/keyvault/resource-manager/Microsoft.KeyVault/stable/2023-07-01",
    ),
    (
        "Microsoft.KeyVault/vaults/secrets",
        "2023-07-01",
        "specification/keyvault/resource-manager/Microsoft.KeyVault/stable/2023-07-01",
    ),
    (
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "2023-01-31",
        "specification/msi/resource-manager/Microsoft.ManagedIdentity/stable/2023-01-31",
    ),
    (
        "Microsoft.OperationalInsights/workspaces",
        "2023-09-01",
        "specification/operationalinsights/resource-manager/Microsoft.OperationalInsights/stable/2023-09-01",
    ),
    (
        "Microsoft.Storage/storageAccounts",
        "2023-05-01",
        "azure-mgmt-storage 21.2.1, v2023_05_01",
    ),
    (
        "Microsoft.Storage/storageAccounts/blobServices",
        "2023-05-01",
        "azure-mgmt-storage 21.2.1, v2023_05_01",
    ),
    (
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "2023-05-01",
        "azure-mgmt-storage 21.2.1, v2023_05_01",
    ),
    (
        "Microsoft.Storage/storageAccounts/fileServices",
        "2023-05-01",
        "azure-mgmt-storage 21.2.1, v2023_05_01",
    ),
    (
        "Microsoft.Storage/storageAccounts/queueServices",
        "2023-05-01",
        "azure-mgmt-storage 21.2.1, v2023_05_01",
    ),
    (
        "Microsoft.Storage/storageAccounts/queueServices/queues",
        "2023-05-01",
        "azure-mgmt-storage 21.2.1, v2023_05_01",
    ),
    (
        "Microsoft.Web/serverfarms",
        "2023-12-01",
        "specification/web/resource-manager/Microsoft.Web/stable/2023-12-01",
    ),
    (
        "Microsoft.Web/sites",
        "2023-12-01",
        "specification/web/resource-manager/Microsoft.Web/stable/2023-12-01",
    ),
    (
        "Microsoft.Web/staticSites",
        "2023-12-01",
        "specification/web/resource-manager/Microsoft.Web/stable/2023-12-01",
    ),
    (
        "Microsoft.Web/staticSites/linkedBackends",
        "2023-12-01",
        "specification/web/resource-manager/Microsoft.Web/stable/2023-12-01",
    ),
];

/// Resource types whose name is a global DNS name (so two deployments in
/// different resource groups must not choose the same one).
const GLOBAL_NAMES: &[&str] = &[
    "Microsoft.Storage/storageAccounts",
    "Microsoft.DocumentDB/databaseAccounts",
    "Microsoft.KeyVault/vaults",
    "Microsoft.ContainerRegistry/registries",
    "Microsoft.Web/sites",
];

/// Parameters that are themselves a per-deployment uniqueness part (chosen
/// by the operator, documented as such on the parameter).
const UNIQUE_PARAMETERS: &[&str] = &["vaultSuffix"];

/// How many characters of `uniqueString(…)` (13) or of a uniqueness
/// parameter must survive a `take`: 6 base-32 characters are 2^30 names.
const MIN_UNIQUE_CHARS: usize = 6;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bicep_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bicep_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "bicep") {
            out.push(path.to_string_lossy().into_owned());
        }
    }
}

/// Parse `paths`: (parses by path, parse errors).
fn parse(paths: &[String]) -> (BTreeMap<String, Value>, Vec<String>) {
    let answer = crate::specs::run("bicep.py", &serde_json::json!(paths));
    let mut parses = BTreeMap::new();
    let mut errors = Vec::new();
    for r in answer.as_array().unwrap() {
        let path = r["path"].as_str().unwrap().to_string();
        match r.get("parse") {
            Some(p) => {
                parses.insert(path, p.clone());
            }
            None => errors.push(format!("{path}: does not parse: {}", r["error"])),
        }
    }
    (parses, errors)
}

fn infra() -> BTreeMap<String, Value> {
    let mut paths = Vec::new();
    bicep_files(&root().join("infra"), &mut paths);
    paths.sort();
    assert!(paths.len() >= 10, "{paths:?}");
    let (parses, errors) = parse(&paths);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    parses
}

fn resources(parse: &Value) -> impl Iterator<Item = (&String, &Value)> {
    parse["resources"].as_object().into_iter().flatten()
}

/// Every (type, API version) used that the table does not list, and every
/// row nothing uses.
fn api_version_problems(parses: &BTreeMap<String, Value>) -> Vec<String> {
    let listed: BTreeSet<(&str, &str)> = API_VERSIONS.iter().map(|(t, v, _)| (*t, *v)).collect();
    let mut used = BTreeSet::new();
    let mut out = Vec::new();
    for (path, p) in parses {
        for (symbol, r) in resources(p) {
            let t = r["type"].as_str().unwrap_or("");
            let v = r["api_version"].as_str().unwrap_or("");
            used.insert((t.to_string(), v.to_string()));
            if !listed.contains(&(t, v)) {
                out.push(format!(
                    "{path}: resource {symbol} uses {t}@{v}, not listed in API_VERSIONS with its source"
                ));
            }
        }
    }
    for (t, v, _) in API_VERSIONS {
        if !used.contains(&(t.to_string(), v.to_string())) {
            out.push(format!(
                "API_VERSIONS lists {t}@{v}, which no Bicep file uses"
            ));
        }
    }
    out
}

/// The parse's text for an expression (an interpolated string stays as written).
fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// A length range for one `${…}` part, or None when it is a uniqueness part
/// (then its length range comes second).
enum Part {
    Plain(usize),
    Unique(usize, usize),
    Unknown(String),
}

fn param_lengths(main: &Value, name: &str) -> Option<(usize, usize)> {
    let decorators = main["parameters"][name]["decorators"].as_array()?;
    let get = |k: &str| {
        decorators
            .iter()
            .find(|d| d["type"] == k)
            .and_then(|d| d["argument"].as_u64())
            .map(|n| n as usize)
    };
    Some((get("min_length").unwrap_or(0), get("max_length")?))
}

/// Classify an interpolated part of a name, following main.bicep's
/// variables and parameters.
fn classify(main: &Value, expr: &str) -> Part {
    if expr.contains("uniqueString(") {
        return Part::Unique(13, 13);
    }
    let ident: String = expr
        .trim_start_matches("toLower(")
        .trim_end_matches(')')
        .to_string();
    if let Some(var) = main["variables"].get(&ident) {
        let v = var["value"].to_string();
        if v.contains("unique_string") {
            return Part::Unique(13, 13);
        }
        // A variable derived from one parameter is no longer than it.
        if let Some(params) = main["parameters"].as_object() {
            for (p, _) in params {
                if v.contains(&format!("\"{p}\""))
                    && let Some((_, max)) = param_lengths(main, p)
                {
                    return Part::Plain(max);
                }
            }
        }
    }
    if let Some((min, max)) = param_lengths(main, &ident) {
        return if UNIQUE_PARAMETERS.contains(&ident.as_str()) {
            Part::Unique(min, max)
        } else {
            Part::Plain(max)
        };
    }
    Part::Unknown(expr.to_string())
}

/// Split `a${x}b${y}` into literal lengths and parts.
fn template(main: &Value, s: &str) -> Vec<Part> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push(Part::Plain(rest[..i].chars().count()));
        let after = &rest[i + 2..];
        // Interpolations may nest parentheses but not braces here.
        let end = after.find('}').unwrap_or(after.len());
        out.push(classify(main, &after[..end]));
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push(Part::Plain(rest.chars().count()));
    out
}

/// The fewest uniqueness characters a name keeps, over every choice of
/// uniqueness-parameter length with plain parts at their longest.
fn unique_chars(parts: &[Part], limit: Option<usize>) -> Result<usize, String> {
    let ranges: Vec<(usize, usize)> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Unique(min, max) => Some((*min, *max)),
            _ => None,
        })
        .collect();
    if let Some(Part::Unknown(e)) = parts.iter().find(|p| matches!(p, Part::Unknown(_))) {
        return Err(format!("cannot bound the length of ${{{e}}}"));
    }
    // Each uniqueness part at its shortest or longest.
    let mut worst = usize::MAX;
    for choice in 0..(1u32 << ranges.len()) {
        let mut pos = 0usize;
        let mut kept = 0usize;
        let mut k = 0;
        for p in parts {
            match p {
                Part::Plain(n) => pos += n,
                Part::Unique(..) => {
                    let (min, max) = ranges[k];
                    let len = if choice & (1 << k) == 0 { min } else { max };
                    k += 1;
                    let end = limit.map_or(pos + len, |l| l.min(pos + len));
                    kept += end.saturating_sub(pos);
                    pos += len;
                }
                Part::Unknown(_) => unreachable!(),
            }
        }
        worst = worst.min(kept);
    }
    Ok(if ranges.is_empty() { 0 } else { worst })
}

/// The name expression a module's parameter receives from main.bicep.
fn module_argument<'a>(main: &'a Value, module_path: &str, param: &str) -> Option<&'a Value> {
    main["modules"]
        .as_object()?
        .values()
        .find(|m| module_path.ends_with(m["detail"]["path"].as_str().unwrap_or("\u{0}")))
        .and_then(|m| m["config"]["params"].get(param))
}

fn global_name_problems(parses: &BTreeMap<String, Value>, main_path: &str) -> Vec<String> {
    let main = &parses[main_path];
    let mut out = Vec::new();
    for (path, p) in parses {
        for (symbol, r) in resources(p) {
            let t = r["type"].as_str().unwrap_or("");
            if !GLOBAL_NAMES.contains(&t) || r["existing"] == true {
                continue;
            }
            let mut name = &r["config"]["name"];
            // A module's parameter: what main.bicep passes.
            if let Some(param) = name.as_str()
                && p["parameters"].get(param).is_some()
            {
                match module_argument(main, path, param) {
                    Some(arg) => name = arg,
                    None => {
                        out.push(format!(
                            "{path}: {symbol}: name parameter {param} is not passed by {main_path}"
                        ));
                        continue;
                    }
                }
            }
            let (s, limit) = match name.pointer("/function/type").and_then(Value::as_str) {
                Some("take") => (
                    text(&name["function"]["parameters"]["original_value"]),
                    name["function"]["parameters"]["number_to_take"]
                        .as_u64()
                        .map(|n| n as usize),
                ),
                _ => (text(name), None),
            };
            match unique_chars(&template(main, &s), limit) {
                Ok(n) if n >= MIN_UNIQUE_CHARS => {}
                Ok(n) => out.push(format!(
                    "{path}: {symbol} ({t}) is globally named '{s}'{}: it keeps {n} uniqueness characters at worst, fewer than {MIN_UNIQUE_CHARS}",
                    limit.map(|l| format!(" cut to {l}")).unwrap_or_default()
                )),
                Err(e) => out.push(format!("{path}: {symbol} ({t}): {e}")),
            }
        }
    }
    out
}

/// App settings as the parse of functionapp.bicep gives them: every
/// `{name, value}` in its setting arrays.
fn app_settings(parse: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for var in parse["variables"].as_object().into_iter().flatten() {
        let mut stack = vec![&var.1["value"]];
        while let Some(v) = stack.pop() {
            match v {
                Value::Array(items) => stack.extend(items),
                Value::Object(o) => {
                    if let (Some(n), true) = (
                        o.get("name").and_then(Value::as_str),
                        o.contains_key("value"),
                    ) {
                        out.insert(n.to_string());
                    }
                    stack.extend(o.values());
                }
                _ => {}
            }
        }
    }
    out
}

fn main_path(parses: &BTreeMap<String, Value>) -> String {
    parses
        .keys()
        .find(|p| p.ends_with("infra/main.bicep"))
        .expect("infra/main.bicep")
        .clone()
}

#[test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
fn the_bicep_parses_and_passes_its_checks() {
    let parses = infra();
    let main = main_path(&parses);
    let mut problems = api_version_problems(&parses);
    problems.extend(global_name_problems(&parses, &main));
    let functionapp = parses
        .iter()
        .find(|(p, _)| p.ends_with("infra/modules/functionapp.bicep"))
        .expect("functionapp.bicep")
        .1;
    let set = app_settings(functionapp);
    let exempt: BTreeSet<&str> = crate::infra_settings::NOT_SET_IN_AZURE
        .iter()
        .map(|(n, _)| *n)
        .collect();
    for name in dev8::config::setting_names() {
        if !set.contains(&name) && !exempt.contains(name.as_str()) {
            problems.push(format!(
                "{name} is read by the binary but not set among functionapp.bicep's app settings"
            ));
        }
    }
    assert!(set.len() > 20, "{set:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
fn the_bicep_checks_reject_what_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let infra = dir.path().join("infra");
    std::fs::create_dir_all(&infra).unwrap();
    let main = infra.join("main.bicep");
    std::fs::write(
        &main,
        "@maxLength(11)\nparam prefix string = 'dev8'\nvar suffix = uniqueString(resourceGroup().id)\n\
         resource a 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'st${prefix}'\n  location: 'westeurope'\n}\n\
         resource b 'Microsoft.KeyVault/vaults@2023-07-01' = {\n  name: take('kv${prefix}longer${suffix}', 24)\n  location: 'westeurope'\n}\n\
         resource c 'Microsoft.Web/sites@2099-01-01' = {\n  name: 'func-${prefix}-${suffix}'\n  location: 'westeurope'\n}\n",
    )
    .unwrap();
    let broken = infra.join("broken.bicep");
    std::fs::write(
        &broken,
        "resource x 'Microsoft.Web/sites@2023-12-01' = {\n  name: \n",
    )
    .unwrap();
    let paths = vec![
        main.to_string_lossy().into_owned(),
        broken.to_string_lossy().into_owned(),
    ];
    let (parses, errors) = parse(&paths);
    assert!(
        errors.len() == 1 && errors[0].contains("broken.bicep: does not parse"),
        "{errors:?}"
    );
    let mut problems = api_version_problems(&parses);
    problems.extend(global_name_problems(&parses, &paths[0]));
    for expected in [
        "resource c uses Microsoft.Web/sites@2099-01-01, not listed",
        "a (Microsoft.Storage/storageAccounts) is globally named 'st${prefix}': it keeps 0 uniqueness characters",
        "b (Microsoft.KeyVault/vaults) is globally named 'kv${prefix}longer${suffix}' cut to 24: it keeps 5 uniqueness characters",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "expected {expected:?} among\n{}",
            problems.join("\n")
        );
    }
    assert!(
        !problems
            .iter()
            .any(|p| p.contains("resource c") && p.contains("uniqueness")),
        "func-${{prefix}}-${{suffix}} is unique: {problems:?}"
    );
}

/// Built-in role definition ids the Bicep names, as Azure documents them
/// ("Azure built-in roles"), and the Cosmos DB data-plane role.
const ROLE_NAMES: &[(&str, &str)] = &[
    (
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "Storage Queue Data Contributor",
    ),
    (
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "Storage Blob Data Owner",
    ),
    (
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
        "Storage Table Data Contributor",
    ),
    (
        "f1a07417-d97a-45cb-824c-7a7467783830",
        "Managed Identity Operator",
    ),
    (
        "4633458b-17de-408a-b874-0445c86b69e6",
        "Key Vault Secrets User",
    ),
    ("7f951dda-4ed3-4680-a7ca-43fe172d538d", "AcrPull"),
    (
        "sqlRoleDefinitions/00000000-0000-0000-0000-000000000002",
        "Cosmos DB Built-in Data Contributor",
    ),
    // infra/modules/roledef.bicep, passed to roles.bicep as operatorRoleId
    ("operatorRoleId", "Dev8 environments operator"),
];

/// Who a `principalId` parameter is.
const PRINCIPALS: &[(&str, &str)] = &[
    ("controlPrincipalId", "control"),
    ("pullPrincipalId", "pull"),
];

/// What the matrix calls a scope, by the scope resource's type.
const SCOPES: &[(&str, &str)] = &[
    ("Microsoft.Storage/storageAccounts", "host storage account"),
    (
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "pull identity",
    ),
    ("Microsoft.KeyVault/vaults", "Key Vault"),
    ("Microsoft.DocumentDB/databaseAccounts", "Cosmos DB account"),
    (
        "Microsoft.ContainerRegistry/registries",
        "container registry",
    ),
];

type Grant = (String, String, String);

/// Every role assignment in the parses as (identity, role, scope), or a
/// problem when one cannot be read.
fn grants(parses: &BTreeMap<String, Value>) -> (BTreeSet<Grant>, Vec<String>) {
    let mut out = BTreeSet::new();
    let mut problems = Vec::new();
    for (path, p) in parses {
        for (symbol, r) in resources(p) {
            let t = r["type"].as_str().unwrap_or("");
            if !t.ends_with("roleAssignments") && !t.ends_with("sqlRoleAssignments") {
                continue;
            }
            let props = &r["config"]["properties"];
            let principal = text(&props["principalId"]);
            let who = PRINCIPALS
                .iter()
                .find(|(p, _)| *p == principal)
                .map(|(_, w)| *w);
            // The role: a variable holding a role id, a parameter, or an inline id.
            let role_expr = text(&props["roleDefinitionId"]);
            let role_text = p["variables"]
                .get(&role_expr)
                .map(|v| v["value"].to_string())
                .unwrap_or(role_expr.clone());
            let role = ROLE_NAMES
                .iter()
                .find(|(id, _)| role_text.contains(id) || role_expr == *id)
                .map(|(_, n)| *n);
            // The scope: `scope:` (or a Cosmos role's parent account), else the resource group.
            let scope_symbol = r["config"]
                .get("scope")
                .or_else(|| r["config"].get("parent"))
                .map(text);
            let scope = match &scope_symbol {
                None => Some("resource group"),
                Some(s) => p["resources"][s.as_str()]["type"]
                    .as_str()
                    .and_then(|st| SCOPES.iter().find(|(k, _)| *k == st))
                    .map(|(_, label)| *label),
            };
            match (who, role, scope) {
                (Some(w), Some(r), Some(s)) => {
                    out.insert((w.to_string(), r.to_string(), s.to_string()));
                }
                _ => problems.push(format!(
                    "{path}: role assignment {symbol} not understood: principal {principal}, role {role_expr}, scope {scope_symbol:?}"
                )),
            }
        }
    }
    (out, problems)
}

/// The permission matrix's rows in docs/deploy.md as (identity, role, scope),
/// read by the parser `handler doctor` uses (one reading of the one table).
fn matrix(doc: &str) -> BTreeSet<Grant> {
    dev8::doctor::matrix::parse(doc)
        .expect("docs/deploy.md's permission matrix")
        .into_iter()
        .map(|r| (r.identity, r.role, r.scope))
        .collect()
}

fn matrix_problems(rows: &BTreeSet<Grant>, granted: &BTreeSet<Grant>) -> Vec<String> {
    let mut out: Vec<String> = rows
        .difference(granted)
        .map(|g| format!("matrix row {g:?} is granted by no role assignment in infra/"))
        .collect();
    out.extend(
        granted
            .difference(rows)
            .map(|g| format!("role assignment {g:?} is needed by no row of the permission matrix")),
    );
    out
}

#[test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
fn the_permission_matrix_is_exactly_what_the_bicep_grants() {
    let parses = infra();
    let (granted, mut problems) = grants(&parses);
    let doc = std::fs::read_to_string(root().join("docs/deploy.md")).unwrap();
    let rows = matrix(&doc);
    assert!(rows.len() >= 8, "{rows:?}");
    problems.extend(matrix_problems(&rows, &granted));
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // And the comparison can fail both ways.
    let mut fewer = granted.clone();
    let dropped = fewer.pop_first().unwrap();
    let mut more = granted.clone();
    more.insert(("pull".into(), "Owner".into(), "resource group".into()));
    let missing = matrix_problems(&rows, &fewer);
    assert_eq!(
        missing,
        vec![format!(
            "matrix row {dropped:?} is granted by no role assignment in infra/"
        )]
    );
    let extra = matrix_problems(&rows, &more);
    assert_eq!(
        extra,
        vec![format!(
            "role assignment {:?} is needed by no row of the permission matrix",
            ("pull", "Owner", "resource group")
        )]
    );
}
