//! What a first deployment of `infra/` needs, read from the Bicep source and
//! docs/deploy.md (no Bicep CLI or Azure account here): globally unique
//! names that survive a teardown and redeploy, the host storage roles the
//! Functions host needs, every resource provider registered before the
//! deployment, and one documented path.

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The top-level blocks of a Bicep file that declare `kind` (e.g.
/// `resource x 'Microsoft.Web/sites@...' = {` up to its closing `}` line).
fn blocks<'a>(text: &'a str, resource_type: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<Vec<&'a str>> = None;
    for line in text.lines() {
        if let Some(lines) = current.as_mut() {
            lines.push(line);
            if line == "}" {
                found.push(current.take().unwrap().join("\n"));
            }
        } else if line.starts_with("resource ") && line.contains(&format!("'{resource_type}@")) {
            current = Some(vec![line]);
        }
    }
    found
}

#[test]
fn the_function_app_name_is_globally_unique() {
    let text = read("infra/modules/functionapp.bicep");
    let site = blocks(&text, "Microsoft.Web/sites");
    assert_eq!(site.len(), 1, "one Function App");
    let name = site[0]
        .lines()
        .find(|l| l.trim_start().starts_with("name:"))
        .expect("a name");
    assert!(
        name.contains("uniqueString("),
        "Function App names are global (<name>.azurewebsites.net): {name}"
    );
}

#[test]
fn the_key_vault_name_comes_from_a_deployment_parameter() {
    // Purge protection keeps a deleted vault's name for its retention
    // period; a name derived from the resource group alone collides when the
    // group is deployed again after a teardown.
    let vault = read("infra/modules/keyvault.bicep");
    assert!(vault.contains("enablePurgeProtection: true"));
    let main = read("infra/main.bicep");
    let line = main
        .lines()
        .find(|l| l.trim_start().starts_with("vaultName:"))
        .expect("main.bicep names the vault");
    assert!(line.contains("vaultSuffix"), "{line}");
    let param = main
        .lines()
        .find(|l| l.starts_with("param vaultSuffix "))
        .expect("param vaultSuffix");
    assert!(
        !param.contains('='),
        "no default: the operator chooses it per resource group: {param}"
    );
    let deploy = read("docs/deploy.md");
    assert!(
        deploy.contains("vaultSuffix"),
        "docs/deploy.md explains vaultSuffix"
    );
}

#[test]
fn the_host_identity_may_write_the_host_storage_tables() {
    // The Functions host writes its diagnostic events to tables in the
    // AzureWebJobsStorage account, with the app's identity.
    const TABLE_DATA_CONTRIBUTOR: &str = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3";
    let text = read("infra/modules/roles.bicep");
    let var = text
        .lines()
        .find(|l| l.starts_with("var ") && l.contains(TABLE_DATA_CONTRIBUTOR))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("Storage Table Data Contributor is named");
    let assigned = blocks(&text, "Microsoft.Authorization/roleAssignments")
        .into_iter()
        .any(|b| {
            b.contains("scope: host")
                && b.contains(&format!("roleDefinitionId: {var}"))
                && b.contains("principalId: controlPrincipalId")
        });
    assert!(
        assigned,
        "Storage Table Data Contributor on the host account for the app's identity"
    );
    // The Function App's host storage identity is that same identity.
    let app = read("infra/modules/functionapp.bicep");
    assert!(app.contains("{ name: 'AzureWebJobsStorage__clientId', value: controlClientId }"));
}

/// `Microsoft.X` namespaces of the resource types the Bicep deploys.
fn deployed_namespaces() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra");
    let mut files = vec![dir.join("main.bicep")];
    for e in std::fs::read_dir(dir.join("modules")).unwrap() {
        files.push(e.unwrap().path());
    }
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let Some(at) = line.find("'Microsoft.") else {
                continue;
            };
            let rest = &line[at + 1..];
            if let Some((ty, _)) = rest.split_once('@') {
                found.insert(ty.split('/').next().unwrap().to_string());
            }
        }
    }
    found
}

#[test]
fn deploy_md_registers_every_resource_provider_first() {
    let deploy = read("docs/deploy.md");
    let registered: BTreeSet<String> = deploy
        .lines()
        .filter_map(|l| {
            let rest = l.split("az provider register").nth(1)?;
            let ns = rest
                .split("--namespace")
                .nth(1)?
                .split_whitespace()
                .next()?;
            Some(ns.to_string())
        })
        .collect();
    // Registered everywhere by default: role assignments and definitions.
    let mut needed = deployed_namespaces();
    needed.remove("Microsoft.Authorization");
    assert!(needed.contains("Microsoft.Web"), "{needed:?}");
    // Not deployed by Bicep but used at run time: the environments.
    needed.insert("Microsoft.ContainerInstance".into());
    let missing: Vec<_> = needed.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "docs/deploy.md does not register {missing:?}"
    );
    let register = deploy.find("az provider register").unwrap();
    let deploy_at = deploy
        .find("az deployment group create")
        .expect("deploys infra/");
    assert!(
        register < deploy_at,
        "providers are registered before the deployment"
    );
}

#[test]
fn deploy_md_is_one_path_the_same_as_infra() {
    let deploy = read("docs/deploy.md");
    assert!(
        deploy.contains("-f infra/main.bicep"),
        "deploys infra/main.bicep"
    );
    for other in [
        "flexconsumption",
        "az functionapp create",
        "config appsettings set",
        "FUNCTIONS_WORKER_RUNTIME=Custom",
    ] {
        assert!(
            !deploy
                .to_ascii_lowercase()
                .contains(&other.to_ascii_lowercase()),
            "docs/deploy.md describes a second path ({other})"
        );
    }
    // The same steps in infra/README.md point there.
    assert!(read("infra/README.md").contains("docs/deploy.md"));
}
