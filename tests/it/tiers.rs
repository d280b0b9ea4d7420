//! Tidy check for the two tiers: every ignored test in this binary is a
//! full-tier test that names the peer it needs. `scripts/test.sh` runs the
//! full tier with `--include-ignored` and checks by count that nothing was
//! left out, so an `ignore` for any other reason would hide a test there.

use std::path::Path;

const IGNORE: &str = concat!("#[", "ignore");
const FULL_TIER: &str = concat!("#[", "ignore = \"full tier: needs ");

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_ignored_test_is_full_tier_and_names_its_peer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut marked = 0;
    let mut wrong = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.starts_with(IGNORE) {
                continue;
            }
            if line.starts_with(FULL_TIER) && line.ends_with("\"]") {
                marked += 1;
            } else {
                wrong.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "ignored, but not as `{FULL_TIER}<peer>\"]`:\n{}",
        wrong.join("\n")
    );
    assert!(
        marked > 0,
        "no full-tier tests found under {}",
        root.display()
    );
}
