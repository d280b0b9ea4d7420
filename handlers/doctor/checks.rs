//! The checks `handler doctor` runs, over ARM and Key Vault REST with the
//! operator's token. API versions are those of the published specs the
//! project's spec checks read (`tests/specs/requirements.txt`): Resources
//! 2021-04-01 (providers), Authorization 2022-04-01 (role assignments and
//! definitions), ManagedIdentity 2023-01-31, DocumentDB 2024-11-15 (SQL
//! containers and role assignments), Storage and ContainerInstance
//! 2023-05-01 (queues; capabilities and usages), Key Vault 7.4 (secrets).

use super::Check;
use super::matrix::{self, Row};
use crate::auth::KeySet;
use crate::compute::aci::{ACI_API, STORAGE_API, pick_capabilities};
use crate::compute::arm::{ARM_SCOPE, ArmClient, ArmError, RetryPolicy};
use crate::config::Settings;
use crate::domain::PRESETS;
use azure_core::credentials::TokenCredential;
use secrecy::ExposeSecret;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

pub const RESOURCES_API: &str = "2021-04-01";
pub const AUTHORIZATION_API: &str = "2022-04-01";
pub const MSI_API: &str = "2023-01-31";
pub const COSMOS_API: &str = "2024-11-15";
pub const KEY_VAULT_API: &str = "7.4";
/// The Entra ID scope of Key Vault's data plane.
pub const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";
/// The ACI usage that counts standard (non-GPU) cores in a region.
pub const CORES_USAGE: &str = "StandardCores";

/// A Key Vault reference as app settings hold one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultRef {
    pub vault: String,
    pub secret: String,
    pub version: Option<String>,
}

impl VaultRef {
    /// `@Microsoft.KeyVault(VaultName=v;SecretName=s[;SecretVersion=x])` or
    /// `@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s[/x])`.
    pub fn parse(value: &str) -> Option<VaultRef> {
        let inner = value
            .trim()
            .strip_prefix("@Microsoft.KeyVault(")?
            .strip_suffix(')')?;
        let parts: BTreeMap<String, String> = inner
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        if let Some(uri) = parts.get("secreturi") {
            let rest = uri.strip_prefix("https://")?;
            let (host, path) = rest.split_once('/')?;
            let mut segs = path.trim_end_matches('/').split('/');
            if segs.next()? != "secrets" {
                return None;
            }
            return Some(VaultRef {
                vault: host.split('.').next()?.to_string(),
                secret: segs.next()?.to_string(),
                version: segs.next().map(str::to_string),
            });
        }
        Some(VaultRef {
            vault: parts.get("vaultname")?.clone(),
            secret: parts.get("secretname")?.clone(),
            version: parts.get("secretversion").cloned(),
        })
    }
}

/// What the checks look at, named from the app settings.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub subscription: String,
    pub resource_group: String,
    pub region: String,
    pub control_client_id: String,
    pub pull_identity: String,
    pub host_account: String,
    pub queue: String,
    pub cosmos_account: String,
    pub cosmos_database: String,
    pub registry: String,
    pub signing_keys: Option<String>,
    /// `DEV8_SECRETS_KEY` as set (a Key Vault reference in Azure).
    pub secrets_key: Option<String>,
    pub max_running_total: usize,
    pub arm_endpoint: String,
}

impl Deployment {
    /// The deployment the settings describe, or the names of the settings missing.
    pub fn from_settings(s: &Settings) -> Result<Deployment, Vec<&'static str>> {
        let mut missing = Vec::new();
        let mut need = |v: Option<String>, name: &'static str| {
            let v = v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
            if v.is_none() {
                missing.push(name);
            }
            v.unwrap_or_default()
        };
        let cosmos_account = s.cosmos.endpoint.as_deref().and_then(|e| {
            let host = e.split("://").nth(1)?.split(['/', ':']).next()?;
            Some(host.split('.').next()?.to_string())
        });
        let d = Deployment {
            subscription: need(s.aci.subscription_id.clone(), "AZURE_SUBSCRIPTION_ID"),
            resource_group: need(s.aci.resource_group.clone(), "AZURE_RESOURCE_GROUP"),
            region: need(s.aci.region.clone(), "AZURE_REGION"),
            control_client_id: need(s.identity.client_id.clone(), "AZURE_CLIENT_ID"),
            pull_identity: need(s.aci.acr_pull_identity.clone(), "DEV8_ACR_PULL_IDENTITY"),
            host_account: need(
                s.storage.account_name.clone(),
                "AzureWebJobsStorage__accountName",
            ),
            cosmos_account: need(cosmos_account, "COSMOS_ENDPOINT"),
            registry: need(
                s.aci
                    .image_registry
                    .as_deref()
                    .and_then(|r| r.split('.').next())
                    .map(str::to_string),
                "DEV8_IMAGE_REGISTRY",
            ),
            signing_keys: Some(need(
                s.signing_keys
                    .as_ref()
                    .map(|k| k.expose_secret().to_string()),
                "DEV8_SIGNING_KEYS",
            )),
            secrets_key: Some(need(
                s.secrets_key
                    .as_ref()
                    .map(|k| k.expose_secret().to_string()),
                "DEV8_SECRETS_KEY",
            )),
            queue: s.queue_name.clone(),
            cosmos_database: s.cosmos.database.clone(),
            max_running_total: s.max_running_total,
            arm_endpoint: s.aci.arm_endpoint.clone(),
        };
        if missing.is_empty() {
            Ok(d)
        } else {
            Err(missing)
        }
    }

    fn group_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription, self.resource_group
        )
    }

    fn resource_id(&self, kind: &str, name: &str) -> String {
        format!("{}/providers/{kind}/{name}", self.group_id())
    }

    fn cosmos_id(&self) -> String {
        self.resource_id(
            "Microsoft.DocumentDB/databaseAccounts",
            &self.cosmos_account,
        )
    }

    fn host_account_id(&self) -> String {
        self.resource_id("Microsoft.Storage/storageAccounts", &self.host_account)
    }

    fn vault(&self) -> Option<VaultRef> {
        self.signing_keys.as_deref().and_then(VaultRef::parse)
    }

    /// The resource id of a matrix scope (the doc's words), if known.
    pub fn scope_id(&self, scope: &str) -> Option<String> {
        Some(match scope {
            "resource group" => self.group_id(),
            "pull identity" => self.pull_identity.clone(),
            "host storage account" => self.host_account_id(),
            "Cosmos DB account" => self.cosmos_id(),
            "container registry" => {
                self.resource_id("Microsoft.ContainerRegistry/registries", &self.registry)
            }
            "Key Vault" => self.resource_id("Microsoft.KeyVault/vaults", &self.vault()?.vault),
            _ => return None,
        })
    }

    fn subscription_path(&self, rest: &str) -> String {
        format!("/subscriptions/{}/providers/{rest}", self.subscription)
    }
}

/// Every check, in order. Without the settings they need or an ARM token,
/// the report says so and stops there.
pub async fn run_all(
    settings: &Settings,
    vault_url: Option<&str>,
    credential: Arc<dyn TokenCredential>,
) -> Vec<Check> {
    let d = match Deployment::from_settings(settings) {
        Ok(d) => d,
        Err(missing) => {
            return vec![Check::fail(
                "settings",
                format!("missing {}", missing.join(", ")),
                "pass --settings with the output of `az functionapp config appsettings list -g <group> -n <app> -o json` (infra sets them all)",
            )];
        }
    };
    let mut report = vec![Check::pass(
        "settings",
        format!(
            "subscription {}, resource group {}, region {}",
            d.subscription, d.resource_group, d.region
        ),
    )];
    if let Err(e) = credential.get_token(&[ARM_SCOPE], None).await {
        report.push(Check::fail(
            "Azure sign-in",
            format!(
                "no ARM token from the Azure CLI: {}",
                first_line(&e.to_string())
            ),
            format!(
                "az login, then az account set --subscription {}",
                d.subscription
            ),
        ));
        return report;
    }
    report.push(Check::pass(
        "Azure sign-in",
        "a token for ARM from `az account get-access-token`",
    ));
    let arm = match ArmClient::new(
        &d.arm_endpoint,
        credential.clone(),
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        },
    ) {
        Ok(a) => a,
        Err(e) => {
            report.push(Check::fail(
                "ARM",
                format!("{e:#}"),
                "check DEV8_ARM_ENDPOINT",
            ));
            return report;
        }
    };
    let rows = matrix::rows();
    let identities: BTreeSet<&str> = rows.iter().map(|r| r.identity.as_str()).collect();
    for identity in identities {
        report.push(roles(&arm, &d, &rows, identity).await);
    }
    report.push(cosmos_containers(&arm, &d).await);
    report.push(queue(&arm, &d, "jobs queue", &d.queue).await);
    report.push(queue(&arm, &d, "poison queue", &format!("{}-poison", d.queue)).await);
    report.push(provider(&arm, &d).await);
    report.push(capabilities(&arm, &d).await);
    report.push(core_quota(&arm, &d).await);
    report.push(signing_keys(&d, vault_url, credential.as_ref()).await);
    report.push(secrets_key(&d, vault_url, credential.as_ref()).await);
    report
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// A failed ARM call as a report line.
fn arm_failure(name: &str, what: &str, e: &ArmError) -> Check {
    let fix = match e.status() {
        Some(401 | 403) => {
            "your sign-in needs read access: Reader on the resource group and the subscription (or Owner, as deploying takes)"
        }
        _ => "run again; if it persists, the error names what ARM refused",
    };
    Check::fail(name, format!("{what}: {e}"), fix)
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A role assignment as found: (role name, scope, how to remove it).
struct Held {
    role: String,
    scope: String,
    remove: String,
}

/// `true` when `found` is the matrix's `role` (a custom role's name carries
/// its resource group in parentheses).
fn same_role(found: &str, role: &str) -> bool {
    found == role || found.starts_with(&format!("{role} ("))
}

async fn principal_of(arm: &ArmClient, d: &Deployment, identity: &str) -> Result<String, Check> {
    let name = format!("roles of {identity}");
    let found = match identity {
        "control" => {
            let path = format!(
                "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
                d.group_id()
            );
            let list = arm
                .list(&path, MSI_API)
                .await
                .map_err(|e| arm_failure(&name, "listing the managed identities", &e))?;
            list.into_iter().find(|i| {
                text(i, "/properties/clientId").eq_ignore_ascii_case(&d.control_client_id)
            })
        }
        "pull" => arm
            .get(&d.pull_identity, MSI_API)
            .await
            .map_err(|e| arm_failure(&name, "reading the pull identity", &e))?,
        other => {
            return Err(Check::fail(
                name,
                format!(
                    "docs/deploy.md's matrix names identity `{other}`, which doctor cannot find"
                ),
                "teach handlers/doctor/checks.rs `principal_of` where that identity is",
            ));
        }
    };
    match found.map(|i| text(&i, "/properties/principalId").to_string()) {
        Some(p) if !p.is_empty() => Ok(p),
        _ => Err(Check::fail(
            name,
            format!(
                "the {identity} identity ({}) is not in resource group {}",
                if identity == "control" {
                    &d.control_client_id
                } else {
                    &d.pull_identity
                },
                d.resource_group
            ),
            "redeploy the infrastructure (docs/deploy.md step 5): infra/modules/identities.bicep makes it",
        )),
    }
}

/// The role assignments `principal` holds at, above and below the resource
/// group (ARM's), and on the Cosmos DB account (Cosmos DB's own).
async fn held(arm: &ArmClient, d: &Deployment, principal: &str) -> Result<Vec<Held>, ArmError> {
    let mut out = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let path = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId%20eq%20'{principal}'",
        d.group_id()
    );
    for a in arm.list(&path, AUTHORIZATION_API).await? {
        if !text(&a, "/properties/principalId").eq_ignore_ascii_case(principal) {
            continue;
        }
        let def = text(&a, "/properties/roleDefinitionId").to_string();
        let role = role_name(arm, &mut names, &def, AUTHORIZATION_API).await?;
        out.push(Held {
            role,
            scope: text(&a, "/properties/scope").to_string(),
            remove: format!("az role assignment delete --ids {}", text(&a, "/id")),
        });
    }
    for a in arm
        .list(&format!("{}/sqlRoleAssignments", d.cosmos_id()), COSMOS_API)
        .await?
    {
        if !text(&a, "/properties/principalId").eq_ignore_ascii_case(principal) {
            continue;
        }
        let def = text(&a, "/properties/roleDefinitionId").to_string();
        let role = role_name(arm, &mut names, &def, COSMOS_API).await?;
        out.push(Held {
            role,
            scope: text(&a, "/properties/scope").to_string(),
            remove: format!(
                "az cosmosdb sql role assignment delete -g {} -a {} -i {}",
                d.resource_group,
                d.cosmos_account,
                text(&a, "/name")
            ),
        });
    }
    Ok(out)
}

async fn role_name(
    arm: &ArmClient,
    names: &mut BTreeMap<String, String>,
    definition: &str,
    api: &str,
) -> Result<String, ArmError> {
    if let Some(n) = names.get(definition) {
        return Ok(n.clone());
    }
    let name = match arm.get(definition, api).await? {
        Some(def) => text(&def, "/properties/roleName").to_string(),
        None => format!("(deleted role {definition})"),
    };
    names.insert(definition.to_string(), name.clone());
    Ok(name)
}

fn same_scope(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// Each of `identity`'s role assignments is a matrix row, and each row is granted.
async fn roles(arm: &ArmClient, d: &Deployment, rows: &[Row], identity: &str) -> Check {
    let name = format!("roles of {identity}");
    let principal = match principal_of(arm, d, identity).await {
        Ok(p) => p,
        Err(check) => return check,
    };
    let held = match held(arm, d, &principal).await {
        Ok(h) => h,
        Err(e) => return arm_failure(&name, "listing role assignments", &e),
    };
    let mut missing = Vec::new();
    let mut fixes = Vec::new();
    let mut matched = vec![false; held.len()];
    let wanted: Vec<&Row> = rows.iter().filter(|r| r.identity == identity).collect();
    for row in &wanted {
        let Some(scope) = d.scope_id(&row.scope) else {
            missing.push(format!(
                "{} on {} (a scope doctor does not know)",
                row.role, row.scope
            ));
            continue;
        };
        let hit = held
            .iter()
            .position(|h| same_role(&h.role, &row.role) && same_scope(&h.scope, &scope));
        match hit {
            Some(i) => matched[i] = true,
            None => {
                missing.push(format!("{} on {}", row.role, row.scope));
                fixes.push(if row.scope == "Cosmos DB account" {
                    format!(
                        "az cosmosdb sql role assignment create -g {} -a {} --role-definition-name \"{}\" --principal-id {principal} --scope /",
                        d.resource_group, d.cosmos_account, row.role
                    )
                } else {
                    format!(
                        "az role assignment create --assignee-object-id {principal} --assignee-principal-type ServicePrincipal --role \"{}\" --scope {scope}",
                        row.role
                    )
                });
            }
        }
    }
    let extra: Vec<&Held> = held
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(h, _)| h)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return Check::pass(
            name,
            format!(
                "exactly the {} role assignment{} of the permission matrix",
                wanted.len(),
                if wanted.len() == 1 { "" } else { "s" }
            ),
        );
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing {}", missing.join("; ")));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "not in the permission matrix: {}",
            extra
                .iter()
                .map(|h| format!("{} on {}", h.role, h.scope))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        fixes.extend(extra.iter().map(|h| h.remove.clone()));
    }
    Check::fail(
        name,
        problems.join("; "),
        format!(
            "redeploy the infrastructure (docs/deploy.md step 5) or: {}",
            fixes.join(" && ")
        ),
    )
}

async fn cosmos_containers(arm: &ArmClient, d: &Deployment) -> Check {
    let name = "Cosmos DB containers";
    let fix = "redeploy the infrastructure (docs/deploy.md step 5): infra/modules/cosmos.bicep makes the database and its containers";
    let path = format!(
        "{}/sqlDatabases/{}/containers",
        d.cosmos_id(),
        d.cosmos_database
    );
    let found: BTreeSet<String> = match arm.list(&path, COSMOS_API).await {
        Ok(list) => list.iter().map(|c| text(c, "/name").to_string()).collect(),
        Err(e) if e.status() == Some(404) => {
            return Check::fail(
                name,
                format!(
                    "no database {} in Cosmos DB account {}",
                    d.cosmos_database, d.cosmos_account
                ),
                fix,
            );
        }
        Err(e) => return arm_failure(name, "listing the containers", &e),
    };
    let wanted: Vec<String> = crate::store::cosmos::container_definitions()
        .into_iter()
        .map(|c| c.id.into_owned())
        .collect();
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| !found.contains(*w))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Check::pass(
            name,
            format!(
                "{} in {}/{}",
                wanted.join(", "),
                d.cosmos_account,
                d.cosmos_database
            ),
        )
    } else {
        Check::fail(
            name,
            format!(
                "missing {} in {}/{}",
                missing.join(", "),
                d.cosmos_account,
                d.cosmos_database
            ),
            fix,
        )
    }
}

async fn queue(arm: &ArmClient, d: &Deployment, name: &str, queue: &str) -> Check {
    let path = format!(
        "{}/queueServices/default/queues/{queue}",
        d.host_account_id()
    );
    match arm.get(&path, STORAGE_API).await {
        Ok(Some(_)) => Check::pass(name, format!("{queue} in {}", d.host_account)),
        Ok(None) => Check::fail(
            name,
            format!("no queue {queue} in storage account {}", d.host_account),
            "redeploy the infrastructure (docs/deploy.md step 5): infra/modules/storage.bicep makes the jobs queue and its poison queue",
        ),
        Err(e) => arm_failure(name, "reading the queue", &e),
    }
}

async fn provider(arm: &ArmClient, d: &Deployment) -> Check {
    let name = "Microsoft.ContainerInstance provider";
    let path = d.subscription_path("Microsoft.ContainerInstance");
    match arm.get(&path, RESOURCES_API).await {
        Ok(Some(p)) if text(&p, "/registrationState") == "Registered" => {
            Check::pass(name, "Registered")
        }
        Ok(found) => Check::fail(
            name,
            format!(
                "{} in subscription {} (the first environment's start would fail with MissingSubscriptionRegistration)",
                found
                    .as_ref()
                    .map(|p| text(p, "/registrationState"))
                    .filter(|s| !s.is_empty())
                    .unwrap_or("unknown"),
                d.subscription
            ),
            "az provider register --namespace Microsoft.ContainerInstance (and wait until `az provider show -n Microsoft.ContainerInstance --query registrationState` says Registered)",
        ),
        Err(e) => arm_failure(name, "reading the provider", &e),
    }
}

/// The largest preset's cores and memory.
fn largest() -> (u8, u8) {
    PRESETS
        .iter()
        .fold((0, 0), |(c, m), p| (c.max(p.cpu_cores), m.max(p.memory_gb)))
}

async fn capabilities(arm: &ArmClient, d: &Deployment) -> Check {
    let name = "ACI capabilities";
    let path = d.subscription_path(&format!(
        "Microsoft.ContainerInstance/locations/{}/capabilities",
        d.region
    ));
    let items = match arm.list(&path, ACI_API).await {
        Ok(i) => i,
        Err(e) => return arm_failure(name, "reading the region's capabilities", &e),
    };
    let (cpu, mem) = largest();
    let fix = format!(
        "deploy environments to a region whose Container Instances offer {cpu} CPU and {mem} GB per Linux container group with a public IP: redeploy (docs/deploy.md step 5) with that region as LOC"
    );
    let Some(caps) = pick_capabilities(&items) else {
        return Check::fail(
            name,
            format!(
                "{} offers no Linux container groups with a public IP",
                d.region
            ),
            fix,
        );
    };
    let misfits: Vec<String> = PRESETS
        .iter()
        .filter(|p| {
            f64::from(p.cpu_cores) > caps.max_cpu || f64::from(p.memory_gb) > caps.max_memory_gb
        })
        .map(|p| format!("{} ({} CPU, {} GB)", p.id, p.cpu_cores, p.memory_gb))
        .collect();
    let limits = format!(
        "{}: at most {} CPU and {} GB per group",
        d.region, caps.max_cpu, caps.max_memory_gb
    );
    if misfits.is_empty() {
        Check::pass(name, format!("{limits}; every preset fits"))
    } else {
        Check::fail(
            name,
            format!("{limits}; too large: {}", misfits.join(", ")),
            fix,
        )
    }
}

async fn core_quota(arm: &ArmClient, d: &Deployment) -> Check {
    let name = "ACI core quota";
    let path = d.subscription_path(&format!(
        "Microsoft.ContainerInstance/locations/{}/usages",
        d.region
    ));
    let usages = match arm.list(&path, ACI_API).await {
        Ok(u) => u,
        Err(e) => return arm_failure(name, "reading the region's usages", &e),
    };
    let (cpu, _) = largest();
    let needed = d.max_running_total as u64 * u64::from(cpu);
    let Some(cores) = usages
        .iter()
        .find(|u| text(u, "/name/value") == CORES_USAGE)
    else {
        return Check::fail(
            name,
            format!("{} reports no {CORES_USAGE} usage", d.region),
            format!(
                "az rest --method get --url '/subscriptions/{}/providers/Microsoft.ContainerInstance/locations/{}/usages?api-version={ACI_API}' shows what the region reports",
                d.subscription, d.region
            ),
        );
    };
    let limit = cores.get("limit").and_then(Value::as_u64).unwrap_or(0);
    let current = cores
        .get("currentValue")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let detail = format!(
        "{CORES_USAGE} limit {limit} in {} ({current} in use); DEV8_MAX_RUNNING_TOTAL {} at the largest preset ({cpu} CPU) needs {needed}",
        d.region, d.max_running_total
    );
    if limit >= needed {
        Check::pass(name, detail)
    } else {
        Check::fail(
            name,
            detail,
            format!(
                "ask for a Container Instances {CORES_USAGE} quota of {needed} in {} (Azure portal > Quotas), or redeploy with maxRunningTotal={}",
                d.region,
                limit / u64::from(cpu.max(1))
            ),
        )
    }
}

/// The value of the Key Vault secret `r` names, or the failing check
/// `name` (with `redeploy` as the fix when the secret is missing).
async fn vault_secret(
    name: &str,
    r: &VaultRef,
    vault_url: Option<&str>,
    credential: &dyn TokenCredential,
    redeploy: &str,
) -> Result<String, Check> {
    let base = vault_url
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://{}.vault.azure.net", r.vault));
    let url = match &r.version {
        Some(v) => format!(
            "{base}/secrets/{}/{v}?api-version={KEY_VAULT_API}",
            r.secret
        ),
        None => format!("{base}/secrets/{}?api-version={KEY_VAULT_API}", r.secret),
    };
    let token = match credential.get_token(&[KEY_VAULT_SCOPE], None).await {
        Ok(t) => t,
        Err(e) => {
            return Err(Check::fail(
                name,
                format!(
                    "no Key Vault token from the Azure CLI: {}",
                    first_line(&e.to_string())
                ),
                "az login",
            ));
        }
    };
    let answer = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client builds")
        .get(&url)
        .bearer_auth(token.token.secret())
        .send()
        .await
    {
        Ok(a) => a,
        Err(e) => {
            return Err(Check::fail(
                name,
                format!(
                    "Key Vault {} cannot be reached: {}",
                    r.vault,
                    e.without_url()
                ),
                "check the vault's network rules and the URL (--vault-url)",
            ));
        }
    };
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    match status {
        200 => Ok(text(&body, "/value").to_string()),
        401 | 403 => Err(Check::fail(
            name,
            format!(
                "your sign-in may not read secret {} in vault {} ({})",
                r.secret,
                r.vault,
                text(&body, "/error/code")
            ),
            "give yourself Key Vault Secrets User on the vault to check (docs/deploy.md step 9); the app's own access is the `roles of control` line",
        )),
        404 => Err(Check::fail(
            name,
            format!("no secret {} in vault {}", r.secret, r.vault),
            redeploy,
        )),
        other => Err(Check::fail(
            name,
            format!(
                "Key Vault answered {other} ({})",
                text(&body, "/error/code")
            ),
            "run again; if it persists, look at the vault's health in the portal",
        )),
    }
}

async fn signing_keys(
    d: &Deployment,
    vault_url: Option<&str>,
    credential: &dyn TokenCredential,
) -> Check {
    let name = "signing keys";
    let Some(r) = d.vault() else {
        return Check::fail(
            name,
            "DEV8_SIGNING_KEYS is not a Key Vault reference",
            "redeploy (docs/deploy.md step 5): infra keeps the keys in Key Vault and sets DEV8_SIGNING_KEYS to @Microsoft.KeyVault(VaultName=…;SecretName=dev8-signing-keys)",
        );
    };
    let redeploy = "redeploy with signingKeys=\"$SIGNING_KEYS\" (docs/deploy.md steps 4 and 5)";
    let value = match vault_secret(name, &r, vault_url, credential, redeploy).await {
        Ok(v) => v,
        Err(failed) => return failed,
    };
    match KeySet::parse(&value) {
        Ok(keys) => Check::pass(
            name,
            format!(
                "{} key{} ({}) load from {} in vault {}",
                keys.kids().len(),
                if keys.kids().len() == 1 { "" } else { "s" },
                keys.kids().join(", "),
                r.secret,
                r.vault
            ),
        ),
        Err(e) => Check::fail(
            name,
            format!(
                "secret {} in vault {} is not a key set: {}",
                r.secret,
                r.vault,
                first_line(&format!("{e:#}"))
            ),
            "make a key as in docs/deploy.md step 4 and redeploy with signingKeys=\"$SIGNING_KEYS\" (step 5)",
        ),
    }
}

/// `DEV8_SECRETS_KEY`: a Key Vault reference to a 32-byte key (the key
/// itself is never printed).
async fn secrets_key(
    d: &Deployment,
    vault_url: Option<&str>,
    credential: &dyn TokenCredential,
) -> Check {
    let name = "secrets key";
    let redeploy = "make a key as in docs/deploy.md step 4 and redeploy with secretsKey=\"$SECRETS_KEY\" (step 5)";
    let Some(r) = d.secrets_key.as_deref().and_then(VaultRef::parse) else {
        return Check::fail(
            name,
            "DEV8_SECRETS_KEY is not a Key Vault reference",
            "redeploy (docs/deploy.md step 5): infra keeps the key in Key Vault and sets DEV8_SECRETS_KEY to @Microsoft.KeyVault(VaultName=…;SecretName=dev8-secrets-key)",
        );
    };
    let value = match vault_secret(name, &r, vault_url, credential, redeploy).await {
        Ok(v) => v,
        Err(failed) => return failed,
    };
    match crate::sealing::SecretsKey::parse(&value) {
        Ok(_) => Check::pass(
            name,
            format!("a 32-byte key loads from {} in vault {}", r.secret, r.vault),
        ),
        Err(e) => Check::fail(
            name,
            format!(
                "secret {} in vault {} is not a secrets key: {}",
                r.secret,
                r.vault,
                first_line(&format!("{e:#}"))
            ),
            redeploy,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_vault_references_in_both_forms() {
        assert_eq!(
            VaultRef::parse("@Microsoft.KeyVault(VaultName=kv-a;SecretName=dev8-signing-keys)"),
            Some(VaultRef {
                vault: "kv-a".into(),
                secret: "dev8-signing-keys".into(),
                version: None
            })
        );
        assert_eq!(
            VaultRef::parse(
                "@Microsoft.KeyVault(SecretUri=https://kv-a.vault.azure.net/secrets/s/abc)"
            ),
            Some(VaultRef {
                vault: "kv-a".into(),
                secret: "s".into(),
                version: Some("abc".into())
            })
        );
        assert_eq!(VaultRef::parse("k1:AAAA"), None);
        assert_eq!(
            VaultRef::parse("@Microsoft.KeyVault(SecretUri=http://kv/secrets/s)"),
            None
        );
    }

    #[test]
    fn every_matrix_scope_is_one_doctor_can_name() {
        let mut s = Settings::from_env().unwrap();
        s.aci.subscription_id = Some("sub".into());
        s.aci.resource_group = Some("rg".into());
        s.aci.region = Some("westeurope".into());
        s.aci.acr_pull_identity = Some("/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull".into());
        s.aci.image_registry = Some("reg.azurecr.io".into());
        s.identity.client_id = Some("c".into());
        s.storage.account_name = Some("host".into());
        s.cosmos.endpoint = Some("https://acct.documents.azure.com:443/".into());
        s.signing_keys =
            Some("@Microsoft.KeyVault(VaultName=kv;SecretName=dev8-signing-keys)".into());
        s.secrets_key =
            Some("@Microsoft.KeyVault(VaultName=kv;SecretName=dev8-secrets-key)".into());
        let d = Deployment::from_settings(&s).unwrap();
        assert_eq!(d.cosmos_account, "acct");
        for row in matrix::rows() {
            assert!(d.scope_id(&row.scope).is_some(), "{row:?}");
            assert!(
                ["control", "pull"].contains(&row.identity.as_str()),
                "{row:?}"
            );
        }
        s.aci.region = None;
        assert_eq!(
            Deployment::from_settings(&s).unwrap_err(),
            vec!["AZURE_REGION"]
        );
    }

    #[test]
    fn a_custom_role_matches_by_its_name_before_the_group() {
        assert!(same_role(
            "Dev8 environments operator (dev8)",
            "Dev8 environments operator"
        ));
        assert!(same_role("AcrPull", "AcrPull"));
        assert!(!same_role("AcrPush", "AcrPull"));
        assert!(!same_role(
            "Dev8 environments operator2",
            "Dev8 environments operator"
        ));
    }
}
