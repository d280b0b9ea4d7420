//! Request charge and latency of the Cosmos store's hot paths, on the
//! Cosmos-compatible server on loopback (to compare later with real Cosmos):
//!
//! * list environments — one user's dashboard poll (single-partition query);
//! * session check — what every authenticated request does (two point reads);
//! * sweep — the timer's cross-partition query for active environments.
//!
//! Run: `eval "$(scripts/peers.sh start)" && cargo bench --bench cosmos_hot_paths`
//! (`DEV8_BENCH_ITERATIONS`, default 200, at most 5000). Run as a test
//! (`cargo test --bench cosmos_hot_paths`: no `--bench` argument) it runs 3
//! iterations, as a smoke test; the test command does not run benches. The request charge is
//! summed from the store's debug events. The emulator reports 1 RU for every
//! response, so there the charge counts requests.

use chrono::{Duration, Utc};
use dev8::domain::{Environment, NewEnvironment, Session, Status, Template, User, new_id};
use dev8::store::{CosmosConfig, CosmosStore, Store};
use secrecy::SecretString;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

const EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";
const USERS: usize = 20;
const ENVIRONMENTS_PER_USER: usize = 10;

/// Sums the `request_charge` field of the store's events (milli-RU).
#[derive(Clone, Default)]
struct Charges(Arc<AtomicU64>);

impl Charges {
    fn take(&self) -> f64 {
        self.0.swap(0, Ordering::SeqCst) as f64 / 1000.0
    }
}

struct ChargeVisitor<'a>(&'a AtomicU64);

impl Visit for ChargeVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "request_charge" {
            self.0
                .fetch_add((value * 1000.0).round() as u64, Ordering::SeqCst);
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for Charges {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        event.record(&mut ChargeVisitor(&self.0));
    }
}

fn environment(user: &str, i: usize) -> Environment {
    let spec = NewEnvironment {
        name: format!("env-{i}"),
        base_image: Template::Node,
        cpu_cores: 1,
        memory_gb: 2,
        storage_gb: 20,
        idle_timeout_minutes: 30,
        repository: None,
        dotfiles_repository: None,
        home_mode: Default::default(),
    };
    let mut e = Environment::new(
        new_id(),
        user.into(),
        spec,
        Utc::now() - Duration::minutes(i as i64),
    );
    // A mix like a real fleet: a third running, a few in transition.
    e.status = match i % 6 {
        0 | 3 => Status::Running,
        1 => Status::Starting,
        _ => Status::Stopped,
    };
    e
}

struct Stats {
    p50_ms: f64,
    p95_ms: f64,
    ru: f64,
}

async fn measure<F, Fut>(iterations: usize, charges: &Charges, mut op: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    op().await; // warm-up (connections, caches)
    charges.take();
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        op().await;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        times[((times.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(times.len() - 1)]
    };
    Stats {
        p50_ms: pick(0.50),
        p95_ms: pick(0.95),
        ru: charges.take() / iterations as f64,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let charges = Charges::default();
    let filter =
        tracing_subscriber::filter::Targets::new().with_target("dev8", tracing::Level::DEBUG);
    tracing::subscriber::set_global_default(
        Registry::default().with(charges.clone().with_filter(filter)),
    )?;

    for var in [
        "COSMOS_DISABLE_IMDS",
        "AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED",
        "AZURE_COSMOS_BINARY_ENCODING_ENABLED",
    ] {
        anyhow::ensure!(
            std::env::var(var).is_ok(),
            "{var} is not set: run eval \"$(scripts/peers.sh start)\" first"
        );
    }
    let endpoint =
        std::env::var("COSMOS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8081".into());
    anyhow::ensure!(
        endpoint.starts_with("http://127.0.0.1:"),
        "the benchmark only talks to loopback, not {endpoint}"
    );
    let benching = std::env::args().any(|a| a == "--bench");
    let iterations: usize = match std::env::var("DEV8_BENCH_ITERATIONS") {
        Ok(v) => v.parse().unwrap_or(200),
        Err(_) if benching => 200,
        Err(_) => 3,
    }
    .clamp(1, 5000);
    let config = CosmosConfig {
        endpoint: endpoint.clone(),
        key: Some(SecretString::from(
            std::env::var("COSMOS_KEY").unwrap_or_else(|_| EMULATOR_KEY.into()),
        )),
        database: format!("bench-{}", new_id()),
        identity: Default::default(),
        create_containers: true,
    };
    let store: Arc<dyn Store> = Arc::new(CosmosStore::connect(&config).await?);

    // Seed: USERS users with ENVIRONMENTS_PER_USER environments each, one session.
    let mut first_user = None;
    for u in 0..USERS {
        let user = User {
            id: new_id(),
            email: format!("user{u}@example.com"),
            name: format!("User {u}"),
            password_hash: None,
            created_at: Utc::now(),
            unconfirmed: None,
        };
        store.insert_user(&user).await?;
        for i in 0..ENVIRONMENTS_PER_USER {
            store.insert_environment(&environment(&user.id, i)).await?;
        }
        first_user.get_or_insert(user);
    }
    let user = first_user.expect("seeded users");
    let now = Utc::now();
    let session = Session {
        id: new_id(),
        user_id: user.id.clone(),
        created_at: now,
        expires_at: now + Duration::hours(12),
        revoked: false,
    };
    store.insert_session(&session).await?;

    let list = measure(iterations, &charges, || async {
        let envs = store.environments(&user.id).await.expect("list");
        assert_eq!(envs.len(), ENVIRONMENTS_PER_USER);
    })
    .await;
    let check = measure(iterations, &charges, || async {
        let s = store
            .session(&session.id)
            .await
            .expect("session")
            .expect("exists");
        store.user(&s.user_id).await.expect("user").expect("exists");
    })
    .await;
    let sweep = measure(iterations, &charges, || async {
        store.active_environments().await.expect("sweep");
    })
    .await;

    println!(
        "Cosmos hot paths on {endpoint} ({iterations} iterations; {USERS} users x {ENVIRONMENTS_PER_USER} environments)"
    );
    println!(
        "{:<22} {:>9} {:>9} {:>10}",
        "path", "p50 ms", "p95 ms", "RU/op"
    );
    for (name, s) in [
        ("list environments", &list),
        ("session check", &check),
        ("sweep (active envs)", &sweep),
    ] {
        println!(
            "{name:<22} {:>9.2} {:>9.2} {:>10.2}",
            s.p50_ms, s.p95_ms, s.ru
        );
    }
    Ok(())
}
