#!/usr/bin/env bash
# Starts and stops the real peers the integration tests use, on loopback:
#   * Azurite, queue service only, in memory   (port $AZURITE_QUEUE_PORT, default 10001)
#   * Azurite, Blob service only, in memory    (port $AZURITE_BLOB_PORT, default 10000;
#     the snapshot store)
#   * @vercel/cosmosdb-server over plain http   (port $COSMOS_PORT, default 8081), patched
#     by scripts/patch-cosmosdb-server.mjs
# Both come from tests/js/node_modules (scripts/ci-deps.sh installs them).
#
#   scripts/peers.sh start    start what is not running, wait until each answers,
#                             then print the env (so `eval "$(scripts/peers.sh start)"` works)
#   scripts/peers.sh stop     stop them all
#   scripts/peers.sh status   say what runs
#   scripts/peers.sh env      print `export ...` lines for the tests
#
# Logs and pid files: target/peers/. Progress goes to stderr, exports to stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/tests/js/node_modules/.bin"
DIR="$ROOT/target/peers"
AZURITE_QUEUE_PORT="${AZURITE_QUEUE_PORT:-10001}"
AZURITE_BLOB_PORT="${AZURITE_BLOB_PORT:-10000}"
COSMOS_PORT="${COSMOS_PORT:-8081}"
WAIT_SECONDS="${PEERS_WAIT_SECONDS:-30}"

# Well-known, public development keys of the Azure emulators (not secrets).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
COSMOS_KEY='C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=='

log() { echo "peers.sh: $*" >&2; }
die() { echo "peers.sh: ERROR: $*" >&2; exit 1; }

# name -> port and command line
port_of() { case "$1" in azurite-queue) echo "$AZURITE_QUEUE_PORT" ;; azurite-blob) echo "$AZURITE_BLOB_PORT" ;; cosmosdb-server) echo "$COSMOS_PORT" ;; esac; }
port_var() { case "$1" in azurite-queue) echo AZURITE_QUEUE_PORT ;; azurite-blob) echo AZURITE_BLOB_PORT ;; cosmosdb-server) echo COSMOS_PORT ;; esac; }
set_cmd() {  # sets CMD to the peer's command line
  case "$1" in
    azurite-queue)
      CMD=("$BIN/azurite-queue" --queueHost 127.0.0.1 --queuePort "$AZURITE_QUEUE_PORT" \
        --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry) ;;
    azurite-blob)
      CMD=("$BIN/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZURITE_BLOB_PORT" \
        --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry) ;;
    cosmosdb-server)
      CMD=("$BIN/cosmosdb-server" -p "$COSMOS_PORT" --host 127.0.0.1 --no-ssl) ;;
  esac
}
PEERS=(azurite-queue azurite-blob cosmosdb-server)

# The pid in the pid file, if that process is alive and still is this peer.
running_pid() {
  local name="$1" pidfile="$DIR/$1.pid" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
  echo "$pid"
}

# Does anything answer HTTP on the port? (any status code counts)
answers() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null || true)"
  [[ -n "$code" && "$code" != 000 ]]
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_one() {
  local name="$1" port pid
  port="$(port_of "$name")"
  if pid="$(running_pid "$name")"; then
    log "$name already running (pid $pid, port $port)"
    return 0
  fi
  rm -f "$DIR/$name.pid"
  if port_in_use "$port"; then
    die "port $port is taken by another process (not a $name started by this script); stop it or set $(port_var "$name")=<free port>"
  fi
  local -a CMD
  set_cmd "$name"
  [[ -x "${CMD[0]}" ]] || die "${CMD[0]} not found: install the test tooling first (scripts/ci-deps.sh, or npm ci in tests/js)"
  mkdir -p "$DIR/azurite"
  # setsid: own session, so the peer outlives this script and a Ctrl-C in the
  # caller's terminal; cwd target/peers/azurite for whatever files a peer drops.
  (cd "$DIR/azurite" && exec setsid "${CMD[@]}" >"$DIR/$name.log" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$DIR/$name.pid"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until answers "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$DIR/$name.log" >&2 || true
      rm -f "$DIR/$name.pid"
      die "$name exited during start (log: $DIR/$name.log)"
    fi
    if (( SECONDS >= deadline )); then
      tail -n 20 "$DIR/$name.log" >&2 || true
      kill "$pid" 2>/dev/null || true
      rm -f "$DIR/$name.pid"
      die "$name did not answer on 127.0.0.1:$port within ${WAIT_SECONDS} s (log: $DIR/$name.log)"
    fi
    sleep 0.2
  done
  log "$name started (pid $pid, http://127.0.0.1:$port, log $DIR/$name.log)"
}

stop_one() {
  local name="$1" pid
  if ! pid="$(running_pid "$name")"; then
    rm -f "$DIR/$name.pid"
    log "$name not running"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM for 5 s; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/$name.pid"
  log "$name stopped (pid $pid)"
}

print_env() {
  cat <<EOF
export AZURITE_QUEUE_PORT=$AZURITE_QUEUE_PORT
export AzureWebJobsStorage='DefaultEndpointsProtocol=http;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY;QueueEndpoint=http://127.0.0.1:$AZURITE_QUEUE_PORT/$AZURITE_ACCOUNT;'
export AZURITE_BLOB_PORT=$AZURITE_BLOB_PORT
export COSMOS_PORT=$COSMOS_PORT
export COSMOS_ENDPOINT=http://127.0.0.1:$COSMOS_PORT
export COSMOS_KEY='$COSMOS_KEY'
export AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED=false
export AZURE_COSMOS_BINARY_ENCODING_ENABLED=false
export COSMOS_DISABLE_IMDS=1
EOF
}

case "${1:-}" in
  start)
    mkdir -p "$DIR"
    # The Cosmos server needs the project's patches (idempotent, quick).
    if [[ -d "$ROOT/tests/js/node_modules/@vercel/cosmosdb-server" ]]; then
      node "$ROOT/scripts/patch-cosmosdb-server.mjs" >/dev/null || die "patching @vercel/cosmosdb-server failed"
    fi
    for p in "${PEERS[@]}"; do start_one "$p"; done
    print_env
    ;;
  stop)
    for p in "${PEERS[@]}"; do stop_one "$p"; done
    ;;
  status)
    rc=0
    for p in "${PEERS[@]}"; do
      if pid="$(running_pid "$p")"; then
        echo "$p: running (pid $pid, port $(port_of "$p"))"
      else
        echo "$p: stopped"; rc=3
      fi
    done
    exit "$rc"
    ;;
  env)
    print_env
    ;;
  *)
    awk 'NR==1 || /^# shellcheck/ {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$0" >&2
    exit 2
    ;;
esac
