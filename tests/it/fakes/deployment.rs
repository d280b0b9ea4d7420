//! The rest of a Dev8 deployment as ARM and Key Vault show it to its
//! operator (what `handler doctor` reads), served by the ARM fake
//! (`fakes::arm`) on the same loopback port, stateful, from the documented
//! REST contracts (the api-versions of the specs `tests/specs/arm_spec.py`
//! checks every exchange against):
//! * `GET /subscriptions/{s}/providers/Microsoft.ContainerInstance`
//!   (Resources 2021-04-01, `Provider`);
//! * `GET …/providers/Microsoft.ContainerInstance/locations/{region}/usages`
//!   (ContainerInstance 2023-05-01, `UsageListResult`);
//! * user-assigned identities, listed in the resource group or read by id
//!   (ManagedIdentity 2023-01-31);
//! * role assignments listed at the resource group's scope, with or without
//!   `$filter=principalId eq '{id}'` (ARM returns those at, above and below
//!   the scope; any other filter is refused), and role definitions by id
//!   (Authorization 2022-04-01);
//! * a Cosmos DB account's SQL containers (404 without the database), its
//!   SQL role assignments and role definitions (DocumentDB 2024-11-15);
//! * a Storage account's queue (Storage 2023-05-01);
//! * Key Vault's `GET /secrets/{name}[/{version}]` (7.4) with a token for
//!   the vault's audience, 403 when the caller's role is missing.
//!
//! `Deployment::as_infra_makes_it` seeds what `infra/*.bicep` deploys (the
//! role assignments written from `infra/modules/{roles,registry,keyvault,
//! cosmos}.bicep`, not from the permission matrix, so the doctor's reading
//! of the matrix is checked against an independent statement). Tests break it.

use super::arm::{self, FakeState, PULL_IDENTITY, REGION, RESOURCE_GROUP, SUBSCRIPTION, TENANT};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const RESOURCES_API: &str = "2021-04-01";
pub const AUTHORIZATION_API: &str = "2022-04-01";
pub const MSI_API: &str = "2023-01-31";
pub const COSMOS_API: &str = "2024-11-15";
pub const STORAGE_API: &str = "2023-05-01";
pub const ACI_API: &str = "2023-05-01";
pub const KEY_VAULT_API: &str = "7.4";

pub const HOST_ACCOUNT: &str = "stdev8host";
pub const COSMOS_ACCOUNT: &str = "cosmos-dev8";
pub const DATABASE: &str = "dev8";
pub const VAULT: &str = "kv-dev8-abc";
pub const QUEUE: &str = "env-jobs";
pub const CONTROL_CLIENT_ID: &str = "11111111-0000-0000-0000-00000000c11e";
pub const CONTROL_PRINCIPAL: &str = "22222222-0000-0000-0000-0000000c0417";
pub const PULL_PRINCIPAL: &str = "33333333-0000-0000-0000-0000000e9011";
/// The secrets key infra keeps in Key Vault (32 bytes, base64).
pub const SECRETS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const SIGNING_KEYS: &str =
    "k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8,k1:HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4";

/// Built-in role ids (the GUIDs infra/modules/*.bicep names) and names.
pub const OWNER: (&str, &str) = ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner");
pub const OPERATOR_ROLE: &str = "5d2d6c1b-0000-0000-0000-00000000de08";
pub const MANAGED_IDENTITY_OPERATOR: (&str, &str) = (
    "f1a07417-d97a-45cb-824c-7a7467783830",
    "Managed Identity Operator",
);
pub const QUEUE_CONTRIBUTOR: (&str, &str) = (
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Queue Data Contributor",
);
pub const BLOB_OWNER: (&str, &str) = (
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Owner",
);
pub const TABLE_CONTRIBUTOR: (&str, &str) = (
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Table Data Contributor",
);
pub const SECRETS_USER: (&str, &str) = (
    "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets User",
);
pub const ACR_PULL: (&str, &str) = ("7f951dda-4ed3-4680-a7ca-43fe172d538d", "AcrPull");
pub const COSMOS_DATA_CONTRIBUTOR: (&str, &str) = (
    "00000000-0000-0000-0000-000000000002",
    "Cosmos DB Built-in Data Contributor",
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub principal: String,
    /// The role definition's full id.
    pub role: String,
    pub scope: String,
}

#[derive(Debug, Default)]
pub struct Deployment {
    pub provider_state: String,
    /// (usage name, current value, limit)
    pub usages: Vec<(String, u64, u64)>,
    /// name -> (client id, principal id)
    pub identities: BTreeMap<String, (String, String)>,
    pub role_assignments: Vec<Assignment>,
    /// full id -> (role name, BuiltInRole | CustomRole)
    pub role_definitions: BTreeMap<String, (String, String)>,
    pub sql_role_assignments: Vec<Assignment>,
    pub sql_role_definitions: BTreeMap<String, String>,
    pub database: Option<String>,
    pub containers: BTreeSet<String>,
    pub queues: BTreeSet<String>,
    pub secrets: BTreeMap<String, String>,
    /// The caller lacks a role to read secrets.
    pub vault_denied: bool,
}

pub fn group_id() -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}")
}

pub fn resource_id(kind: &str, name: &str) -> String {
    format!("{}/providers/{kind}/{name}", group_id())
}

pub fn role_id(guid: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    )
}

pub fn cosmos_id() -> String {
    resource_id("Microsoft.DocumentDB/databaseAccounts", COSMOS_ACCOUNT)
}

pub fn host_id() -> String {
    resource_id("Microsoft.Storage/storageAccounts", HOST_ACCOUNT)
}

impl Deployment {
    /// What `az deployment group create -f infra/main.bicep` leaves behind.
    pub fn as_infra_makes_it() -> Deployment {
        let mut d = Deployment {
            provider_state: "Registered".into(),
            usages: vec![
                ("ContainerGroups".into(), 3, 100),
                ("StandardCores".into(), 6, 200),
                ("StandardK80Cores".into(), 0, 0),
            ],
            database: Some(DATABASE.into()),
            containers: [
                "users",
                "sessions",
                "environments",
                "documents",
                "identities",
                "audit",
                "secrets",
            ]
            .map(String::from)
            .into(),
            queues: [QUEUE.to_string(), format!("{QUEUE}-poison")].into(),
            secrets: [
                ("dev8-signing-keys".to_string(), SIGNING_KEYS.to_string()),
                ("dev8-secrets-key".to_string(), SECRETS_KEY.to_string()),
            ]
            .into(),
            ..Default::default()
        };
        d.identities.insert(
            "id-dev8-control".into(),
            (CONTROL_CLIENT_ID.into(), CONTROL_PRINCIPAL.into()),
        );
        d.identities.insert(
            "dev8-env-pull".into(),
            (
                "44444444-0000-0000-0000-0000000c1e47".into(),
                PULL_PRINCIPAL.into(),
            ),
        );
        d.role_definitions.insert(
            role_id(OPERATOR_ROLE),
            (
                format!("Dev8 environments operator ({RESOURCE_GROUP})"),
                "CustomRole".into(),
            ),
        );
        for (guid, name) in [
            OWNER,
            MANAGED_IDENTITY_OPERATOR,
            QUEUE_CONTRIBUTOR,
            BLOB_OWNER,
            TABLE_CONTRIBUTOR,
            SECRETS_USER,
            ACR_PULL,
        ] {
            d.role_definitions
                .insert(role_id(guid), (name.into(), "BuiltInRole".into()));
        }
        // infra/modules/roles.bicep, keyvault.bicep, registry.bicep.
        let vault = resource_id("Microsoft.KeyVault/vaults", VAULT);
        let registry = resource_id("Microsoft.ContainerRegistry/registries", "dev8test");
        for (principal, guid, scope) in [
            (CONTROL_PRINCIPAL, OPERATOR_ROLE, group_id()),
            (
                CONTROL_PRINCIPAL,
                MANAGED_IDENTITY_OPERATOR.0,
                PULL_IDENTITY.to_string(),
            ),
            (CONTROL_PRINCIPAL, QUEUE_CONTRIBUTOR.0, host_id()),
            (CONTROL_PRINCIPAL, BLOB_OWNER.0, host_id()),
            (CONTROL_PRINCIPAL, TABLE_CONTRIBUTOR.0, host_id()),
            (CONTROL_PRINCIPAL, SECRETS_USER.0, vault),
            (PULL_PRINCIPAL, ACR_PULL.0, registry),
        ] {
            d.assign(principal, &role_id(guid), &scope);
        }
        // infra/modules/cosmos.bicep.
        let cosmos_role = format!(
            "{}/sqlRoleDefinitions/{}",
            cosmos_id(),
            COSMOS_DATA_CONTRIBUTOR.0
        );
        d.sql_role_definitions
            .insert(cosmos_role.clone(), COSMOS_DATA_CONTRIBUTOR.1.into());
        d.sql_role_assignments.push(Assignment {
            name: "7f0e4d1c-0000-0000-0000-000000000c05".into(),
            principal: CONTROL_PRINCIPAL.into(),
            role: cosmos_role,
            scope: cosmos_id(),
        });
        d
    }

    /// A role assignment is made (as `az role assignment create` would).
    pub fn assign(&mut self, principal: &str, role: &str, scope: &str) {
        let n = self.role_assignments.len();
        self.role_assignments.push(Assignment {
            name: format!("aaaaaaaa-0000-0000-0000-{n:012}"),
            principal: principal.into(),
            role: role.into(),
            scope: scope.into(),
        });
    }

    /// A role assignment is deleted.
    pub fn unassign(&mut self, principal: &str, role_guid: &str) {
        self.role_assignments
            .retain(|a| !(a.principal == principal && a.role.ends_with(role_guid)));
    }
}

fn assignment_view(a: &Assignment) -> Value {
    json!({
        "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", a.scope, a.name),
        "name": a.name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": a.role,
            "principalId": a.principal,
            "principalType": "ServicePrincipal",
            "scope": a.scope,
        }
    })
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// At, above or below the resource group.
fn related_to_group(scope: &str) -> bool {
    let (scope, group) = (lower(scope), lower(&group_id()));
    group.starts_with(&scope) || scope.starts_with(&group)
}

fn api_error(api: &str) -> Response {
    arm::error(StatusCode::BAD_REQUEST, "InvalidApiVersionParameter", api)
}

/// The deployment's ARM routes; `None` for a path that is not one of them.
pub fn respond(
    s: &mut FakeState,
    method: &Method,
    seg: &[&str],
    q: &HashMap<String, String>,
) -> Option<Response> {
    if *method != Method::GET {
        return None;
    }
    let api = q.get("api-version").map(String::as_str).unwrap_or("");
    let d = &mut s.deployment;
    let sub = ["subscriptions", SUBSCRIPTION];
    if seg.len() < 2 || seg[..2] != sub {
        return None;
    }
    let rest = &seg[2..];
    let rg = ["resourceGroups", RESOURCE_GROUP, "providers"];
    let answer = match rest {
        ["providers", "Microsoft.ContainerInstance"] => {
            if api != RESOURCES_API {
                return Some(api_error(api));
            }
            axum::Json(json!({
                "id": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.ContainerInstance"),
                "namespace": "Microsoft.ContainerInstance",
                "registrationState": d.provider_state,
                "registrationPolicy": "RegistrationRequired",
                "resourceTypes": [{"resourceType": "containerGroups", "locations": ["West Europe"], "apiVersions": [ACI_API]}]
            }))
            .into_response()
        }
        [
            "providers",
            "Microsoft.ContainerInstance",
            "locations",
            region,
            "usages",
        ] => {
            if api != ACI_API {
                return Some(api_error(api));
            }
            let items: Vec<Value> = if *region == REGION {
                d.usages
                    .iter()
                    .map(|(n, cur, lim)| json!({"unit": "Count", "currentValue": cur, "limit": lim, "name": {"value": n, "localizedValue": n}}))
                    .collect()
            } else {
                Vec::new()
            };
            axum::Json(json!({"value": items})).into_response()
        }
        [
            "providers",
            "Microsoft.Authorization",
            "roleDefinitions",
            guid,
        ] => {
            if api != AUTHORIZATION_API {
                return Some(api_error(api));
            }
            let id = role_id(guid);
            match d.role_definitions.get(&id) {
                Some((name, kind)) => axum::Json(json!({
                    "id": id, "name": guid, "type": "Microsoft.Authorization/roleDefinitions",
                    "properties": {"roleName": name, "type": kind, "description": "", "assignableScopes": ["/"],
                                   "permissions": [{"actions": [], "notActions": [], "dataActions": [], "notDataActions": []}]}
                }))
                .into_response(),
                None => arm::error(StatusCode::NOT_FOUND, "RoleDefinitionDoesNotExist", "no such role"),
            }
        }
        [a, b, c, "Microsoft.Authorization", "roleAssignments"] if [*a, *b, *c] == rg => {
            if api != AUTHORIZATION_API {
                return Some(api_error(api));
            }
            let principal = match q.get("$filter").map(|f| arm::decode(f)) {
                None => None,
                Some(f) => match f
                    .strip_prefix("principalId eq '")
                    .and_then(|r| r.strip_suffix('\''))
                {
                    Some(p) => Some(p.to_string()),
                    None => {
                        return Some(arm::error(
                            StatusCode::BAD_REQUEST,
                            "InvalidFilterInQueryString",
                            "unsupported $filter",
                        ));
                    }
                },
            };
            let items: Vec<Value> = d
                .role_assignments
                .iter()
                .filter(|a| related_to_group(&a.scope))
                .filter(|a| {
                    principal
                        .as_ref()
                        .is_none_or(|p| a.principal.eq_ignore_ascii_case(p))
                })
                .map(assignment_view)
                .collect();
            axum::Json(json!({"value": items})).into_response()
        }
        [
            a,
            b,
            c,
            "Microsoft.ManagedIdentity",
            "userAssignedIdentities",
            name @ ..,
        ] if [*a, *b, *c] == rg && name.len() <= 1 => {
            if api != MSI_API {
                return Some(api_error(api));
            }
            let view = |n: &str, (client, principal): &(String, String)| {
                json!({
                    "id": resource_id("Microsoft.ManagedIdentity/userAssignedIdentities", n),
                    "name": n, "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
                    "location": REGION, "tags": {},
                    "properties": {"tenantId": TENANT, "principalId": principal, "clientId": client}
                })
            };
            match name {
                [] => axum::Json(json!({"value": d.identities.iter().map(|(n, i)| view(n, i)).collect::<Vec<_>>()}))
                    .into_response(),
                [n] => match d.identities.get(*n) {
                    Some(i) => axum::Json(view(n, i)).into_response(),
                    None => arm::error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such identity"),
                },
                _ => unreachable!(),
            }
        }
        [
            a,
            b,
            c,
            "Microsoft.DocumentDB",
            "databaseAccounts",
            acct,
            more @ ..,
        ] if [*a, *b, *c] == rg && *acct == COSMOS_ACCOUNT => {
            if api != COSMOS_API {
                return Some(api_error(api));
            }
            cosmos(d, more)
        }
        [
            a,
            b,
            c,
            "Microsoft.Storage",
            "storageAccounts",
            acct,
            "queueServices",
            "default",
            "queues",
            name,
        ] if [*a, *b, *c] == rg && *acct == HOST_ACCOUNT => {
            if api != STORAGE_API {
                return Some(api_error(api));
            }
            if d.queues.contains(*name) {
                axum::Json(json!({
                    "id": format!("{}/queueServices/default/queues/{name}", host_id()),
                    "name": name, "type": "Microsoft.Storage/storageAccounts/queueServices/queues",
                    "properties": {"metadata": {}}
                }))
                .into_response()
            } else {
                arm::error(
                    StatusCode::NOT_FOUND,
                    "QueueNotFound",
                    "The specified queue does not exist.",
                )
            }
        }
        _ => return None,
    };
    Some(answer)
}

/// Cosmos DB's resource provider answers errors flat, `{"code", "message"}`
/// (the spec's `ErrorResponse`), not in ARM's `{"error": …}` envelope.
fn cosmos_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn cosmos(d: &Deployment, more: &[&str]) -> Response {
    match more {
        ["sqlDatabases", db, "containers"] => {
            if d.database.as_deref() != Some(*db) {
                return cosmos_error(StatusCode::NOT_FOUND, "NotFound", "no such database");
            }
            let items: Vec<Value> = d
                .containers
                .iter()
                .map(|c| json!({
                    "id": format!("{}/sqlDatabases/{db}/containers/{c}", cosmos_id()),
                    "name": c, "type": "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers",
                    "properties": {"resource": {"id": c, "partitionKey": {"paths": ["/id"], "kind": "Hash"}}}
                }))
                .collect();
            axum::Json(json!({"value": items})).into_response()
        }
        ["sqlRoleAssignments"] => {
            let items: Vec<Value> = d
                .sql_role_assignments
                .iter()
                .map(|a| json!({
                    "id": format!("{}/sqlRoleAssignments/{}", cosmos_id(), a.name),
                    "name": a.name, "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
                    "properties": {"roleDefinitionId": a.role, "scope": a.scope, "principalId": a.principal}
                }))
                .collect();
            axum::Json(json!({"value": items})).into_response()
        }
        ["sqlRoleDefinitions", guid] => {
            let id = format!("{}/sqlRoleDefinitions/{guid}", cosmos_id());
            match d.sql_role_definitions.get(&id) {
                Some(name) => axum::Json(json!({
                    "id": id, "name": guid, "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions",
                    "properties": {"roleName": name, "type": "BuiltInRole", "assignableScopes": [cosmos_id()],
                                   "permissions": [{"dataActions": ["Microsoft.DocumentDB/databaseAccounts/readMetadata"]}]}
                }))
                .into_response(),
                None => cosmos_error(StatusCode::NOT_FOUND, "NotFound", "no such role definition"),
            }
        }
        _ => cosmos_error(StatusCode::NOT_FOUND, "ResourceNotFound", "unknown path"),
    }
}

/// Key Vault's `GET /secrets/{name}[/{version}]?api-version=7.4`.
pub fn secret(
    s: &FakeState,
    headers: &HeaderMap,
    path: &str,
    q: &HashMap<String, String>,
) -> Response {
    let kv_error = |status: StatusCode, code: &str, message: &str| {
        (
            status,
            axum::Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    };
    let bearer = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| s.vault_tokens.iter().any(|v| v == t)) {
        return kv_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
    }
    if q.get("api-version").map(String::as_str) != Some(KEY_VAULT_API) {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The specified version is not supported",
        );
    }
    if s.deployment.vault_denied {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": {"code": "Forbidden", "message": "Caller is not authorized to perform action on resource.", "innererror": {"code": "ForbiddenByRbac"}}})),
        )
            .into_response();
    }
    let name = path
        .trim_start_matches("/secrets/")
        .split('/')
        .next()
        .unwrap_or("");
    match s.deployment.secrets.get(name) {
        Some(value) => axum::Json(json!({
            "value": value,
            "id": format!("https://{VAULT}.vault.azure.net/secrets/{name}/0a1b2c3d"),
            "attributes": {"enabled": true, "created": 1767225600, "updated": 1767225600, "recoveryLevel": "Recoverable"}
        }))
        .into_response(),
        None => kv_error(StatusCode::NOT_FOUND, "SecretNotFound", &format!("A secret with (name/id) {name} was not found in this key vault.")),
    }
}
