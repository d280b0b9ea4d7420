//! Snapshot mode on ACI (docs/aci.md#snapshot-mode) against the ARM fake
//! (`fakes::arm`): which environments get it, the container group without
//! the home share and with the TLS container's own share, and a stop that
//! stops the group only after the agent's final snapshot (the fake's
//! stand-in for `agent::final_snapshot`), within its bound.

use crate::aci::{create, record, spawn_with_disk};
use dev8::domain::{STAGING_MARGIN_GB, Template};
use serde_json::Value;

/// The disk a Small (20 GB) Python environment needs for snapshot mode.
fn small_python_needs() -> u32 {
    20 + Template::Python.image_gb() + STAGING_MARGIN_GB
}

#[tokio::test]
async fn the_home_mode_is_snapshot_exactly_when_home_image_and_margin_fit_the_disk() {
    let fits = small_python_needs();
    for (disk, mode, interval) in [
        (fits, "snapshot", Value::from(10)),
        (fits - 1, "share", Value::Null),
    ] {
        let (t, u) = spawn_with_disk(disk).await;
        let id = create(&t, &u, "mode", "small").await;
        let env = record(&t, &u, &id).await;
        assert_eq!(env["homeMode"], mode, "disk {disk} GB: {env}");
        assert_eq!(env["snapshotIntervalMinutes"], interval);
        // The list shows the same mode.
        let listed = t.get("/api/environments", &u).await;
        assert_eq!(listed.body["environments"][0]["homeMode"], mode);
    }
}
