#!/usr/bin/env bash
# Run every test Dev8 has: Rust unit and integration tests (against real
# peers: Azurite, the Cosmos-compatible server, code-server) and the
# dashboard's JavaScript tests (unit, and end-to-end in headless Chromium).
#
#   scripts/test.sh            install what is missing (scripts/ci-deps.sh), start the
#                              peers on loopback, run everything, stop the peers
#   scripts/test.sh --no-deps  skip the install step (CI has just done it)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEPS=1
for arg in "$@"; do
  case "$arg" in
    --no-deps) DEPS=0 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

[ "$DEPS" = 1 ] && scripts/ci-deps.sh

# Peers on loopback; stopped again however the run ends.
started_peers=0
if ! scripts/peers.sh status >/dev/null 2>&1; then started_peers=1; fi
eval "$(scripts/peers.sh start)"
cleanup() { if [ "$started_peers" = 1 ]; then scripts/peers.sh stop || true; fi; }
trap cleanup EXIT

# No test may reach an address outside 127.0.0.1: keep the Azure SDK away
# from the instance-metadata endpoint, and tell it what the emulator lacks.
export COSMOS_DISABLE_IMDS=1
export AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED=false
export AZURE_COSMOS_BINARY_ENCODING_ENABLED=false
DEV8_CODE_SERVER="${DEV8_CODE_SERVER:-$ROOT/tools/code-server-4.100.3/node_modules/code-server/out/node/entry.js}"
export DEV8_CODE_SERVER

echo "== Rust tests"
cargo build --bin handler
cargo test --all-targets

echo "== Dashboard unit tests"
node --test static-web/tests/

if [ -d tests/js/e2e ]; then
  echo "== Dashboard end-to-end tests (headless Chromium)"
  node --test --test-concurrency=1 tests/js/e2e/*.test.mjs
fi
