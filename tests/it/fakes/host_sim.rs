//! A stand-in for the Azure Functions host, which cannot run here (Core
//! Tools download the host at install time). It speaks the custom-handler
//! protocol as Microsoft documents it ("Azure Functions custom handlers":
//! request and response payloads, `enableForwardingHttpRequest`) plus the
//! quirks seen from the real host, and it reads host.json for its settings:
//!
//! * start: the `handler` binary is started the way host.json says
//!   (`defaultExecutablePath` + `arguments`, working directory = the app
//!   root) with the app settings as environment variables and
//!   `FUNCTIONS_CUSTOMHANDLER_PORT`; the host waits until the port answers;
//! * HTTP functions: with `enableForwardingHttpRequest` the request is sent
//!   on as-is (same method, `/api/...` path, query, headers, body) plus an
//!   `X-Azure-Functions-InvocationId` header; the answer comes back as-is;
//! * the queue trigger polls the Storage queue named in function.json
//!   (`%DEV8_QUEUE_NAME%` resolved from the settings) with its own Storage
//!   client (SharedKey-signed REST, independent of Dev8's adapter), decodes
//!   the message text as host.json's `messageEncoding` says (base64), and
//!   POSTs `/{FunctionName}` with `{"Data":{"<binding>": <the text,
//!   JSON-encoded a second time>}, "Metadata":{"DequeueCount":"1", "Id":
//!   ..., "PopReceipt": ..., <a JSON message's top-level properties>,
//!   "sys":{...}}}`: metadata values are strings, as the real host sends
//!   them. A 2xx answer deletes the message; any other answer makes it
//!   visible again after host.json's `visibilityTimeout`, and a failure on
//!   delivery `maxDequeueCount` copies it to `<queue>-poison` and deletes it;
//! * the timer trigger POSTs `/{FunctionName}` with `{"Data":{"<binding>":
//!   {"Schedule":..., "ScheduleStatus":..., "IsPastDue":...}}, "Metadata":{"sys":...}}`.
//!
//! Every answer to an invocation must be JSON with `Outputs`, `Logs` and
//! `ReturnValue`; the simulator asserts that. Like the host
//! (`DefaultHttpWorkerService.ProcessDefaultInvocationRequest`), it reads a
//! 2xx answer's payload and warns "Outputs not set on http response" when
//! `Outputs` is missing or empty and "ReturnValue not set on http response"
//! when `ReturnValue` is null (`host_warnings`); it fails the test on either,
//! since the real host would log them after every invocation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The project root (the Functions app root: host.json, functions/).
pub fn app_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the simulator takes from host.json and the function.json files.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub executable: String,
    pub arguments: Vec<String>,
    pub forwarding: bool,
    pub route_prefix: String,
    pub max_dequeue_count: u32,
    pub visibility_timeout: Duration,
    pub message_encoding: String,
    /// Queue function: (name, binding, queue name setting).
    pub queue_function: (String, String, String),
    /// Timer function: (name, binding).
    pub timer_function: (String, String),
}

fn timespan(s: &str) -> Duration {
    let parts: Vec<u64> = s.split(':').map(|p| p.parse().expect("hh:mm:ss")).collect();
    Duration::from_secs(parts[0] * 3600 + parts[1] * 60 + parts[2])
}

impl HostConfig {
    pub fn load(root: &Path) -> Self {
        let host: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("host.json")).expect("host.json"),
        )
        .expect("host.json is JSON");
        let ch = &host["customHandler"];
        let queues = &host["extensions"]["queues"];
        let mut queue_function = None;
        let mut timer_function = None;
        // A packaged app has its function folders at the root, as the host
        // reads them; the source tree keeps them under functions/.
        let folders = if root.join("functions").is_dir() {
            root.join("functions")
        } else {
            root.to_path_buf()
        };
        for entry in std::fs::read_dir(&folders).expect("function folders") {
            let dir = entry.unwrap().path();
            if !dir.join("function.json").is_file() {
                continue;
            }
            let f: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("function.json")).unwrap())
                    .unwrap();
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            let b = &f["bindings"][0];
            match b["type"].as_str() {
                Some("queueTrigger") => {
                    let setting = b["queueName"]
                        .as_str()
                        .unwrap()
                        .trim_matches('%')
                        .to_string();
                    queue_function = Some((name, b["name"].as_str().unwrap().to_string(), setting));
                }
                Some("timerTrigger") => {
                    timer_function = Some((name, b["name"].as_str().unwrap().to_string()))
                }
                _ => {}
            }
        }
        HostConfig {
            executable: ch["description"]["defaultExecutablePath"]
                .as_str()
                .expect("defaultExecutablePath")
                .into(),
            arguments: ch["description"]["arguments"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default(),
            forwarding: ch["enableForwardingHttpRequest"].as_bool().unwrap_or(false),
            route_prefix: host["extensions"]["http"]["routePrefix"]
                .as_str()
                .unwrap_or("api")
                .into(),
            max_dequeue_count: queues["maxDequeueCount"].as_u64().unwrap_or(5) as u32,
            visibility_timeout: queues["visibilityTimeout"]
                .as_str()
                .map(timespan)
                .unwrap_or_default(),
            message_encoding: queues["messageEncoding"]
                .as_str()
                .unwrap_or("base64")
                .into(),
            queue_function: queue_function.expect("a queue-triggered function"),
            timer_function: timer_function.expect("a timer-triggered function"),
        }
    }
}

// ---------------------------------------------------------------------------
// The host's own Storage client: SharedKey-signed REST (as the Functions
// host's Storage SDK does with a connection string).

#[derive(Clone)]
pub struct RawQueue {
    endpoint: String,
    account: String,
    key: Vec<u8>,
    pub name: String,
    http: reqwest::Client,
}

#[derive(Debug, Clone)]
pub struct RawMessage {
    pub id: String,
    pub pop_receipt: String,
    pub dequeue_count: u32,
    pub text: String,
    pub insertion_time: String,
    pub expiration_time: String,
    pub next_visible: String,
}

fn tag(xml: &str, name: &str) -> String {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.find(&open)
        .and_then(|a| {
            xml[a + open.len()..]
                .find(&close)
                .map(|b| xml[a + open.len()..a + open.len() + b].to_string())
        })
        .unwrap_or_default()
}

impl RawQueue {
    pub fn new(name: &str) -> Self {
        let cs = crate::peers::azurite::connection_string();
        let kv: BTreeMap<String, String> = cs
            .split(';')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        RawQueue {
            endpoint: kv["QueueEndpoint"].trim_end_matches('/').to_string(),
            account: kv["AccountName"].clone(),
            key: B64.decode(&kv["AccountKey"]).expect("AccountKey"),
            name: name.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn poison(&self) -> RawQueue {
        RawQueue {
            name: format!("{}-poison", self.name),
            ..self.clone()
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<String>,
    ) -> (u16, String) {
        let (status, _, text) = self.call_full(method, path, query, body).await;
        (status, text)
    }

    async fn call_full(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.endpoint)).unwrap();
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let date = httpdate(std::time::SystemTime::now());
        let version = "2021-12-02";
        let len = body.as_ref().map(|b| b.len()).unwrap_or(0);
        let content_type = if body.is_some() {
            "application/xml"
        } else {
            ""
        };
        let mut canon_query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        canon_query.sort();
        let string_to_sign = format!(
            "{}\n\n\n{}\n\n{}\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{}{}{}",
            method.as_str(),
            if len > 0 {
                len.to_string()
            } else {
                String::new()
            },
            content_type,
            self.account,
            url.path(),
            canon_query
                .iter()
                .map(|(k, v)| format!("\n{k}:{v}"))
                .collect::<String>()
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).unwrap();
        mac.update(string_to_sign.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        let mut req = self
            .http
            .request(method, url)
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("authorization", format!("SharedKey {}:{sig}", self.account));
        if let Some(b) = body {
            req = req.header("content-type", content_type).body(b);
        }
        let rsp = req.send().await.expect("Azurite answers");
        let status = rsp.status().as_u16();
        let headers = rsp.headers().clone();
        (status, headers, rsp.text().await.unwrap_or_default())
    }

    pub async fn create(&self) {
        let (s, t) = self
            .call(reqwest::Method::PUT, &format!("/{}", self.name), &[], None)
            .await;
        assert!(s == 201 || s == 204, "create queue: {s} {t}");
    }

    pub async fn put_text(&self, text: &str) {
        let body = format!("<QueueMessage><MessageText>{text}</MessageText></QueueMessage>");
        let (s, t) = self
            .call(
                reqwest::Method::POST,
                &format!("/{}/messages", self.name),
                &[],
                Some(body),
            )
            .await;
        assert_eq!(s, 201, "put message: {t}");
    }

    pub async fn get(&self, visibility: Duration) -> Option<RawMessage> {
        let q = [
            ("numofmessages", "1".to_string()),
            ("visibilitytimeout", visibility.as_secs().max(1).to_string()),
        ];
        let (s, xml) = self
            .call(
                reqwest::Method::GET,
                &format!("/{}/messages", self.name),
                &q,
                None,
            )
            .await;
        assert_eq!(s, 200, "get messages: {xml}");
        if !xml.contains("<QueueMessage>") {
            return None;
        }
        Some(RawMessage {
            id: tag(&xml, "MessageId"),
            pop_receipt: tag(&xml, "PopReceipt"),
            dequeue_count: tag(&xml, "DequeueCount").parse().expect("DequeueCount"),
            text: tag(&xml, "MessageText"),
            insertion_time: tag(&xml, "InsertionTime"),
            expiration_time: tag(&xml, "ExpirationTime"),
            next_visible: tag(&xml, "TimeNextVisible"),
        })
    }

    /// Message texts, visible ones only, without receiving them.
    pub async fn peek(&self) -> Vec<String> {
        let q = [
            ("peekonly", "true".to_string()),
            ("numofmessages", "32".to_string()),
        ];
        let (s, xml) = self
            .call(
                reqwest::Method::GET,
                &format!("/{}/messages", self.name),
                &q,
                None,
            )
            .await;
        assert_eq!(s, 200, "peek: {xml}");
        xml.split("<QueueMessage>")
            .skip(1)
            .map(|m| tag(m, "MessageText"))
            .collect()
    }

    pub async fn delete(&self, m: &RawMessage) {
        let q = [("popreceipt", m.pop_receipt.clone())];
        let (s, t) = self
            .call(
                reqwest::Method::DELETE,
                &format!("/{}/messages/{}", self.name, m.id),
                &q,
                None,
            )
            .await;
        assert_eq!(s, 204, "delete message: {t}");
    }

    pub async fn set_visibility(&self, m: &RawMessage, after: Duration) {
        let q = [
            ("popreceipt", m.pop_receipt.clone()),
            ("visibilitytimeout", after.as_secs().to_string()),
        ];
        let (s, t) = self
            .call(
                reqwest::Method::PUT,
                &format!("/{}/messages/{}", self.name, m.id),
                &q,
                None,
            )
            .await;
        assert_eq!(s, 204, "update message: {t}");
    }

    /// Messages in the queue, visible or not.
    pub async fn approximate_count(&self) -> u64 {
        let q = [("comp", "metadata".to_string())];
        let (s, headers, _) = self
            .call_full(reqwest::Method::GET, &format!("/{}", self.name), &q, None)
            .await;
        assert_eq!(s, 200);
        headers["x-ms-approximate-messages-count"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// The raw text of the next visible message, without receiving it.
pub async fn peek_raw_text(queue: &str) -> String {
    RawQueue::new(queue)
        .peek()
        .await
        .into_iter()
        .next()
        .expect("a message")
}

fn httpdate(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

// ---------------------------------------------------------------------------
// The host.

/// The answer of a forwarded HTTP request.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// The answer of a queue or timer invocation, checked for the protocol's shape.
#[derive(Debug)]
pub struct InvocationAnswer {
    pub status: u16,
    pub logs: Vec<String>,
    pub invocation_id: String,
}

/// The warnings the Functions host logs for an invocation's answer: only a
/// 2xx answer's payload is read (a failure throws first), then an empty or
/// missing `Outputs` and a null `ReturnValue` are each a warning.
pub fn host_warnings(status: u16, body: &Value) -> Vec<String> {
    let mut warnings = Vec::new();
    if !(200..300).contains(&status) {
        return warnings;
    }
    if body["Outputs"].as_object().is_none_or(|o| o.is_empty()) {
        warnings.push("Outputs not set on http response".to_string());
    }
    if body["ReturnValue"].is_null() {
        warnings.push("ReturnValue not set on http response".to_string());
    }
    warnings
}

/// What one queue poll did.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    Empty,
    Succeeded,
    /// Failed; visible again after the visibility timeout.
    Retried,
    /// Failed on the last delivery; moved to the poison queue.
    Poisoned,
}

pub struct HostSim {
    pub config: HostConfig,
    /// Where the handler listens.
    pub handler: String,
    pub queue: RawQueue,
    client: reqwest::Client,
    /// The child process, when the simulator started the binary.
    child: Option<tokio::process::Child>,
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn invocation_id() -> String {
    let u = ulid::Ulid::new().to_string().to_ascii_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &u[0..8],
        &u[8..12],
        &u[12..16],
        &u[16..20],
        &u[20..26]
    )
}

impl HostSim {
    /// A host in front of a handler that is already listening (in-process tests).
    pub fn attach(handler: &str, queue_name: &str) -> Self {
        HostSim {
            config: HostConfig::load(&app_root()),
            handler: handler.trim_end_matches('/').to_string(),
            queue: RawQueue::new(queue_name),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            child: None,
            stdout: Default::default(),
        }
    }

    /// Start the handler as the host does: host.json's executable and
    /// arguments from `app_dir` (an app root holding the `handler` binary),
    /// the settings as environment variables plus
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`; then wait until the port answers.
    pub async fn start(app_dir: &Path, settings: &BTreeMap<String, String>) -> Self {
        let config = HostConfig::load(app_dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = tokio::process::Command::new(app_dir.join(&config.executable));
        cmd.args(&config.arguments)
            .current_dir(app_dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
            )
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_WORKER_RUNTIME", "Custom")
            .envs(settings)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("the handler starts");
        let stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = stdout.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let queue_name = settings
            .get(&config.queue_function.2)
            .cloned()
            .unwrap_or_else(|| "env-jobs".into());
        let mut sim = HostSim {
            config,
            handler: format!("http://127.0.0.1:{port}"),
            queue: RawQueue::new(&queue_name),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            child: Some(child),
            stdout,
        };
        sim.wait_ready(Duration::from_secs(30)).await;
        sim
    }

    /// Wait until the handler answers `GET /` (the host's initialisation wait).
    pub async fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/", self.handler))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "the handler exited during start ({status}); output:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the handler did not answer within {within:?}; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn output(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Forward an HTTP function's request as-is (`enableForwardingHttpRequest`).
    pub async fn http(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> HttpAnswer {
        assert!(self.config.forwarding, "host.json enables HTTP forwarding");
        assert!(
            path_and_query.starts_with(&format!("/{}/", self.config.route_prefix)),
            "HTTP functions live under the route prefix"
        );
        let mut req = self
            .client
            .request(method, format!("{}{path_and_query}", self.handler))
            .header("x-azure-functions-invocationid", invocation_id())
            .timeout(Duration::from_secs(30));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let rsp = req.send().await.expect("the handler answers");
        let status = rsp.status().as_u16();
        let headers = rsp.headers().clone();
        let text = rsp.text().await.unwrap_or_default();
        HttpAnswer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// Invoke a non-HTTP function and check the answer's shape.
    pub async fn invoke(&self, function: &str, data: Value, metadata: Value) -> InvocationAnswer {
        let id = invocation_id();
        let rsp = self
            .client
            .post(format!("{}/{function}", self.handler))
            .header("x-azure-functions-invocationid", &id)
            .header("content-type", "application/json")
            .body(json!({"Data": data, "Metadata": metadata}).to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("the handler answers");
        let status = rsp.status().as_u16();
        let ct = rsp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = rsp.text().await.unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "invocation answers are JSON, got {ct:?}: {text}"
        );
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("invocation body is JSON ({e}): {text}"));
        for key in ["Outputs", "Logs", "ReturnValue"] {
            assert!(body.get(key).is_some(), "answer has {key}: {body}");
        }
        let warnings = host_warnings(status, &body);
        assert!(
            warnings.is_empty(),
            "the host would log {warnings:?} for {body}"
        );
        let logs = body["Logs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        InvocationAnswer {
            status,
            logs,
            invocation_id: id,
        }
    }

    /// The queue function's payload for a received message, as the host builds it.
    pub fn queue_payload(&self, m: &RawMessage) -> (Value, Value) {
        assert_eq!(self.config.message_encoding, "base64");
        let text = B64
            .decode(&m.text)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .expect("the host decodes base64 message text; anything else fails before the handler");
        let mut metadata = Map::new();
        // A JSON message's top-level properties also appear in Metadata.
        if let Ok(Value::Object(props)) = serde_json::from_str::<Value>(&text) {
            for (k, v) in props {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                metadata.insert(k, Value::String(v));
            }
        }
        for (k, v) in [
            ("DequeueCount", m.dequeue_count.to_string()),
            ("Id", m.id.clone()),
            ("PopReceipt", m.pop_receipt.clone()),
            ("InsertionTime", m.insertion_time.clone()),
            ("ExpirationTime", m.expiration_time.clone()),
            ("NextVisibleTime", m.next_visible.clone()),
        ] {
            metadata.insert(k.into(), Value::String(v));
        }
        metadata.insert(
            "sys".into(),
            json!({"MethodName": self.config.queue_function.0, "UtcNow": chrono::Utc::now().to_rfc3339(), "RandGuid": invocation_id()}),
        );
        // The message string, JSON-encoded a second time.
        let data = json!({ self.config.queue_function.1.clone(): Value::String(serde_json::to_string(&text).unwrap()) });
        (data, Value::Object(metadata))
    }

    /// One poll of the queue trigger: receive a message, invoke, complete.
    /// Returns what happened and the invocation's answer.
    pub async fn poll_queue(&self) -> (Poll, Option<InvocationAnswer>) {
        // While the function runs, the host keeps the message hidden.
        let Some(m) = self.queue.get(Duration::from_secs(600)).await else {
            return (Poll::Empty, None);
        };
        let (data, metadata) = self.queue_payload(&m);
        let answer = self
            .invoke(&self.config.queue_function.0, data, metadata)
            .await;
        let poll = if (200..300).contains(&answer.status) {
            self.queue.delete(&m).await;
            Poll::Succeeded
        } else if m.dequeue_count >= self.config.max_dequeue_count {
            let poison = self.queue.poison();
            poison.create().await;
            poison.put_text(&m.text).await;
            self.queue.delete(&m).await;
            Poll::Poisoned
        } else {
            self.queue
                .set_visibility(&m, self.config.visibility_timeout)
                .await;
            Poll::Retried
        };
        (poll, Some(answer))
    }

    /// Poll until `done()` holds or `within` passes; returns the polls made.
    pub async fn pump_until<F, Fut>(&self, within: Duration, mut done: F) -> Vec<Poll>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        let mut polls = Vec::new();
        loop {
            if done().await {
                return polls;
            }
            assert!(
                Instant::now() < deadline,
                "not done within {within:?} after polls {polls:?}; handler output:\n{}",
                self.output()
            );
            match self.poll_queue().await.0 {
                Poll::Empty => tokio::time::sleep(Duration::from_millis(200)).await,
                other => polls.push(other),
            }
        }
    }

    /// A timer invocation, shaped like the host's.
    pub async fn timer(&self, past_due: bool) -> InvocationAnswer {
        let now = chrono::Utc::now();
        let data = json!({ self.config.timer_function.1.clone(): {
            "Schedule": {"AdjustForDST": true},
            "ScheduleStatus": {
                "Last": (now - chrono::Duration::minutes(5)).to_rfc3339(),
                "Next": (now + chrono::Duration::minutes(5)).to_rfc3339(),
                "LastUpdated": now.to_rfc3339(),
            },
            "IsPastDue": past_due,
        }});
        let metadata = json!({"sys": {"MethodName": self.config.timer_function.0, "UtcNow": now.to_rfc3339(), "RandGuid": invocation_id()}});
        self.invoke(&self.config.timer_function.0.clone(), data, metadata)
            .await
    }

    /// Stop the handler as the host does on shutdown (SIGTERM, then wait).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// API steps through the simulated host, and the lifecycle both the
// in-process and the real-binary tests run.

impl HostSim {
    /// Sign up (with the browser's Origin) and get a bearer token.
    pub async fn user(&self, email: &str, origin: &str) -> String {
        let creds = json!({"email": email, "password": "correct-horse-battery"});
        let a = self
            .http(
                reqwest::Method::POST,
                "/api/auth/signup",
                &[("origin", origin)],
                Some(creds.clone()),
            )
            .await;
        assert_eq!(a.status, 201, "sign-up: {}", a.body);
        let t = self
            .http(reqwest::Method::POST, "/api/auth/token", &[], Some(creds))
            .await;
        assert_eq!(t.status, 200, "token: {}", t.body);
        t.body["token"].as_str().expect("token").to_string()
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> HttpAnswer {
        let auth = format!("Bearer {token}");
        self.http(method, path, &[("authorization", auth.as_str())], body)
            .await
    }

    /// The environment's status, or None once it is gone (404).
    pub async fn status_of(&self, token: &str, id: &str) -> Option<String> {
        let a = self
            .api(
                reqwest::Method::GET,
                &format!("/api/environments/{id}"),
                token,
                None,
            )
            .await;
        if a.status == 404 {
            return None;
        }
        assert_eq!(a.status, 200, "get: {}", a.body);
        Some(
            a.body["environment"]["status"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }

    /// Poll the queue until the environment has `status` (None: gone).
    pub async fn pump_until_status(
        &self,
        token: &str,
        id: &str,
        status: Option<&str>,
        within: Duration,
    ) -> Vec<Poll> {
        self.pump_until(within, || async move {
            let now = self.status_of(token, id).await;
            assert_ne!(now.as_deref(), Some("error"), "the environment failed");
            now.as_deref() == status
        })
        .await
    }

    /// create -> running -> stop -> stopped -> delete -> gone, every request
    /// forwarded and every job run through the simulated host. Returns the
    /// environment id.
    pub async fn lifecycle(&self, token: &str, within: Duration) -> String {
        let body = json!({"name": "lifecycle", "baseImage": "node", "preset": "small"});
        let a = self
            .api(
                reqwest::Method::POST,
                "/api/environments",
                token,
                Some(body),
            )
            .await;
        assert_eq!(a.status, 202, "create: {}", a.body);
        assert_eq!(a.body["environment"]["status"], "creating");
        let id = a.body["environment"]["id"].as_str().unwrap().to_string();
        let polls = self
            .pump_until_status(token, &id, Some("running"), within)
            .await;
        assert!(
            polls.iter().all(|p| *p == Poll::Succeeded),
            "every invocation succeeded: {polls:?}"
        );
        let s = self
            .api(
                reqwest::Method::GET,
                &format!("/api/environments/{id}/status"),
                token,
                None,
            )
            .await;
        assert!(
            s.body["ideUrl"].is_string(),
            "a running environment has an IDE URL: {}",
            s.body
        );

        let a = self
            .api(
                reqwest::Method::POST,
                &format!("/api/environments/{id}/stop"),
                token,
                Some(json!({})),
            )
            .await;
        assert_eq!(a.status, 202, "stop: {}", a.body);
        self.pump_until_status(token, &id, Some("stopped"), within)
            .await;

        let a = self
            .api(
                reqwest::Method::DELETE,
                &format!("/api/environments/{id}"),
                token,
                None,
            )
            .await;
        assert_eq!(a.status, 202, "delete: {}", a.body);
        self.pump_until_status(token, &id, None, within).await;
        // Nothing is left behind: no follow-up in the queue, nothing poisoned.
        self.pump_until(within, || async {
            self.queue.approximate_count().await == 0
        })
        .await;
        assert!(
            self.queue.poison().peek().await.is_empty(),
            "nothing poisoned"
        );
        id
    }
}
