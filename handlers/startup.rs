//! Wiring: settings -> adapters -> `Platform`, once, at start; and the
//! `Application` that binds its own listener (port 0 in tests) and runs the
//! HTTP server, the worker and the sweep timer until shut down.

use crate::auth::KeySet;
use crate::auth::oauth::Providers;
use crate::auth::ratelimit::Limit;
use crate::azure_http::Identity;
use crate::clock::{Clock, SystemClock};
use crate::compute::{Compute, LocalCompute, LocalOptions};
use crate::config::{ComputeKind, QueueKind, Settings, StoreKind};
use crate::domain::{HomeModeRule, IdleRules, UrlRules};
use crate::jobs::{sweep, worker};
use crate::metrics::Metrics;
use crate::platform::{JobContext, Platform, Policy};
use crate::queue::{EmbeddedQueue, JobQueue, StorageQueue};
use crate::quota::Limits;
use crate::reconciles::{QueueReconciles, Reconciles};
use crate::sealing::SecretsKey;
use crate::store::{CosmosConfig, CosmosStore, SqliteStore, Store};
use anyhow::Context;
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Adapters given from outside instead of built from settings (tests).
#[derive(Default)]
pub struct Overrides {
    pub store: Option<Arc<dyn Store>>,
    pub queue: Option<Arc<dyn JobQueue>>,
    pub compute: Option<Arc<dyn Compute>>,
    pub clock: Option<Arc<dyn Clock>>,
    /// Run the worker and sweep in-process (serve: yes; tests driving jobs by hand: no).
    pub background: Option<bool>,
    /// Without SMTP, write confirmation mail into the log (serve: yes;
    /// `functions`: no, password sign-up under an allowlist is refused).
    pub log_mail: Option<bool>,
    /// Where snapshot SAS renewals come from, with an overridden `compute`
    /// (tests: the ACI backend on the ARM fake).
    pub snapshot_grants: Option<Arc<dyn crate::snapshot_grant::GrantAuthority>>,
}

pub struct Application {
    listener: TcpListener,
    jobs: Arc<JobContext>,
    static_dir: Option<PathBuf>,
    background: bool,
    sweep_interval: Duration,
}

/// Create the data dir readable by its owner only.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn policy(settings: &Settings, public_url: String) -> Policy {
    Policy {
        public_url: public_url.trim_end_matches('/').to_string(),
        signup: settings.signup,
        setup_code: settings.setup_code.clone(),
        one_account: settings.compute == ComputeKind::Local && !settings.local_shared_user,
        signup_domains: settings
            .signup_domains
            .iter()
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect(),
        quotas: Limits {
            environments_per_user: settings.max_environments_per_user,
            running_per_user: settings.max_running_per_user,
            running_total: settings.max_running_total,
        },
        default_idle_minutes: settings.idle_timeout_minutes,
        git_url_rules: if settings.test_allow_loopback_git {
            UrlRules::AlsoLoopbackHttp
        } else {
            UrlRules::Public
        },
        idle: IdleRules {
            minute: settings.test_idle_minute_seconds.map_or_else(
                || chrono::Duration::minutes(1),
                |s| chrono::Duration::seconds(i64::from(s)),
            ),
            warning_minutes: settings.idle_warning_minutes,
        },
        reconcile_interval: Duration::from_millis(settings.reconcile_interval_ms.max(50)),
        home_modes: match settings.compute {
            ComputeKind::Local => HomeModeRule::Always(settings.local_home_mode),
            ComputeKind::Aci => HomeModeRule::FitsLocalDisk {
                local_disk_gb: settings.aci.local_disk_gb,
            },
        },
        snapshot_interval: settings.snapshot_interval(),
        trusted_proxy_hops: settings.trusted_proxy_hops,
        metrics_token: settings.metrics_token.clone(),
        session_hours: 12,
        signin_limit_per_account: Limit {
            max: 10,
            window: chrono::Duration::minutes(15),
        },
        signin_limit_per_address: Limit {
            max: 50,
            window: chrono::Duration::minutes(15),
        },
        signin_limit_unknown: Limit {
            max: 500,
            window: chrono::Duration::minutes(15),
        },
        password_estimator: settings.password_estimator.clone(),
    }
}

/// The test-only settings: `DEV8_TEST_ALLOW_LOOPBACK_GIT` opens repository
/// URLs to the machine's own loopback, `DEV8_TEST_IDLE_MINUTE_SECONDS`
/// shortens the idle timeout's minute; each only where that is the
/// person's own machine anyway (local compute, the control plane on
/// loopback).
fn check_test_settings(settings: &Settings, public_url: &str) -> anyhow::Result<()> {
    let set: Vec<&str> = [
        (
            settings.test_allow_loopback_git,
            "DEV8_TEST_ALLOW_LOOPBACK_GIT",
        ),
        (
            settings.test_idle_minute_seconds.is_some(),
            "DEV8_TEST_IDLE_MINUTE_SECONDS",
        ),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if set.is_empty() {
        return Ok(());
    }
    let loopback = url::Url::parse(public_url).is_ok_and(|u| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    });
    anyhow::ensure!(
        settings.compute == ComputeKind::Local && loopback,
        "{} is for tests only: it needs DEV8_COMPUTE=local and a loopback DEV8_PUBLIC_URL",
        set.join(" and ")
    );
    Ok(())
}

/// The Cosmos store from the `COSMOS_*` settings.
async fn cosmos_store(settings: &Settings, identity: &Identity) -> anyhow::Result<CosmosStore> {
    let c = &settings.cosmos;
    let endpoint = c
        .endpoint
        .clone()
        .context("DEV8_STORE=cosmos needs COSMOS_ENDPOINT")?;
    let config = CosmosConfig {
        endpoint,
        key: c.key.clone(),
        identity: identity.clone(),
        database: c.database.clone(),
        create_containers: c.create_containers,
    };
    CosmosStore::connect(&config)
        .await
        .context("connecting to Cosmos DB")
}

impl Application {
    /// Build everything for `serve` on `127.0.0.1:port` with state in `data_dir`.
    pub async fn build(
        settings: Settings,
        port: u16,
        data_dir: &Path,
        mut overrides: Overrides,
    ) -> anyhow::Result<Self> {
        overrides.log_mail = Some(overrides.log_mail.unwrap_or(true));
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let port = listener.local_addr()?.port();
        let static_dir = settings.static_dir.clone();
        let sweep_interval = Duration::from_secs(settings.sweep_interval_seconds.max(1));
        let background = overrides.background.unwrap_or(true);
        let jobs = wire(settings, port, data_dir, overrides).await?;
        Ok(Application {
            listener,
            jobs,
            static_dir,
            background,
            sweep_interval,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// What the HTTP layer sees (no compute).
    pub fn platform(&self) -> Arc<Platform> {
        self.jobs.platform.clone()
    }

    /// What jobs see (the platform plus compute and the queue).
    pub fn jobs(&self) -> Arc<JobContext> {
        self.jobs.clone()
    }

    /// The bound listener and the wired jobs context, for a run mode that
    /// serves its own router (`functions`).
    pub fn into_parts(self) -> (TcpListener, Arc<JobContext>) {
        (self.listener, self.jobs)
    }

    /// Serve until `shutdown` resolves; then stop taking requests, let the
    /// job in progress finish, and return. Nothing queued is lost: messages
    /// live in the queue until a job completes them.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if self.background {
            // Before answering anyone, look at what the records claim: after a
            // restart an environment recorded as running may have no process
            // any more. One sweep plus the reconciles it makes visible now turn
            // such records into `starting`, so no answer claims a dead IDE.
            catch_up(&self.jobs).await;
            tasks.push(tokio::spawn(worker_loop(
                self.jobs.clone(),
                stop_rx.clone(),
            )));
            tasks.push(tokio::spawn(sweep_loop(
                self.jobs.clone(),
                self.sweep_interval,
                stop_rx.clone(),
            )));
        }
        let mut router =
            crate::http::app_router(self.jobs.platform.clone(), self.static_dir.as_deref());
        if let Some(doors) = self.jobs.compute.front_door() {
            // `e-<id>.localhost:<port>` goes to that environment's agent (or
            // the not-running page) before any route sees it.
            let door = crate::frontdoor::FrontDoor {
                doors,
                dashboard: self.jobs.policy.public_url.as_str().into(),
            };
            router = router.layer(door);
        }
        let mut http_stop = stop_rx.clone();
        let server = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|s| *s).await;
        });
        let server = tokio::spawn(async move { server.await });
        shutdown.await;
        tracing::info!("shutting down: finishing the job in progress");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let served = server.await;
        self.jobs.compute.shutdown().await;
        self.jobs.metrics.shutdown().await;
        served??;
        Ok(())
    }
}

/// Choose and connect the adapters from `settings` (the platform as seen on
/// `port`): what `Application::build` does once its listener is bound, and
/// what `handler functions` retries until it succeeds (`host::serve_when_ready`).
pub async fn wire(
    settings: Settings,
    port: u16,
    data_dir: &Path,
    overrides: Overrides,
) -> anyhow::Result<Arc<JobContext>> {
    prepare_data_dir(data_dir)?;
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    check_test_settings(&settings, &public_url)?;
    let clock = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let keys = match &settings.signing_keys {
        Some(s) => KeySet::parse(s.expose_secret()).context("DEV8_SIGNING_KEYS")?,
        None => KeySet::load_or_generate(data_dir)?,
    };
    let secrets_key = match &settings.secrets_key {
        Some(s) => SecretsKey::parse(s.expose_secret()).context("DEV8_SECRETS_KEY")?,
        None => SecretsKey::load_or_generate(data_dir)?,
    };
    // Every Azure credential names this one identity.
    let identity = Identity::resolve(
        settings.identity.client_id.as_deref(),
        settings.storage.client_id.as_deref(),
    )?;
    let store: Arc<dyn Store> = match overrides.store {
        Some(s) => s,
        None => match settings.store {
            StoreKind::Sqlite => Arc::new(SqliteStore::open(&data_dir.join("dev8.db"))?),
            StoreKind::Cosmos => Arc::new(cosmos_store(&settings, &identity).await?),
        },
    };
    let queue: Arc<dyn JobQueue> = match overrides.queue {
        Some(q) => q,
        None => match settings.queue_backend {
            QueueKind::Embedded => Arc::new(EmbeddedQueue::open(
                &data_dir.join("queue.db"),
                &settings.queue_name,
                clock.clone(),
            )?),
            QueueKind::Storage => Arc::new(
                StorageQueue::connect(&settings.storage, &settings.queue_name, &identity)
                    .await
                    .context("connecting to the Storage queue")?,
            ),
        },
    };
    let reconciles: Arc<dyn Reconciles> = Arc::new(QueueReconciles::new(queue.clone()));
    // Environments in snapshot mode with a Blob store get their SAS renewed
    // through the report's answer.
    // (Local: a fixed account; ACI: the workspace account, its key read
    // through ARM by the backend.)
    let snapshot_account = match settings.compute {
        ComputeKind::Local => settings.local_snapshot_account()?,
        ComputeKind::Aci => None,
    };
    let mut snapshot_grants = overrides.snapshot_grants.or_else(|| {
        snapshot_account
            .clone()
            .map(|a| Arc::new(a) as Arc<dyn crate::snapshot_grant::GrantAuthority>)
    });
    let compute: Arc<dyn Compute> = match overrides.compute {
        Some(c) => c,
        None => match settings.compute {
            ComputeKind::Local => {
                let mut opts = LocalOptions::new(data_dir, settings.code_server.as_deref())?;
                opts.snapshot_interval = settings.snapshot_interval();
                opts.snapshot_blob = snapshot_account.clone();
                Arc::new(LocalCompute::new(opts, reconciles.clone())?)
            }
            ComputeKind::Aci => {
                let aci = Arc::new(
                    crate::compute::aci::AciCompute::from_settings(&settings.aci, &identity)
                        .context("setting up DEV8_COMPUTE=aci")?
                        .with_snapshot_interval(settings.snapshot_interval())
                        .with_snapshot_sas_lifetime(Duration::from_secs(u64::from(
                            settings.snapshot_sas_lifetime_seconds,
                        ))),
                );
                snapshot_grants = Some(aci.clone());
                aci
            }
        },
    };
    let mailer: Option<Arc<dyn crate::mail::Mailer>> =
        match crate::mail::SmtpMailer::from_settings(&settings.smtp)? {
            Some(m) => Some(Arc::new(m)),
            None if overrides.log_mail == Some(true) => Some(Arc::new(crate::mail::LogMailer)),
            None => None,
        };
    let exporter = match &settings.appinsights_connection_string {
        Some(cs) => Some(crate::metrics::appinsights::Exporter::from_connection_string(cs)?),
        None => None,
    };
    let platform = Arc::new(Platform {
        store,
        reconciles,
        clock,
        keys: Arc::new(keys),
        secrets_key: Arc::new(secrets_key),
        policy: policy(&settings, public_url),
        providers: Arc::new(Providers::from_settings(&settings.oauth)?),
        metrics: Arc::new(Metrics::new(exporter)),
        sessions: Default::default(),
        mailer,
        snapshot_grants,
    });
    // Environment addresses name the port the control plane listens on
    // (`serve` puts its front door in front of its router).
    if let Some(doors) = compute.front_door() {
        doors.set_port(port);
    }
    let jobs = Arc::new(JobContext {
        platform,
        compute,
        queue,
    });
    Ok(jobs)
}

/// One sweep and the jobs that are visible right away (bounded).
async fn catch_up(p: &JobContext) {
    if let Err(e) = sweep::start_up_sweep(p).await {
        tracing::error!(error = %format!("{e:#}"), "start-up sweep failed");
        return;
    }
    if let Err(e) = worker::drain(p, 200).await {
        tracing::error!(error = %format!("{e:#}"), "start-up reconcile failed");
    }
}

/// Run jobs until stopped. An empty queue is polled with a back-off (50 to
/// 250 ms, for delayed messages coming due), and a queue that signals sends
/// (the embedded one) wakes the worker at once: a reconcile asked for when an
/// agent becomes ready starts without a poll interval.
async fn worker_loop(p: Arc<JobContext>, mut stop: watch::Receiver<bool>) {
    let mut idle = Duration::from_millis(50);
    let signal = p
        .queue
        .sent_signal()
        .unwrap_or_else(|| Arc::new(tokio::sync::Notify::new()));
    while !*stop.borrow() {
        // Listen before looking, so a send during `run_next` is not missed.
        let sent = signal.notified();
        tokio::pin!(sent);
        sent.as_mut().enable();
        // A job, once taken, runs to completion: shutdown is only checked between jobs.
        match worker::run_next(&p).await {
            Ok(worker::RunOutcome::Done) => {
                idle = Duration::from_millis(50);
                continue;
            }
            Ok(worker::RunOutcome::Empty) => {}
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "worker could not reach the queue")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = &mut sent => {
                idle = Duration::from_millis(50);
                continue;
            }
            _ = stop.wait_for(|s| *s) => break,
        }
        idle = (idle * 2).min(Duration::from_millis(250));
    }
}

async fn sweep_loop(p: Arc<JobContext>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        match sweep::sweep(&p).await {
            Ok(r) if r != Default::default() => tracing::info!(report = ?r, "sweep"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %format!("{e:#}"), "sweep failed"),
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
