//! Real workbench traffic replayed through the agent's classifier (fast
//! tier). The fixtures in `tests/it/fixtures/` are what code-server
//! 4.100.3's workbench in headless Chromium sent on its WebSockets, recorded
//! by the full-tier tests in `idle_workbench.rs` (`tests/js/ide/workbench.mjs`
//! writes `test-artifacts/idle/<test>.jsonl`) and compacted by
//! `tests/js/ide/fixture.mjs` (long message bodies cut after their first KiB;
//! the replay puts the cut length back). To re-record after a code-server
//! upgrade: run those tests, then the compaction, and check these counts.

use dev8::agent::activity::WsObserver;
use std::collections::HashMap;

/// A client frame as a browser sends it (binary, final, masked), encoded by tungstenite.
fn masked_frame(payload: Vec<u8>) -> Vec<u8> {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let mut frame = Frame::message(payload, OpCode::Data(Data::Binary), true);
    frame.header_mut().mask = Some([0x5a, 0x13, 0xc4, 0x7e]);
    let mut bytes = Vec::new();
    frame.format(&mut bytes).unwrap();
    bytes
}

/// Replay a fixture, one observer per WebSocket: the messages counted as use.
fn replay(name: &str) -> u32 {
    use base64::Engine;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut sockets: HashMap<u64, WsObserver> = HashMap::new();
    let mut used = 0;
    let mut frames = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut payload = Vec::new();
        for part in v["parts"].as_array().unwrap() {
            match part {
                serde_json::Value::String(b) => {
                    payload.extend(base64::engine::general_purpose::STANDARD.decode(b).unwrap())
                }
                n => payload.resize(payload.len() + n.as_u64().unwrap() as usize, 0),
            }
        }
        let ws = v["ws"].as_u64().unwrap();
        let observer = sockets.entry(ws).or_insert_with(|| WsObserver::new(true));
        used += observer.feed(&masked_frame(payload));
        frames += 1;
    }
    assert!(frames > 100, "{name}: a real session, not an empty file");
    used
}

#[test]
fn an_untouched_workbench_sends_nothing_that_counts() {
    // Ten minutes of an open tab nobody touched, start-up included.
    assert_eq!(replay("untouched"), 0);
}

#[test]
fn typing_in_an_editor_is_not_seen_on_the_wire_but_through_the_extension() {
    // A file opened and lines typed (in Restricted Mode): the same calls
    // come from changes on disk, so the classifier counts none of them;
    // Dev8's extension reports the keystrokes instead.
    assert_eq!(replay("typing-restricted"), 0);
}

#[test]
fn each_key_typed_into_a_terminal_counts_and_nothing_else_does() {
    // `while :; do :; done` and Enter, typed into a new terminal.
    assert_eq!(replay("build"), "while :; do :; done".len() as u32 + 1);
    // A command typed (and Enter), then a minute of its output and of an
    // open file rewritten on disk every two seconds.
    assert_eq!(
        replay("printing"),
        "while :; do date; sleep 0.2; done".len() as u32 + 1
    );
}
