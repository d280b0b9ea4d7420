//! `handler serve`'s resident memory, idle: fresh, after the person signed
//! up and signed in a few times (argon2id hashes, 19 MiB of working memory
//! each), after 10 environments were created, stopped and deleted one after
//! another (with a sign-in every 10 cycles, as a person comes back), and
//! (with `DEV8_BENCH_CYCLES=100`) after 100. Goal: <= fresh + 4 MB after 10,
//! and within 2 MB more after 100.
//!
//!     cargo bench --bench serve_memory
//!
//! Real local compute (agent processes of this build), with a stub in place
//! of code-server (a Node.js script that answers its health check on the
//! socket), so a cycle costs the control plane's work and not an IDE's boot.
//! Needs `node` on PATH. Bounded: every wait gives up after 60 s.

use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[path = "support/child_serve.rs"]
mod child_serve;
use child_serve::ChildServe;

const STUB: &str = r#"
const args = process.argv.slice(2);
const socket = args[args.indexOf('--socket') + 1];
require('http').createServer((req, res) => { res.end('ok'); }).listen(socket);
process.on('SIGTERM', () => process.exit(0));
"#;

struct Serve(ChildServe);

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

impl Serve {
    async fn start(data: &std::path::Path) -> Serve {
        let stub = data.join("code-server-stub.js");
        std::fs::write(&stub, STUB).unwrap();
        Serve(ChildServe::launch(data, &stub, &[]).await)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.0.request(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn wait_for(&self, path: &str, what: &str, done: impl Fn(u16, &Value) -> bool) {
        let t0 = Instant::now();
        loop {
            let (s, b) = self.call(reqwest::Method::GET, path, None).await;
            if done(s, &b) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "not {what} within 60 s: {b}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Create, wait for running, stop, wait for stopped, delete, wait until gone.
    async fn cycle(&self, i: usize) {
        let (s, created) = self
            .call(
                reqwest::Method::POST,
                "/api/environments",
                Some(json!({"name": format!("m-{i}"), "baseImage": "node", "preset": "small"})),
            )
            .await;
        assert_eq!(s, 202, "{created}");
        let path = format!(
            "/api/environments/{}",
            created["environment"]["id"].as_str().unwrap()
        );
        let status_is =
            |want: &'static str| move |_: u16, b: &Value| b["environment"]["status"] == want;
        self.wait_for(&path, "running", status_is("running")).await;
        let (s, _) = self
            .call(reqwest::Method::POST, &format!("{path}/stop"), None)
            .await;
        assert_eq!(s, 202);
        self.wait_for(&path, "stopped", status_is("stopped")).await;
        let (s, _) = self.call(reqwest::Method::DELETE, &path, None).await;
        assert_eq!(s, 202);
        self.wait_for(&path, "deleted", |s, _| s == 404).await;
    }

    /// RSS once the process has been quiet for a moment.
    async fn idle_rss_kb(&self) -> u64 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        rss_kb(self.0.pid())
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let cycles: usize = if smoke {
        1
    } else {
        std::env::var("DEV8_BENCH_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10)
            .clamp(1, 1000)
    };
    let data = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(data.path()).await;
    let fresh = serve.idle_rss_kb().await;
    println!("serve_memory: fresh serve, idle: {}", mb(fresh));
    // Sign-up, a token and three more sign-ins: five argon2id hashes.
    serve.0.sign_up().await;
    for _ in 0..3 {
        serve.0.sign_in().await;
    }
    let signed_in = serve.idle_rss_kb().await;
    println!(
        "  after sign-up and four sign-ins, idle: {} (fresh + {})",
        mb(signed_in),
        mb(signed_in.saturating_sub(fresh))
    );
    let mut after_10 = None;
    let t0 = Instant::now();
    for i in 0..cycles {
        serve.cycle(i).await;
        let n = i + 1;
        if n % 10 == 0 {
            serve.0.sign_in().await;
        }
        if n == 10 || n == cycles || n % 50 == 0 {
            let rss = serve.idle_rss_kb().await;
            println!(
                "  after {n} create/stop/delete cycles, idle: {} (fresh + {}), {:.0} s so far",
                mb(rss),
                mb(rss.saturating_sub(fresh)),
                t0.elapsed().as_secs_f64()
            );
            if n == 10 {
                after_10 = Some(rss);
                println!(
                    "  goal: <= fresh + 4 MB after 10: {}",
                    if rss <= fresh + 4096 {
                        "met"
                    } else {
                        "NOT met"
                    }
                );
            } else if n >= 100
                && let Some(ten) = after_10
            {
                println!(
                    "  goal: within 2 MB of the 10-cycle figure after {n}: {}",
                    if rss <= ten + 2048 { "met" } else { "NOT met" }
                );
            }
        }
    }
}
