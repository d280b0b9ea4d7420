//! code-server, which the local compute backend runs for real (full tier).
//! Missing, it fails the test with what to do: CI installs it
//! (`scripts/ci-deps.sh`), locally run `scripts/setup.sh --no-build`.

use std::path::PathBuf;

/// code-server's entry: `DEV8_CODE_SERVER` or the project's tools folder.
pub fn entry() -> PathBuf {
    let explicit = std::env::var_os("DEV8_CODE_SERVER").map(PathBuf::from);
    let path = explicit.unwrap_or_else(|| {
        dev8::compute::local::tools_entry(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
    });
    assert!(
        path.is_file(),
        "code-server is not installed at {}: run `scripts/setup.sh --no-build` (or set DEV8_CODE_SERVER)",
        path.display()
    );
    path
}
