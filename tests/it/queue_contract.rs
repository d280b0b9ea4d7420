//! The `JobQueue` contract, written once and run against both adapters: the
//! embedded queue (fast tier) and the Storage Queue adapter on Azurite, the
//! real Storage wire protocol (full tier). Both run on real time, so delays
//! here are short and every wait is bounded.

use crate::harness::logs::Captured;
use crate::peers::azurite;
use dev8::clock::SystemClock;
use dev8::queue::{Delivery, EmbeddedQueue, JobQueue, QueueError};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn embedded() -> Arc<dyn JobQueue> {
    Arc::new(EmbeddedQueue::in_memory("contract", Arc::new(SystemClock)).expect("embedded queue"))
}

async fn storage() -> Arc<dyn JobQueue> {
    Arc::new(azurite::storage_queue(&azurite::unique_queue("contract")).await)
}

/// Receive until a message is visible or `within` passes.
async fn receive_within(
    q: &dyn JobQueue,
    visibility: Duration,
    within: Duration,
) -> Option<Delivery> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(d) = q.receive(visibility).await.expect("receive") {
            return Some(d);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_delayed_message_stays_hidden_until_its_delay_passes(q: Arc<dyn JobQueue>) {
    let sent = Instant::now();
    q.send(r#"{"n":1}"#, Duration::from_secs(2)).await.unwrap();
    assert!(
        q.receive(Duration::from_secs(30)).await.unwrap().is_none(),
        "hidden at first"
    );
    assert_eq!(
        q.approximate_len().await.unwrap(),
        1,
        "counted while hidden"
    );
    let d = receive_within(q.as_ref(), Duration::from_secs(30), Duration::from_secs(6))
        .await
        .expect("visible after the delay");
    assert!(
        sent.elapsed() >= Duration::from_millis(1500),
        "not before the delay: {:?}",
        sent.elapsed()
    );
    assert_eq!((d.body.as_str(), d.dequeue_count), (r#"{"n":1}"#, 1));
    q.delete(&d).await.unwrap();
    assert_eq!(q.approximate_len().await.unwrap(), 0);
}

async fn a_received_message_comes_back_after_its_visibility_timeout(q: Arc<dyn JobQueue>) {
    q.send("job", Duration::ZERO).await.unwrap();
    let first = q
        .receive(Duration::from_secs(1))
        .await
        .unwrap()
        .expect("first delivery");
    assert_eq!(first.dequeue_count, 1);
    assert!(
        q.receive(Duration::from_secs(1)).await.unwrap().is_none(),
        "hidden while held"
    );
    let second = receive_within(q.as_ref(), Duration::from_secs(30), Duration::from_secs(5))
        .await
        .expect("redelivered after the visibility timeout");
    assert_eq!(
        (second.id.as_str(), second.dequeue_count),
        (first.id.as_str(), 2)
    );
    assert_ne!(second.pop_receipt, first.pop_receipt);
    // Only the current pop receipt deletes it.
    assert!(matches!(q.delete(&first).await, Err(QueueError::NotFound)));
    assert_eq!(q.approximate_len().await.unwrap(), 1);
    q.delete(&second).await.unwrap();
    assert!(
        matches!(q.delete(&second).await, Err(QueueError::NotFound)),
        "deleted once"
    );
    assert_eq!(q.approximate_len().await.unwrap(), 0);
}

async fn a_released_message_is_delivered_again_after_the_release_delay(q: Arc<dyn JobQueue>) {
    q.send("retry me", Duration::ZERO).await.unwrap();
    let d = q
        .receive(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("delivery");
    q.release(&d, Duration::from_secs(1)).await.unwrap();
    assert!(
        matches!(
            q.release(&d, Duration::ZERO).await,
            Err(QueueError::NotFound)
        ),
        "the receipt is spent"
    );
    assert!(
        q.receive(Duration::from_secs(60)).await.unwrap().is_none(),
        "hidden for the release delay"
    );
    let again = receive_within(q.as_ref(), Duration::from_secs(60), Duration::from_secs(5))
        .await
        .expect("visible after the release delay");
    assert_eq!((again.body.as_str(), again.dequeue_count), ("retry me", 2));
    q.release(&again, Duration::ZERO).await.unwrap();
    let third = receive_within(q.as_ref(), Duration::from_secs(60), Duration::from_secs(3))
        .await
        .expect("released now");
    assert_eq!(third.dequeue_count, 3);
    q.delete(&third).await.unwrap();
}

async fn a_poisoned_message_leaves_the_queue_for_the_poison_queue(q: Arc<dyn JobQueue>) {
    let body = r#"{"v":1,"kind":"reconcile","userId":"u","environmentId":"e"}"#;
    q.send(body, Duration::ZERO).await.unwrap();
    q.send("other", Duration::from_secs(60)).await.unwrap();
    assert_eq!(q.approximate_len().await.unwrap(), 2);
    let d = q
        .receive(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("delivery");
    assert_eq!(d.body, body);
    q.poison(&d).await.unwrap();
    assert_eq!(q.poisoned().await.unwrap(), vec![body.to_string()]);
    assert_eq!(
        q.approximate_len().await.unwrap(),
        1,
        "only the other message is left"
    );
    assert!(matches!(q.delete(&d).await, Err(QueueError::NotFound)));
}

async fn messages_keep_their_text_exactly(q: Arc<dyn JobQueue>) {
    // JSON with quotes, non-ASCII and XML-special characters survives the
    // base64 wire encoding unchanged.
    let body = r#"{"v":1,"note":"<a&b> \"quoted\" — ünïcode ✓"}"#;
    q.send(body, Duration::ZERO).await.unwrap();
    let d = q
        .receive(Duration::from_secs(30))
        .await
        .unwrap()
        .expect("delivery");
    assert_eq!(d.body, body);
    q.delete(&d).await.unwrap();
}

async fn a_batch_is_sent_whole_each_message_with_its_own_delay(q: Arc<dyn JobQueue>) {
    let batch = [
        (r#"{"n":1}"#.to_string(), Duration::ZERO),
        (r#"{"n":2}"#.to_string(), Duration::from_secs(2)),
        (r#"{"n":3}"#.to_string(), Duration::ZERO),
    ];
    q.send_all(&batch).await.unwrap();
    assert_eq!(
        q.approximate_len().await.unwrap(),
        3,
        "every message counted"
    );
    let mut now: Vec<String> = Vec::new();
    while let Some(d) = q.receive(Duration::from_secs(30)).await.unwrap() {
        q.delete(&d).await.unwrap();
        now.push(d.body);
    }
    now.sort();
    assert_eq!(
        now,
        [r#"{"n":1}"#, r#"{"n":3}"#],
        "the delayed one stays hidden"
    );
    let d = receive_within(q.as_ref(), Duration::from_secs(30), Duration::from_secs(6))
        .await
        .expect("visible after its delay");
    assert_eq!(d.body, r#"{"n":2}"#);
    q.delete(&d).await.unwrap();
    // An empty batch sends nothing.
    q.send_all(&[]).await.unwrap();
    assert_eq!(q.approximate_len().await.unwrap(), 0);
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded_queue {
            $(
                #[tokio::test]
                async fn $case() {
                    tokio::time::timeout(std::time::Duration::from_secs(30), super::$case(super::embedded().await))
                        .await
                        .expect("bounded in time");
                }
            )*
        }
        mod storage_queue_on_azurite {
            $(
                #[tokio::test]
                #[ignore = "full tier: needs Azurite"]
                async fn $case() {
                    tokio::time::timeout(std::time::Duration::from_secs(30), super::$case(super::storage().await))
                        .await
                        .expect("bounded in time");
                }
            )*
        }
    };
}

contract!(
    a_delayed_message_stays_hidden_until_its_delay_passes,
    a_received_message_comes_back_after_its_visibility_timeout,
    a_released_message_is_delivered_again_after_the_release_delay,
    a_poisoned_message_leaves_the_queue_for_the_poison_queue,
    messages_keep_their_text_exactly,
    a_batch_is_sent_whole_each_message_with_its_own_delay,
);

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn the_storage_adapter_writes_base64_text_as_the_queue_trigger_expects() {
    // Read the raw message text with a second client on the same queue: the
    // Functions queue trigger (messageEncoding: base64) decodes exactly this.
    use base64::Engine;
    let name = azurite::unique_queue("encoding");
    let q = azurite::storage_queue(&name).await;
    q.send(r#"{"v":1}"#, Duration::ZERO).await.unwrap();
    let raw = crate::fakes::host_sim::peek_raw_text(&name).await;
    assert_eq!(
        raw,
        base64::engine::general_purpose::STANDARD.encode(r#"{"v":1}"#)
    );
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn the_storage_adapter_logs_neither_the_key_nor_a_sas_signature() {
    // Everything the SDK, the transport and the adapter log, at TRACE level.
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.thread_subscriber());

    let q = storage().await;
    q.send("job", Duration::ZERO).await.unwrap();
    let d = q.receive(Duration::from_secs(30)).await.unwrap().unwrap();
    q.release(&d, Duration::ZERO).await.unwrap();
    assert!(
        matches!(q.delete(&d).await, Err(QueueError::NotFound)),
        "a stale receipt fails (and is logged)"
    );

    let logs = captured.text();
    // The SDK logs every request URL, SAS included, with the signature redacted.
    assert!(logs.contains("sig=REDACTED"), "requests were logged");
    let cs = azurite::connection_string();
    let key = cs
        .split(';')
        .find_map(|kv| kv.strip_prefix("AccountKey="))
        .expect("AccountKey");
    assert!(!logs.contains(key), "the account key is not logged");
    assert!(
        logs.split("sig=")
            .skip(1)
            .all(|rest| rest.starts_with("REDACTED")),
        "no SAS signature is logged"
    );
}
