//! Activity that means use. The control plane stops environments that are
//! idle past their timeout, so only signs of a person (or their long-running
//! work) count, and whatever is not known to come from a person does not
//! (an unknown call fails safe: it never keeps an environment running):
//!
//! * **input events from Dev8's VS Code extension** (`extension`): edits and
//!   cursor moves made with the keyboard or mouse, opening an editor while
//!   the window has focus, the window gaining focus, a terminal command
//!   starting, a task or debug session starting. It reports them over a Unix
//!   socket in the agent's private runtime folder.
//! * **page requests**: a top-level navigation (`Sec-Fetch-Dest: document`,
//!   or an `Accept: text/html` GET from a client that sends no fetch
//!   metadata) outside the workbench's own `/stable-<commit>/` documents
//!   (webview and extension-host iframes load by themselves), and body-carrying requests (POST, PUT, PATCH, DELETE)
//!   to the user's own apps behind code-server's port proxy (`/proxy/`,
//!   `/absproxy/`). Static assets, the workbench's own fetches and posts,
//!   and health probes do not count.
//! * **terminal keystrokes**: on VS Code's management WebSocket, the
//!   `remoteterminal` channel's `$input` call, which only typing (or pasting)
//!   into a terminal sends. VS Code's remote protocol frames every message
//!   with a 13-byte header (type u8, id u32, ack u32, length u32,
//!   big-endian); the observer reads the client-to-server byte stream
//!   passively (the bytes are forwarded unchanged), unmasking frames and
//!   re-assembling messages across frame boundaries, since one frame may
//!   hold several messages and one message may span frames. Nothing else on
//!   VS Code's sockets counts: the workbench makes many calls by itself
//!   (port detection, extension activation, file-system polling, latency
//!   probes, output acknowledgements), and a future version may add more.
//!   WebSockets that are not VS Code's (a user's app behind the port proxy)
//!   count any data frame longer than 13 bytes. Ping/pong/close frames never
//!   count.
//! * **CPU-busy user processes**: processes marked as the environment's
//!   (see `procs`) other than code-server's own (its server, extension host,
//!   pty host, file watcher, language servers shipped with it) that used at
//!   least `BUSY_SHARE` of one core in two sample windows in a row — a build
//!   or a test run keeps the environment alive. Only processes seen in both
//!   samples of a window count, so short-lived helpers (a shell probing the
//!   environment, an extension's `git status`) do not.
//!
//! Activity is pushed to `POST /api/environments/{id}/activity` with the
//! agent token at most once per push interval (one minute by default).

use crate::procs::{self, CpuSampler};
use axum::http;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Share of one core that makes the environment's processes "busy".
pub const BUSY_SHARE: f64 = 0.25;

/// What kind of use was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Page,
    WebSocket,
    Cpu,
    /// An input event reported by Dev8's VS Code extension.
    Ide,
}

/// Activity seen since the last push; shared by the proxy, the CPU watch and the pusher.
#[derive(Debug, Default)]
pub struct Activity {
    dirty: AtomicBool,
    notify: Notify,
    pages: AtomicU64,
    ws_messages: AtomicU64,
    cpu_windows: AtomicU64,
    ide_signals: AtomicU64,
    /// The control plane's last answer about the idle stop, and when it came.
    idle: std::sync::Mutex<Option<(IdleAnswer, Instant)>>,
}

impl Activity {
    pub fn touch(&self, kind: Kind) {
        let counter = match kind {
            Kind::Page => &self.pages,
            Kind::WebSocket => &self.ws_messages,
            Kind::Cpu => &self.cpu_windows,
            Kind::Ide => &self.ide_signals,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if !self.dirty.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Counts of (pages, WebSocket messages, busy CPU windows, extension signals) since start.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.pages.load(Ordering::Relaxed),
            self.ws_messages.load(Ordering::Relaxed),
            self.cpu_windows.load(Ordering::Relaxed),
            self.ide_signals.load(Ordering::Relaxed),
        )
    }

    /// When the control plane last said the environment stops for inactivity:
    /// `idleStopAt` and `idleWarningAt` as it gave them, and as seconds from
    /// now (`stopInSeconds`, `warnInSeconds`: its clock, not this machine's);
    /// all `null` before its first answer or while no stop is due.
    pub fn idle(&self) -> serde_json::Value {
        let learned = self.idle.lock().ok().and_then(|v| v.clone());
        let Some((a, at)) = learned else {
            return serde_json::json!({"idleStopAt": null, "idleWarningAt": null, "stopInSeconds": null, "warnInSeconds": null});
        };
        let now = a.now + chrono::Duration::from_std(at.elapsed()).unwrap_or_default();
        let secs = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| (t - now).num_seconds());
        serde_json::json!({
            "idleStopAt": a.idle_stop_at,
            "idleWarningAt": a.idle_warning_at,
            "stopInSeconds": secs(a.idle_stop_at),
            "warnInSeconds": secs(a.idle_warning_at),
        })
    }

    /// Learn the idle times from a body the control plane answered (to the
    /// activity post or to the periodic report); a body without them
    /// changes nothing.
    pub fn learn_idle_from(&self, body: &[u8]) {
        if let Ok(answer) = serde_json::from_slice::<IdleAnswer>(body) {
            self.learn_idle(answer);
        }
    }

    fn learn_idle(&self, answer: IdleAnswer) {
        if let Ok(mut v) = self.idle.lock() {
            *v = Some((answer, Instant::now()));
        }
    }

    /// Wait until there is unpushed activity, then take it.
    async fn take(&self) {
        loop {
            let notified = self.notify.notified();
            if self.dirty.swap(false, Ordering::AcqRel) {
                return;
            }
            notified.await;
        }
    }

    fn put_back(&self) {
        self.dirty.store(true, Ordering::Release);
    }
}

/// The control plane's answer to an activity report.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdleAnswer {
    idle_stop_at: Option<chrono::DateTime<chrono::Utc>>,
    idle_warning_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
}

/// Does this HTTP request mean a person is using the IDE?
pub fn is_use(method: &http::Method, path: &str, headers: &http::HeaderMap) -> bool {
    if path.starts_with("/_dev8/") || path == "/healthz" {
        return false;
    }
    if matches!(
        *method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE
    ) {
        // The workbench posts on its own (`/mint-key` at every load); the
        // user's apps behind the port proxy are posted to by their pages.
        return path.starts_with("/proxy/") || path.starts_with("/absproxy/");
    }
    if *method != http::Method::GET {
        return false;
    }
    // The workbench's own documents (its webview and extension-host iframes) are not.
    if path.starts_with("/stable-") {
        return false;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("sec-fetch-dest") {
        // Not `iframe`: the workbench opens iframes by itself (webviews such as the Welcome page).
        Some(dest) => dest == "document",
        // No fetch metadata (old browsers, scripts): an HTML GET is a page view.
        None => header("accept").is_some_and(|a| a.contains("text/html")),
    }
}

/// VS Code protocol message types (`ProtocolMessageType`).
mod vscode {
    pub const HEADER: usize = 13;
    pub const REGULAR: u8 = 1;
    pub const CONTROL: u8 = 2;
    /// Known types: None, Regular, Control, Ack, Disconnect, ReplayRequest, Pause, Resume, KeepAlive.
    pub fn known(t: u8) -> bool {
        matches!(t, 0 | 1 | 2 | 3 | 5 | 6 | 7 | 8 | 9)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameState {
    /// Collecting the frame header (2..14 bytes).
    Header,
    /// Inside a payload: `left` bytes to go.
    Payload { left: u64, data: bool },
}

/// A passive reader of the client-to-server half of a WebSocket. Feed it
/// the bytes as they pass; it returns how many messages that carry user
/// work completed in them.
#[derive(Debug)]
pub struct WsObserver {
    vscode: bool,
    state: FrameState,
    head: Vec<u8>,
    mask: [u8; 4],
    masked: bool,
    mask_pos: usize,
    /// Payload bytes of the current data frame (generic mode).
    frame_len: u64,
    // The VS Code message stream across frames.
    msg_head: Vec<u8>,
    msg_left: u64,
    /// The stream stopped looking like VS Code's protocol: fall back to frame sizes.
    lost: bool,
    /// Kind of the message being read, and the first bytes of its payload.
    msg_kind: u8,
    msg_body: Vec<u8>,
    /// What the handshake said this connection carries.
    connection: Connection,
}

/// What a VS Code WebSocket carries (the handshake's `desiredConnectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connection {
    Unknown,
    /// IPC channels: files, terminals, search, ... (`desiredConnectionType` 1).
    Management,
    /// The extension host's RPC protocol (2).
    ExtensionHost,
}

/// How much of a message's payload is kept for classifying it.
const BODY_PREFIX: usize = 256;

/// The only IPC calls that count: those that only a person causes. Typing or
/// pasting into a terminal sends `remoteterminal.$input`; a program's output
/// is acknowledged with `$acknowledgeDataEvent`, which does not count.
const USER_IPC: &[(&str, &str)] = &[("remoteterminal", "$input")];

impl WsObserver {
    /// `vscode`: the socket is one of VS Code's (its URL carries `reconnectionToken`).
    pub fn new(vscode: bool) -> Self {
        WsObserver {
            vscode,
            state: FrameState::Header,
            head: Vec::with_capacity(14),
            mask: [0; 4],
            masked: false,
            mask_pos: 0,
            frame_len: 0,
            msg_head: Vec::with_capacity(vscode::HEADER),
            msg_left: 0,
            lost: false,
            msg_kind: 0,
            msg_body: Vec::new(),
            connection: Connection::Unknown,
        }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) -> u32 {
        let mut used = 0;
        while !bytes.is_empty() {
            match self.state {
                FrameState::Header => {
                    self.head.push(bytes[0]);
                    bytes = &bytes[1..];
                    if let Some((len, data, masked, mask)) = parse_frame_header(&self.head) {
                        self.head.clear();
                        self.masked = masked;
                        self.mask = mask;
                        self.mask_pos = 0;
                        if data {
                            self.frame_len = len;
                        }
                        if len == 0 {
                            used += self.end_frame(data);
                        } else {
                            self.state = FrameState::Payload { left: len, data };
                        }
                    }
                }
                FrameState::Payload { left, data } => {
                    let n = (left.min(bytes.len() as u64)) as usize;
                    if data && self.vscode && !self.lost {
                        used += self.payload(&bytes[..n]);
                    }
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    if left == 0 {
                        self.state = FrameState::Header;
                        used += self.end_frame(data);
                    } else {
                        self.state = FrameState::Payload { left, data };
                    }
                }
            }
        }
        used
    }

    fn end_frame(&mut self, data: bool) -> u32 {
        // A VS Code socket whose stream stopped parsing counts nothing (fail safe).
        if data && !self.vscode && self.frame_len > vscode::HEADER as u64 {
            return 1;
        }
        0
    }

    /// Unmasked payload bytes of data frames, read as VS Code messages.
    fn payload(&mut self, chunk: &[u8]) -> u32 {
        let mut used = 0;
        for &b in chunk {
            let b = if self.masked {
                let v = b ^ self.mask[self.mask_pos % 4];
                self.mask_pos += 1;
                v
            } else {
                b
            };
            if self.msg_left > 0 {
                self.msg_left -= 1;
                if self.msg_body.len() < BODY_PREFIX {
                    self.msg_body.push(b);
                }
                if self.msg_left == 0 {
                    used += self.end_message();
                }
                continue;
            }
            self.msg_head.push(b);
            if self.msg_head.len() == vscode::HEADER {
                let h = &self.msg_head;
                let kind = h[0];
                let len = u32::from_be_bytes([h[9], h[10], h[11], h[12]]) as u64;
                self.msg_head.clear();
                if !vscode::known(kind) {
                    self.lost = true;
                    return used;
                }
                self.msg_kind = kind;
                self.msg_body.clear();
                self.msg_left = len;
                if len == 0 {
                    used += self.end_message();
                }
            }
        }
        used
    }

    /// A whole VS Code message was read: does it carry user work?
    fn end_message(&mut self) -> u32 {
        let body = std::mem::take(&mut self.msg_body);
        match self.msg_kind {
            vscode::CONTROL => {
                // The handshake names the connection type: {"type":"connectionType",...,"desiredConnectionType":1}
                let text = String::from_utf8_lossy(&body);
                if let Some(at) = text.find("\"desiredConnectionType\":") {
                    self.connection = match text[at + 24..].trim_start().chars().next() {
                        Some('1') => Connection::Management,
                        Some('2') => Connection::ExtensionHost,
                        _ => Connection::Unknown,
                    };
                }
                0
            }
            vscode::REGULAR if !body.is_empty() => u32::from(self.regular_is_use(&body)),
            _ => 0,
        }
    }

    fn regular_is_use(&self, p: &[u8]) -> bool {
        match self.connection {
            Connection::Management => match ipc_request(p) {
                // Only calls (not event subscriptions or cancellations) a person makes.
                Some((100, channel, command)) => {
                    let used = USER_IPC.contains(&(channel.as_str(), command.as_str()));
                    if used {
                        tracing::debug!(%channel, %command, "IPC call counted as use");
                    } else {
                        tracing::trace!(%channel, %command, "IPC call, not use");
                    }
                    used
                }
                _ => false,
            },
            // The extension host's traffic is the workbench talking to
            // extensions, much of it by itself; Dev8's extension reports
            // what the person does instead.
            Connection::ExtensionHost => {
                if matches!(p[0], 1..=4) {
                    tracing::trace!(
                        method = rpc_method(p).unwrap_or("?"),
                        "extension host call, not use"
                    );
                }
                false
            }
            Connection::Unknown => false,
        }
    }
}

/// Read a VS Code variable-length quantity (7 bits a byte, least significant first).
fn vql(p: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *p.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// An IPC request header `[type, id, channel, command]` (VS Code's
/// serializer: 4 = array, 6 = integer, 1 = string, each length a VQL).
fn ipc_request(p: &[u8]) -> Option<(u64, String, String)> {
    let mut at = 0;
    if *p.first()? != 4 {
        return None;
    }
    at += 1;
    let n = vql(p, &mut at)?;
    if n < 4 {
        return None;
    }
    let int = |at: &mut usize| -> Option<u64> {
        if *p.get(*at)? != 6 {
            return None;
        }
        *at += 1;
        vql(p, at)
    };
    let string = |at: &mut usize| -> Option<String> {
        if *p.get(*at)? != 1 {
            return None;
        }
        *at += 1;
        let len = vql(p, at)? as usize;
        let s = p.get(*at..*at + len)?;
        *at += len;
        Some(String::from_utf8_lossy(s).into_owned())
    };
    let kind = int(&mut at)?;
    int(&mut at)?;
    Some((kind, string(&mut at)?, string(&mut at)?))
}

/// The method of an extension-host RPC request: type u8, request id u32,
/// proxy id u8, then the method as a length-prefixed short string.
fn rpc_method(p: &[u8]) -> Option<&str> {
    let len = *p.get(6)? as usize;
    std::str::from_utf8(p.get(7..7 + len)?).ok()
}

/// Parse a complete frame header: (payload length, is a data frame, masked, mask key).
fn parse_frame_header(h: &[u8]) -> Option<(u64, bool, bool, [u8; 4])> {
    if h.len() < 2 {
        return None;
    }
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let (len, at) = match h[1] & 0x7f {
        126 => {
            if h.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([h[2], h[3]]) as u64, 4)
        }
        127 => {
            if h.len() < 10 {
                return None;
            }
            (u64::from_be_bytes(h[2..10].try_into().ok()?), 10)
        }
        n => (n as u64, 2),
    };
    let need = at + if masked { 4 } else { 0 };
    if h.len() < need {
        return None;
    }
    let mut mask = [0; 4];
    if masked {
        mask.copy_from_slice(&h[at..at + 4]);
    }
    // 0 continuation, 1 text, 2 binary; 8-10 are control frames.
    Some((len, opcode <= 2, masked, mask))
}

/// Watch the environment's user processes and count busy windows as activity.
pub async fn watch_cpu(
    activity: Arc<Activity>,
    environment_id: String,
    internal: Vec<String>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let me = std::process::id() as i32;
    let hz = procs::ticks_per_second() as f64;
    let mut sampler = CpuSampler::default();
    let mut last = Instant::now();
    let mut was_busy = false;
    loop {
        let (id, internal) = (environment_id.clone(), internal.clone());
        let stats = tokio::task::spawn_blocking(move || user_processes(&id, &internal, me))
            .await
            .unwrap_or_default();
        let ticks = sampler.sample(&stats);
        let window = last.elapsed().as_secs_f64().max(0.001);
        last = Instant::now();
        let busy = ticks as f64 / hz >= BUSY_SHARE * window;
        // Two busy windows in a row: a burst (an extension host starting up) is not work.
        if busy && was_busy {
            tracing::debug!(
                cpu_seconds = ticks as f64 / hz,
                window,
                "user processes busy"
            );
            activity.touch(Kind::Cpu);
        }
        was_busy = busy;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The environment's processes that are not code-server's own (nor the agent).
/// `internal`: code-server's package folder as given and as resolved (its
/// processes re-execute through the real path).
fn user_processes(environment_id: &str, internal: &[String], agent: i32) -> Vec<procs::Stat> {
    procs::marked(environment_id, &[agent])
        .into_iter()
        .filter(|pid| {
            let args = procs::args(*pid);
            !args.is_empty() && !is_code_servers(&args, internal)
        })
        .filter_map(procs::stat)
        .collect()
}

/// Is this command line one of code-server's own processes? Its program lies
/// inside code-server's package, or it is `node` running a script from
/// there (server, extension host, pty host, file watcher, bundled language
/// servers). Not any process naming the package: a terminal's shell is
/// started with code-server's shell-integration script as an argument
/// (`bash --init-file <package>/...`), and it and what runs in it are the user's.
fn is_code_servers(args: &[String], internal: &[String]) -> bool {
    let inside = |a: &String| internal.iter().any(|dir| a.starts_with(dir.as_str()));
    let Some(program) = args.first() else {
        return false;
    };
    let node = std::path::Path::new(program)
        .file_name()
        .is_some_and(|n| n == "node");
    inside(program) || (node && args[1..].iter().any(inside))
}

/// Where and how activity is reported.
pub struct Reporter {
    pub url: String,
    pub token: secrecy::SecretString,
    pub every: Duration,
}

/// Push activity to the control plane, at most once per `every`.
pub async fn push_loop(
    activity: Arc<Activity>,
    reporter: Reporter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use secrecy::ExposeSecret;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client builds");
    let mut last_push: Option<Instant> = None;
    // The first report goes out at start, with or without use: its answer
    // tells the agent (and through it the extension) when the idle stop is due.
    activity.put_back();
    loop {
        tokio::select! {
            _ = activity.take() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Some(at) = last_push {
            let wait = reporter.every.saturating_sub(at.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        last_push = Some(Instant::now());
        let (pages, ws, cpu, ide) = activity.counts();
        let sent = client
            .post(&reporter.url)
            // Not `Authorization`: a proxy in front of the API (the Static
            // Web App) replaces that header with its own.
            .header(
                crate::auth::tokens::DEV8_AUTHORIZATION,
                format!("Bearer {}", reporter.token.expose_secret()),
            )
            .json(&serde_json::json!({"pages": pages, "webSocketMessages": ws, "busyCpuWindows": cpu, "ideSignals": ide}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => match r.json::<IdleAnswer>().await {
                Ok(answer) => {
                    tracing::debug!(idle_stop_at = ?answer.idle_stop_at, "activity reported");
                    activity.learn_idle(answer);
                }
                Err(e) => {
                    tracing::debug!(error = %e.without_url(), "activity reported; the answer had no idle times")
                }
            },
            Ok(r) => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    "the control plane refused the activity report"
                );
                // 401/404: the token was rotated or the environment is gone; retrying will not help.
                if r.status().is_server_error() {
                    activity.put_back();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "could not report activity");
                activity.put_back();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser sends it.
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// A VS Code protocol message.
    fn msg(kind: u8, id: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&ack.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        m
    }

    #[test]
    fn keep_alives_acks_and_control_frames_are_not_use() {
        let mut o = WsObserver::new(true);
        let mut n = 0;
        for i in 0..20 {
            n += o.feed(&frame(2, true, &msg(9, 0, i, &[])));
            n += o.feed(&frame(2, true, &msg(3, 0, i, &[])));
            n += o.feed(&frame(9, true, b"ping"));
        }
        n += o.feed(&frame(
            2,
            true,
            &msg(2, 0, 0, br#"{"type":"auth","auth":"00000000000000000000"}"#),
        ));
        n += o.feed(&frame(2, true, &msg(6, 0, 0, &[])));
        assert_eq!(n, 0);
    }

    #[test]
    fn terminal_input_is_use_even_when_batched_or_split() {
        let mut o = WsObserver::new(true);
        assert_eq!(handshake(&mut o, 1), 0);
        let input = |arg: &[u8]| ipc(9, "remoteterminal", "$input", arg);
        assert_eq!(o.feed(&frame(2, true, &msg(1, 7, 3, &input(b"ls\r")))), 1);
        // Two messages plus a keep-alive in one frame.
        let mut batch = msg(1, 8, 3, &input(&[1; 40]));
        batch.extend(msg(9, 0, 3, &[]));
        batch.extend(msg(1, 9, 3, &input(&[2; 300])));
        assert_eq!(o.feed(&frame(2, true, &batch)), 2);
        // One large message (a paste) spread over a fragmented frame, fed byte by byte.
        let big = msg(1, 10, 4, &input(&[3; 70_000]));
        let (a, b) = big.split_at(5);
        let mut bytes = frame(2, false, a);
        bytes.extend(frame(0, true, b));
        let mut n = 0;
        for byte in bytes {
            n += o.feed(&[byte]);
        }
        assert_eq!(n, 1);
        // And the stream is still in step afterwards.
        assert_eq!(o.feed(&frame(2, true, &msg(9, 0, 10, &[]))), 0);
        assert_eq!(o.feed(&frame(2, true, &msg(1, 11, 10, &input(b"x")))), 1);
        // Before the handshake names the connection, nothing counts (fail safe).
        let mut o = WsObserver::new(true);
        assert_eq!(o.feed(&frame(2, true, &msg(1, 7, 3, &input(b"ls\r")))), 0);
    }

    /// An IPC request as VS Code serialises it: [100, id, channel, command] then the argument.
    pub(super) fn ipc(id: u8, channel: &str, command: &str, arg: &[u8]) -> Vec<u8> {
        let mut p = vec![4, 4, 6, 100, 6, id & 0x7f, 1, channel.len() as u8];
        p.extend_from_slice(channel.as_bytes());
        p.extend_from_slice(&[1, command.len() as u8]);
        p.extend_from_slice(command.as_bytes());
        p.extend_from_slice(arg);
        p
    }

    /// An extension-host RPC request: type 1, request id, proxy id, method, JSON args.
    pub(super) fn rpc(req: u32, method: &str, args: &str) -> Vec<u8> {
        let mut p = vec![1];
        p.extend_from_slice(&req.to_be_bytes());
        p.push(b'X');
        p.push(method.len() as u8);
        p.extend_from_slice(method.as_bytes());
        p.extend_from_slice(&(args.len() as u32).to_be_bytes());
        p.extend_from_slice(args.as_bytes());
        p
    }

    fn handshake(o: &mut WsObserver, connection: u8) -> u32 {
        let json = format!(
            r#"{{"type":"connectionType","commit":"abc","signedData":"x","desiredConnectionType":{connection}}}"#
        );
        o.feed(&frame(2, true, &msg(2, 0, 0, json.as_bytes())))
    }

    #[test]
    fn an_idle_workbench_management_connection_is_not_use() {
        // Bytes as captured from code-server 4.100.3's workbench in Chromium.
        let captured_ping = [
            4, 4, 6, 100, 6, 192, 3, 1, 9, 116, 101, 108, 101, 109, 101, 116, 114, 121, 1, 4, 112,
            105, 110, 103, 0,
        ];
        assert_eq!(
            ipc_request(&captured_ping),
            Some((100, "telemetry".into(), "ping".into()))
        );
        let mut o = WsObserver::new(true);
        assert_eq!(handshake(&mut o, 1), 0);
        assert_eq!(o.feed(&frame(2, true, &msg(1, 1, 0, &captured_ping))), 0);
        // Subscribing to events (102) is not use, nor is any call a person
        // does not make by hand: file-system calls (an open file changed on
        // disk is re-read), acknowledging a terminal's output, a call no one
        // has seen yet.
        let mut listen = ipc(5, "logger", "onDidChangeLogLevel", &[0]);
        listen[3] = 102;
        assert_eq!(o.feed(&frame(2, true, &msg(1, 2, 0, &listen))), 0);
        for (channel, command) in [
            ("remoteFilesystem", "writeFile"),
            ("remoteFilesystem", "stat"),
            ("remoteterminal", "$acknowledgeDataEvent"),
            ("someFutureChannel", "$somethingNew"),
        ] {
            let call = ipc(6, channel, command, &[0]);
            assert_eq!(
                o.feed(&frame(2, true, &msg(1, 3, 0, &call))),
                0,
                "{channel}.{command}"
            );
        }
        // Typing into a terminal is.
        assert_eq!(
            o.feed(&frame(
                2,
                true,
                &msg(1, 4, 0, &ipc(7, "remoteterminal", "$input", &[1, 1, b'a']))
            )),
            1
        );
    }

    #[test]
    fn an_idle_workbench_extension_host_connection_is_not_use() {
        let mut o = WsObserver::new(true);
        assert_eq!(handshake(&mut o, 2), 0);
        let event = r#"[{"created":[],"changed":[{"$mid":1,"path":"/settings/user","scheme":"vscode"}],"deleted":[]}]"#;
        assert_eq!(
            o.feed(&frame(
                2,
                true,
                &msg(1, 1, 0, &rpc(69, "$onFileEvent", event))
            )),
            0
        );
        assert_eq!(
            o.feed(&frame(
                2,
                true,
                &msg(1, 2, 0, &rpc(70, "$onDidChangeWindowActive", "[false]"))
            )),
            0
        );
        // Replies and acknowledgements to the extension host (types 5..12).
        assert_eq!(
            o.feed(&frame(2, true, &msg(1, 3, 0, &[7, 0, 0, 1, 144]))),
            0
        );
        assert_eq!(
            o.feed(&frame(2, true, &msg(1, 4, 0, &[5, 0, 0, 1, 145]))),
            0
        );
        // Nothing on this connection counts, not even what typing causes:
        // the same calls come from changes on disk and from extensions.
        // Dev8's extension reports the person's input instead.
        assert_eq!(
            o.feed(&frame(
                2,
                true,
                &msg(
                    1,
                    5,
                    0,
                    &rpc(71, "$acceptModelChanged", r#"[{"changes":[]}]"#)
                )
            )),
            0
        );
        assert_eq!(
            o.feed(&frame(
                2,
                true,
                &msg(1, 6, 0, &rpc(72, "$onDidChangeWindowActive", "[true]"))
            )),
            0
        );
    }

    #[test]
    fn other_websockets_count_data_frames_by_size() {
        let mut o = WsObserver::new(false);
        assert_eq!(o.feed(&frame(1, true, b"{}")), 0);
        assert_eq!(
            o.feed(&frame(
                1,
                true,
                br#"{"type":"update","path":"/src/app.js"}"#
            )),
            1
        );
        assert_eq!(o.feed(&frame(9, true, b"a ping that is long enough")), 0);
        // A VS Code socket whose stream stops parsing counts nothing (fail safe).
        let mut o = WsObserver::new(true);
        assert_eq!(
            o.feed(&frame(1, true, b"hello, this is not a vscode header")),
            0
        );
        assert_eq!(o.feed(&frame(1, true, b"short")), 0);
    }

    #[test]
    fn code_servers_processes_are_its_program_or_script_not_a_shell_it_starts() {
        let pkg = vec!["/opt/cs/node_modules/code-server".to_string()];
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_code_servers(
            &args(&[
                "/usr/bin/node",
                "/opt/cs/node_modules/code-server/out/node/entry.js"
            ]),
            &pkg
        ));
        assert!(is_code_servers(
            &args(&[
                "/opt/cs/node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg",
                "--files"
            ]),
            &pkg
        ));
        // A terminal's shell, with shell integration, is the user's.
        assert!(!is_code_servers(
            &args(&[
                "/bin/bash",
                "--init-file",
                "/opt/cs/node_modules/code-server/lib/vscode/out/vs/workbench/contrib/terminal/common/scripts/shellIntegration-bash.sh"
            ]),
            &pkg
        ));
        assert!(!is_code_servers(&args(&["make", "-j2"]), &pkg));
        assert!(!is_code_servers(
            &args(&["/usr/bin/node", "build.js"]),
            &pkg
        ));
        // code-server forks node with options before the script.
        assert!(is_code_servers(
            &args(&[
                "/usr/bin/node",
                "--dns-result-order=ipv4first",
                "/opt/cs/node_modules/code-server/lib/vscode/out/bootstrap-fork",
                "--type=extensionHost"
            ]),
            &pkg
        ));
    }

    #[test]
    fn page_views_count_but_assets_and_probes_do_not() {
        use http::{HeaderMap, HeaderValue, Method};
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(is_use(
            &Method::GET,
            "/",
            &h(&[("sec-fetch-dest", "document")])
        ));
        assert!(is_use(
            &Method::GET,
            "/",
            &h(&[("accept", "text/html,application/xhtml+xml")])
        ));
        assert!(is_use(&Method::POST, "/proxy/3000/api", &h(&[])));
        assert!(is_use(&Method::DELETE, "/absproxy/8080/items/1", &h(&[])));
        // The workbench's own posts (a key at every load) are not.
        assert!(!is_use(&Method::POST, "/mint-key", &h(&[])));
        // Nor the iframes it loads by itself (webviews, the web extension host).
        for (path, dest) in [
            (
                "/stable-409c64e/static/out/vs/workbench/contrib/webview/browser/pre/index.html",
                "iframe",
            ),
            (
                "/stable-409c64e/static/out/vs/workbench/contrib/webview/browser/pre/fake.html",
                "document",
            ),
            ("/proxy/3000/", "iframe"),
        ] {
            assert!(
                !is_use(&Method::GET, path, &h(&[("sec-fetch-dest", dest)])),
                "{path}"
            );
        }
        assert!(!is_use(
            &Method::GET,
            "/stable-abc/static/out/vs/loader.js",
            &h(&[("sec-fetch-dest", "script")])
        ));
        assert!(!is_use(
            &Method::GET,
            "/manifest.json",
            &h(&[("sec-fetch-dest", "manifest")])
        ));
        assert!(!is_use(
            &Method::GET,
            "/healthz",
            &h(&[("accept", "text/html")])
        ));
        assert!(!is_use(&Method::GET, "/_dev8/healthz", &h(&[])));
        assert!(!is_use(
            &Method::GET,
            "/x.css",
            &h(&[("accept", "text/css")])
        ));
    }
}
