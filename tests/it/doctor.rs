//! `handler doctor`, the real binary, against the ARM fake with a deployment
//! seeded as infra makes it (`fakes::deployment`) and a stand-in for the
//! Azure CLI on `PATH`: the binary gets its tokens the way `azure_identity`'s
//! Azure CLI credential does, by running `az account get-access-token -o
//! json --scope <scope>`. The stand-in answers as the Azure CLI does
//! (`accessToken`, `expires_on` in epoch seconds; `ERROR: Please run 'az
//! login'` and exit status 1 when signed out) with tokens the fake issued.

use crate::fakes::arm::{ArmFake, PULL_IDENTITY, REGION, RESOURCE_GROUP, SUBSCRIPTION};
use crate::fakes::deployment::{self as dep, Deployment};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A folder holding the `az` stand-in, answering with these tokens.
fn fake_az(dir: &Path, arm_token: &str, vault_token: &str) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
# A stand-in for the Azure CLI's `az account get-access-token` (tests/it/doctor.rs).
[ "$1 $2" = "account get-access-token" ] || {{ echo "ERROR: unexpected command: $*" >&2; exit 2; }}
if [ -e "$0.signed-out" ]; then
  echo "ERROR: Please run 'az login' to setup account." >&2; exit 1
fi
scope=""
while [ $# -gt 0 ]; do [ "$1" = "--scope" ] && scope="$2"; shift; done
case "$scope" in
  https://management.azure.com/.default) token="{arm_token}" ;;
  https://vault.azure.net/.default) token="{vault_token}" ;;
  *) echo "ERROR: AADSTS500011: resource principal for $scope was not found" >&2; exit 1 ;;
esac
exp=$(( $(date +%s) + 3600 ))
printf '{{"accessToken":"%s","expiresOn":"","expires_on":%s,"subscription":"{SUBSCRIPTION}","tenant":"t","tokenType":"Bearer"}}\n' "$token" "$exp"
"#
    );
    let path = dir.join("az");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

/// The Function App's settings as `az functionapp config appsettings list -o json` prints them.
fn settings_file(dir: &Path, fake: &ArmFake) -> PathBuf {
    let settings = [
        ("FUNCTIONS_WORKER_RUNTIME", "custom".to_string()),
        ("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION.into()),
        ("AZURE_RESOURCE_GROUP", RESOURCE_GROUP.into()),
        ("AZURE_REGION", REGION.into()),
        ("AZURE_CLIENT_ID", dep::CONTROL_CLIENT_ID.into()),
        ("AzureWebJobsStorage__accountName", dep::HOST_ACCOUNT.into()),
        ("DEV8_ACR_PULL_IDENTITY", PULL_IDENTITY.into()),
        ("DEV8_IMAGE_REGISTRY", "dev8test.azurecr.io".into()),
        ("DEV8_ARM_ENDPOINT", fake.url()),
        (
            "COSMOS_ENDPOINT",
            format!("https://{}.documents.azure.com:443/", dep::COSMOS_ACCOUNT),
        ),
        ("COSMOS_DATABASE", dep::DATABASE.into()),
        ("DEV8_QUEUE_NAME", dep::QUEUE.into()),
        ("DEV8_MAX_RUNNING_TOTAL", "50".into()),
        (
            "DEV8_SIGNING_KEYS",
            format!(
                "@Microsoft.KeyVault(VaultName={};SecretName=dev8-signing-keys)",
                dep::VAULT
            ),
        ),
        (
            "DEV8_SECRETS_KEY",
            format!(
                "@Microsoft.KeyVault(VaultName={};SecretName=dev8-secrets-key)",
                dep::VAULT
            ),
        ),
    ];
    let list: Vec<Value> = settings
        .iter()
        .map(|(k, v)| json!({"name": k, "slotSetting": false, "value": v}))
        .collect();
    let path = dir.join("appsettings.json");
    std::fs::write(&path, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    path
}

struct Setup {
    fake: ArmFake,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let fake = ArmFake::spawn().await;
    fake.with(|s| s.deployment = Deployment::as_infra_makes_it());
    Setup {
        fake,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// Run `handler doctor`; (success, stdout + stderr).
async fn doctor(s: &Setup) -> (bool, String) {
    let (arm, vault) = s.fake.operator_signs_in();
    let bin = fake_az(s.dir.path(), &arm, &vault);
    let settings = settings_file(s.dir.path(), &s.fake);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("doctor")
        .arg("--settings")
        .arg(&settings)
        .arg("--vault-url")
        .arg(s.fake.url())
        .env_clear()
        .env("PATH", path)
        .env("HOME", s.dir.path())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The report's line for `check`.
fn line<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{check}: ")))
        })
        .unwrap_or_else(|| panic!("no line for {check}:\n{out}"))
}

const CHECKS: [&str; 12] = [
    "settings",
    "Azure sign-in",
    "roles of control",
    "roles of pull",
    "Cosmos DB containers",
    "jobs queue",
    "poison queue",
    "Microsoft.ContainerInstance provider",
    "ACI capabilities",
    "ACI core quota",
    "signing keys",
    "secrets key",
];

#[tokio::test]
async fn doctor_passes_a_deployment_as_infra_makes_it() {
    let s = setup().await;
    let (ok, out) = doctor(&s).await;
    // (docs/deploy.md shows this report.)
    println!("{out}");
    assert!(ok, "{out}");
    for check in CHECKS {
        assert!(line(&out, check).starts_with("ok    "), "{out}");
    }
    assert!(out.contains("12 of 12 checks passed"), "{out}");
    assert!(
        line(&out, "roles of control").contains("exactly the 7 role assignments"),
        "{out}"
    );
    assert!(
        line(&out, "signing keys").contains("2 keys (k2, k1) load from dev8-signing-keys"),
        "{out}"
    );
    assert!(
        line(&out, "secrets key").contains("a 32-byte key loads from dev8-secrets-key"),
        "{out}"
    );
    // Neither a key nor a token is printed.
    assert!(
        !out.contains("AAECAwQF") && !out.contains("operator-"),
        "{out}"
    );
    // The role assignments were asked for by principal, at the group's scope.
    let asked = s.fake.with(|st| st.log.clone());
    assert!(
        asked.iter().any(|(m, p)| m == "GET"
            && p == &format!(
                "{}/providers/Microsoft.Authorization/roleAssignments",
                dep::group_id()
            )),
        "{asked:?}"
    );
}

#[tokio::test]
async fn doctor_names_every_failure_with_its_fix_and_exits_non_zero() {
    let s = setup().await;
    s.fake.with(|st| {
        let d = &mut st.deployment;
        d.unassign(dep::CONTROL_PRINCIPAL, dep::QUEUE_CONTRIBUTOR.0);
        d.assign(
            dep::PULL_PRINCIPAL,
            &dep::role_id(dep::OWNER.0),
            &dep::group_id(),
        );
        d.sql_role_assignments.clear();
        d.containers.remove("audit");
        d.queues.remove("env-jobs-poison");
        d.provider_state = "NotRegistered".into();
        d.usages.retain(|u| u.0 != "StandardCores");
        d.usages.push(("StandardCores".into(), 10, 100));
        d.secrets
            .insert("dev8-signing-keys".into(), "not a key set".into());
        st.max_cpu = 2.0;
    });
    let (ok, out) = doctor(&s).await;
    println!("{out}");
    assert!(!ok, "{out}");
    for (check, problem, fix) in [
        (
            "roles of control",
            "missing Storage Queue Data Contributor on host storage account; Cosmos DB Built-in Data Contributor on Cosmos DB account",
            "az role assignment create --assignee-object-id 22222222-0000-0000-0000-0000000c0417 --assignee-principal-type ServicePrincipal --role \"Storage Queue Data Contributor\" --scope /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/dev8-rg/providers/Microsoft.Storage/storageAccounts/stdev8host",
        ),
        (
            "roles of pull",
            "not in the permission matrix: Owner on /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/dev8-rg",
            "az role assignment delete --ids /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/dev8-rg/providers/Microsoft.Authorization/roleAssignments/",
        ),
        (
            "Cosmos DB containers",
            "missing audit in cosmos-dev8/dev8",
            "infra/modules/cosmos.bicep",
        ),
        (
            "poison queue",
            "no queue env-jobs-poison in storage account stdev8host",
            "infra/modules/storage.bicep",
        ),
        (
            "Microsoft.ContainerInstance provider",
            "NotRegistered in subscription",
            "az provider register --namespace Microsoft.ContainerInstance",
        ),
        (
            "ACI capabilities",
            "at most 2 CPU and 16 GB per group; too large: large (4 CPU, 8 GB)",
            "offer 4 CPU and 8 GB per Linux container group",
        ),
        (
            "ACI core quota",
            "StandardCores limit 100 in westeurope (10 in use); DEV8_MAX_RUNNING_TOTAL 50 at the largest preset (4 CPU) needs 200",
            "quota of 200 in westeurope (Azure portal > Quotas), or redeploy with maxRunningTotal=25",
        ),
        (
            "signing keys",
            "secret dev8-signing-keys in vault kv-dev8-abc is not a key set",
            "docs/deploy.md step 4",
        ),
    ] {
        let l = line(&out, check);
        let (head, tail) = l.split_once(" -> fix: ").unwrap_or((l, ""));
        assert!(head.starts_with("FAIL  "), "{l}");
        assert!(head.contains(problem), "{check}: {l}");
        assert!(tail.contains(fix), "{check}: {l}");
    }
    for passing in ["settings", "Azure sign-in", "jobs queue", "secrets key"] {
        assert!(line(&out, passing).starts_with("ok    "), "{out}");
    }
    assert!(
        out.contains("4 of 12 checks passed; fix the FAIL lines"),
        "{out}"
    );

    // Without the role to read secrets, and without the secret.
    s.fake.with(|st| st.deployment.vault_denied = true);
    let (_, out) = doctor(&s).await;
    assert!(
        line(&out, "signing keys")
            .contains("(Forbidden) -> fix: give yourself Key Vault Secrets User"),
        "{out}"
    );
    s.fake.with(|st| {
        st.deployment.vault_denied = false;
        st.deployment.secrets.clear();
    });
    let (_, out) = doctor(&s).await;
    assert!(
        line(&out, "signing keys").contains("no secret dev8-signing-keys in vault kv-dev8-abc"),
        "{out}"
    );
}

#[tokio::test]
async fn doctor_without_an_azure_sign_in_says_how_to_sign_in() {
    let s = setup().await;
    std::fs::write(s.dir.path().join("az.signed-out"), "").unwrap();
    let (ok, out) = doctor(&s).await;
    assert!(!ok, "{out}");
    let l = line(&out, "Azure sign-in");
    assert!(
        l.starts_with("FAIL  ")
            && l.contains("Please run 'az login'")
            && l.ends_with(&format!(
                "fix: az login, then az account set --subscription {SUBSCRIPTION}"
            )),
        "{out}"
    );
    // Nothing was asked of ARM without a token.
    assert!(s.fake.with(|st| st.log.is_empty()));
}

#[tokio::test]
async fn doctor_names_the_settings_it_misses() {
    let s = setup().await;
    let (arm, vault) = s.fake.operator_signs_in();
    let bin = fake_az(s.dir.path(), &arm, &vault);
    let file = s.dir.path().join("partial.json");
    std::fs::write(
        &file,
        // Empty values (infra sets optional settings empty) count as unset.
        json!([
            {"name": "AZURE_SUBSCRIPTION_ID", "value": SUBSCRIPTION, "slotSetting": false},
            {"name": "DEV8_MAX_RUNNING_TOTAL", "value": "", "slotSetting": false},
            {"name": "AZURE_REGION", "value": "", "slotSetting": false}
        ])
        .to_string(),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["doctor", "--settings"])
        .arg(&file)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let l = line(&text, "settings");
    assert!(
        l.starts_with(
            "FAIL  settings: missing AZURE_RESOURCE_GROUP, AZURE_REGION, AZURE_CLIENT_ID"
        ),
        "{text}"
    );
    assert!(
        l.contains("az functionapp config appsettings list"),
        "{text}"
    );
}

/// Every ARM exchange of a doctor run (a passing one, and one that meets
/// missing resources, so 404 answers are checked too) against the published
/// specs: what the binary asks and what the fake answers.
#[tokio::test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
async fn every_arm_exchange_of_doctor_follows_the_published_specs() {
    let s = setup().await;
    let (ok, out) = doctor(&s).await;
    assert!(ok, "{out}");
    s.fake.with(|st| {
        st.deployment.queues.clear();
        st.deployment.database = None;
        st.deployment.identities.remove("dev8-env-pull");
    });
    let (ok, out) = doctor(&s).await;
    assert!(!ok, "{out}");
    let exchanges = s.fake.with(|st| st.exchanges.clone());
    for (suffix, status) in [
        ("/providers/Microsoft.ContainerInstance", 200),
        ("/usages", 200),
        ("/capabilities", 200),
        ("/roleAssignments", 200),
        ("/roleDefinitions/", 200),
        ("/userAssignedIdentities", 200),
        ("/userAssignedIdentities/dev8-env-pull", 404),
        ("/containers", 200),
        ("/containers", 404),
        ("/sqlRoleAssignments", 200),
        ("/sqlRoleDefinitions/", 200),
        ("/queues/env-jobs", 200),
        ("/queues/env-jobs", 404),
    ] {
        assert!(
            exchanges.iter().any(|x| x.status == status
                && (x.path.ends_with(suffix)
                    || (suffix.ends_with('/') && x.path.contains(suffix)))),
            "no {status} answer to …{suffix}"
        );
    }
    let problems = crate::aci::spec_problems(&exchanges);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The same check refuses what these specs do not allow.
#[tokio::test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
async fn the_spec_check_rejects_deployment_answers_the_specs_do_not_allow() {
    let case = |label: &str, package: &str, model: &str, body: Value| json!({"label": label, "package": package, "model": model, "direction": "response", "body": body});
    let cases = json!([
        case(
            "provider state as a number",
            "resource",
            "Provider",
            json!({"namespace": "Microsoft.ContainerInstance", "registrationState": 1})
        ),
        case(
            "assignment principal type",
            "authorization",
            "RoleAssignmentListResult",
            json!({"value": [{"properties": {"roleDefinitionId": "r", "principalId": "p", "principalType": "Robot"}}]})
        ),
        case(
            "assignment unknown property",
            "authorization",
            "RoleAssignmentListResult",
            json!({"value": [{"properties": {"roleDefinitionId": "r", "principalId": "p", "grantedTo": "x"}}]})
        ),
        case(
            "container without its id",
            "cosmosdb",
            "SqlContainerListResult",
            json!({"value": [{"name": "users", "properties": {"resource": {"partitionKey": {"paths": ["/id"]}}}}]})
        ),
        case(
            "usage limit as text",
            "containerinstance",
            "UsageListResult",
            json!({"value": [{"unit": "Count", "currentValue": 1, "limit": "100", "name": {"value": "StandardCores"}}]})
        ),
    ]);
    let answer = crate::specs::run("arm_spec.py", &cases);
    for (label, expected) in [
        (
            "provider state as a number",
            "registrationState: expected a string",
        ),
        (
            "assignment principal type",
            "'Robot' is not one of PrincipalType",
        ),
        (
            "assignment unknown property",
            "grantedTo: property unknown to the spec",
        ),
        ("container without its id", "missing required property id"),
        ("usage limit as text", "limit: expected a number"),
    ] {
        let found: Vec<String> = answer
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["label"] == label)
            .map(|r| serde_json::from_value(r["errors"].clone()).unwrap())
            .unwrap();
        assert!(
            found.iter().any(|e| e.contains(expected)),
            "{label}: expected an error containing {expected:?}, got {found:?}"
        );
    }
}
