//! Capturing what is logged, to search it (for secrets, mostly).
//!
//! `Captured` is a sink for formatted log lines. Two scopes:
//! * `Captured::thread_subscriber` formats every event at TRACE into the sink,
//!   for `tracing::subscriber::set_default` on the test's own thread;
//! * `capture_process` records every event of the whole process (every
//!   thread, the blocking pool included) at TRACE for as long as the returned
//!   guard lives. It installs, once, a global subscriber whose only layer is
//!   enabled while a capture is live, so other tests pay one atomic load per
//!   event. Lines of tests running at the same time land in the capture too.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, filter};

/// Formatted log lines, shared by clones.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// A subscriber writing every event at TRACE level here (for one thread).
    pub fn thread_subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(self.clone())
            .with_ansi(false)
            .finish()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Captures open process-wide.
static LIVE: Mutex<Vec<Captured>> = Mutex::new(Vec::new());
static LIVE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Writes a line to every live capture.
struct Fanout;

impl Write for Fanout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for c in LIVE.lock().unwrap().iter_mut() {
            c.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything the process logs while it lives (see the module docs).
pub struct ProcessCapture {
    captured: Captured,
}

impl ProcessCapture {
    pub fn text(&self) -> String {
        self.captured.text()
    }
}

impl Drop for ProcessCapture {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap();
        live.retain(|c| !Arc::ptr_eq(&c.0, &self.captured.0));
        LIVE_COUNT.store(live.len(), Ordering::SeqCst);
    }
}

pub fn capture_process() -> ProcessCapture {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| Fanout)
            .with_filter(filter::dynamic_filter_fn(|_, _| {
                LIVE_COUNT.load(Ordering::Relaxed) > 0
            }));
        tracing_subscriber::registry()
            .with(layer)
            .try_init()
            .expect("the only global subscriber of the test binary");
    });
    let captured = Captured::default();
    let mut live = LIVE.lock().unwrap();
    live.push(captured.clone());
    LIVE_COUNT.store(live.len(), Ordering::SeqCst);
    ProcessCapture { captured }
}
