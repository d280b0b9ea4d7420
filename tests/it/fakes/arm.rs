//! A stateful stand-in for the parts of Azure Resource Manager and Entra ID
//! that the ACI backend speaks (ARM, ACI and Azure Files cannot run here).
//! It implements the documented wire contract on 127.0.0.1:
//! * the Entra ID token endpoint (`POST /{tenant}/oauth2/v2.0/token`,
//!   client-credentials form) issuing bearer tokens that every ARM call
//!   must carry;
//! * container groups: PUT (201, `provisioningState` Creating -> Succeeded
//!   over GET polls; a second PUT is an update, 409 while one is in
//!   progress), GET (secure values never returned, server-made FQDN), LIST,
//!   `POST .../start` (202, long-running), `POST .../stop` (204), DELETE
//!   (202, `Deleting` over polls, then 404);
//! * file shares (PUT/GET/DELETE; deleting a share a live group mounts is
//!   409) and `POST .../listKeys`;
//! * region capabilities;
//! * the workspace account's Blob service as the backend uses it for
//!   snapshot mode (at `<fake>/<account>`, Azurite's path style): Create
//!   Container (201; 409 `ContainerAlreadyExists`) and Delete Container (202;
//!   404), each with an account SAS whose scope must be the Blob service's
//!   containers (`ss=b`, `srt=c`) with the permission the operation needs
//!   (`c`, `d`), and List Blobs (an empty list: the agent's objects are not
//!   kept here) with a container SAS (`sr=c`, `l`); every SAS with an expiry ahead (the signature itself is checked against
//!   Azurite by the snapshot store's own tests);
//! * the rest of a deployment as its operator sees it (identities, role
//!   assignments, Cosmos DB containers, queues, the provider, usages, Key
//!   Vault secrets: `fakes::deployment`, what `handler doctor` reads);
//! * injected faults (429 with `Retry-After`, 500s) for any request;
//! * the agent's readiness URL (`/_dev8/healthz` on a group's FQDN, chosen by
//!   the `Host` header), answering only for a running group;
//! * the agent's final-snapshot endpoint (`POST /_dev8/final-snapshot` on a
//!   group's FQDN), a stand-in for `agent::final_snapshot`'s contract: the
//!   token must be an `agent-control` token for that group's environment,
//!   signed with a key of the JWKS and naming the issuer the group's agent
//!   was given (its `secureValue`s); the first request ends the IDE
//!   (readiness stops answering) and the snapshot takes
//!   `FakeState::final_snapshot_asks` more requests (`None`: it never
//!   finishes), answered 202 `saving` until then and 200 `saved` with its
//!   time after; a stopped or re-created group's agent starts afresh.
//!
//! Every ARM exchange is recorded (`FakeState::exchanges`: method, path,
//! request body, status, answer); the full-tier test
//! `aci::every_arm_body_follows_the_published_specs` checks each request
//! body and each answer against the Microsoft.ContainerInstance and
//! Microsoft.Storage 2023-05-01 specs (`tests/specs/arm_spec.py`, reading
//! the models Microsoft generates from them and publishes on PyPI), so
//! neither what the binary sends nor what this fake answers can drift from
//! the spec unnoticed.
//!
//! `backend` is the real `AciCompute` pointed at a fake, with short timings.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dev8::compute::aci::{AciCompute, AciConfig, ReadinessProbe, Timing};
use dev8::compute::arm::RetryPolicy;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";
pub const RESOURCE_GROUP: &str = "dev8-rg";
pub const REGION: &str = "westeurope";
pub const ACCOUNT: &str = "dev8work";
pub const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
pub const CLIENT_ID: &str = "control-plane-app";
pub const CLIENT_SECRET: &str = "fake-client-secret";
pub const ACCOUNT_KEY: &str = "ZmFrZS1hY2NvdW50LWtleS1uZXZlci1sb2dnZWQ=";
pub const ACI_API: &str = "2023-05-01";
pub const REGISTRY: &str = "dev8test.azurecr.io";
pub const PULL_IDENTITY: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/dev8-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/dev8-env-pull";
pub const STORAGE_API: &str = "2023-05-01";

#[derive(Debug, Clone)]
pub struct Group {
    /// The body as PUT (secure values included), last write wins.
    pub spec: Value,
    pub provisioning: String,
    /// `instanceView.state` once provisioned.
    pub state: Option<String>,
    /// GETs left before a transitional provisioning state settles.
    pub polls_left: u32,
    pub fqdn: String,
}

/// A group's agent after a stop asked it for its final snapshot.
#[derive(Debug, Clone, Default)]
pub struct FakeAgent {
    /// Requests still to answer `saving`.
    pub asks_left: Option<u32>,
    pub saved_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Share {
    pub quota: u64,
    pub metadata: Value,
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<Method>,
    pub path_contains: String,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub times: u32,
}

/// One ARM request and the fake's answer, as they crossed the wire.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The request body (`Null` when empty; a body that is not JSON is kept as a string).
    pub request: Value,
    pub status: u16,
    /// The response body (`Null` when empty).
    pub response: Value,
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub groups: BTreeMap<String, Group>,
    pub shares: BTreeMap<String, Share>,
    /// Every ARM request: (method, path without query).
    pub log: Vec<(String, String)>,
    /// Every ARM request with its body and the answer (what `tests/it/aci.rs`
    /// checks against Azure's published specs).
    pub exchanges: Vec<Exchange>,
    /// Container-group PUT bodies, in order.
    pub group_puts: Vec<Value>,
    /// Shares ever created (first PUT), by name.
    pub shares_created: Vec<String>,
    /// Groups ever created (first PUT), by name.
    pub groups_created: Vec<String>,
    pub tokens: Vec<String>,
    pub token_requests: u32,
    pub faults: Vec<Fault>,
    /// Faults that were served.
    pub faults_served: u32,
    /// GETs a PUT/start takes to settle.
    pub boot_polls: u32,
    /// GETs a delete takes to finish.
    pub delete_polls: u32,
    /// Does the agent behind a running group answer readiness?
    pub agent_ready: bool,
    /// While not ready: the first-start step the agent names in its 503
    /// answer (`agent::healthz`: `{"status":"starting","step":...}`).
    pub agent_setup_step: Option<&'static str>,
    pub readiness_hits: Vec<String>,
    /// The agents asked for a final snapshot, by FQDN.
    pub agents: HashMap<String, FakeAgent>,
    /// How many more requests a final snapshot takes after the first
    /// (`None`: it never finishes).
    pub final_snapshot_asks: Option<u32>,
    /// Final snapshots taken, by FQDN, in order.
    pub final_snapshots: Vec<String>,
    /// Every `POST .../stop` of a running group: its name, and whether its
    /// agent had saved a final snapshot by then.
    pub stops: Vec<(String, bool)>,
    /// Blob containers in the workspace account.
    pub containers: std::collections::BTreeSet<String>,
    /// Containers ever created, by name.
    pub containers_created: Vec<String>,
    pub capability_requests: u32,
    /// The region's limit for Linux groups with a public IP.
    pub max_cpu: f64,
    /// Tokens issued for Key Vault's audience.
    pub vault_tokens: Vec<String>,
    /// The rest of the deployment (`fakes::deployment`): what `handler doctor` reads.
    pub deployment: crate::fakes::deployment::Deployment,
}

#[derive(Clone)]
pub struct ArmFake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FakeState>>,
}

impl ArmFake {
    pub async fn spawn() -> ArmFake {
        let state = Arc::new(Mutex::new(FakeState {
            boot_polls: 2,
            delete_polls: 1,
            agent_ready: true,
            agent_setup_step: None,
            final_snapshot_asks: Some(1),
            max_cpu: 4.0,
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        ArmFake { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn inject(
        &self,
        method: Option<Method>,
        path_contains: &str,
        status: u16,
        retry_after: Option<u64>,
        times: u32,
    ) {
        self.with(|s| {
            s.faults.push(Fault {
                method,
                path_contains: path_contains.to_string(),
                status,
                retry_after,
                times,
            })
        });
    }

    pub fn group(&self, name: &str) -> Option<Group> {
        self.with(|s| s.groups.get(name).cloned())
    }

    pub fn share(&self, name: &str) -> Option<Share> {
        self.with(|s| s.shares.get(name).cloned())
    }

    /// Requests whose method and path match, counted.
    pub fn count(&self, method: &str, path_suffix: &str) -> usize {
        self.with(|s| {
            s.log
                .iter()
                .filter(|(m, p)| m == method && p.ends_with(path_suffix))
                .count()
        })
    }

    /// An operator signs in with the Azure CLI (`az login`): the tokens `az
    /// account get-access-token` then prints for ARM and for Key Vault are
    /// ones Entra ID issued. Returns (ARM token, Key Vault token).
    pub fn operator_signs_in(&self) -> (String, String) {
        self.with(|s| {
            let arm = format!("operator-arm-token-{}", s.tokens.len() + 1);
            let vault = format!("operator-vault-token-{}", s.vault_tokens.len() + 1);
            s.tokens.push(arm.clone());
            s.vault_tokens.push(vault.clone());
            (arm, vault)
        })
    }

    /// Someone deletes the group in the portal.
    pub fn delete_group_outside(&self, name: &str) {
        self.with(|s| s.groups.remove(name));
    }

    /// Someone stops the group in the portal.
    pub fn stop_group_outside(&self, name: &str) {
        self.with(|s| {
            let g = s.groups.get_mut(name).expect("group exists");
            g.state = Some("Stopped".into());
        });
    }

    /// A group tagged as Dev8's appears without a record (a restore, a lost delete).
    pub fn add_group_outside(&self, name: &str, tags: Value) {
        self.with(|s| {
            s.groups.insert(
                name.to_string(),
                Group {
                    spec: json!({"location": REGION, "tags": tags, "properties": {"volumes": [{"name":"home","azureFile":{"shareName": name}}]}}),
                    provisioning: "Succeeded".into(),
                    state: Some("Running".into()),
                    polls_left: 0,
                    fqdn: fqdn_for(name),
                },
            );
            s.shares.insert(
                name.to_string(),
                Share {
                    quota: 20,
                    metadata: json!({}),
                },
            );
        });
    }
}

/// The FQDN ACI makes for a label with `TenantReuse`: label, a hash of
/// label and tenant, region.
pub fn fqdn_for(label: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{label}/{TENANT}").as_bytes());
    let hash: String = h.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{label}.{hash}.{REGION}.azurecontainer.io")
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The container group as ARM returns it: no secure values, server fields added.
fn view(name: &str, g: &Group) -> Value {
    let mut v = g.spec.clone();
    if let Some(cs) = v
        .pointer_mut("/properties/containers")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            if let Some(vars) = c
                .pointer_mut("/properties/environmentVariables")
                .and_then(Value::as_array_mut)
            {
                for var in vars {
                    if let Some(o) = var.as_object_mut() {
                        o.remove("secureValue");
                    }
                }
            }
        }
    }
    if let Some(vols) = v
        .pointer_mut("/properties/volumes")
        .and_then(Value::as_array_mut)
    {
        for vol in vols {
            if let Some(af) = vol.get_mut("azureFile").and_then(Value::as_object_mut) {
                af.remove("storageAccountKey");
            }
        }
    }
    v["name"] = json!(name);
    v["id"] = json!(format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.ContainerInstance/containerGroups/{name}"
    ));
    v["type"] = json!("Microsoft.ContainerInstance/containerGroups");
    if v.get("properties").is_none() {
        v["properties"] = json!({});
    }
    v["properties"]["provisioningState"] = json!(g.provisioning);
    if v.pointer("/properties/ipAddress").is_none() {
        v["properties"]["ipAddress"] = json!({});
    }
    v["properties"]["ipAddress"]["fqdn"] = json!(g.fqdn);
    if let Some(state) = &g.state {
        v["properties"]["instanceView"] = json!({"state": state, "events": []});
    }
    // Each container's own view, as the spec's ContainerGroupsList example
    // shows it (specification/containerinstance/resource-manager/
    // Microsoft.ContainerInstance/stable/2023-05-01/examples/ContainerGroupsList.json
    // at 40b12593b8f2c03cf8b8a6d8098b1f333a04a70f), with the events a start
    // produces (`ContainerEvent`: count, first/lastTimestamp, name, message,
    // type): `Pulling` while the group is being created, then `Pulled` and
    // `Started` once it runs.
    let current = match g.state.as_deref() {
        Some("Running") => "Running",
        Some("Stopped") => "Terminated",
        _ => "Waiting",
    };
    if let Some(cs) = v
        .pointer_mut("/properties/containers")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            let image = c
                .pointer("/properties/image")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let event = |name: &str, second: u32, message: String| {
                let at = format!("2026-11-28T10:00:{second:02}Z");
                json!({"count": 1, "firstTimestamp": at, "lastTimestamp": at,
                       "name": name, "message": message, "type": "Normal"})
            };
            let mut events = vec![event("Pulling", 1, format!("pulling image \"{image}\""))];
            if g.state.is_some() {
                events.push(event(
                    "Pulled",
                    5,
                    format!("Successfully pulled image \"{image}\""),
                ));
                events.push(event("Started", 7, "Started container".into()));
            }
            if c.pointer("/properties/instanceView").is_none()
                && let Some(p) = c.get_mut("properties").and_then(Value::as_object_mut)
            {
                p.insert(
                    "instanceView".into(),
                    json!({"restartCount": 0, "currentState": {"state": current, "detailStatus": ""}, "events": events}),
                );
            }
        }
    }
    v
}

/// A GET moves a transitional group one poll closer to settling.
fn poll(s: &mut FakeState, name: &str) {
    let Some(g) = s.groups.get_mut(name) else {
        return;
    };
    match g.provisioning.as_str() {
        "Creating" | "Pending" | "Updating" => {
            if g.polls_left == 0 {
                g.provisioning = "Succeeded".into();
                g.state = Some("Running".into());
            } else {
                g.polls_left -= 1;
            }
        }
        "Deleting" => {
            if g.polls_left == 0 {
                s.groups.remove(name);
            } else {
                g.polls_left -= 1;
            }
        }
        _ => {}
    }
}

fn transitional(g: &Group) -> bool {
    matches!(
        g.provisioning.as_str(),
        "Creating" | "Pending" | "Updating" | "Deleting"
    )
}

fn json_or_text(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Answers a request and, for ARM paths, records the exchange.
async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = respond(&state, &method, &uri, &headers, &body);
    if !uri.path().starts_with("/subscriptions/") {
        return response;
    }
    let (parts, out) = response.into_parts();
    let out = axum::body::to_bytes(out, usize::MAX)
        .await
        .unwrap_or_default();
    state.lock().unwrap().exchanges.push(Exchange {
        method: method.to_string(),
        path: uri.path().to_string(),
        request: json_or_text(&body),
        status: parts.status.as_u16(),
        response: json_or_text(&out),
    });
    Response::from_parts(parts, axum::body::Body::from(out))
}

fn respond(
    state: &Mutex<FakeState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let method = method.clone();
    let path = uri.path().to_string();
    let mut s = state.lock().unwrap();

    // The agent's readiness, on a group's FQDN.
    if path == "/_dev8/healthz" {
        let host = host_of(headers);
        s.readiness_hits.push(host.clone());
        let up = s.agent_ready
            && !s.agents.contains_key(&host)
            && s.groups.values().any(|g| {
                g.fqdn == host
                    && g.provisioning == "Succeeded"
                    && g.state.as_deref() == Some("Running")
            });
        let running = s.groups.values().any(|g| {
            g.fqdn == host && g.provisioning == "Succeeded" && g.state.as_deref() == Some("Running")
        });
        return match (up, s.agent_setup_step) {
            (true, _) => (StatusCode::OK, "ok").into_response(),
            // The agent is up and setting up its first start.
            (false, Some(step)) if running && !s.agents.contains_key(&host) => (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "starting", "step": step})),
            )
                .into_response(),
            _ => (StatusCode::BAD_GATEWAY, "").into_response(),
        };
    }

    if let Some(container) = path.strip_prefix(&format!("/{ACCOUNT}/")) {
        return blob_container(&mut s, &method, container, &query(uri));
    }

    if path == "/_dev8/final-snapshot" && method == Method::POST {
        return final_snapshot(&mut s, headers);
    }

    // Entra ID: client credentials.
    if method == Method::POST && path == format!("/{TENANT}/oauth2/v2.0/token") {
        s.token_requests += 1;
        let form: HashMap<String, String> = url_form(body);
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
            && form.get("scope").map(String::as_str)
                == Some("https://management.azure.com/.default");
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error":"invalid_client","error_description":"bad client credentials","error_codes":[7000215]})),
            )
                .into_response();
        }
        let token = format!("fake-arm-token-{}", s.tokens.len() + 1);
        s.tokens.push(token.clone());
        return axum::Json(json!({"token_type":"Bearer","expires_in":3600,"ext_expires_in":3600,"access_token":token})).into_response();
    }

    // Key Vault's data plane (`fakes::deployment`).
    if method == Method::GET && path.starts_with("/secrets/") {
        return crate::fakes::deployment::secret(&s, headers, &path, &query(uri));
    }

    // ARM: a token issued above, and an api-version.
    let bearer = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_string);
    if !bearer.is_some_and(|t| s.tokens.contains(&t)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "no valid bearer token",
        );
    }
    s.log.push((method.to_string(), path.clone()));
    let q = query(uri);

    // Injected faults come first.
    if let Some(i) = s.faults.iter().position(|f| {
        f.times > 0
            && f.method.as_ref().is_none_or(|m| *m == method)
            && path.contains(&f.path_contains)
    }) {
        s.faults[i].times -= 1;
        s.faults_served += 1;
        let f = s.faults[i].clone();
        let mut r = error(
            StatusCode::from_u16(f.status).unwrap(),
            if f.status == 429 {
                "TooManyRequests"
            } else {
                "InternalServerError"
            },
            "injected",
        );
        if let Some(secs) = f.retry_after {
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
        }
        return r;
    }

    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let Some(answer) = crate::fakes::deployment::respond(&mut s, &method, &seg, &q) {
        return answer;
    }
    let rg_prefix = [
        "subscriptions",
        SUBSCRIPTION,
        "resourceGroups",
        RESOURCE_GROUP,
        "providers",
    ];
    let api = q.get("api-version").cloned().unwrap_or_default();

    // Region capabilities.
    if seg.len() == 7
        && seg[..2] == ["subscriptions", SUBSCRIPTION]
        && seg[2..5] == ["providers", "Microsoft.ContainerInstance", "locations"]
        && seg[6] == "capabilities"
        && method == Method::GET
    {
        if api != ACI_API {
            return error(StatusCode::BAD_REQUEST, "InvalidApiVersionParameter", &api);
        }
        s.capability_requests += 1;
        return axum::Json(json!({"value": [
            {"resourceType":"containerGroups","osType":"Linux","location":"West Europe","ipAddressType":"Public","gpu":"None","capabilities":{"maxMemoryInGB":16.0,"maxCpu":s.max_cpu,"maxGpuCount":0.0}},
            {"resourceType":"containerGroups","osType":"Windows","location":"West Europe","ipAddressType":"Public","gpu":"None","capabilities":{"maxMemoryInGB":14.0,"maxCpu":4.0,"maxGpuCount":0.0}},
            {"resourceType":"containerGroups","osType":"Linux","location":"West Europe","ipAddressType":"Public","gpu":"V100","capabilities":{"maxMemoryInGB":112.0,"maxCpu":24.0,"maxGpuCount":4.0}}
        ]}))
        .into_response();
    }

    if seg.len() < 7 || seg[..5] != rg_prefix {
        return error(StatusCode::NOT_FOUND, "ResourceNotFound", "unknown path");
    }
    let rest = &seg[5..];
    match rest {
        ["Microsoft.ContainerInstance", "containerGroups"] if method == Method::GET => {
            if api != ACI_API {
                return error(StatusCode::BAD_REQUEST, "InvalidApiVersionParameter", &api);
            }
            let items: Vec<Value> = s.groups.iter().map(|(n, g)| view(n, g)).collect();
            axum::Json(json!({"value": items})).into_response()
        }
        [
            "Microsoft.ContainerInstance",
            "containerGroups",
            name,
            action @ ..,
        ] => {
            if api != ACI_API {
                return error(StatusCode::BAD_REQUEST, "InvalidApiVersionParameter", &api);
            }
            let name = name.to_string();
            group_call(&mut s, &method, &name, action, body)
        }
        ["Microsoft.Storage", "storageAccounts", acct, "listKeys"] if method == Method::POST => {
            if *acct != ACCOUNT || api != STORAGE_API {
                return error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such account");
            }
            axum::Json(json!({"keys": [
                {"keyName":"key1","value":ACCOUNT_KEY,"permissions":"Full"},
                {"keyName":"key2","value":"c2Vjb25kLWtleQ==","permissions":"Full"}
            ]}))
            .into_response()
        }
        [
            "Microsoft.Storage",
            "storageAccounts",
            acct,
            "fileServices",
            "default",
            "shares",
            share,
        ] => {
            if *acct != ACCOUNT || api != STORAGE_API {
                return error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such account");
            }
            let share = share.to_string();
            share_call(&mut s, &method, &share, body)
        }
        _ => error(StatusCode::NOT_FOUND, "ResourceNotFound", "unknown path"),
    }
}

fn url_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Create or Delete Container on the workspace account's Blob service (see
/// the module doc).
fn blob_container(
    s: &mut FakeState,
    method: &Method,
    name: &str,
    q: &HashMap<String, String>,
) -> Response {
    let need = match *method {
        Method::PUT => "c",
        Method::DELETE => "d",
        // List Blobs (the control plane's pruning at stop), with a container SAS.
        Method::GET if q.get("comp").map(String::as_str) == Some("list") => "l",
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    let has = |k: &str, v: &str| q.get(k).is_some_and(|x| decode(x).contains(v));
    let unexpired = q
        .get("se")
        .and_then(|se| chrono::DateTime::parse_from_rfc3339(&decode(se)).ok())
        .is_some_and(|se| se > chrono::Utc::now());
    let scoped = if need == "l" {
        has("sr", "c")
    } else {
        has("ss", "b") && has("srt", "c")
    };
    let authorised = scoped
        && has("sp", need)
        && q.get("sig").is_some_and(|s| !s.is_empty())
        && q.contains_key("sv")
        && unexpired;
    if q.get("restype").map(String::as_str) != Some("container") || name.contains('/') {
        return (StatusCode::BAD_REQUEST, "not a container operation").into_response();
    }
    if !authorised {
        return (StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch").into_response();
    }
    match *method {
        // Nothing of the agent's is stored here: an empty listing.
        Method::GET if s.containers.contains(name) => (
            StatusCode::OK,
            [("content-type", "application/xml")],
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ContainerName=\"{name}\"><Blobs /><NextMarker /></EnumerationResults>"
            ),
        )
            .into_response(),
        Method::GET => (StatusCode::NOT_FOUND, "ContainerNotFound").into_response(),
        Method::PUT if s.containers.contains(name) => {
            (StatusCode::CONFLICT, "ContainerAlreadyExists").into_response()
        }
        Method::PUT => {
            s.containers.insert(name.to_string());
            s.containers_created.push(name.to_string());
            StatusCode::CREATED.into_response()
        }
        _ if s.containers.remove(name) => StatusCode::ACCEPTED.into_response(),
        _ => (StatusCode::NOT_FOUND, "ContainerNotFound").into_response(),
    }
}

/// The host name a request for an agent names (a group's FQDN).
fn host_of(headers: &HeaderMap) -> String {
    headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_string()
}

/// The group's agent's answer to `POST /_dev8/final-snapshot` (see the module doc).
fn final_snapshot(s: &mut FakeState, headers: &HeaderMap) -> Response {
    let host = host_of(headers);
    let Some(g) = s.groups.values().find(|g| {
        g.fqdn == host && g.provisioning == "Succeeded" && g.state.as_deref() == Some("Running")
    }) else {
        return (StatusCode::BAD_GATEWAY, "").into_response();
    };
    let var = |name: &str| {
        g.spec
            .pointer("/properties/containers/0/properties/environmentVariables")
            .and_then(Value::as_array)
            .and_then(|vs| vs.iter().find(|v| v["name"] == name))
            .and_then(|v| v["secureValue"].as_str().or(v["value"].as_str()))
            .unwrap_or("")
            .to_string()
    };
    let (jwks, issuer, id) = (
        var("DEV8_AGENT_JWKS"),
        var("DEV8_AGENT_ISSUER"),
        var("DEV8_ENVIRONMENT_ID"),
    );
    let token = headers
        .get("x-dev8-authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let keys = serde_json::from_str(&jwks)
        .ok()
        .and_then(|j| dev8::auth::KeySet::verifier_from_jwks(&j).ok());
    let kind = dev8::auth::tokens::TokenKind::AgentControl;
    let valid = keys.is_some_and(|k| k.verify(token, kind, &kind.audience(&id), &issuer).is_ok());
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            "an agent-control token is required",
        )
            .into_response();
    }
    let asks = s.final_snapshot_asks;
    let agent = s.agents.entry(host.clone()).or_insert_with(|| FakeAgent {
        asks_left: asks,
        saved_at: None,
    });
    if agent.saved_at.is_none() {
        match agent.asks_left {
            Some(0) => {
                agent.saved_at = Some(chrono::Utc::now().to_rfc3339());
                s.final_snapshots.push(host.clone());
            }
            Some(n) => agent.asks_left = Some(n - 1),
            None => {}
        }
    }
    match &s.agents[&host].saved_at {
        Some(at) => (
            StatusCode::OK,
            axum::Json(json!({"state": "saved", "lastAt": at})),
        )
            .into_response(),
        None => (StatusCode::ACCEPTED, axum::Json(json!({"state": "saving"}))).into_response(),
    }
}

fn group_call(
    s: &mut FakeState,
    method: &Method,
    name: &str,
    action: &[&str],
    body: &[u8],
) -> Response {
    match (method.clone(), action) {
        (Method::GET, []) => {
            poll(s, name);
            match s.groups.get(name) {
                Some(g) => axum::Json(view(name, g)).into_response(),
                None => error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such group"),
            }
        }
        (Method::PUT, []) => {
            let spec: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => {
                    return error(StatusCode::BAD_REQUEST, "InvalidRequestContent", "not JSON");
                }
            };
            s.group_puts.push(spec.clone());
            let label = spec
                .pointer("/properties/ipAddress/dnsNameLabel")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string();
            let boot = s.boot_polls;
            match s.groups.get_mut(name) {
                Some(g) if transitional(g) => error(
                    StatusCode::CONFLICT,
                    "ContainerGroupTransitioning",
                    "The container group is transitioning; try again later",
                ),
                Some(g) => {
                    g.spec = spec;
                    let v = view(name, g);
                    let fqdn = g.fqdn.clone();
                    s.agents.remove(&fqdn);
                    axum::Json(v).into_response()
                }
                None => {
                    let g = Group {
                        spec,
                        provisioning: "Creating".into(),
                        state: None,
                        polls_left: boot,
                        fqdn: fqdn_for(&label),
                    };
                    let v = view(name, &g);
                    s.groups.insert(name.to_string(), g);
                    s.groups_created.push(name.to_string());
                    (StatusCode::CREATED, axum::Json(v)).into_response()
                }
            }
        }
        (Method::DELETE, []) => {
            let polls = s.delete_polls;
            match s.groups.get_mut(name) {
                None => StatusCode::NO_CONTENT.into_response(),
                Some(g) if g.provisioning == "Deleting" => StatusCode::ACCEPTED.into_response(),
                Some(g) => {
                    g.provisioning = "Deleting".into();
                    g.polls_left = polls;
                    StatusCode::ACCEPTED.into_response()
                }
            }
        }
        (Method::POST, ["start"]) => {
            let boot = s.boot_polls;
            match s.groups.get_mut(name) {
                None => error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such group"),
                Some(g) if transitional(g) => {
                    error(StatusCode::CONFLICT, "ContainerGroupTransitioning", "busy")
                }
                Some(g) => {
                    g.provisioning = "Pending".into();
                    g.state = Some("Pending".into());
                    g.polls_left = boot;
                    let fqdn = g.fqdn.clone();
                    s.agents.remove(&fqdn);
                    StatusCode::ACCEPTED.into_response()
                }
            }
        }
        (Method::POST, ["stop"]) => match s.groups.get_mut(name) {
            None => error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such group"),
            Some(g) if transitional(g) => {
                error(StatusCode::CONFLICT, "ContainerGroupTransitioning", "busy")
            }
            Some(g) => {
                let was_running = g.state.as_deref() == Some("Running");
                g.state = Some("Stopped".into());
                let fqdn = g.fqdn.clone();
                if was_running {
                    let saved = s.agents.get(&fqdn).is_some_and(|a| a.saved_at.is_some());
                    s.stops.push((name.to_string(), saved));
                }
                StatusCode::NO_CONTENT.into_response()
            }
        },
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "unsupported",
        ),
    }
}

fn share_call(s: &mut FakeState, method: &Method, name: &str, body: &[u8]) -> Response {
    let view = |name: &str, sh: &Share| {
        json!({"name": name, "type": "Microsoft.Storage/storageAccounts/fileServices/shares",
               "properties": {"shareQuota": sh.quota, "metadata": sh.metadata, "enabledProtocols": "SMB"}})
    };
    match method.clone() {
        Method::GET => match s.shares.get(name) {
            Some(sh) => axum::Json(view(name, sh)).into_response(),
            None => error(StatusCode::NOT_FOUND, "ShareNotFound", "no such share"),
        },
        Method::PUT => {
            let spec: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let Some(quota) = spec
                .pointer("/properties/shareQuota")
                .and_then(Value::as_u64)
            else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "shareQuota required",
                );
            };
            let sh = Share {
                quota,
                metadata: spec
                    .pointer("/properties/metadata")
                    .cloned()
                    .unwrap_or(json!({})),
            };
            let created = !s.shares.contains_key(name);
            let v = view(name, &sh);
            s.shares.insert(name.to_string(), sh);
            if created {
                s.shares_created.push(name.to_string());
                (StatusCode::CREATED, axum::Json(v)).into_response()
            } else {
                axum::Json(v).into_response()
            }
        }
        Method::DELETE => {
            let mounted = s.groups.values().any(|g| {
                g.spec
                    .pointer("/properties/volumes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|v| {
                        v.pointer("/azureFile/shareName").and_then(Value::as_str) == Some(name)
                    })
            });
            if mounted {
                return error(
                    StatusCode::CONFLICT,
                    "ShareInUse",
                    "a container group mounts this share",
                );
            }
            match s.shares.remove(name) {
                Some(_) => StatusCode::OK.into_response(),
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "unsupported",
        ),
    }
}

/// A `TokenCredential` transport for the tests: `azure_identity` insists on
/// an https authority host, so the credential is configured with
/// `https://login.fake.test` and this transport carries its requests to the
/// fake over loopback http (through the crate's own reqwest transport).
#[derive(Debug)]
pub struct LoopbackTransport {
    pub target: String,
    pub inner: dev8::azure_http::ReqwestTransport,
}

#[async_trait::async_trait]
impl azure_core::http::HttpClient for LoopbackTransport {
    async fn execute_request(
        &self,
        request: &azure_core::http::Request,
    ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
        let mut req = request.clone();
        let target = azure_core::http::Url::parse(&self.target).expect("fake URL");
        assert_eq!(
            req.url().host_str(),
            Some("login.fake.test"),
            "credential went elsewhere"
        );
        let url = req.url_mut();
        url.set_scheme("http").unwrap();
        url.set_host(target.host_str()).unwrap();
        url.set_port(target.port()).unwrap();
        self.inner.execute_request(&req).await
    }
}

/// A real `azure_identity::ClientSecretCredential` that gets its tokens from the fake.
pub fn credential(fake: &ArmFake) -> Arc<dyn azure_core::credentials::TokenCredential> {
    use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
    use azure_core::http::{ClientOptions, RetryOptions, Transport};
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = "https://login.fake.test".into();
    let options = ClientOptions {
        transport: Some(Transport::new(Arc::new(LoopbackTransport {
            target: fake.url(),
            inner: dev8::azure_http::ReqwestTransport::new().unwrap(),
        }))),
        retry: RetryOptions::none(),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        ..Default::default()
    };
    azure_identity::ClientSecretCredential::new(
        TENANT,
        CLIENT_ID.to_string(),
        CLIENT_SECRET.to_string().into(),
        Some(azure_identity::ClientSecretCredentialOptions {
            client_options: options,
        }),
    )
    .expect("credential")
}

/// A reqwest resolver sending every host name to loopback (the readiness
/// probe asks for `<fqdn>`; the fake answers by `Host`).
pub struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async {
            let addrs: reqwest::dns::Addrs =
                Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))));
            Ok(addrs)
        })
    }
}

fn config(fake: &ArmFake) -> AciConfig {
    AciConfig {
        subscription_id: SUBSCRIPTION.into(),
        resource_group: RESOURCE_GROUP.into(),
        region: REGION.into(),
        storage_account: ACCOUNT.into(),
        registry: REGISTRY.into(),
        image_tag: "1.2.3".into(),
        pull_identity: PULL_IDENTITY.into(),
        arm_endpoint: fake.url(),
    }
}

/// The ACI backend against `fake`: its credential gets tokens from the fake,
/// its readiness probe reaches the fake, retries and polls are quick.
pub fn backend(fake: &ArmFake) -> AciCompute {
    let probe_client = reqwest::Client::builder()
        .dns_resolver(Arc::new(Loopback))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    AciCompute::new(
        config(fake),
        credential(fake),
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        },
    )
    .unwrap()
    .with_readiness_probe(ReadinessProbe {
        client: probe_client,
        scheme: "http".into(),
        port: Some(fake.addr.port()),
    })
    .with_timing(Timing {
        poll_interval: Duration::from_millis(10),
        delete_budget: Duration::from_secs(1),
    })
    .with_blob_endpoint(&format!("{}/{ACCOUNT}", fake.url()))
}
