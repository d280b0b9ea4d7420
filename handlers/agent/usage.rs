//! What an environment uses, measured by its agent for the periodic report:
//! CPU (a share of the environment's size in CPUs), memory (used and its
//! limit) and workspace disk (bytes used under the home and its size).
//!
//! Two sources, chosen by the compute backend (`DEV8_AGENT_USAGE_SOURCE`):
//! * **processes** (local compute): the environment's processes (those
//!   carrying its marker, see `procs`: the agent, code-server and everything
//!   started from the IDE); CPU from `utime+stime(+children)` deltas, memory
//!   as their summed RSS. The limits are the environment's nominal size: the
//!   local backend enforces none. Disk: a walk of the home, capped at
//!   `WALK_MAX_ENTRIES` entries (the home is a folder on the host's disk).
//! * **cgroup** (ACI): the container's own cgroup, as the kernel exposes it
//!   at `/sys/fs/cgroup` inside the container (v2: `cpu.stat` `usage_usec`,
//!   `memory.current`, `memory.max`; v1: `cpuacct.usage`,
//!   `memory.usage_in_bytes`, `memory.limit_in_bytes`); an unlimited memory
//!   limit falls back to the nominal size. Disk: `statvfs` of the home,
//!   which is the environment's own Azure Files share (one call, exact).

use crate::procs::{self, CpuSampler};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// At most this many directory entries are visited when measuring the home
/// by walking it; beyond, the figure is a lower bound. A walk of 100,000
/// files took 0.65-1.1 s here (warm cache, 2 cores shared with builds;
/// docs/agent.md): at most that, on a blocking thread, once per report.
pub const WALK_MAX_ENTRIES: usize = 100_000;

/// Where the numbers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Processes,
    /// The cgroup filesystem root (`/sys/fs/cgroup` in a container).
    Cgroup(PathBuf),
}

impl Source {
    /// `DEV8_AGENT_USAGE_SOURCE`: `processes` (default) or `cgroup`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "processes" => Some(Source::Processes),
            "cgroup" => Some(Source::Cgroup(PathBuf::from("/sys/fs/cgroup"))),
            _ => None,
        }
    }
}

/// The environment's size (what the user chose).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    pub cpus: f64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

/// One measurement, as the report carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub disk_bytes: u64,
    pub disk_limit_bytes: u64,
}

impl Measured {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "cpuPercent": (self.cpu_percent * 10.0).round() / 10.0,
            "memoryBytes": self.memory_bytes,
            "memoryLimitBytes": self.memory_limit_bytes,
            "diskBytes": self.disk_bytes,
            "diskLimitBytes": self.disk_limit_bytes,
        })
    }
}

/// A cgroup's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupSample {
    /// CPU time used by the cgroup since it was made, in microseconds.
    pub cpu_usec: u64,
    pub memory_bytes: u64,
    /// `None` when unlimited (`max` in v2, a near-`u64::MAX` page-aligned value in v1).
    pub memory_limit: Option<u64>,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// v1 writes "no limit" as the largest page-aligned `i64`; anything this
/// large is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// Read a cgroup (v2 if `cgroup.controllers` exists at `root`, else v1 with
/// the `cpuacct` and `memory` hierarchies below `root`).
pub fn read_cgroup(root: &Path) -> Option<CgroupSample> {
    if root.join("cgroup.controllers").exists() {
        let cpu_usec = read(&root.join("cpu.stat"))?.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == "usage_usec").then(|| number(v)).flatten()
        })?;
        let memory_bytes = number(&read(&root.join("memory.current"))?)?;
        let memory_limit = read(&root.join("memory.max")).and_then(|t| number(&t));
        return Some(CgroupSample {
            cpu_usec,
            memory_bytes,
            memory_limit,
        });
    }
    let cpuacct = ["cpuacct", "cpu,cpuacct"]
        .iter()
        .map(|d| root.join(d).join("cpuacct.usage"))
        .find(|p| p.exists())?;
    let cpu_usec = number(&read(&cpuacct)?)? / 1000;
    let memory_bytes = number(&read(&root.join("memory/memory.usage_in_bytes"))?)?;
    let memory_limit = read(&root.join("memory/memory.limit_in_bytes"))
        .and_then(|t| number(&t))
        .filter(|l| *l < V1_UNLIMITED);
    Some(CgroupSample {
        cpu_usec,
        memory_bytes,
        memory_limit,
    })
}

/// Bytes used under `dir`, counting at most `max_entries` entries (files,
/// folders, links; symbolic links are not followed). Blocks actually
/// allocated, so sparse files count for what they take.
pub fn disk_used(dir: &Path, max_entries: usize) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > max_entries {
                return total;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Bytes used on the filesystem holding `dir`, and its size.
pub fn filesystem_usage(dir: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    let size = s.f_blocks * s.f_frsize;
    let free = s.f_bfree * s.f_frsize;
    Some((size.saturating_sub(free), size))
}

/// The environment's processes' summed resident memory, and their stats.
fn processes(environment_id: &str) -> (u64, Vec<procs::Stat>) {
    let page = rustix::param::page_size() as u64;
    let mut rss = 0;
    let mut stats = Vec::new();
    for pid in procs::marked(environment_id, &[]) {
        if let Some(s) = procs::stat(pid) {
            rss += s.rss_pages * page;
            stats.push(s);
        }
    }
    (rss, stats)
}

/// Measures one environment again and again; CPU is the share used since
/// the previous measurement.
pub struct Meter {
    source: Source,
    environment_id: String,
    home: PathBuf,
    size: Size,
    sampler: CpuSampler,
    last_cgroup_usec: Option<u64>,
    last: Instant,
}

impl Meter {
    pub fn new(source: Source, environment_id: &str, home: &Path, size: Size) -> Self {
        Meter {
            source,
            environment_id: environment_id.to_string(),
            home: home.to_path_buf(),
            size,
            sampler: CpuSampler::default(),
            last_cgroup_usec: None,
            last: Instant::now(),
        }
    }

    /// Measure now (blocking: reads `/proc` or the cgroup, walks the home).
    pub fn measure(&mut self) -> Measured {
        let window = self.last.elapsed().as_secs_f64().max(0.001);
        self.last = Instant::now();
        let (cpu_seconds, memory_bytes, memory_limit_bytes) = match &self.source {
            Source::Processes => {
                let (rss, stats) = processes(&self.environment_id);
                let ticks = self.sampler.sample(&stats);
                (
                    ticks as f64 / procs::ticks_per_second() as f64,
                    rss,
                    self.size.memory_bytes,
                )
            }
            Source::Cgroup(root) => match read_cgroup(root) {
                Some(s) => {
                    let used = self
                        .last_cgroup_usec
                        .map_or(0, |before| s.cpu_usec.saturating_sub(before));
                    self.last_cgroup_usec = Some(s.cpu_usec);
                    (
                        used as f64 / 1e6,
                        s.memory_bytes,
                        s.memory_limit.unwrap_or(self.size.memory_bytes),
                    )
                }
                None => (0.0, 0, self.size.memory_bytes),
            },
        };
        let (disk_bytes, disk_limit_bytes) = match &self.source {
            Source::Processes => (
                disk_used(&self.home, WALK_MAX_ENTRIES),
                self.size.disk_bytes,
            ),
            Source::Cgroup(_) => filesystem_usage(&self.home).unwrap_or((0, self.size.disk_bytes)),
        };
        Measured {
            cpu_percent: cpu_seconds / (window * self.size.cpus.max(0.01)) * 100.0,
            memory_bytes,
            memory_limit_bytes: memory_limit_bytes.max(1),
            disk_bytes,
            disk_limit_bytes: disk_limit_bytes.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("handlers/agent/testdata")
            .join(name)
    }

    #[test]
    fn cgroup_v2_is_read_from_its_files() {
        let s = read_cgroup(&fixture("cgroup-v2")).unwrap();
        assert_eq!(
            s,
            CgroupSample {
                cpu_usec: 8_412_977,
                memory_bytes: 318_230_528,
                memory_limit: Some(2_147_483_648),
            }
        );
        let s = read_cgroup(&fixture("cgroup-v2-unlimited")).unwrap();
        assert_eq!(s.memory_limit, None);
        assert_eq!(s.cpu_usec, 1_337);
    }

    #[test]
    fn cgroup_v1_is_read_from_its_hierarchies() {
        let s = read_cgroup(&fixture("cgroup-v1")).unwrap();
        assert_eq!(
            s,
            CgroupSample {
                cpu_usec: 5_123_456,
                memory_bytes: 104_857_600,
                // 9223372036854771712: v1's "no limit".
                memory_limit: None,
            }
        );
        assert!(read_cgroup(&fixture("no-such-cgroup")).is_none());
    }

    #[test]
    fn cgroup_cpu_is_a_share_of_the_size_and_unlimited_memory_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory\n").unwrap();
        let write = |usec: u64| {
            std::fs::write(
                root.join("cpu.stat"),
                format!("usage_usec {usec}\nuser_usec 0\nsystem_usec 0\n"),
            )
            .unwrap()
        };
        std::fs::write(root.join("memory.current"), "1000\n").unwrap();
        std::fs::write(root.join("memory.max"), "max\n").unwrap();
        write(1_000_000);
        let size = Size {
            cpus: 2.0,
            memory_bytes: 4 << 30,
            disk_bytes: 20 << 30,
        };
        let mut m = Meter::new(Source::Cgroup(root.to_path_buf()), "e1", root, size);
        assert_eq!(m.measure().cpu_percent, 0.0);
        write(1_000_000 + 2_000_000_000);
        let second = m.measure();
        // 2000 CPU-seconds in a short window on 2 CPUs: far above 100%; only
        // the formula is checked here (the window is real time).
        assert!(second.cpu_percent > 100.0);
        assert_eq!(second.memory_bytes, 1000);
        assert_eq!(second.memory_limit_bytes, 4 << 30);
    }

    #[test]
    fn the_walk_counts_allocated_bytes_and_stops_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/big"), vec![7u8; 1 << 20]).unwrap();
        std::fs::write(dir.path().join("small"), b"x").unwrap();
        let all = disk_used(dir.path(), 1000);
        assert!(all >= 1 << 20, "{all}");
        // Two entries (the folder `a` and the file `small`, in some order) do
        // not reach the big file three levels down.
        assert!(disk_used(dir.path(), 2) < 1 << 20);
    }
}
