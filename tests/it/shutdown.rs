//! `serve`'s background worker and graceful shutdown: a job in progress runs
//! to completion, and what it scheduled is still in the (file-backed) queue
//! afterwards, so nothing is lost across a restart.

use crate::harness::{Queue, TestApp};
use dev8::queue::{EmbeddedQueue, JobQueue};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn shutdown_waits_for_the_job_in_progress_and_keeps_the_queue() {
    let app = TestApp::builder()
        .queue(Queue::File)
        .background(true)
        .spawn()
        .await;
    let compute = app.fake().clone();
    compute.set_start_delay(Duration::from_millis(600));
    compute.set_boot_polls(10);
    let store = app.platform.store.clone();
    let clock = app.clock.clone();

    let u = app.user("ada@x.io").await;
    let id = app.new_env(&u, "a").await;

    // Wait until the worker is inside the (slow) start, then ask to stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while compute.counts(&id).starts == 0 && compute.state(&id).is_none() {
        let leased = store
            .active_environments()
            .await
            .unwrap()
            .iter()
            .any(|v| v.value.lease.is_some());
        if leased {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never picked the job up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data = tokio::time::timeout(Duration::from_secs(10), app.shutdown())
        .await
        .expect("shut down within 10 s");

    assert_eq!(compute.counts(&id).starts, 1, "the start ran to completion");
    let env = store
        .active_environments()
        .await
        .unwrap()
        .pop()
        .unwrap()
        .value;
    assert!(env.lease.is_none(), "the lease was given back");
    let reopened =
        EmbeddedQueue::open(&data.path().join("queue.db"), "env-jobs", Arc::new(clock)).unwrap();
    assert_eq!(
        reopened.approximate_len().await.unwrap(),
        1,
        "the follow-up survived the shutdown"
    );
}
