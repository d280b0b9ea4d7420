//! The agent's environment-variable contract, in one place: the names the
//! agent reads (`config::AgentArgs`), what the compute backends set
//! (`compute::local` as process variables, `compute::aci` as container
//! variables, secrets as `secureValue`s), and the few variables that pass
//! on to code-server and the IDE's terminals. A leaf module.

use secrecy::{ExposeSecret, SecretString};
use std::borrow::Cow;

/// The environment this agent serves; also the marker on every process it
/// starts (`procs`). Not a secret.
pub const ENVIRONMENT_ID: &str = "DEV8_ENVIRONMENT_ID";
/// The environment's name as it was at this start: the IDE tab's title
/// names it (a rename shows at the next start). Not a secret.
pub const ENVIRONMENT_NAME: &str = "DEV8_ENVIRONMENT_NAME";
/// The agent token (`aud=agent:<id>`). Secret.
pub const AGENT_TOKEN: &str = "DEV8_AGENT_TOKEN";
/// The control plane's public keys (JWKS JSON) for IDE tickets.
pub const AGENT_JWKS: &str = "DEV8_AGENT_JWKS";
/// The issuer IDE tickets must name.
pub const AGENT_ISSUER: &str = "DEV8_AGENT_ISSUER";
/// Where the agent reaches the control plane.
pub const CONTROL_PLANE_URL: &str = "DEV8_CONTROL_PLANE_URL";
/// Where the agent listens: `host:port` (ACI, behind the TLS sidecar) or
/// an absolute path, a Unix socket (local, behind `serve`'s front door).
pub const AGENT_LISTEN: &str = "DEV8_AGENT_LISTEN";
/// The environment's origin as browsers see it (unset on ACI: from `Host`).
pub const AGENT_ORIGIN: &str = "DEV8_AGENT_ORIGIN";
/// The environment's persistent home.
pub const AGENT_HOME: &str = "DEV8_AGENT_HOME";
/// The non-root user code-server runs as (set by the image).
pub const IDE_USER: &str = "DEV8_IDE_USER";
/// Set by local compute only: the IDE runs as the agent's own user (the
/// person running `serve`), so an agent running as root without
/// `DEV8_IDE_USER` is not refused. ACI never sets it.
pub const IDE_AS_AGENT_USER: &str = "DEV8_IDE_AS_AGENT_USER";
/// code-server's entry.js.
pub const CODE_SERVER: &str = "DEV8_CODE_SERVER";
/// The node executable that runs code-server.
pub const NODE: &str = "DEV8_NODE";
/// Activity is pushed at most this often (milliseconds).
pub const ACTIVITY_INTERVAL_MS: &str = "DEV8_AGENT_ACTIVITY_INTERVAL_MS";
/// How often user processes are sampled for CPU use (milliseconds).
pub const CPU_SAMPLE_MS: &str = "DEV8_AGENT_CPU_SAMPLE_MS";
/// How often the agent checks the sign-in sessions behind its IDE sessions
/// with the control plane (milliseconds); unconfirmed for two intervals, a
/// session ends.
pub const SESSION_CHECK_MS: &str = "DEV8_AGENT_SESSION_CHECK_MS";
/// The default session check interval: a sign-out is felt within it (plus
/// one request), well inside a minute.
pub const DEFAULT_SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(30);
/// Stop when standard input closes (the local backend holds the other end).
pub const STDIN_LIFELINE: &str = "DEV8_AGENT_STDIN_LIFELINE";
/// The periodic report's interval (milliseconds).
pub const REPORT_INTERVAL_MS: &str = "DEV8_AGENT_REPORT_INTERVAL_MS";
/// Where usage is measured: `processes` (local) or `cgroup` (ACI).
pub const USAGE_SOURCE: &str = "DEV8_AGENT_USAGE_SOURCE";
/// Snapshot mode with a folder store: where the home's snapshots are kept.
pub const SNAPSHOT_DIR: &str = "DEV8_AGENT_SNAPSHOT_DIR";
/// Snapshot mode with a Blob store: the environment's own container
/// (`https://<account>.blob.core.windows.net/<prefix>-<id>`). Not a secret.
pub const SNAPSHOT_URL: &str = "DEV8_AGENT_SNAPSHOT_URL";
/// Snapshot mode with a Blob store: the service SAS for that one container
/// (a query string without `?`, minted by `snapshot_grant`). Secret: a
/// `secureValue` on ACI, never logged; renewed through the periodic
/// report's answer (`snapshotSas`).
pub const SNAPSHOT_SAS: &str = "DEV8_AGENT_SNAPSHOT_SAS";
/// Snapshot mode: the periodic snapshot's interval (milliseconds).
pub const SNAPSHOT_INTERVAL_MS: &str = "DEV8_AGENT_SNAPSHOT_INTERVAL_MS";
/// The default interval of periodic snapshots: 10 minutes. A full snapshot
/// of a few GB takes about a minute of one core and its upload (see
/// docs/performance.md): every 10 minutes keeps that to about a tenth of
/// the environment's time, and a crash loses at most those 10 minutes.
pub const DEFAULT_SNAPSHOT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
/// The environment's size: CPUs, memory (GB), workspace storage (GB).
pub const SIZE_CPUS: &str = "DEV8_AGENT_SIZE_CPUS";
pub const SIZE_MEMORY_GB: &str = "DEV8_AGENT_SIZE_MEMORY_GB";
pub const SIZE_STORAGE_GB: &str = "DEV8_AGENT_SIZE_STORAGE_GB";

/// The prefix the user's personal secrets travel under from the control
/// plane to the agent (`DEV8_SECRET_GITHUB_TOKEN` for `GITHUB_TOKEN`). The
/// agent strips it and hands them to code-server (so to every terminal and
/// task) under their own names; no secret's name may start with `DEV8_`, so
/// nothing else carries it.
pub const USER_SECRET_PREFIX: &str = "DEV8_SECRET_";
/// The repository to clone into the workspace on the first start. Not a
/// secret (the URL carries no credentials).
pub const REPOSITORY_URL: &str = "DEV8_REPOSITORY_URL";
/// The ref to check out in it (unset: the remote's default branch).
pub const REPOSITORY_REF: &str = "DEV8_REPOSITORY_REF";
/// The account's dotfiles repository, installed on the first start.
pub const DOTFILES_URL: &str = "DEV8_DOTFILES_URL";

/// What the record tells the agent: `(name, value)` for the environment's
/// name (`ENVIRONMENT_NAME`) and for each of what the first start sets up
/// (`REPOSITORY_URL`, `REPOSITORY_REF`, `DOTFILES_URL`) that has a value.
pub fn setup_variables(
    environment_name: &str,
    repository_url: Option<&str>,
    repository_ref: Option<&str>,
    dotfiles_url: Option<&str>,
) -> Vec<Variable> {
    [
        (ENVIRONMENT_NAME, Some(environment_name)),
        (REPOSITORY_URL, repository_url),
        (REPOSITORY_REF, repository_ref),
        (DOTFILES_URL, dotfiles_url),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        value.map(|v| Variable {
            name: name.into(),
            value: v.to_string(),
            secret: false,
        })
    })
    .collect()
}

/// Where an agent listens (`AGENT_LISTEN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    /// A Unix socket: only processes that can enter its folder reach it.
    Unix(std::path::PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with('/') {
            return Ok(Listen::Unix(s.into()));
        }
        s.parse()
            .map(Listen::Tcp)
            .map_err(|_| format!("{s} is neither host:port nor an absolute socket path"))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// An environment's size as the user chose it (the agent's usage limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub cpus: u8,
    pub memory_gb: u8,
    pub storage_gb: u16,
}

/// Variables code-server (and so every IDE terminal) inherits from the
/// agent; everything else is dropped.
pub const PASSED_TO_IDE: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TERM",
    "SHELL",
    "USER",
    "LOGNAME",
];

/// What the agent inside an environment needs to know at start. Passed to
/// the environment as secrets (environment variables, `secureValue`s), never
/// on a command line.
#[derive(Clone)]
pub struct AgentParams {
    /// Token the agent presents to the control plane (`aud=agent:<id>`).
    pub agent_token: String,
    /// The control plane's public keys (JWKS JSON) for verifying IDE tickets.
    pub jwks: String,
    /// Where the agent reaches the control plane.
    pub control_plane_url: String,
    /// The issuer tokens are checked against.
    pub issuer: String,
    /// The owner's personal secrets, opened: name and value.
    pub user_secrets: Vec<(String, SecretString)>,
}

impl std::fmt::Debug for AgentParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentParams")
            .field("agent_token", &"<redacted>")
            .field("control_plane_url", &self.control_plane_url)
            .field(
                "user_secrets",
                &self.user_secrets.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// One variable for the agent's environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: Cow<'static, str>,
    pub value: String,
    /// Secret values travel as ACI `secureValue`s and are never logged.
    pub secret: bool,
}

impl std::fmt::Debug for Variable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret {
            "<redacted>"
        } else {
            &self.value
        };
        write!(f, "{}={value}", self.name)
    }
}

/// The variables every backend sets: the environment's id, where the agent
/// listens, its home, its size, the control plane's secrets, and the user's
/// secrets (`USER_SECRET_PREFIX`), all marked secret.
pub fn variables(
    environment_id: &str,
    listen: &str,
    home: &str,
    size: Size,
    params: &AgentParams,
) -> Vec<Variable> {
    let plain = |name, value: &str| Variable {
        name: Cow::Borrowed(name),
        value: value.to_string(),
        secret: false,
    };
    let secret = |name, value: &str| Variable {
        name: Cow::Borrowed(name),
        value: value.to_string(),
        secret: true,
    };
    let user_secrets = params.user_secrets.iter().map(|(name, value)| Variable {
        name: Cow::Owned(format!("{USER_SECRET_PREFIX}{name}")),
        value: value.expose_secret().to_string(),
        secret: true,
    });
    let mut vars = vec![
        plain(ENVIRONMENT_ID, environment_id),
        plain(AGENT_LISTEN, listen),
        plain(AGENT_HOME, home),
        plain(SIZE_CPUS, &size.cpus.to_string()),
        plain(SIZE_MEMORY_GB, &size.memory_gb.to_string()),
        plain(SIZE_STORAGE_GB, &size.storage_gb.to_string()),
        secret(CONTROL_PLANE_URL, &params.control_plane_url),
        secret(AGENT_ISSUER, &params.issuer),
        secret(AGENT_JWKS, &params.jwks),
        secret(AGENT_TOKEN, &params.agent_token),
    ];
    vars.extend(user_secrets);
    vars
}

/// The user's secrets among `vars` (the agent's own environment), under
/// their own names: what the agent hands to code-server.
pub fn user_secrets_from<I>(vars: I) -> Vec<(String, std::ffi::OsString)>
where
    I: IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
{
    vars.into_iter()
        .filter_map(|(name, value)| {
            let name = name.to_str()?.strip_prefix(USER_SECRET_PREFIX)?.to_string();
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_marked_and_redacted_in_debug() {
        let params = AgentParams {
            agent_token: "tok-123".into(),
            jwks: "{}".into(),
            control_plane_url: "https://dev8.example".into(),
            issuer: "https://dev8.example".into(),
            user_secrets: vec![("GITHUB_TOKEN".into(), SecretString::from("ghp-456"))],
        };
        let size = Size {
            cpus: 2,
            memory_gb: 4,
            storage_gb: 20,
        };
        let vars = variables("e1", "0.0.0.0:8080", "/home/dev8", size, &params);
        let token = vars.iter().find(|v| v.name == AGENT_TOKEN).unwrap();
        assert!(token.secret);
        assert!(!format!("{vars:?}").contains("tok-123"));
        assert!(!format!("{params:?}").contains("tok-123"));
        let user = vars
            .iter()
            .find(|v| v.name == "DEV8_SECRET_GITHUB_TOKEN")
            .unwrap();
        assert!(user.secret && user.value == "ghp-456");
        assert!(!format!("{vars:?} {params:?}").contains("ghp-456"));
        assert!(format!("{params:?}").contains("GITHUB_TOKEN"));
        assert!(vars.iter().any(|v| v.name == ENVIRONMENT_ID && !v.secret));
    }

    #[test]
    fn the_agent_finds_the_user_secrets_under_their_own_names() {
        let os = |s: &str| std::ffi::OsString::from(s);
        let found = user_secrets_from([
            (os("DEV8_SECRET_NPM_TOKEN"), os("n")),
            (os("DEV8_AGENT_TOKEN"), os("agent")),
            (os("DEV8_SECRET_"), os("empty name")),
            (os("PATH"), os("/bin")),
        ]);
        assert_eq!(found, vec![("NPM_TOKEN".to_string(), os("n"))]);
    }

    #[test]
    fn an_agent_listens_on_a_tcp_address_or_an_absolute_socket_path() {
        assert_eq!(
            "127.0.0.1:8080".parse::<Listen>(),
            Ok(Listen::Tcp(([127, 0, 0, 1], 8080).into()))
        );
        assert_eq!(
            "/srv/dev8/agents/e1.sock".parse::<Listen>(),
            Ok(Listen::Unix("/srv/dev8/agents/e1.sock".into()))
        );
        assert!("agents/e1.sock".parse::<Listen>().is_err());
    }
}
