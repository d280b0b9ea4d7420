//! The local compute backend (`DEV8_COMPUTE=local`, the default for
//! `serve`): one `handler agent` child process per running environment,
//! which runs code-server on a Unix socket and itself listens on a Unix
//! socket, `<data_dir>/agents/<id>.sock`, in a folder only `serve`'s user
//! can enter (0700), never on a loopback port anyone could bind. Each
//! environment has a persistent home under `<data_dir>/environments/<id>/home`
//! (workspace, code-server settings and extensions, dotfiles), kept on stop
//! and removed on delete, and the address `http://e-<id>.localhost:<serve's
//! port>` (browsers resolve `*.localhost` to loopback), the same across
//! every stop and start: `serve`'s front door (`crate::frontdoor`) forwards
//! it to the socket this backend recorded in its `Doors` when it started
//! the agent, and to nothing else.
//!
//! Secrets reach the agent as environment variables, never arguments. Each
//! agent leads its own process group (code-server and its helpers stay in
//! it) and holds a pipe from this process on its standard input: if `serve`
//! dies, the agent sees the pipe close and stops. Every process of an
//! environment carries the `DEV8_ENVIRONMENT_ID` marker, so stop, delete,
//! restart and shutdown can end all of them. An agent that exits without
//! being asked asks for a reconcile at once, and so does one that becomes
//! ready (its `/_dev8/healthz?wait=` answers the moment code-server does),
//! so `running` follows readiness without a polling delay.

use super::{AgentParams, Compute, ComputeError, ComputeResult, HomeMode, starter};
use crate::agent_env::{self, PASSED_TO_IDE};
use crate::domain::{Environment, Observed, StepNote, steps};
use crate::frontdoor::{self, Doors};
use crate::procs;
use crate::reconciles::{ReconcileRequest, Reconciles};
use crate::snapshot::{self, store::FolderStore, store::SnapshotStore};
use crate::snapshot_grant::{self, BlobAccount, SnapshotGrant};
use anyhow::{Context, anyhow};
use async_trait::async_trait;
use rustix::process::Signal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The code-server version `scripts/setup.sh` installs.
pub const CODE_SERVER_VERSION: &str = "4.100.3";
/// Environment variables the agent inherits from `serve` beyond the ones it
/// passes on to code-server (`agent_env::PASSED_TO_IDE`): nothing
/// else, so no settings and no keys.
const AGENT_EXTRA_ENV: &[&str] = &["TMPDIR", "DEV8_LOG"];
/// How long a graceful agent stop may take before the process group is killed.
const STOP_GRACE: Duration = Duration::from_secs(8);
/// The same in snapshot mode, where the agent takes its final snapshot
/// after code-server stops: bounded, and inside the reconcile job's lease
/// (`domain::LEASE`, 2 minutes). An agent killed at the bound leaves its
/// previous snapshot whole.
const SNAPSHOT_STOP_GRACE: Duration = Duration::from_secs(90);
/// How many leftover snapshot objects one stop prunes at most (the next
/// stop goes on).
const PRUNE_BUDGET: usize = 200;
/// How long after start readiness is watched for (to enqueue a prompt reconcile).
const READY_WATCH: Duration = Duration::from_secs(120);
/// How long one readiness request asks the agent to hold its answer (the
/// agent holds it at most 30 s, `agent::MAX_READY_WAIT`).
const READY_LONG_POLL: Duration = Duration::from_secs(30);
/// How soon to ask a just-started agent again when it is not listening yet.
const AGENT_LISTEN_RETRY: Duration = Duration::from_millis(10);
/// How long a plain readiness question to an agent may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a Unix socket path may be (`sun_path` holds 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How the local backend runs agents.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// `serve`'s data folder; environments live in `environments/<id>` below it.
    pub data_dir: PathBuf,
    /// code-server's `out/node/entry.js`.
    pub code_server: PathBuf,
    /// The `handler` executable (started as `handler agent`).
    pub agent_exe: PathBuf,
    /// The `node` executable.
    pub node: PathBuf,
    /// Activity is pushed at most this often.
    pub activity_interval: Duration,
    /// How often user processes are sampled for CPU use.
    pub cpu_sample: Duration,
    /// How often agents check the sign-in sessions behind IDE sessions.
    pub session_check: Duration,
    /// How often agents send their periodic report (usage).
    pub report_interval: Duration,
    /// Snapshot mode: the periodic snapshot's interval.
    pub snapshot_interval: Duration,
    /// Snapshot mode: keep snapshots in a Blob container per environment in
    /// this account (Azurite), the agent reaching it with a SAS exactly as
    /// on ACI; `None`: a folder store.
    pub snapshot_blob: Option<BlobAccount>,
}

impl LocalOptions {
    /// Defaults for `serve`: code-server from `explicit` (DEV8_CODE_SERVER)
    /// or found by `find_code_server`, this executable as the agent.
    pub fn new(data_dir: &Path, explicit: Option<&Path>) -> anyhow::Result<Self> {
        let code_server = find_code_server(explicit, data_dir)?;
        tracing::info!(code_server = %code_server.display(), "code-server");
        Ok(LocalOptions {
            data_dir: data_dir.to_path_buf(),
            code_server,
            agent_exe: std::env::current_exe().context("locating the handler executable")?,
            node: find_node()?,
            activity_interval: Duration::from_secs(60),
            cpu_sample: Duration::from_secs(15),
            session_check: agent_env::DEFAULT_SESSION_CHECK,
            report_interval: Duration::from_secs(60),
            snapshot_interval: agent_env::DEFAULT_SNAPSHOT_INTERVAL,
            snapshot_blob: None,
        })
    }
}

/// code-server's entry below a folder that holds `tools/` (as
/// `scripts/setup.sh` lays it out).
pub fn tools_entry(root: &Path) -> PathBuf {
    root.join(format!(
        "tools/code-server-{CODE_SERVER_VERSION}/node_modules/code-server/out/node/entry.js"
    ))
}

/// Where code-server may be, in order, never relative to the current
/// folder: the data dir's `tools/`; next to the executable (`tools/` beside
/// it, or the project root of a `target/<profile>/handler` that
/// `scripts/setup.sh` built); the checkout this binary was built from.
pub fn code_server_candidates(data_dir: &Path, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut roots = vec![data_dir.to_path_buf()];
    if let Some(exe) = exe {
        roots.extend(exe.parent().map(Path::to_path_buf));
        // target/<profile>/handler -> the project root
        roots.extend(exe.ancestors().nth(3).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    roots.iter().map(|r| tools_entry(r)).collect()
}

/// Find code-server: the explicit setting, else the first candidate that exists.
pub fn find_code_server(explicit: Option<&Path>, data_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(
            p.is_file(),
            "DEV8_CODE_SERVER points to {}, which does not exist; run scripts/setup.sh --no-build to install code-server",
            p.display()
        );
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().ok();
    let tried = code_server_candidates(data_dir, exe.as_deref());
    tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        anyhow!(
            "code-server {CODE_SERVER_VERSION} is not installed (looked for {}). Run `scripts/setup.sh` once \
             (or `scripts/setup.sh --no-build`), or set DEV8_CODE_SERVER to code-server's out/node/entry.js",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `node` on PATH.
pub fn find_node() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "node is not on PATH; local environments need Node.js 20 (see scripts/setup.sh)"
            )
        })
}

/// One agent process this backend started.
struct AgentProc {
    pid: i32,
    /// The agent's Unix socket (its door in `Doors`).
    socket: PathBuf,
    /// How long a graceful stop may take.
    grace: Duration,
    /// Set before an intended stop, so the exit is not taken for a crash.
    expected: Arc<std::sync::atomic::AtomicBool>,
    /// Turns true once the process has exited.
    exited: watch::Receiver<bool>,
    /// The lifeline: dropping it tells the agent to stop.
    lifeline: Option<tokio::process::ChildStdin>,
}

impl AgentProc {
    fn alive(&self) -> bool {
        !*self.exited.borrow()
    }
}

pub struct LocalCompute {
    opts: LocalOptions,
    reconciles: Arc<dyn Reconciles>,
    agents: Mutex<HashMap<String, AgentProc>>,
    doors: Arc<Doors>,
}

impl LocalCompute {
    /// The backend; ends processes left behind by an earlier `serve` that did not shut down cleanly.
    pub fn new(opts: LocalOptions, reconciles: Arc<dyn Reconciles>) -> anyhow::Result<Self> {
        let envs = opts.data_dir.join("environments");
        std::fs::create_dir_all(&envs).with_context(|| format!("creating {}", envs.display()))?;
        for entry in std::fs::read_dir(&envs)?.flatten() {
            if let Some(id) = entry.file_name().to_str().filter(|id| valid_id(id)) {
                let n = procs::kill_marked(id, &[]);
                if n > 0 {
                    tracing::warn!(environment = %id, processes = n, "ended processes left from an earlier run");
                }
            }
        }
        // Sockets of agents an earlier run left are dead: clear them.
        let sockets = Self::sockets_dir_of(&opts.data_dir);
        let _ = std::fs::remove_dir_all(&sockets);
        prepare_private_dir(&sockets)?;
        Ok(LocalCompute {
            opts,
            reconciles,
            agents: Mutex::new(HashMap::new()),
            doors: Arc::new(Doors::default()),
        })
    }

    fn sockets_dir_of(data_dir: &Path) -> PathBuf {
        data_dir.join("agents")
    }

    /// The folder the agents' sockets are in (0700, `serve`'s user only).
    pub fn sockets_dir(&self) -> PathBuf {
        Self::sockets_dir_of(&self.opts.data_dir)
    }

    /// A fresh socket path for an agent of `id`: each agent process its own,
    /// so a late exit of an earlier one never closes a newer one's door.
    fn new_socket(&self, id: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sockets_dir().join(format!("{id}-{n}.sock"))
    }

    fn env_dir(&self, id: &str) -> PathBuf {
        self.opts.data_dir.join("environments").join(id)
    }

    /// An environment's home mode: the one its folders show (its snapshots
    /// folder, or its direct home, exists: so a record from before home
    /// modes, which reads as `share`, keeps the home it has), else the one
    /// its record was created with (`DEV8_LOCAL_HOME_MODE` at the time).
    pub fn home_mode(&self, env: &Environment) -> HomeMode {
        self.home_mode_on_disk(&env.id).unwrap_or(env.home_mode)
    }

    fn home_mode_on_disk(&self, id: &str) -> Option<HomeMode> {
        if self.snapshot_dir(id).is_dir() {
            Some(HomeMode::Snapshot)
        } else if self.env_dir(id).join("home").is_dir() {
            Some(HomeMode::Share)
        } else {
            None
        }
    }

    /// The home an environment's IDE uses: persistent (direct mode) or the
    /// scratch copy, wiped at every start and restored from the snapshots
    /// (snapshot mode).
    pub fn home(&self, id: &str) -> PathBuf {
        match self.home_mode_on_disk(id) {
            Some(HomeMode::Snapshot) => self.env_dir(id).join("scratch/home"),
            _ => self.env_dir(id).join("home"),
        }
    }

    /// Snapshot mode: the folder store of an environment's snapshots (with
    /// a Blob store, an empty folder that marks the mode).
    pub fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.env_dir(id).join("snapshots")
    }

    /// Snapshot mode: an environment's snapshots as the control plane
    /// reaches them (the folder, or its Blob container with a fresh SAS).
    pub fn snapshot_store(&self, id: &str) -> anyhow::Result<Box<dyn SnapshotStore>> {
        Ok(match &self.opts.snapshot_blob {
            Some(account) => Box::new(account.store(id, chrono::Utc::now())?),
            None => Box::new(FolderStore::new(self.snapshot_dir(id))),
        })
    }

    /// The pid of an environment's agent, if this backend runs one.
    pub fn agent_pid(&self, id: &str) -> Option<i32> {
        self.agents
            .lock()
            .expect("agents lock")
            .get(id)
            .filter(|a| a.alive())
            .map(|a| a.pid)
    }

    /// The environment's address, or an error while `serve` has not said its port.
    fn ide_origin(&self, id: &str) -> anyhow::Result<String> {
        self.doors
            .origin(id)
            .context("the front door's port is not known yet")
    }

    async fn prepare_home(
        &self,
        env: &Environment,
        grant: Option<&SnapshotGrant>,
    ) -> anyhow::Result<PathBuf> {
        let mode = self.home_mode(env);
        let mut fresh = false;
        if mode == HomeMode::Snapshot {
            // A new start gets empty local disk, as a new container group
            // would; the agent restores the home into it.
            let scratch = self.env_dir(&env.id).join("scratch");
            match std::fs::remove_dir_all(&scratch) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(
                        anyhow::Error::from(e).context(format!("clearing {}", scratch.display()))
                    );
                }
            }
            let store = self.snapshot_dir(&env.id);
            std::fs::create_dir_all(&store)
                .with_context(|| format!("creating {}", store.display()))?;
            let home = self.home(&env.id);
            std::fs::create_dir_all(&home)
                .with_context(|| format!("creating {}", home.display()))?;
            // Only a new environment gets the starter project.
            fresh = match grant {
                Some(g) => {
                    let blob = snapshot::blob::BlobStore::new(&g.container_url, g.sas.clone())?;
                    !snapshot::has_snapshot(&blob).await?
                }
                None => !snapshot::has_snapshot(&FolderStore::new(store)).await?,
            };
        }
        let home = self.home(&env.id);
        let workspace = home.join("workspace");
        if (mode == HomeMode::Share && !workspace.exists()) || fresh {
            std::fs::create_dir_all(&workspace)
                .with_context(|| format!("creating {}", workspace.display()))?;
            // An environment made from a repository starts with that alone
            // (the agent clones it on the first start).
            if env.repository.is_none() {
                for (path, text) in starter::files(env.base_image, &env.name) {
                    std::fs::write(workspace.join(path), text)?;
                }
            }
        }
        Ok(home)
    }

    async fn spawn(&self, env: &Environment, agent: &AgentParams) -> anyhow::Result<AgentProc> {
        let mode = self.home_mode(env);
        // A Blob store: the container exists and the agent gets its SAS.
        let grant = match (&self.opts.snapshot_blob, mode) {
            (Some(account), HomeMode::Snapshot) => Some(
                snapshot_grant::grant(account, &env.id, chrono::Utc::now())
                    .await
                    .context("granting the snapshot container")?,
            ),
            _ => None,
        };
        let home = self.prepare_home(env, grant.as_ref()).await?;
        procs::kill_marked(&env.id, &[]);
        let origin = self.ide_origin(&env.id)?;
        let socket = self.new_socket(&env.id);
        anyhow::ensure!(
            socket.as_os_str().len() <= MAX_SOCKET_PATH,
            "the agent's socket path {} is too long for a Unix socket; use a shorter data folder",
            socket.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.env_dir(&env.id).join("agent.log"))?;
        let mut cmd = tokio::process::Command::new(&self.opts.agent_exe);
        cmd.arg("agent").env_clear();
        for name in PASSED_TO_IDE.iter().chain(AGENT_EXTRA_ENV) {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        let listen = socket.to_string_lossy();
        let home_str = home.to_string_lossy();
        for v in agent_env::variables(&env.id, &listen, &home_str, super::agent_size(env), agent)
            .into_iter()
            .chain(super::setup_variables(env))
        {
            cmd.env(v.name.as_ref(), v.value);
        }
        cmd.env(agent_env::AGENT_ORIGIN, origin)
            // Locally the IDE's user is whoever runs `serve` (root included).
            .env(agent_env::IDE_AS_AGENT_USER, "true")
            .env(agent_env::CODE_SERVER, &self.opts.code_server)
            .env(agent_env::NODE, &self.opts.node)
            .env(
                agent_env::ACTIVITY_INTERVAL_MS,
                self.opts.activity_interval.as_millis().to_string(),
            )
            .env(
                agent_env::CPU_SAMPLE_MS,
                self.opts.cpu_sample.as_millis().to_string(),
            )
            .env(
                agent_env::SESSION_CHECK_MS,
                self.opts.session_check.as_millis().to_string(),
            )
            .env(
                agent_env::REPORT_INTERVAL_MS,
                self.opts.report_interval.as_millis().to_string(),
            )
            .env(agent_env::STDIN_LIFELINE, "true");
        if mode == HomeMode::Snapshot {
            match &grant {
                Some(g) => {
                    for v in g.variables() {
                        cmd.env(v.name.as_ref(), v.value);
                    }
                }
                None => {
                    cmd.env(agent_env::SNAPSHOT_DIR, self.snapshot_dir(&env.id));
                }
            }
            cmd.env(
                agent_env::SNAPSHOT_INTERVAL_MS,
                self.opts.snapshot_interval.as_millis().to_string(),
            );
        }
        cmd.current_dir(&home)
            .stdin(std::process::Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} agent", self.opts.agent_exe.display()))?;
        let pid = child
            .id()
            .map(|p| p as i32)
            .context("agent exited at once")?;
        let lifeline = child.stdin.take();
        let expected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (exited_tx, exited) = watch::channel(false);
        tracing::info!(environment = %env.id, pid, socket = %socket.display(), "agent started");
        self.doors.open(&env.id, &socket);

        // Exit watch: the door closes, and a crash asks for a reconcile at once.
        let (reconciles, request, id, exp, doors, door) = (
            self.reconciles.clone(),
            ReconcileRequest::now(&env.user_id, &env.id),
            env.id.clone(),
            expected.clone(),
            self.doors.clone(),
            socket.clone(),
        );
        tokio::spawn(async move {
            let status = child.wait().await;
            procs::signal_group(pid, Signal::KILL);
            doors.close(&id, &door);
            let _ = std::fs::remove_file(&door);
            let _ = exited_tx.send(true);
            if !exp.load(std::sync::atomic::Ordering::Acquire) {
                procs::kill_marked(&id, &[]);
                tracing::warn!(environment = %id, status = ?status.ok(), "agent exited unexpectedly; reconciling");
                if let Err(e) = reconciles.request(request).await {
                    tracing::error!(environment = %id, error = %format!("{e:#}"), "could not ask for a reconcile");
                }
            }
        });

        // Readiness watch: the agent holds `?wait=` until code-server
        // answers, and the reconcile is asked for the moment it does.
        let (reconciles, request, watched, mut gone) = (
            self.reconciles.clone(),
            ReconcileRequest::now(&env.user_id, &env.id),
            socket.clone(),
            exited.clone(),
        );
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + READY_WATCH;
            let wait = READY_LONG_POLL;
            let path = format!("/_dev8/healthz?wait={}", wait.as_millis());
            while tokio::time::Instant::now() < deadline && !*gone.borrow() {
                let asked = frontdoor::probe(&watched, &path, wait + Duration::from_secs(5));
                let answer = tokio::select! {
                    answer = asked => answer,
                    _ = gone.wait_for(|g| *g) => return,
                };
                let pause = match answer {
                    Ok((status, _)) if status.is_success() => {
                        let _ = reconciles.request(request).await;
                        return;
                    }
                    // Not ready within the wait: ask again at once.
                    Ok(_) => Duration::ZERO,
                    // Not listening yet (just started): try again shortly.
                    Err(_) => AGENT_LISTEN_RETRY,
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = gone.wait_for(|g| *g) => return,
                }
            }
        });
        Ok(AgentProc {
            pid,
            socket,
            grace: match mode {
                HomeMode::Share => STOP_GRACE,
                HomeMode::Snapshot => SNAPSHOT_STOP_GRACE,
            },
            expected,
            exited,
            lifeline,
        })
    }

    /// Stop one agent gracefully (lifeline closed + SIGTERM), then make sure
    /// nothing of the environment is left.
    async fn end(&self, id: &str) {
        let proc = self.agents.lock().expect("agents lock").remove(id);
        if let Some(mut a) = proc {
            self.doors.close(id, &a.socket);
            a.expected.store(true, std::sync::atomic::Ordering::Release);
            drop(a.lifeline.take());
            procs::signal(a.pid, Signal::TERM);
            if tokio::time::timeout(a.grace, a.exited.wait_for(|e| *e))
                .await
                .is_err()
            {
                tracing::warn!(environment = %id, "agent did not stop in time; killing its process group");
            }
            procs::signal_group(a.pid, Signal::KILL);
        }
        procs::kill_marked(id, &[]);
    }
}

/// Create `dir` (and its parents) and make it enterable by its owner only.
fn prepare_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

fn check_id(env: &Environment) -> ComputeResult<()> {
    if valid_id(&env.id) {
        Ok(())
    } else {
        Err(ComputeError::Permanent("invalid environment id".into()))
    }
}

#[async_trait]
impl Compute for LocalCompute {
    async fn observe(&self, env: &Environment) -> ComputeResult<Observed> {
        check_id(env)?;
        let socket = {
            let mut agents = self.agents.lock().expect("agents lock");
            match agents.get(&env.id) {
                Some(a) if a.alive() => Some(a.socket.clone()),
                Some(_) => {
                    if let Some(a) = agents.remove(&env.id) {
                        self.doors.close(&env.id, &a.socket);
                    }
                    None
                }
                None => None,
            }
        };
        let Some(socket) = socket else {
            return Ok(
                if self.home(&env.id).exists() || self.snapshot_dir(&env.id).exists() {
                    Observed::Stopped
                } else {
                    Observed::Absent
                },
            );
        };
        let health = frontdoor::probe(&socket, "/_dev8/healthz", HEALTH_TIMEOUT).await;
        Ok(match health {
            Ok((status, _)) if status.is_success() => Observed::Running {
                ide_url: format!(
                    "{}/",
                    self.ide_origin(&env.id).map_err(ComputeError::Transient)?
                ),
            },
            // The agent answers: it is setting up the first start (the step
            // it names), or code-server is up but not answering yet.
            Ok((_, body)) => {
                let named = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|b| {
                        b.get("step")
                            .and_then(serde_json::Value::as_str)
                            .and_then(steps::agent_step)
                    });
                Observed::Starting(Some(StepNote::new(named.unwrap_or(steps::WAITING_FOR_IDE))))
            }
            // The agent is not listening yet: it is still launching code-server.
            Err(_) => Observed::Starting(Some(StepNote::new(steps::STARTING_IDE))),
        })
    }

    async fn start(
        &self,
        env: &Environment,
        agent: &AgentParams,
    ) -> ComputeResult<serde_json::Value> {
        check_id(env)?;
        if let Some(a) = self
            .agents
            .lock()
            .expect("agents lock")
            .get(&env.id)
            .filter(|a| a.alive())
        {
            return Ok(serde_json::json!({"backend": "local", "pid": a.pid}));
        }
        let proc = self
            .spawn(env, agent)
            .await
            .map_err(ComputeError::Transient)?;
        let refs = serde_json::json!({"backend": "local", "pid": proc.pid});
        let old = self
            .agents
            .lock()
            .expect("agents lock")
            .insert(env.id.clone(), proc);
        if let Some(mut old) = old {
            // A dead entry replaced: make sure its group is gone too.
            old.expected
                .store(true, std::sync::atomic::Ordering::Release);
            drop(old.lifeline.take());
            procs::signal_group(old.pid, Signal::KILL);
        }
        Ok(refs)
    }

    async fn stop(&self, env: &Environment) -> ComputeResult<()> {
        check_id(env)?;
        self.end(&env.id).await;
        if self.home_mode(env) == HomeMode::Snapshot {
            // What the agent left behind (housekeeping: never fails the stop).
            let pruned = match self.snapshot_store(&env.id) {
                Ok(store) => {
                    snapshot::prune_leftovers(store.as_ref(), chrono::Utc::now(), PRUNE_BUDGET)
                        .await
                }
                Err(e) => Err(e),
            };
            match pruned {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(environment = %env.id, removed = n, "pruned leftover snapshot objects")
                }
                Err(e) => {
                    tracing::warn!(environment = %env.id, error = %format!("{e:#}"), "could not prune snapshots")
                }
            }
        }
        tracing::info!(environment = %env.id, "environment stopped");
        Ok(())
    }

    async fn delete(&self, env: &Environment) -> ComputeResult<()> {
        check_id(env)?;
        self.end(&env.id).await;
        if let Some(account) = &self.opts.snapshot_blob
            && self.home_mode(env) == HomeMode::Snapshot
        {
            // The container first: the folder marks the mode until it is gone,
            // so a redelivered delete after a failure here tries again.
            snapshot_grant::delete_container(account, &env.id, chrono::Utc::now())
                .await
                .map_err(ComputeError::Transient)?;
        }
        let dir = self.env_dir(&env.id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ComputeError::Transient(
                    anyhow::Error::from(e).context(format!("removing {}", dir.display())),
                ));
            }
        }
        tracing::info!(environment = %env.id, "environment deleted");
        Ok(())
    }

    fn front_door(&self) -> Option<Arc<Doors>> {
        Some(self.doors.clone())
    }

    async fn shutdown(&self) {
        let mut agents: Vec<(String, AgentProc)> =
            self.agents.lock().expect("agents lock").drain().collect();
        for (id, a) in &mut agents {
            self.doors.close(id, &a.socket);
            a.expected.store(true, std::sync::atomic::Ordering::Release);
            drop(a.lifeline.take());
            procs::signal(a.pid, Signal::TERM);
        }
        let grace = agents
            .iter()
            .map(|(_, a)| a.grace)
            .max()
            .unwrap_or(STOP_GRACE);
        let deadline = tokio::time::Instant::now() + grace;
        for (id, a) in &mut agents {
            let _ = tokio::time::timeout_at(deadline, a.exited.wait_for(|e| *e)).await;
            procs::signal_group(a.pid, Signal::KILL);
            procs::kill_marked(id, &[]);
        }
        if !agents.is_empty() {
            tracing::info!(agents = agents.len(), "stopped all environments");
        }
    }
}

impl Drop for LocalCompute {
    fn drop(&mut self) {
        // Last resort (a panic, a runtime torn down): no agent outlives its backend.
        let agents = std::mem::take(&mut *self.agents.lock().unwrap_or_else(|e| e.into_inner()));
        for (id, mut a) in agents {
            a.expected.store(true, std::sync::atomic::Ordering::Release);
            drop(a.lifeline.take());
            procs::signal_group(a.pid, Signal::KILL);
            procs::kill_marked(&id, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_server_is_looked_for_by_install_location_never_the_current_folder() {
        let data = Path::new("/srv/dev8-data");
        let exe = Path::new("/opt/dev8/target/release/handler");
        let got = code_server_candidates(data, Some(exe));
        assert_eq!(got[0], tools_entry(data));
        assert_eq!(got[1], tools_entry(Path::new("/opt/dev8/target/release")));
        assert_eq!(got[2], tools_entry(Path::new("/opt/dev8")));
        let cwd = std::env::current_dir().unwrap();
        assert!(
            !got.contains(&tools_entry(&cwd)) || cwd == Path::new(env!("CARGO_MANIFEST_DIR")),
            "the current folder is a candidate"
        );
    }
}
