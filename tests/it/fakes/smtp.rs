//! A tiny SMTP server on 127.0.0.1: a faithful stand-in for RFC 5321's
//! exchange as a relay receives one mail at a time. It greets with 220,
//! keeps the command sequence's state per connection (§4.1.4: EHLO/HELO
//! first, then MAIL, one or more RCPT, DATA; RSET clears the transaction;
//! out-of-order commands get 503, unknown ones 500), reads the message up to
//! the lone "." line removing dot-stuffing (§4.5.2), answers 250 and keeps
//! what it received; QUIT gets 221 and closes. No TLS and no AUTH are
//! offered (the EHLO answer lists neither), so a client may use neither.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One mail as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The reverse path from `MAIL FROM:<…>`.
    pub from: String,
    /// The forward paths from every accepted `RCPT TO:<…>`.
    pub to: Vec<String>,
    /// The message (headers and body) with dot-stuffing removed, CRLF lines.
    pub data: String,
}

pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    pub async fn spawn() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, sink.clone()));
            }
        });
        SmtpServer {
            port,
            received,
            task,
        }
    }

    /// Every mail received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Settings that send through this server (plain SMTP, no AUTH).
    pub fn configure(&self) -> impl FnOnce(&mut dev8::config::Settings) + 'static {
        let port = self.port;
        move |s| {
            s.smtp.smtp_host = Some("127.0.0.1".into());
            s.smtp.smtp_port = port;
            s.smtp.smtp_tls = dev8::mail::SmtpTls::None;
            s.smtp.smtp_from = Some("Dev8 <dev8@corp.example>".into());
        }
    }

    /// The confirmation token in the newest mail to `to` (the link's
    /// `#/confirm?token=` value), waiting briefly for it to arrive.
    pub async fn link_token(&self, to: &str) -> String {
        for _ in 0..100 {
            let found = self
                .received()
                .into_iter()
                .rev()
                .find(|m| m.to.iter().any(|t| t == to))
                .and_then(|m| token_in(&m.data));
            if let Some(t) = found {
                return t;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no confirmation mail to {to}: {:?}", self.received());
    }
}

/// The token of a `#/confirm?token=…` link in a message (its body decoded
/// from quoted-printable, RFC 2045 §6.7, when the message says so).
pub fn token_in(data: &str) -> Option<String> {
    let data = if data
        .to_ascii_lowercase()
        .contains("content-transfer-encoding: quoted-printable")
    {
        quoted_printable(data)
    } else {
        data.to_string()
    };
    let start = data.find("#/confirm?token=")? + "#/confirm?token=".len();
    let token: String = data[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!token.is_empty()).then_some(token)
}

/// Undo quoted-printable: soft line breaks (`=` at a line's end) join
/// lines, `=XX` is the byte 0xXX.
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(PartialEq)]
enum State {
    /// Connected, greeted; no EHLO/HELO yet.
    Fresh,
    /// EHLO/HELO done; no transaction.
    Ready,
    /// `MAIL FROM` accepted.
    Mail,
    /// At least one `RCPT TO` accepted.
    Rcpt,
}

/// The address inside `<…>` after a `MAIL FROM:` / `RCPT TO:` prefix.
fn path(arg: &str) -> Option<String> {
    let open = arg.find('<')?;
    let close = arg[open..].find('>')? + open;
    Some(arg[open + 1..close].to_string())
}

async fn reply(w: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    w.write_all(format!("{text}\r\n").as_bytes()).await.is_ok()
}

async fn session(stream: TcpStream, sink: Arc<Mutex<Vec<Received>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if !reply(&mut write, "220 127.0.0.1 ESMTP test relay").await {
        return;
    }
    let mut state = State::Fresh;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let upper = command.to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" | "HELO" => {
                state = State::Ready;
                from.clear();
                to.clear();
                if verb == "EHLO" {
                    "250-127.0.0.1 greets you\r\n250 8BITMIME".to_string()
                } else {
                    "250 127.0.0.1".to_string()
                }
            }
            "MAIL" if state == State::Ready && upper.starts_with("MAIL FROM:") => {
                match path(&command[10..]) {
                    Some(p) => {
                        from = p;
                        state = State::Mail;
                        "250 OK".into()
                    }
                    None => "501 Syntax: MAIL FROM:<address>".into(),
                }
            }
            "RCPT"
                if matches!(state, State::Mail | State::Rcpt) && upper.starts_with("RCPT TO:") =>
            {
                match path(&command[8..]) {
                    Some(p) if !p.is_empty() => {
                        to.push(p);
                        state = State::Rcpt;
                        "250 OK".into()
                    }
                    _ => "501 Syntax: RCPT TO:<address>".into(),
                }
            }
            "DATA" if state == State::Rcpt => {
                if !reply(&mut write, "354 End data with <CR><LF>.<CR><LF>").await {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let l = line.trim_end_matches(['\r', '\n']);
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(l));
                    data.push_str("\r\n");
                }
                sink.lock().unwrap().push(Received {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                });
                state = State::Ready;
                "250 OK: queued".into()
            }
            "RSET" => {
                if state != State::Fresh {
                    state = State::Ready;
                }
                from.clear();
                to.clear();
                "250 OK".into()
            }
            "NOOP" => "250 OK".into(),
            "QUIT" => {
                reply(&mut write, "221 Bye").await;
                return;
            }
            "MAIL" | "RCPT" | "DATA" => "503 Bad sequence of commands".into(),
            _ => "500 Command not recognized".into(),
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}
