//! Homes for the benches (`#[path]`-included): sizes read from the
//! environment, text that compresses as source code does, bytes that do not
//! compress, and a `node_modules`-like working set written into a home and
//! checked after it came back.

// Each bench uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A number from the environment variable `name`, or `default`.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `len` bytes that do not compress (xorshift from `seed`).
pub fn noise(len: usize, seed: &mut u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `len` bytes of JavaScript-like text, numbered by `n`.
pub fn text(len: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 80);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "export function handler{n}_{i}(req, res) {{ return res.json({{ ok: {i} }}); }}\n"
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// Files per package of the working set.
const PER_PACKAGE: usize = 50;
/// One file in this many is a native binary (`build/Release/*.node`).
const BINARY_EVERY: usize = 25;
/// The share of the bytes the binaries hold.
const BINARY_SHARE: f64 = 0.3;

/// A working set as a project's dependencies look on disk:
/// `<root>/node_modules/pkg-NNN/` with a `package.json`, source files in
/// `lib/` (text) and native binaries in `build/Release/` (incompressible,
/// `BINARY_SHARE` of the bytes), `PER_PACKAGE` files a package.
pub struct WorkingSet {
    /// Where it is, relative to the home.
    pub root: PathBuf,
    pub files: usize,
    pub bytes: u64,
    /// One file (relative to the home) and what it holds.
    probe: (PathBuf, Vec<u8>),
}

impl WorkingSet {
    /// Write about `total` bytes in `files` files under `home`/`root`.
    pub fn write(home: &Path, root: &Path, total: usize, files: usize) -> WorkingSet {
        let files = files.max(1);
        let binaries = (0..files).filter(|i| is_binary(*i)).count();
        // Each package's first file is its small `package.json`.
        let sources = files - binaries - files.div_ceil(PER_PACKAGE);
        let binary_bytes = if binaries == 0 {
            0
        } else {
            (total as f64 * BINARY_SHARE) as usize
        };
        let source_len = (total - binary_bytes) / sources.max(1);
        let binary_len = binary_bytes / binaries.max(1);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut set = WorkingSet {
            root: root.to_path_buf(),
            files: 0,
            bytes: 0,
            probe: (PathBuf::new(), Vec::new()),
        };
        for i in 0..files {
            let package = root.join(format!("node_modules/pkg-{:03}", i / PER_PACKAGE));
            let (path, body) = match i % PER_PACKAGE {
                0 => (
                    package.join("package.json"),
                    format!(
                        "{{\n  \"name\": \"pkg-{:03}\",\n  \"version\": \"1.0.{i}\",\n  \"main\": \"lib/m1.js\"\n}}\n",
                        i / PER_PACKAGE
                    )
                    .into_bytes(),
                ),
                k if is_binary(i) => (
                    package.join(format!("build/Release/native{k}.node")),
                    noise(binary_len, &mut seed),
                ),
                k => (package.join(format!("lib/m{k}.js")), text(source_len, i)),
            };
            let full = home.join(&path);
            std::fs::create_dir_all(full.parent().expect("a file has a folder"))
                .unwrap_or_else(|e| panic!("creating the folder of {}: {e}", full.display()));
            std::fs::write(&full, &body)
                .unwrap_or_else(|e| panic!("writing {}: {e}", full.display()));
            set.files += 1;
            set.bytes += body.len() as u64;
            if set.probe.1.len() <= body.len() {
                set.probe = (path, body);
            }
        }
        set
    }

    /// Panic unless the home holds the working set: as many files, as many
    /// bytes, and the probe file with the same content.
    pub fn check(&self, home: &Path, what: &str) {
        let (files, bytes) = count(&home.join(&self.root));
        assert_eq!(
            (files, bytes),
            (self.files, self.bytes),
            "{what}: the home's working set is not what was written (files, bytes)"
        );
        let (path, body) = &self.probe;
        let found = std::fs::read(home.join(path))
            .unwrap_or_else(|e| panic!("{what}: reading {}: {e}", path.display()));
        assert!(
            found == *body,
            "{what}: {} differs from what was written",
            path.display()
        );
    }
}

fn is_binary(i: usize) -> bool {
    !i.is_multiple_of(PER_PACKAGE) && i % BINARY_EVERY == BINARY_EVERY - 1
}

/// The regular files under `dir` and their bytes (links not followed); none
/// when it does not exist.
fn count(dir: &Path) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let (mut files, mut bytes) = (0, 0);
    for entry in entries {
        let entry = entry.expect("a folder entry");
        let meta = entry.metadata().expect("an entry's metadata");
        if meta.is_dir() {
            let (f, b) = count(&entry.path());
            files += f;
            bytes += b;
        } else if meta.is_file() {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}
