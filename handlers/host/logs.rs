//! Per-invocation logs: every log line emitted while an invocation runs —
//! the envelope's own and the job's or sweep's — is collected for the
//! response's `Logs` (the host shows them with the invocation, in
//! Application Insights in Azure), each prefixed with the invocation id.
//! The lines also go to stdout as usual, inside a span carrying the id.
//!
//! Collection is a task-local sink set around the invocation's future plus
//! `InvocationLogs`, a `tracing` layer that appends to the sink when one is
//! set. `handler` installs the layer behind the same level filter as stdout,
//! so `Logs` holds exactly what stdout shows for the invocation.

use std::fmt::Write as _;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The envelope's own events: pushed to the sink directly, skipped by the layer.
pub(super) const ENVELOPE_TARGET: &str = "dev8::host::envelope";

struct Sink {
    invocation_id: String,
    lines: Mutex<Vec<String>>,
}

tokio::task_local! {
    static SINK: Sink;
}

/// Run `f` with a log sink for the invocation `invocation_id`.
pub(super) async fn capture<F: Future>(invocation_id: &str, f: F) -> F::Output {
    let sink = Sink {
        invocation_id: invocation_id.to_string(),
        lines: Mutex::new(Vec::new()),
    };
    SINK.scope(sink, f).await
}

/// Append a line (already without the id prefix); false outside `capture`.
pub(super) fn push(line: &str) -> bool {
    SINK.try_with(|s| {
        let line = format!("[{}] {line}", s.invocation_id);
        s.lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    })
    .is_ok()
}

/// The lines collected so far (the sink is emptied).
pub(super) fn take() -> Option<Vec<String>> {
    SINK.try_with(|s| std::mem::take(&mut *s.lines.lock().unwrap_or_else(|e| e.into_inner())))
        .ok()
}

/// The `tracing` layer that copies events into the current invocation's sink.
#[derive(Debug, Default, Clone, Copy)]
pub struct InvocationLogs;

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for InvocationLogs {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() == ENVELOPE_TARGET {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        push(&format!(
            "{} {}{}",
            event.metadata().level(),
            line.message,
            line.fields
        ));
    }
}
