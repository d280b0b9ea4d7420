//! The one test harness. `spawn_app()` is the fast default: the real app
//! (router, jobs, SQLite store) on 127.0.0.1 with a temporary data folder,
//! an in-memory queue, a manual clock and `FakeCompute`; tests drive jobs by
//! hand (`settle`, `sweep`) instead of sleeping. Everything else is a
//! parameter of the same builder:
//!
//! ```ignore
//! let app = TestApp::builder()
//!     .compute(Compute::Local(LocalOpts::default())) // or Fake (default), SharedFake, Aci
//!     .clock(Clock::Offset)                          // or Manual (default)
//!     .queue(Queue::File)                            // or Memory (default), Storage(name), FromSettings
//!     .settings(|s| s.reconcile_interval_ms = 1000)
//!     .spawn()
//!     .await;
//! ```
//!
//! `Mode::Functions` serves the Functions envelope instead of `serve`'s
//! router. Request helpers (`user`, `get`, `post`, `create_env`, `settle`,
//! ...) are in `requests`; the data folder is a `TempDir` that goes with the app.

mod app;
pub mod browser;
mod clock;
pub mod git_server;
pub mod ide;
pub mod logs;
mod requests;

pub use app::{Compute, LocalOpts, Mode, Queue, TestApp, refusals_off_loopback, test_settings};
pub use clock::Clock;
pub use requests::{Answer, Auth, PASSWORD, User};

/// The fast default app: fake compute, manual clock, in-memory queue.
pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}
