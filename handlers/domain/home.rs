//! Where an environment's home lives while it runs (its *home mode*),
//! chosen once at create and kept on the record: `share` (persistent
//! storage used in place: the Azure Files share on ACI, a folder locally)
//! or `snapshot` (the compute's own disk while it runs, kept as snapshots;
//! see `snapshot`). A record written before home modes existed reads as
//! `share`, which is what it has.

use super::Template;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum HomeMode {
    /// Persistent storage used in place. `DEV8_LOCAL_HOME_MODE` names it
    /// `direct` (locally it is a folder, not a share).
    #[default]
    #[value(name = "direct", alias = "share")]
    Share,
    /// Local disk while running, kept as snapshots.
    Snapshot,
}

impl HomeMode {
    pub fn is_share(&self) -> bool {
        *self == HomeMode::Share
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HomeMode::Share => "share",
            HomeMode::Snapshot => "snapshot",
        }
    }
}

/// Room left on a container group's local disk beyond the home and the
/// image: the restore's staging (a snapshot is unpacked beside the home and
/// renamed into place, so the two never hold the whole home each), logs,
/// `/tmp`, the proxy's container.
pub const STAGING_MARGIN_GB: u32 = 2;

/// How a new environment's home mode is chosen (a deployment's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeModeRule {
    /// Every new environment gets this mode (local compute:
    /// `DEV8_LOCAL_HOME_MODE`; fake compute).
    Always(HomeMode),
    /// ACI: `snapshot` when `storageGB` + the image + `STAGING_MARGIN_GB`
    /// fit the group's local disk (`DEV8_ACI_LOCAL_DISK_GB`), else `share`.
    FitsLocalDisk { local_disk_gb: u32 },
}

impl Default for HomeModeRule {
    fn default() -> Self {
        HomeModeRule::Always(HomeMode::Share)
    }
}

impl HomeModeRule {
    /// Is a `share` home a network share (ACI's Azure Files) rather than a
    /// folder on the machine (local compute)?
    pub fn share_is_network(self) -> bool {
        matches!(self, HomeModeRule::FitsLocalDisk { .. })
    }

    pub fn choose(self, template: Template, storage_gb: u16) -> HomeMode {
        match self {
            HomeModeRule::Always(mode) => mode,
            HomeModeRule::FitsLocalDisk { local_disk_gb } => {
                let needed = u32::from(storage_gb) + template.image_gb() + STAGING_MARGIN_GB;
                if needed <= local_disk_gb {
                    HomeMode::Snapshot
                } else {
                    HomeMode::Share
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_exactly_when_home_image_and_margin_fit_the_disk() {
        let t = Template::Node;
        let fits = 20 + t.image_gb() + STAGING_MARGIN_GB;
        let rule = |gb| HomeModeRule::FitsLocalDisk { local_disk_gb: gb };
        assert_eq!(rule(fits).choose(t, 20), HomeMode::Snapshot);
        assert_eq!(rule(fits - 1).choose(t, 20), HomeMode::Share);
        assert_eq!(rule(fits + 30).choose(t, 20), HomeMode::Snapshot);
        assert_eq!(rule(0).choose(t, 20), HomeMode::Share, "0 turns it off");
        // The image counts: a bigger one tips the same storage over.
        let go = Template::Golang;
        assert!(go.image_gb() > t.image_gb());
        assert_eq!(rule(fits).choose(go, 20), HomeMode::Share);
        assert_eq!(
            HomeModeRule::Always(HomeMode::Snapshot).choose(t, 100),
            HomeMode::Snapshot
        );
    }

    #[test]
    fn modes_read_and_write_as_share_and_snapshot() {
        assert_eq!(
            serde_json::to_string(&HomeMode::Snapshot).unwrap(),
            "\"snapshot\""
        );
        assert_eq!(
            serde_json::from_str::<HomeMode>("\"share\"").unwrap(),
            HomeMode::Share
        );
        use clap::ValueEnum;
        assert_eq!(HomeMode::from_str("direct", false), Ok(HomeMode::Share));
        assert_eq!(HomeMode::from_str("share", false), Ok(HomeMode::Share));
        assert_eq!(
            HomeMode::from_str("snapshot", false),
            Ok(HomeMode::Snapshot)
        );
    }
}
