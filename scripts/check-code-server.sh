#!/usr/bin/env bash
# Smoke test of the code-server installed by scripts/setup.sh: starts it on a
# free loopback port with throwaway data/extension/workspace folders, checks
# that /healthz answers and that GET / serves the VS Code workbench HTML, then
# stops it. Exit 0 only if both checks pass.
#
#   scripts/check-code-server.sh [path/to/entry.js]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENTRY="${1:-${DEV8_CODE_SERVER:-$ROOT/tools/code-server-4.100.3/node_modules/code-server/out/node/entry.js}}"
[[ -f "$ENTRY" ]] || { echo "check-code-server: no entry at $ENTRY (run scripts/setup.sh --no-build)" >&2; exit 1; }

TMP="$(mktemp -d)"
PID=""
cleanup() {
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

PORT="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
mkdir -p "$TMP/home" "$TMP/data" "$TMP/ext" "$TMP/work"
echo "hello" >"$TMP/work/README.md"

start_ns=$(date +%s%N)
HOME="$TMP/home" node "$ENTRY" --bind-addr "127.0.0.1:$PORT" --auth none \
  --disable-telemetry --disable-update-check --disable-workspace-trust \
  --user-data-dir "$TMP/data" --extensions-dir "$TMP/ext" "$TMP/work" \
  >"$TMP/code-server.log" 2>&1 &
PID=$!

health=""
for _ in $(seq 1 150); do  # up to 30 s
  if health="$(curl -fsS --max-time 2 "http://127.0.0.1:$PORT/healthz" 2>/dev/null)"; then break; fi
  kill -0 "$PID" 2>/dev/null || { cat "$TMP/code-server.log" >&2; echo "check-code-server: code-server exited" >&2; exit 1; }
  health=""
  sleep 0.2
done
if [[ -z "$health" ]]; then
  cat "$TMP/code-server.log" >&2
  echo "check-code-server: /healthz did not answer within 30 s" >&2
  exit 1
fi
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
echo "check-code-server: /healthz after ${elapsed_ms} ms: $health"

# GET / (following the redirect to ?folder=...) must be the workbench page.
page="$(curl -fsSL --max-time 10 "http://127.0.0.1:$PORT/")"
if grep -q 'vs/code/browser/workbench/workbench' <<<"$page" && grep -q 'vscode-workbench-web-configuration' <<<"$page"; then
  echo "check-code-server: GET / serves the workbench ($(wc -c <<<"$page") bytes)"
else
  printf '%s\n' "$page" | head -c 2000 >&2
  echo "check-code-server: GET / did not return the workbench HTML" >&2
  exit 1
fi
rss_kb="$(ps -o rss= -p "$PID" | tr -d ' ')"
echo "check-code-server: ok (pid $PID, port $PORT, RSS ${rss_kb} KiB)"
