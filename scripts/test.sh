#!/usr/bin/env bash
# Run every test Dev8 has: the Rust unit tests, both tiers of the integration
# tests (the full tier against real peers: Azurite, the Cosmos-compatible
# server, code-server, npm oidc-provider), and the dashboard's JavaScript
# tests (unit, and end-to-end in headless Chromium). Plain `cargo test` is
# the fast tier alone and needs none of this.
#
#   scripts/test.sh            install what is missing (scripts/ci-deps.sh), start the
#                              peers on loopback, run everything, stop the peers
#   scripts/test.sh --no-deps  skip the install step (CI has just done it)
#
# It fails unless the integration binary ran every test it lists, the full
# tier included (none left ignored); it prints the counts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEPS=1
for arg in "$@"; do
  case "$arg" in
    --no-deps) DEPS=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

echo "== Rust tests (lib unit tests, the integration binary with its full tier, doc tests)"
cargo build --bin handler
# Not --all-targets: that would also run the benches. The output is kept to
# count what the integration binary ran.
LOG="$(mktemp)"
trap 'rm -f "$LOG"; cleanup' EXIT
cargo test -- --include-ignored 2>&1 | tee "$LOG"

echo "== Full tier check"
# What the binary holds, from libtest itself: every test, and the ignored
# (full-tier) ones. Then what it reported for the run above.
listed="$(cargo test -q --test it -- --list 2>/dev/null | grep -c ': test$' || true)"
full="$(cargo test -q --test it -- --list --ignored 2>/dev/null | grep -c ': test$' || true)"
result="$(awk '/Running tests\/it\/main.rs/ {it = 1} it && /^test result:/ {print; exit}' "$LOG")"
ran="$(sed -n 's/.* \([0-9][0-9]*\) passed.*/\1/p' <<<"$result")"
ignored="$(sed -n 's/.* \([0-9][0-9]*\) ignored.*/\1/p' <<<"$result")"
echo "integration tests: $listed listed ($((listed - full)) fast, $full full tier); $ran passed, $ignored ignored"
if [[ -z "$result" || -z "$ran" || "$ran" -ne "$listed" || "$ignored" -ne 0 || "$full" -eq 0 ]]; then
  echo "test.sh: ERROR: the full tier did not run completely (expected $listed passed and 0 ignored)" >&2
  exit 1
fi

echo "== Dashboard unit tests"
node --test static-web/tests/

if [ -d tests/js/e2e ]; then
  echo "== Dashboard end-to-end tests (headless Chromium)"
  node --test --test-concurrency=1 tests/js/e2e/*.test.mjs
fi
