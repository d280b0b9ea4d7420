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
#   scripts/test.sh --lint     also run clippy, while the ten-minute workbench
#                              watch waits in the background (what .ci/run does)
#
# It fails unless the integration binary ran every test it lists, the full
# tier included (none left ignored); it prints the counts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEPS=1
LINT=0
for arg in "$@"; do
  case "$arg" in
    --no-deps) DEPS=0 ;;
    --lint) LINT=1 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# The integration binary's ten-minute watch of an untouched workbench
# (issue 19) mostly waits: it runs in the background beside everything else.
# The other workbench tests time a person typing in a real VS Code tab and
# are sensitive to load, so they run first, one at a time (two at once on
# two cores already failed: the long-build test's busy terminal starves the
# other tab), and never at the same moment as the watch. The three runs of the binary together must run
# every test it lists (checked below).
WATCH=idle_workbench::an_untouched_workbench_counts_no_use_for_ten_minutes_is_warned_and_stopped
WORKBENCH=idle_workbench::
LOGS="$(mktemp -d)"
watch_pid=""
stop_watch() { if [ -n "$watch_pid" ]; then kill -- "-$watch_pid" 2>/dev/null || true; fi; }
trap 'stop_watch; rm -rf "$LOGS"; cleanup' EXIT
phase_start=$SECONDS
phase() { echo "test.sh: $1 took $((SECONDS - phase_start)) s"; phase_start=$SECONDS; }

echo "== Build (the handler binary, every test binary)"
cargo build --bin handler
# Not --all-targets: that would also run the benches.
cargo test --no-run
phase "the build"

echo "== Workbench tests that time typing (alone)"
cargo test --test it -- --include-ignored --test-threads=1 "$WORKBENCH" --skip "$WATCH" 2>&1 | tee "$LOGS/workbench"
phase "the workbench typing tests"

echo "== The ten-minute workbench watch, in the background: $WATCH"
set -m
cargo test --test it -- --include-ignored --exact "$WATCH" >"$LOGS/watch" 2>&1 &
watch_pid=$!
set +m

if [ "$LINT" = 1 ]; then
  echo "== Lints (beside the watch)"
  cargo clippy --all-targets -- -D warnings
  phase "clippy"
fi

echo "== Rust tests (lib unit tests, the rest of the integration binary with its full tier, doc tests)"
cargo test -- --include-ignored --skip "$WORKBENCH" 2>&1 | tee "$LOGS/rest"
phase "the rest of the Rust tests"

echo "== Dashboard unit tests"
node --test static-web/tests/

if [ -d tests/js/e2e ]; then
  echo "== Dashboard end-to-end tests (headless Chromium)"
  node --test --test-concurrency=1 tests/js/e2e/*.test.mjs
fi
phase "the dashboard tests"

echo "== Waiting for the workbench watch"
watch_status=0
wait "$watch_pid" || watch_status=$?
watch_pid=""
cat "$LOGS/watch"
phase "the rest of the watch"
if [ "$watch_status" -ne 0 ]; then
  echo "test.sh: ERROR: the workbench watch failed (exit $watch_status)" >&2
  exit 1
fi

echo "== Full tier check"
# What the binary holds, from libtest itself: every test, and the ignored
# (full-tier) ones. Then what its three runs above reported, added up.
listed="$(cargo test -q --test it -- --list 2>/dev/null | grep -c ': test$' || true)"
full="$(cargo test -q --test it -- --list --ignored 2>/dev/null | grep -c ': test$' || true)"
ran=0
ignored=0
for log in workbench watch rest; do
  # The `rest` log holds the lib's unit tests first: take the integration binary's line.
  if [ "$log" = rest ]; then
    result="$(awk '/Running tests\/it\/main.rs/ {it = 1} it && /^test result:/ {print; exit}' "$LOGS/$log")"
  else
    result="$(grep -m1 '^test result:' "$LOGS/$log" || true)"
  fi
  n="$(sed -n 's/.* \([0-9][0-9]*\) passed.*/\1/p' <<<"$result")"
  i="$(sed -n 's/.* \([0-9][0-9]*\) ignored.*/\1/p' <<<"$result")"
  if [[ -z "$n" || -z "$i" ]]; then
    echo "test.sh: ERROR: no result from the integration binary's $log run" >&2
    exit 1
  fi
  ran=$((ran + n))
  ignored=$((ignored + i))
done
echo "integration tests: $listed listed ($((listed - full)) fast, $full full tier); $ran passed, $ignored ignored"
if [[ "$ran" -ne "$listed" || "$ignored" -ne 0 || "$full" -eq 0 ]]; then
  echo "test.sh: ERROR: the full tier did not run completely (expected $listed passed and 0 ignored)" >&2
  exit 1
fi
