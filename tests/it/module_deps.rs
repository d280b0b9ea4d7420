//! Tidy: the module dependency rules ARCHITECTURE.md states, checked from
//! the source. Every `crate::<module>` path in `handlers/<module>/…` (or
//! `handlers/<module>.rs`) is an edge between top-level modules; the graph
//! must have no cycle, and the rules below must hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Top-level module of a file under `handlers/`.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// `crate::x` references in Rust source, comments and doc lines excluded.
fn references(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The graph of `handlers/`, or of submodules of one folder (`under`).
fn graph(under: &str) -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("handlers")
        .join(under);
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut g = Graph::new();
    for path in all {
        let rel = path.strip_prefix(&root).unwrap();
        let Some(from) = module_of(rel) else { continue };
        let source = std::fs::read_to_string(&path).unwrap();
        let refs = if under.is_empty() {
            references(&source)
        } else {
            // Inside a folder: `super::x` and `crate::<folder>::x` name siblings.
            let prefix = format!("{}::", under);
            let mut refs = BTreeSet::new();
            for r in source
                .replace(&format!("crate::{prefix}"), "crate::")
                .replace("super::", "crate::")
                .lines()
                .flat_map(|l| references(&format!("{l}\n")))
            {
                refs.insert(r);
            }
            refs
        };
        let edges = g.entry(from.clone()).or_default();
        edges.extend(refs.into_iter().filter(|r| *r != from));
    }
    g
}

fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

fn uses(g: &Graph, from: &str, to: &str) -> bool {
    g.get(from).is_some_and(|e| e.contains(to))
}

#[test]
fn top_level_modules_form_no_cycle() {
    let g = graph("");
    assert!(g.len() > 15, "found only {:?}", g.keys());
    assert_eq!(cycle(&g), None, "import loop among top-level modules");
}

#[test]
fn the_layering_rules_hold() {
    let g = graph("");
    let forbidden: &[(&str, &[&str])] = &[
        // Pure: no I/O, no other module's types.
        (
            "domain",
            &[
                "store",
                "queue",
                "compute",
                "jobs",
                "http",
                "lifecycle",
                "auth",
                "config",
                "platform",
            ],
        ),
        // The API never talks to compute, nor to the raw queue.
        ("http", &["compute", "jobs", "queue", "procs"]),
        // The lifecycle service decides; only jobs act on compute.
        ("lifecycle", &["compute", "jobs", "http", "queue"]),
        // Compute backends know neither the queue nor the jobs: they ask for
        // reconciles through `reconciles`.
        (
            "compute",
            &[
                "queue",
                "jobs",
                "http",
                "lifecycle",
                "agent",
                "store",
                "platform",
            ],
        ),
        // The agent runs inside an environment: no control-plane state.
        (
            "agent",
            &[
                "store",
                "queue",
                "jobs",
                "http",
                "compute",
                "lifecycle",
                "platform",
                "quota",
            ],
        ),
        // Sign-in providers take their own settings.
        ("auth", &["config", "http", "platform"]),
        // Settings are read, not acted on.
        ("config", &["agent", "startup", "platform", "http", "jobs"]),
        ("reconciles", &["jobs", "compute", "lifecycle", "store"]),
        ("agent_env", &["agent", "compute", "config"]),
    ];
    let mut broken = Vec::new();
    for (from, tos) in forbidden {
        assert!(g.contains_key(*from), "no module {from}");
        for to in *tos {
            if uses(&g, from, to) {
                broken.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(broken.is_empty(), "forbidden dependencies: {broken:?}");
}

#[test]
fn only_jobs_and_the_wiring_reach_compute() {
    let g = graph("");
    let reach: BTreeSet<&str> = g
        .iter()
        .filter(|(_, e)| e.contains("compute"))
        .map(|(m, _)| m.as_str())
        .collect();
    // `config` names the ACI settings; `platform` holds the port for jobs;
    // `startup` builds it; `jobs` calls it; `doctor` (an operator's command,
    // no part of the control plane) reads ARM with its client and the ACI
    // backend's api-versions and capability rule, and never holds a `Compute`.
    let allowed: BTreeSet<&str> = ["config", "doctor", "jobs", "platform", "startup"].into();
    assert!(
        reach.is_subset(&allowed),
        "modules reaching compute: {reach:?}"
    );
}

#[test]
fn sign_in_providers_build_on_a_shared_leaf_not_on_each_other() {
    let g = graph("auth");
    assert_eq!(cycle(&g), None, "import loop inside auth");
    for p in ["github", "oidc", "provider"] {
        assert!(!uses(&g, p, "oauth"), "{p} -> oauth");
    }
    assert!(!uses(&g, "oidc", "github") && !uses(&g, "github", "oidc"));
}

#[test]
fn the_checker_sees_a_loop_when_there_is_one() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        references("use crate::store::x; // crate::http\nlet y = crate::domain::new_id();"),
        ["domain", "store"].into_iter().map(String::from).collect()
    );
}
