//! Templates (what an environment runs) and hardware presets (how big it is).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    Node,
    Python,
    Golang,
}

impl Template {
    pub const ALL: [Template; 3] = [Template::Node, Template::Python, Template::Golang];

    pub fn id(self) -> &'static str {
        match self {
            Template::Node => "node",
            Template::Python => "python",
            Template::Golang => "golang",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == s)
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Template::Node => "Node.js",
            Template::Python => "Python",
            Template::Golang => "Go",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Template::Node => "Node.js LTS with npm, ready for JavaScript and TypeScript",
            Template::Python => "Python 3 with pip and venv",
            Template::Golang => "Go toolchain with gopls",
        }
    }

    /// The image's size unpacked on a container group's local disk (GB,
    /// rounded up): the base (Debian slim, git, code-server ~0.7 GB, the
    /// agent) ~1.2 GB plus the toolchain (Node.js ~0.2 GB, Python with its
    /// build tools ~0.6 GB, Go with gopls, delve and build-essential
    /// ~1.3 GB), with the preinstalled extensions. Estimates from the
    /// Dockerfiles in `images/` (no image is built here): what the home-mode
    /// choice (`HomeModeRule`) counts against `DEV8_ACI_LOCAL_DISK_GB`.
    pub fn image_gb(self) -> u32 {
        match self {
            Template::Node => 2,
            Template::Python => 2,
            Template::Golang => 3,
        }
    }

    /// The image name (without registry) that runs this template on ACI.
    pub fn image(self) -> String {
        format!("dev8/{}", self.id())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preset {
    pub id: &'static str,
    pub display_name: &'static str,
    pub cpu_cores: u8,
    #[serde(rename = "memoryGB")]
    pub memory_gb: u8,
    #[serde(rename = "storageGB")]
    pub storage_gb: u16,
}

pub const PRESETS: [Preset; 3] = [
    Preset {
        id: "small",
        display_name: "Small",
        cpu_cores: 1,
        memory_gb: 2,
        storage_gb: 20,
    },
    Preset {
        id: "medium",
        display_name: "Medium",
        cpu_cores: 2,
        memory_gb: 4,
        storage_gb: 50,
    },
    Preset {
        id: "large",
        display_name: "Large",
        cpu_cores: 4,
        memory_gb: 8,
        storage_gb: 100,
    },
];

pub fn preset(id: &str) -> Option<Preset> {
    PRESETS.into_iter().find(|p| p.id == id)
}
