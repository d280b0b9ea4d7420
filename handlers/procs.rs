//! A small view of `/proc`: which processes belong to an environment, how
//! much CPU and memory they use, and how to end them. An environment's processes carry
//! the non-secret marker `DEV8_ENVIRONMENT_ID=<id>` in their environment: the
//! agent sets it for code-server, and everything started from the IDE (a
//! terminal, a build, a test run) inherits it.

use rustix::process::{Pid, Signal};
use std::collections::HashMap;

/// The environment variable that marks an environment's processes.
pub const MARKER: &str = crate::agent_env::ENVIRONMENT_ID;

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub ppid: i32,
    /// Start time in clock ticks since boot (tells a reused pid apart).
    pub start_time: u64,
    /// utime + stime + cutime + cstime, in clock ticks: its own CPU time plus
    /// that of children it has reaped.
    pub cpu_ticks: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// Every pid currently in `/proc`.
pub fn pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Parse `/proc/<pid>/stat` (the command name may hold spaces and parentheses,
/// so fields are counted from the last `)`).
pub fn parse_stat(pid: i32, text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        start_time: num(22)?,
        cpu_ticks: num(14)? + num(15)? + num(16)? + num(17)?,
        rss_pages: num(24)?,
    })
}

pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(
        pid,
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
    )
}

/// The command line, arguments joined by spaces (empty for kernel threads or
/// processes gone meanwhile).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim_end()
                .to_string()
        })
        .unwrap_or_default()
}

/// The process's arguments, the program first; empty if unreadable.
pub fn args(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The process's environment (`NAME=value` entries); empty if unreadable.
pub fn environ(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Does this process carry the marker of `environment_id`?
pub fn is_marked(pid: i32, environment_id: &str) -> bool {
    let want = format!("{MARKER}={environment_id}");
    environ(pid).contains(&want)
}

/// The processes of one environment, other than `except`.
pub fn marked(environment_id: &str, except: &[i32]) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|p| !except.contains(p) && is_marked(*p, environment_id))
        .collect()
}

/// Send `signal` to one process; a process already gone is not an error.
pub fn signal(pid: i32, signal: Signal) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, signal);
    }
}

/// Send `signal` to a process group.
pub fn signal_group(pgid: i32, signal: Signal) {
    if let Some(p) = Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(p, signal);
    }
}

/// Kill (SIGKILL) every process of an environment except `except`; returns how many were signalled.
pub fn kill_marked(environment_id: &str, except: &[i32]) -> usize {
    let me = std::process::id() as i32;
    let mut n = 0;
    for pid in marked(environment_id, except) {
        if pid != me {
            signal(pid, Signal::KILL);
            n += 1;
        }
    }
    n
}

/// Clock ticks per second (`USER_HZ`).
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// CPU time of a set of processes between two samples. Processes are keyed
/// by pid and start time, and only those seen in both samples count: a
/// short-lived helper (a shell probing the environment, a `git status` an
/// extension runs) never does, while a build's long-lived processes do, and
/// so do the short-lived children they reap (through `cutime`/`cstime`).
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: HashMap<(i32, u64), u64>,
}

impl CpuSampler {
    /// Take a sample of `stats`; returns the CPU ticks used since the previous
    /// sample (0 on the first).
    pub fn sample(&mut self, stats: &[Stat]) -> u64 {
        let mut delta = 0;
        let mut next = HashMap::with_capacity(stats.len());
        for s in stats {
            let key = (s.pid, s.start_time);
            if let Some(before) = self.last.get(&key) {
                delta += s.cpu_ticks.saturating_sub(*before);
            }
            next.insert(key, s.cpu_ticks);
        }
        self.last = next;
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (my (odd) cmd) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 987654 1000 200";
        let s = parse_stat(4242, line).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                ppid: 17,
                start_time: 987654,
                cpu_ticks: 250 + 50 + 7 + 3,
                rss_pages: 200,
            }
        );
    }

    #[test]
    fn this_process_is_visible_and_unmarked() {
        let me = std::process::id() as i32;
        assert!(pids().contains(&me));
        assert_eq!(stat(me).unwrap().pid, me);
        assert!(!cmdline(me).is_empty());
        assert!(!is_marked(me, "no-such-environment"));
    }

    #[test]
    fn sampler_counts_only_processes_seen_twice() {
        let mut s = CpuSampler::default();
        let st = |pid, start_time, cpu_ticks| Stat {
            pid,
            ppid: 0,
            start_time,
            cpu_ticks,
            rss_pages: 0,
        };
        assert_eq!(s.sample(&[st(1, 10, 100)]), 0);
        // pid 1 used 30 ticks; pid 2 is new and not counted yet.
        assert_eq!(s.sample(&[st(1, 10, 130), st(2, 20, 5)]), 30);
        assert_eq!(s.sample(&[st(2, 20, 25)]), 20);
        // pid 2 reused by a new process: not counted until seen again.
        assert_eq!(s.sample(&[st(2, 99, 400)]), 0);
        assert_eq!(s.sample(&[st(2, 99, 410)]), 10);
    }
}
