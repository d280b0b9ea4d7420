//! Typed settings. Every setting is an environment variable (Functions app
//! settings and `local.settings.json` Values arrive that way) and, for
//! `serve`, a flag too. Each one has a line in `local.settings.example.json`.

use crate::agent_env;
pub use crate::compute::HomeMode;
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "handler",
    version,
    about = "Dev8 control plane, environment agent and Functions custom handler"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything on one machine: API + dashboard, worker and sweep in-process.
    Serve(ServeArgs),
    /// The Azure Functions custom handler (what host.json starts).
    Functions(FunctionsArgs),
    /// Lay out the deployable Functions app in a folder and zip it.
    Package(PackageArgs),
    /// Check an Azure deployment with your own Azure CLI sign-in (`az login`):
    /// one line per check with its fix; exit status 1 when any fails.
    Doctor(DoctorArgs),
    /// The environment agent: code-server behind an authenticating proxy.
    /// Configured by environment variables only (it holds secrets).
    Agent(AgentArgs),
    /// Estimate one new password's strength (`serve`'s own child: the
    /// question on standard input, the answer on standard output).
    #[command(hide = true)]
    PasswordStrength,
}

/// The agent's settings. Set by the compute backend as environment variables
/// (ACI `secureValue`s); never passed as arguments.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The environment this agent serves (also the marker of its processes).
    #[arg(long, env = agent_env::ENVIRONMENT_ID, hide = true)]
    pub environment_id: String,
    /// The environment's name at this start (the IDE tab's title names it).
    #[arg(long, env = agent_env::ENVIRONMENT_NAME, hide = true)]
    pub environment_name: Option<String>,
    /// The agent token (`aud=agent:<id>`) for activity reports.
    #[arg(long, env = agent_env::AGENT_TOKEN, value_parser = secret, hide_env_values = true, hide = true)]
    pub agent_token: SecretString,
    /// The control plane's public keys (JWKS JSON).
    #[arg(long, env = agent_env::AGENT_JWKS, hide_env_values = true, hide = true)]
    pub jwks: String,
    /// The issuer IDE tickets must name.
    #[arg(long, env = agent_env::AGENT_ISSUER, hide = true)]
    pub issuer: String,
    /// Where browsers and the agent reach the control plane.
    #[arg(long, env = agent_env::CONTROL_PLANE_URL, hide = true)]
    pub control_plane_url: String,
    /// Where to listen: `host:port`, or an absolute path for a Unix socket.
    #[arg(
        long,
        env = agent_env::AGENT_LISTEN,
        default_value = "0.0.0.0:8080",
        hide = true
    )]
    pub listen: agent_env::Listen,
    /// The environment's origin as browsers see it (WebSocket Origin check, cookies).
    /// Unset on ACI, where the FQDN is only known once ARM assigns it: the agent
    /// then sits behind the group's TLS sidecar and its origin is `https://<Host>`.
    #[arg(long, env = agent_env::AGENT_ORIGIN, hide = true)]
    pub origin: Option<String>,
    /// Run code-server as this (non-root) user of the image; unset: as the agent's user.
    #[arg(long, env = agent_env::IDE_USER, hide = true)]
    pub ide_user: Option<String>,
    /// The IDE runs as the agent's own user even when that is root (local compute only).
    #[arg(
        long,
        env = agent_env::IDE_AS_AGENT_USER,
        default_value_t = false,
        hide = true
    )]
    pub ide_as_agent_user: bool,
    /// The environment's persistent home.
    #[arg(long, env = agent_env::AGENT_HOME, hide = true)]
    pub home: PathBuf,
    /// code-server's entry.js.
    #[arg(long, env = agent_env::CODE_SERVER, hide = true)]
    pub code_server: PathBuf,
    /// The node executable that runs code-server.
    #[arg(long, env = agent_env::NODE, default_value = "node", hide = true)]
    pub node: PathBuf,
    /// The repository the first start clones into the workspace.
    #[arg(long, env = agent_env::REPOSITORY_URL, hide = true)]
    pub repository_url: Option<String>,
    /// The ref the first start checks out in it.
    #[arg(long, env = agent_env::REPOSITORY_REF, hide = true)]
    pub repository_ref: Option<String>,
    /// The dotfiles repository the first start installs.
    #[arg(long, env = agent_env::DOTFILES_URL, hide = true)]
    pub dotfiles_url: Option<String>,
    /// Activity is pushed at most this often (milliseconds).
    #[arg(
        long,
        env = agent_env::ACTIVITY_INTERVAL_MS,
        default_value_t = 60_000,
        hide = true
    )]
    pub activity_interval_ms: u64,
    /// How often user processes are sampled for CPU use (milliseconds).
    #[arg(
        long,
        env = agent_env::CPU_SAMPLE_MS,
        default_value_t = 15_000,
        hide = true
    )]
    pub cpu_sample_ms: u64,
    /// How often the sign-in sessions behind the IDE sessions are checked
    /// with the control plane (milliseconds); a sign-out is felt within it.
    #[arg(
        long,
        env = agent_env::SESSION_CHECK_MS,
        default_value_t = agent_env::DEFAULT_SESSION_CHECK.as_millis() as u64,
        hide = true
    )]
    pub session_check_ms: u64,
    /// The periodic report (usage) is sent this often (milliseconds).
    #[arg(
        long,
        env = agent_env::REPORT_INTERVAL_MS,
        default_value_t = 60_000,
        hide = true
    )]
    pub report_interval_ms: u64,
    /// Where usage is measured: `processes` (local compute) or `cgroup` (ACI).
    #[arg(
        long,
        env = agent_env::USAGE_SOURCE,
        default_value = "processes",
        value_parser = ["processes", "cgroup"],
        hide = true
    )]
    pub usage_source: String,
    /// The environment's size in CPUs (usage is a share of it).
    #[arg(long, env = agent_env::SIZE_CPUS, default_value_t = 1, hide = true)]
    pub size_cpus: u8,
    /// The environment's memory in GB (the nominal limit locally).
    #[arg(long, env = agent_env::SIZE_MEMORY_GB, default_value_t = 2, hide = true)]
    pub size_memory_gb: u8,
    /// The environment's workspace storage in GB (the nominal size locally).
    #[arg(long, env = agent_env::SIZE_STORAGE_GB, default_value_t = 10, hide = true)]
    pub size_storage_gb: u16,
    /// Stop when standard input closes (set by the local compute backend).
    #[arg(
        long,
        env = agent_env::STDIN_LIFELINE,
        default_value_t = false,
        hide = true
    )]
    pub stdin_lifeline: bool,
    /// Snapshot mode with a folder store: the home is scratch space, kept as
    /// snapshots in this folder (local compute's `DEV8_LOCAL_HOME_MODE=snapshot`).
    #[arg(long, env = agent_env::SNAPSHOT_DIR, hide = true)]
    pub snapshot_dir: Option<PathBuf>,
    /// Snapshot mode with a Blob store: the environment's container (with
    /// `DEV8_AGENT_SNAPSHOT_SAS`; wins over a folder).
    #[arg(long, env = agent_env::SNAPSHOT_URL, hide = true)]
    pub snapshot_url: Option<String>,
    /// Snapshot mode with a Blob store: the container's SAS. Secret.
    #[arg(long, env = agent_env::SNAPSHOT_SAS, value_parser = secret, hide = true, hide_env_values = true)]
    pub snapshot_sas: Option<SecretString>,
    /// Snapshot mode: a full snapshot this often while running (milliseconds).
    #[arg(
        long,
        env = agent_env::SNAPSHOT_INTERVAL_MS,
        default_value_t = agent_env::DEFAULT_SNAPSHOT_INTERVAL.as_millis() as u64,
        hide = true
    )]
    pub snapshot_interval_ms: u64,
}

#[derive(Debug, Args)]
pub struct FunctionsArgs {
    /// Port the Functions host forwards to (127.0.0.1 only).
    #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT")]
    pub port: u16,
    /// Folder for local state (SQLite store, generated keys); unused with Cosmos DB and DEV8_SIGNING_KEYS.
    #[arg(long, env = "DEV8_DATA_DIR", default_value_os_t = std::env::temp_dir().join("dev8-functions"))]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub settings: Settings,
}

/// `handler doctor`: what to check. The deployment's settings are the
/// Function App's app settings: from `--settings`, else the environment.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The app settings as `az functionapp config appsettings list -g <group>
    /// -n <app> -o json` prints them (a JSON array of `{"name", "value"}`);
    /// unset: the environment (the same names).
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Key Vault's URL; default `https://<VaultName>.vault.azure.net`, the
    /// vault that `DEV8_SIGNING_KEYS`'s Key Vault reference names (give it
    /// for a sovereign cloud).
    #[arg(long)]
    pub vault_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// Folder to lay the app out in (created; a previous package there is replaced). The zip is `<out>.zip`.
    #[arg(long)]
    pub out: PathBuf,
    /// Project root holding host.json and functions/.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// The handler binary to ship (a Linux x86-64 release build); default: this binary.
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (127.0.0.1 only).
    #[arg(long, env = "DEV8_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Folder for the database, queue, keys and workspaces (created 0700).
    #[arg(long, env = "DEV8_DATA_DIR", default_value = ".dev8")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Cosmos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueKind {
    Embedded,
    Storage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ComputeKind {
    Local,
    Aci,
}

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignupPolicy {
    /// Anyone (subject to `DEV8_SIGNUP_DOMAINS`).
    Open,
    /// Only the first account; then closed. The default: `serve` is for one person.
    First,
    /// Nobody.
    Closed,
}

fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s.to_string()))
}

/// Settings shared by every control-plane run mode.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Origin of dashboard + API as browsers see it (CSRF Origin check, token
    /// issuer, agent callbacks). Default in serve: http://127.0.0.1:<port>.
    #[arg(long, env = "DEV8_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where state lives.
    #[arg(long, env = "DEV8_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
    #[command(flatten)]
    pub cosmos: CosmosSettings,
    /// Where jobs travel.
    #[arg(long, env = "DEV8_QUEUE_BACKEND", value_enum, default_value_t = QueueKind::Embedded)]
    pub queue_backend: QueueKind,
    /// The jobs queue (its poison queue is `<name>-poison`).
    #[arg(long, env = "DEV8_QUEUE_NAME", default_value = "env-jobs")]
    pub queue_name: String,
    /// What environments run on.
    #[arg(long, env = "DEV8_COMPUTE", value_enum, default_value_t = ComputeKind::Local)]
    pub compute: ComputeKind,
    /// With local compute every account's IDE runs as the OS user running
    /// `serve`, so any IDE can read the others' data (signing keys, database,
    /// workspaces) and become another account: only one account may exist
    /// unless this is set (`1`/`true`) to accept that.
    #[arg(long, env = "DEV8_LOCAL_SHARED_USER", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub local_shared_user: bool,
    /// code-server's entry (local compute); default: the project's tools folder.
    #[arg(long, env = "DEV8_CODE_SERVER")]
    pub code_server: Option<PathBuf>,
    /// Where a local environment's home lives: `direct` (a persistent folder,
    /// the default) or `snapshot` (a scratch folder wiped at every start,
    /// restored from and kept as snapshots in a folder store).
    #[arg(long, env = "DEV8_LOCAL_HOME_MODE", value_enum, default_value_t = HomeMode::Share)]
    pub local_home_mode: HomeMode,
    /// Snapshot mode: a full snapshot of a running environment's home this
    /// often (minutes); a crash loses at most this much work.
    #[arg(long, env = "DEV8_SNAPSHOT_INTERVAL_MINUTES",
          default_value_t = (agent_env::DEFAULT_SNAPSHOT_INTERVAL.as_secs() / 60) as u32,
          value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub snapshot_interval_minutes: u32,
    /// Snapshot mode with local compute: keep each environment's snapshots
    /// in a Blob container of this Blob service (Azurite's,
    /// `http://127.0.0.1:10000/devstoreaccount1`), the agent reaching it
    /// with a per-container SAS exactly as on ACI. Unset: a folder store.
    #[arg(long, env = "DEV8_LOCAL_SNAPSHOT_BLOB_ENDPOINT")]
    pub local_snapshot_blob_endpoint: Option<String>,
    /// The account of `DEV8_LOCAL_SNAPSHOT_BLOB_ENDPOINT`.
    #[arg(
        long,
        env = "DEV8_LOCAL_SNAPSHOT_BLOB_ACCOUNT",
        default_value = "devstoreaccount1"
    )]
    pub local_snapshot_blob_account: String,
    /// Its account key (base64); needed with the endpoint. Secret.
    #[arg(long, env = "DEV8_LOCAL_SNAPSHOT_BLOB_KEY", value_parser = secret, hide_env_values = true)]
    pub local_snapshot_blob_key: Option<SecretString>,
    /// Which protocols a snapshot SAS allows: `https` (the default), or
    /// `https,http` for an emulator reached over plain HTTP (never assumed).
    #[arg(long, env = "DEV8_SNAPSHOT_SAS_PROTOCOL", value_enum,
          default_value_t = crate::storage_sas::SasProtocol::Https)]
    pub snapshot_sas_protocol: crate::storage_sas::SasProtocol,
    /// How long an agent's snapshot SAS is valid (seconds); renewed through
    /// the periodic report once past half of it.
    #[arg(long, env = "DEV8_SNAPSHOT_SAS_LIFETIME_SECONDS",
          default_value_t = crate::snapshot_grant::DEFAULT_LIFETIME.as_secs() as u32,
          value_parser = clap::value_parser!(u32).range(10..=7 * 24 * 3600))]
    pub snapshot_sas_lifetime_seconds: u32,
    /// The control plane's Azure identity (Cosmos DB, Storage, ARM).
    #[command(flatten)]
    pub identity: crate::azure_http::IdentitySettings,
    /// Where environments run with DEV8_COMPUTE=aci.
    #[command(flatten)]
    pub aci: crate::compute::aci::AciSettings,
    /// Ed25519 keys `kid:base64url-seed,...`; the first signs, all verify.
    /// Generated into the data dir by serve when unset.
    #[arg(long, env = "DEV8_SIGNING_KEYS", value_parser = secret, hide_env_values = true)]
    pub signing_keys: Option<SecretString>,
    /// The key personal secrets are sealed with at rest: 32 bytes, base64
    /// (`openssl rand -base64 32`). Generated into the data dir
    /// (`secrets-key`) when unset; in Azure a Key Vault reference. Changing
    /// it makes the stored secrets unreadable.
    #[arg(long, env = "DEV8_SECRETS_KEY", value_parser = secret, hide_env_values = true)]
    pub secrets_key: Option<SecretString>,
    /// Sign-up policy.
    #[arg(long, env = "DEV8_SIGNUP", value_enum, default_value_t = SignupPolicy::First)]
    pub signup: SignupPolicy,
    /// A code the sign-up of the first account must give (Azure: generated
    /// into Key Vault as `dev8-setup-code`); unset, no code is asked for.
    #[arg(long, env = "DEV8_SETUP_CODE", value_parser = secret, hide_env_values = true)]
    pub setup_code: Option<SecretString>,
    /// Where new passwords' strength is estimated: the `handler` binary
    /// sets a child of itself (`auth::strength`); not a setting.
    #[arg(skip)]
    pub password_estimator: crate::auth::strength::Estimator,
    /// Optional comma-separated allowlist of email domains for sign-up.
    #[arg(long, env = "DEV8_SIGNUP_DOMAINS", value_delimiter = ',')]
    pub signup_domains: Vec<String>,
    #[arg(long, env = "DEV8_MAX_ENVIRONMENTS_PER_USER", default_value_t = 10)]
    pub max_environments_per_user: usize,
    #[arg(long, env = "DEV8_MAX_RUNNING_PER_USER", default_value_t = 5)]
    pub max_running_per_user: usize,
    #[arg(long, env = "DEV8_MAX_RUNNING_TOTAL", default_value_t = 50)]
    pub max_running_total: usize,
    /// Default idle timeout for new environments (5-480).
    #[arg(long, env = "DEV8_IDLE_TIMEOUT_MINUTES", default_value_t = 30,
          value_parser = clap::value_parser!(u16).range(5..=480))]
    pub idle_timeout_minutes: u16,
    /// Minutes before an idle stop that the person is warned (in VS Code and on
    /// the dashboard); unset: 5 minutes or a third of the timeout, whichever is less.
    #[arg(long, env = "DEV8_IDLE_WARNING_MINUTES",
          value_parser = clap::value_parser!(u16).range(1..=480))]
    pub idle_warning_minutes: Option<u16>,
    /// Seconds between idle sweeps in serve (the Functions timer uses DEV8_SWEEP_SCHEDULE).
    #[arg(long, env = "DEV8_SWEEP_INTERVAL_SECONDS", default_value_t = 60)]
    pub sweep_interval_seconds: u64,
    /// NCRONTAB schedule of the timer-triggered sweep (read by the Functions host).
    #[arg(long, env = "DEV8_SWEEP_SCHEDULE", default_value = "0 */5 * * * *")]
    pub sweep_schedule: String,
    /// How many X-Forwarded-For hops to trust for client addresses.
    #[arg(long, env = "DEV8_TRUSTED_PROXY_HOPS", default_value_t = 0)]
    pub trusted_proxy_hops: usize,
    /// Bearer token for `GET /metrics` (serve) when the scraper is not a direct
    /// loopback peer: sent as `Authorization` or `X-Dev8-Authorization: Bearer <token>`.
    /// Unset: only a loopback peer with no proxy in front may scrape.
    #[arg(long, env = "DEV8_METRICS_TOKEN", value_parser = secret, hide_env_values = true)]
    pub metrics_token: Option<SecretString>,
    /// Application Insights to send metrics and request/job traces to
    /// (OpenTelemetry); unset: nothing is exported. Set by infra in Azure.
    #[arg(long = "appinsights-connection-string", env = "APPLICATIONINSIGHTS_CONNECTION_STRING",
          value_parser = secret, hide_env_values = true)]
    pub appinsights_connection_string: Option<SecretString>,
    /// TEST ONLY: also accept `http://127.0.0.1:<port>/…` as a repository or
    /// dotfiles URL (the tests' git server). Refused at start-up unless
    /// compute is local and the public URL is on loopback.
    #[arg(long, env = "DEV8_TEST_ALLOW_LOOPBACK_GIT", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub test_allow_loopback_git: bool,
    /// TEST ONLY: an idle timeout's minute lasts this many seconds (1-60),
    /// so an end-to-end test can watch a real sweep stop an environment
    /// (the idle warning's lead shrinks alike). Refused at start-up unless
    /// compute is local and the public URL is on loopback.
    #[arg(long, env = "DEV8_TEST_IDLE_MINUTE_SECONDS",
          value_parser = clap::value_parser!(u16).range(1..=60))]
    pub test_idle_minute_seconds: Option<u16>,
    /// Milliseconds a reconcile in progress waits before looking again.
    #[arg(long, env = "DEV8_RECONCILE_INTERVAL_MS", default_value_t = 1000)]
    pub reconcile_interval_ms: u64,
    /// Serve the dashboard from this folder (development); unset: the copy
    /// of static-web/ embedded in the binary.
    #[arg(long, env = "DEV8_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// The Storage account for queues (DEV8_QUEUE_BACKEND=storage).
    #[command(flatten)]
    pub storage: crate::queue::StorageSettings,
    /// The external sign-in providers (GitHub, one OpenID Connect provider).
    #[command(flatten)]
    pub oauth: crate::auth::oauth::OAuthSettings,
    /// The SMTP server for confirmation mail (`DEV8_SMTP_*`).
    #[command(flatten)]
    pub smtp: crate::mail::SmtpSettings,
}

/// The Cosmos DB account (`DEV8_STORE=cosmos`).
#[derive(Debug, Clone, Args)]
pub struct CosmosSettings {
    /// Account endpoint, e.g. https://<account>.documents.azure.com/ (http:// only for a local emulator).
    #[arg(long = "cosmos-endpoint", env = "COSMOS_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Account key, for emulators only; unset in Azure, where the managed identity is used.
    #[arg(long = "cosmos-key", env = "COSMOS_KEY", value_parser = secret, hide_env_values = true)]
    pub key: Option<SecretString>,
    /// Database holding the containers.
    #[arg(
        long = "cosmos-database",
        env = "COSMOS_DATABASE",
        default_value = "dev8"
    )]
    pub database: String,
    /// Create the database and containers at start when missing (key auth
    /// only; in Azure the infra creates them).
    #[arg(long = "cosmos-create-containers", env = "DEV8_COSMOS_CREATE_CONTAINERS", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub create_containers: bool,
}

impl Settings {
    /// `DEV8_SNAPSHOT_INTERVAL_MINUTES` as a duration.
    pub fn snapshot_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.snapshot_interval_minutes) * 60)
    }

    /// The Blob account local compute keeps snapshots in
    /// (`DEV8_LOCAL_SNAPSHOT_BLOB_*`), if one is set.
    pub fn local_snapshot_account(
        &self,
    ) -> anyhow::Result<Option<crate::snapshot_grant::BlobAccount>> {
        let Some(endpoint) = self.local_snapshot_blob_endpoint.as_deref() else {
            return Ok(None);
        };
        let key = self.local_snapshot_blob_key.clone().ok_or_else(|| {
            anyhow::anyhow!("DEV8_LOCAL_SNAPSHOT_BLOB_ENDPOINT needs DEV8_LOCAL_SNAPSHOT_BLOB_KEY")
        })?;
        let account = crate::snapshot_grant::BlobAccount {
            name: self.local_snapshot_blob_account.clone(),
            key,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            protocol: self.snapshot_sas_protocol,
            prefix: crate::snapshot_grant::DEFAULT_PREFIX.to_string(),
            lifetime: std::time::Duration::from_secs(u64::from(self.snapshot_sas_lifetime_seconds)),
        };
        account
            .check()
            .map_err(|e| e.context("DEV8_LOCAL_SNAPSHOT_BLOB_*"))?;
        Ok(Some(account))
    }

    /// Every secret value these settings hold, and every long piece of one
    /// (a connection string's key, one signing key's seed), for keeping them
    /// out of text that is shown (`host`'s not-ready answer).
    pub fn secret_values(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let all = [
            &self.signing_keys,
            &self.secrets_key,
            &self.setup_code,
            &self.cosmos.key,
            &self.metrics_token,
            &self.appinsights_connection_string,
            &self.storage.connection_string,
            &self.oauth.github_client_secret,
            &self.oauth.oidc_client_secret,
            &self.smtp.smtp_password,
            &self.local_snapshot_blob_key,
        ];
        let mut out = Vec::new();
        for s in all.into_iter().flatten() {
            let s = s.expose_secret();
            if !s.is_empty() {
                out.push(s.to_string());
            }
            // The values of `k=v;…` (connection strings) and `kid:seed,…`
            // (signing keys); not their names, and not endpoint URLs.
            for part in s.split([';', ',']) {
                let value = part.split_once('=').map_or(part, |(_, v)| v);
                let value = match value.split_once(':') {
                    Some((_, rest)) if !rest.starts_with("//") => rest,
                    _ => value,
                };
                if value.len() >= 12 && !value.contains("://") {
                    out.push(value.to_string());
                }
            }
        }
        // Longest first, so a whole value is replaced before its pieces.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }

    /// Settings from the environment alone (no flags), as the Functions host gives them.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            s: Settings,
        }
        Only::try_parse_from(["handler"]).map(|o| o.s)
    }
}

/// Settings from a map of app settings (name -> value, as the Functions
/// app has them): each named setting is given as its flag, so the map wins
/// over the environment; unknown names and empty values are ignored.
pub fn settings_from_map(
    map: &std::collections::BTreeMap<String, String>,
) -> Result<Settings, clap::Error> {
    use clap::CommandFactory;
    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        s: Settings,
    }
    let mut args = vec!["handler".to_string()];
    for a in Only::command().get_arguments() {
        let (Some(env), Some(long)) = (a.get_env(), a.get_long()) else {
            continue;
        };
        // An empty app setting is an unset one (infra sets optional ones empty).
        if let Some(v) = map
            .get(env.to_string_lossy().as_ref())
            .filter(|v| !v.is_empty())
        {
            args.push(format!("--{long}={v}"));
        }
    }
    Only::try_parse_from(args).map(|o| o.s)
}

/// The environment variables the control plane reads (infra must set them;
/// `tests/it/infra_settings.rs` checks).
pub fn setting_names() -> Vec<String> {
    use clap::CommandFactory;
    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        _s: Settings,
    }
    Only::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}
