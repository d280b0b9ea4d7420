//! Typed settings. Every setting is an environment variable (Functions app
//! settings and `local.settings.json` Values arrive that way) and, for
//! `serve`, a flag too. Each one has a line in `local.settings.example.json`.

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
    /// code-server's entry (local compute); default: the project's tools folder.
    #[arg(long, env = "DEV8_CODE_SERVER")]
    pub code_server: Option<PathBuf>,
    /// Ed25519 keys `kid:base64url-seed,...`; the first signs, all verify.
    /// Generated into the data dir by serve when unset.
    #[arg(long, env = "DEV8_SIGNING_KEYS", value_parser = secret, hide_env_values = true)]
    pub signing_keys: Option<SecretString>,
    /// Sign-up policy.
    #[arg(long, env = "DEV8_SIGNUP", value_enum, default_value_t = SignupPolicy::First)]
    pub signup: SignupPolicy,
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
    /// Seconds between idle sweeps in serve (the Functions timer uses DEV8_SWEEP_SCHEDULE).
    #[arg(long, env = "DEV8_SWEEP_INTERVAL_SECONDS", default_value_t = 60)]
    pub sweep_interval_seconds: u64,
    /// NCRONTAB schedule of the timer-triggered sweep (read by the Functions host).
    #[arg(long, env = "DEV8_SWEEP_SCHEDULE", default_value = "0 */5 * * * *")]
    pub sweep_schedule: String,
    /// How many X-Forwarded-For hops to trust for client addresses.
    #[arg(long, env = "DEV8_TRUSTED_PROXY_HOPS", default_value_t = 0)]
    pub trusted_proxy_hops: usize,
    /// Milliseconds a reconcile in progress waits before looking again.
    #[arg(long, env = "DEV8_RECONCILE_INTERVAL_MS", default_value_t = 1000)]
    pub reconcile_interval_ms: u64,
    /// Folder holding the dashboard.
    #[arg(long, env = "DEV8_STATIC_DIR", default_value = "static-web")]
    pub static_dir: PathBuf,
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
