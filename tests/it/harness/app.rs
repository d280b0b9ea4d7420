//! `TestApp` and its builder: the real `Application` (router, jobs, store,
//! queue) on 127.0.0.1, port 0 unless told, with its state in a temporary
//! folder that is removed with the app. Which compute, clock and queue it
//! runs on, its settings and its run mode are parameters of this one builder.

use super::clock::{Clock, TestClock};
use crate::fakes::arm::{self, ArmFake};
use crate::fakes::compute::FakeCompute;
use crate::peers;
use dev8::compute::{LocalCompute, LocalOptions};
use dev8::config::{QueueKind, Settings, SignupPolicy};
use dev8::platform::JobContext;
use dev8::queue::{EmbeddedQueue, JobQueue};
use dev8::reconciles::QueueReconciles;
use dev8::startup::{Application, Overrides};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which `Compute` backend the app gets.
pub enum Compute {
    /// `FakeCompute`, a stateful stand-in (the default).
    Fake,
    /// A `FakeCompute` the test made, e.g. one cloud shared by two instances.
    SharedFake(Arc<FakeCompute>),
    /// The local backend: real `handler agent` and code-server processes
    /// (full tier). Implies `Clock::Offset`, `Queue::File` and the
    /// background worker, as `serve` runs it, unless set otherwise.
    Local(LocalOpts),
    /// The ACI backend against a fresh ARM fake (`fakes::arm`).
    Aci,
}

/// How the local backend's agents report (`LocalOptions` minus the paths).
pub struct LocalOpts {
    pub activity_interval: Duration,
    pub cpu_sample: Duration,
    /// How often agents check the sign-in sessions behind IDE sessions.
    pub session_check: Duration,
    /// How often agents send their periodic report (usage).
    pub report_interval: Duration,
    /// Where new environments' homes live (`DEV8_LOCAL_HOME_MODE`).
    pub home_mode: dev8::compute::HomeMode,
    /// Snapshot mode: the periodic snapshot's interval.
    pub snapshot_interval: Duration,
    /// Snapshot mode: a Blob store in this account (`peers::azurite::blob_account`)
    /// instead of a folder store; also what the control plane renews SAS from.
    pub snapshot_blob: Option<dev8::snapshot_grant::BlobAccount>,
}

impl Default for LocalOpts {
    fn default() -> Self {
        LocalOpts {
            activity_interval: Duration::from_secs(60),
            cpu_sample: Duration::from_secs(15),
            session_check: dev8::agent_env::DEFAULT_SESSION_CHECK,
            report_interval: Duration::from_secs(60),
            home_mode: dev8::compute::HomeMode::Share,
            snapshot_interval: dev8::agent_env::DEFAULT_SNAPSHOT_INTERVAL,
            snapshot_blob: None,
        }
    }
}

/// Which job queue the app gets.
pub enum Queue {
    /// The embedded queue in memory, on the app's clock (the default).
    Memory,
    /// The embedded queue in `queue.db` in the data folder (kept across a restart).
    File,
    /// A Storage queue of this name on Azurite (full tier).
    Storage(String),
    /// Whatever the settings say (for settings parsed from a command line).
    FromSettings,
}

/// How the app serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `handler serve`: the API and dashboard, and (with `background`) the
    /// worker and the sweep timer.
    Serve,
    /// `handler functions`: the custom-handler envelope (`dev8::host`).
    Functions,
}

type Configure = Box<dyn FnOnce(&mut Settings)>;

/// Settings as `serve` would have them from the environment, with sign-up
/// open (tests make several users), generated signing keys and the public
/// URL taken from the bound port.
pub fn test_settings() -> Settings {
    let mut s = Settings::from_env().expect("default settings parse");
    s.signup = SignupPolicy::Open;
    // Tests make many accounts on one machine (and mostly fake compute).
    s.local_shared_user = true;
    s.signing_keys = None;
    s.secrets_key = None;
    s.public_url = None;
    s
}

/// Why `serve` refuses to start with a test-only setting (set by
/// `configure`) where it does not belong: once on ACI, once on local compute
/// behind a public, non-loopback URL. One error text for each.
pub async fn refusals_off_loopback(configure: impl Fn(&mut Settings)) -> Vec<String> {
    let mut errors = Vec::new();
    for (compute, public_url) in [
        (dev8::config::ComputeKind::Aci, None),
        (
            dev8::config::ComputeKind::Local,
            Some("https://dev8.example.com".to_string()),
        ),
    ] {
        let mut settings = test_settings();
        configure(&mut settings);
        settings.compute = compute;
        settings.public_url = public_url;
        let dir = tempfile::tempdir().unwrap();
        let built = Application::build(settings, 0, dir.path(), Overrides::default()).await;
        errors.push(format!("{:#}", built.err().expect("refused at start-up")));
    }
    errors
}

pub struct Builder {
    compute: Compute,
    clock: Option<Clock>,
    queue: Option<Queue>,
    mode: Mode,
    background: Option<bool>,
    port: u16,
    data: Option<tempfile::TempDir>,
    configure: Vec<Configure>,
    behind_swa: bool,
}

impl Builder {
    pub fn compute(mut self, compute: Compute) -> Self {
        self.compute = compute;
        self
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn queue(mut self, queue: Queue) -> Self {
        self.queue = Some(queue);
        self
    }

    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Run the worker and the sweep timer in-process (default: only with
    /// `Compute::Local`; otherwise tests drive jobs with `settle`).
    pub fn background(mut self, on: bool) -> Self {
        self.background = Some(on);
        self
    }

    /// Listen on this port (default 0: any free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Change the settings; applied in order after the builder's own.
    pub fn settings(mut self, f: impl FnOnce(&mut Settings) + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// Serve behind the Static Web App stand-in (`fakes::swa`): the app's
    /// public URL and `TestApp::url` are the proxy's, which sets its own
    /// `Authorization` on every request; the request helpers then send
    /// bearer tokens in `X-Dev8-Authorization`, as API clients must there.
    pub fn behind_swa(mut self) -> Self {
        self.behind_swa = true;
        self
    }

    /// Start on an existing data folder (a restart of `serve`).
    pub fn data_dir(mut self, dir: tempfile::TempDir) -> Self {
        self.data = Some(dir);
        self
    }

    pub async fn spawn(self) -> TestApp {
        let local = matches!(self.compute, Compute::Local(_));
        let clock =
            TestClock::new(
                self.clock
                    .unwrap_or(if local { Clock::Offset } else { Clock::Manual }),
            );
        assert!(
            !(local && clock.kind() == Clock::Manual),
            "Compute::Local runs real processes on real time: use Clock::Offset"
        );
        let clock_dyn: Arc<dyn dev8::clock::Clock> = Arc::new(clock.clone());
        let data = match self.data {
            Some(d) => d,
            None => tempfile::tempdir().expect("temp dir"),
        };
        let mut settings = test_settings();
        if local {
            // The worker polls often, the sweep runs when a test says so,
            // and no dashboard is served.
            settings.reconcile_interval_ms = 200;
            settings.sweep_interval_seconds = 3600;
            settings.static_dir = Some(data.path().join("no-static"));
        }
        let queue_kind = self
            .queue
            .unwrap_or(if local { Queue::File } else { Queue::Memory });
        if let Queue::Storage(name) = &queue_kind {
            settings.queue_backend = QueueKind::Storage;
            settings.queue_name = name.clone();
        }
        let swa = if self.behind_swa {
            let pending = crate::fakes::swa::bind().await;
            settings.public_url = Some(pending.url.clone());
            Some(pending)
        } else {
            None
        };
        match &self.compute {
            // The home-mode rule follows the backend (`startup::policy`).
            Compute::Local(opts) => {
                settings.local_home_mode = opts.home_mode;
                settings.snapshot_interval_minutes =
                    (opts.snapshot_interval.as_secs() / 60).max(1) as u32;
            }
            Compute::Aci => settings.compute = dev8::config::ComputeKind::Aci,
            _ => {}
        }
        for f in self.configure {
            f(&mut settings);
        }
        let queue: Option<Arc<dyn JobQueue>> = match &queue_kind {
            Queue::Memory => Some(Arc::new(
                EmbeddedQueue::in_memory(&settings.queue_name, clock_dyn.clone())
                    .expect("in-memory queue"),
            )),
            Queue::File => Some(Arc::new(
                EmbeddedQueue::open(
                    &data.path().join("queue.db"),
                    &settings.queue_name,
                    clock_dyn.clone(),
                )
                .expect("queue file"),
            )),
            Queue::Storage(name) => Some(Arc::new(peers::azurite::storage_queue(name).await)),
            Queue::FromSettings => None,
        };
        let mut snapshot_grants: Option<Arc<dyn dev8::snapshot_grant::GrantAuthority>> = None;
        let (compute, backend): (ComputeHandle, Arc<dyn dev8::compute::Compute>) =
            match self.compute {
                Compute::Fake => {
                    let fake = Arc::new(FakeCompute::default());
                    (ComputeHandle::Fake(fake.clone()), fake)
                }
                Compute::SharedFake(fake) => (ComputeHandle::Fake(fake.clone()), fake),
                Compute::Local(opts) => {
                    let options = LocalOptions {
                        data_dir: data.path().to_path_buf(),
                        code_server: peers::code_server::entry(),
                        agent_exe: PathBuf::from(env!("CARGO_BIN_EXE_handler")),
                        node: peers::node(),
                        activity_interval: opts.activity_interval,
                        cpu_sample: opts.cpu_sample,
                        session_check: opts.session_check,
                        report_interval: opts.report_interval,
                        snapshot_interval: opts.snapshot_interval,
                        snapshot_blob: opts.snapshot_blob.clone(),
                    };
                    // The control plane renews SAS from the same account.
                    if let Some(a) = &opts.snapshot_blob {
                        settings.local_snapshot_blob_endpoint = Some(a.endpoint.clone());
                        settings.local_snapshot_blob_account = a.name.clone();
                        settings.local_snapshot_blob_key = Some(a.key.clone());
                        settings.snapshot_sas_protocol = a.protocol;
                        settings.snapshot_sas_lifetime_seconds = a.lifetime.as_secs() as u32;
                    }
                    let queue = queue
                        .clone()
                        .expect("Compute::Local needs a queue the test builds (not FromSettings)");
                    let reconciles = Arc::new(QueueReconciles::new(queue));
                    let local =
                        Arc::new(LocalCompute::new(options, reconciles).expect("local compute"));
                    (ComputeHandle::Local(local.clone()), local)
                }
                Compute::Aci => {
                    let fake = ArmFake::spawn().await;
                    let backend = Arc::new(arm::backend(&fake));
                    // It also renews its agents' snapshot SAS, as in `startup`.
                    snapshot_grants = Some(backend.clone());
                    (ComputeHandle::Aci(fake), backend)
                }
            };
        let background = self.mode == Mode::Serve && self.background.unwrap_or(local);
        let overrides = Overrides {
            store: None,
            queue,
            compute: Some(backend),
            clock: Some(clock_dyn),
            background: Some(background),
            log_mail: Some(self.mode == Mode::Serve),
            snapshot_grants,
        };
        let app = Application::build(settings, self.port, data.path(), overrides)
            .await
            .expect("app builds");
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let (url, platform, task) = match self.mode {
            Mode::Serve => {
                let url = format!("http://127.0.0.1:{}", app.port());
                let platform = app.jobs();
                (url, platform, tokio::spawn(app.run_until_stopped(stopped)))
            }
            Mode::Functions => {
                let (listener, platform) = app.into_parts();
                let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
                let task = tokio::spawn(dev8::host::serve(listener, platform.clone(), stopped));
                (url, platform, task)
            }
        };
        let (url, swa, bearer_header) = match swa {
            Some(pending) => {
                let proxy = pending.forward_to(&url);
                (
                    proxy.url.clone(),
                    Some(proxy),
                    dev8::http::extract::DEV8_AUTHORIZATION,
                )
            }
            None => (url, None, "authorization"),
        };
        TestApp {
            url,
            bearer_header,
            swa,
            platform,
            clock,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            compute,
            stop: Some(stop),
            task: Some(task),
            data: Some(data),
        }
    }
}

/// The compute backend as the test holds it.
enum ComputeHandle {
    Fake(Arc<FakeCompute>),
    Local(Arc<LocalCompute>),
    Aci(ArmFake),
}

pub struct TestApp {
    /// `http://127.0.0.1:<port>`: the API (serve) or the envelope
    /// (functions), or the Static Web App stand-in in front of it.
    pub url: String,
    /// The header `Auth::Bearer` sends its token in.
    pub bearer_header: &'static str,
    /// The Static Web App stand-in, when `behind_swa`; stops with the app.
    swa: Option<crate::fakes::swa::SwaProxy>,
    pub platform: Arc<JobContext>,
    pub clock: TestClock,
    /// Follows no redirects.
    pub client: reqwest::Client,
    compute: ComputeHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    // Last: removed once everything above is dropped.
    data: Option<tempfile::TempDir>,
}

impl TestApp {
    pub fn builder() -> Builder {
        Builder {
            compute: Compute::Fake,
            clock: None,
            queue: None,
            mode: Mode::Serve,
            background: None,
            port: 0,
            data: None,
            configure: Vec::new(),
            behind_swa: false,
        }
    }

    pub fn queue(&self) -> &Arc<dyn JobQueue> {
        &self.platform.queue
    }

    /// The app's data folder (`dev8.db`, the queue, local compute's folders).
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.as_ref().expect("data dir").path()
    }

    /// The fake backend (`Compute::Fake` or `SharedFake`).
    #[track_caller]
    pub fn fake(&self) -> &Arc<FakeCompute> {
        match &self.compute {
            ComputeHandle::Fake(f) => f,
            _ => panic!("this app does not run on FakeCompute"),
        }
    }

    /// The local backend (`Compute::Local`).
    #[track_caller]
    pub fn local(&self) -> &Arc<LocalCompute> {
        match &self.compute {
            ComputeHandle::Local(l) => l,
            _ => panic!("this app does not run on local compute"),
        }
    }

    /// The Static Web App stand-in in front of the app (`behind_swa`).
    #[track_caller]
    pub fn swa(&self) -> &crate::fakes::swa::SwaProxy {
        self.swa.as_ref().expect("this app is not behind_swa")
    }

    /// The ARM fake behind the ACI backend (`Compute::Aci`).
    #[track_caller]
    pub fn arm(&self) -> &ArmFake {
        match &self.compute {
            ComputeHandle::Aci(a) => a,
            _ => panic!("this app does not run on ACI"),
        }
    }

    /// Shut down as on SIGTERM (the job in progress finishes, agents are
    /// stopped), check it went cleanly, and hand back the data folder.
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("shutdown in time")
                .expect("server task")
                .expect("the app ran cleanly");
        }
        self.data.take().expect("data dir")
    }
}
