#!/usr/bin/env bash
# shellcheck disable=SC2015  # `a && b || die` is meant: die unless both hold
# Dev8 setup: installs the pinned code-server used by the local compute backend
# into tools/ (gitignored), then builds the control-plane binary.
#
#   scripts/setup.sh              install code-server (if needed) + cargo build --release --bin handler
#   scripts/setup.sh --no-build   install code-server only
#   scripts/setup.sh --force      reinstall code-server even if the stamp says it is done
#
# Fast when already done: a stamp file, written only after a complete install,
# is checked first. Needs Node >= 20 and npm; native modules are built against
# the system's Node headers (/usr/include/node), so nothing is downloaded
# except npm packages (and Debian packages when build dependencies are missing).
#
# A plain `npm install code-server` does not work on a bare machine (as root its
# postinstall demands unsafe-perm, and @vscode/ripgrep downloads a binary from
# the internet), so this replays code-server's postinstall.sh by hand with
# scripts disabled, using Debian's ripgrep.
#
# Prints `CODE_SERVER=<absolute path to entry.js>` on success.
set -euo pipefail

CODE_SERVER_VERSION=4.100.3
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools/code-server-$CODE_SERVER_VERSION"
PKG="$TOOLS/node_modules/code-server"
ENTRY="$PKG/out/node/entry.js"
STAMP="$TOOLS/.dev8-install-complete"
APT_PACKAGES=(ripgrep libkrb5-dev libxkbfile-dev libsecret-1-dev pkg-config python3 make g++)

BUILD=1
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    --force) FORCE=1 ;;
    -h|--help) awk 'NR==1 || /^# shellcheck/ {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "setup.sh: $*"; }
die() { echo "setup.sh: ERROR: $*" >&2; exit 1; }

# --- Node and npm -------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node is not installed; Dev8 needs Node.js >= 20 (and npm) on PATH"
command -v npm >/dev/null 2>&1 || die "npm is not installed; Dev8 needs npm (comes with Node.js >= 20)"
NODE_VERSION="$(node --version)"
NODE_MAJOR="${NODE_VERSION#v}"; NODE_MAJOR="${NODE_MAJOR%%.*}"
[[ "$NODE_MAJOR" =~ ^[0-9]+$ ]] && (( NODE_MAJOR >= 20 )) \
  || die "Node.js >= 20 is required, found $NODE_VERSION ($(command -v node))"

# The stamp names the Node version the native modules were built for: another
# Node means a rebuild.
STAMP_CONTENT="code-server $CODE_SERVER_VERSION node $NODE_VERSION"

install_code_server() {
  if (( NODE_MAJOR != 20 )); then
    log "warning: code-server $CODE_SERVER_VERSION supports Node 20 only, found $NODE_VERSION; continuing"
  fi

  # --- Debian build dependencies (only the missing ones) ----------------------
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if (( ${#missing[@]} )); then
    local SUDO=()
    if (( EUID != 0 )); then
      if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo)
      else
        die "missing Debian packages: ${missing[*]}
  install them as root:  apt-get update && apt-get install -y ${missing[*]}"
      fi
    fi
    log "installing Debian packages: ${missing[*]}"
    # wait for the dpkg lock if another apt-get runs (instead of failing at once)
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
      install -y -qq --no-install-recommends "${missing[@]}"
  fi
  local RG
  RG="$(command -v rg)" || die "ripgrep (rg) not found on PATH after installing Debian's ripgrep"

  # Native modules are built against the installed Node's headers; without
  # them node-gyp would try to download headers from the internet.
  export npm_config_nodedir="${npm_config_nodedir:-/usr}"
  [[ -f "$npm_config_nodedir/include/node/common.gypi" ]] \
    || die "Node.js headers not found in $npm_config_nodedir/include/node (needed to build native modules;
  on Debian's own nodejs install libnode-dev, or set npm_config_nodedir to the Node install prefix)"
  export npm_config_yes=true
  local NPM_FLAGS=(--no-audit --no-fund --loglevel=error)

  # --- the package itself, scripts disabled ------------------------------------
  mkdir -p "$TOOLS"
  rm -f "$STAMP"
  cat >"$TOOLS/package.json" <<EOF
{
  "name": "dev8-code-server",
  "private": true,
  "description": "Installed by scripts/setup.sh; do not edit.",
  "dependencies": { "code-server": "$CODE_SERVER_VERSION" }
}
EOF
  log "npm install code-server@$CODE_SERVER_VERSION (scripts disabled) in $TOOLS"
  (cd "$TOOLS" && npm install --ignore-scripts "${NPM_FLAGS[@]}")
  [[ -f "$ENTRY" ]] || die "code-server entry not found at $ENTRY after npm install"

  # --- what code-server's postinstall.sh would do, by hand --------------------
  local VSCODE="$PKG/lib/vscode"
  log "npm install --omit=dev in lib/vscode (scripts disabled)"
  (cd "$VSCODE" && npm install --ignore-scripts --omit=dev "${NPM_FLAGS[@]}")

  # @vscode/ripgrep's install script downloads rg from the internet: put
  # Debian's binary where it would have gone, before `npm rebuild` runs it.
  mkdir -p "$VSCODE/node_modules/@vscode/ripgrep/bin"
  ln -sfn "$RG" "$VSCODE/node_modules/@vscode/ripgrep/bin/rg"

  log "npm rebuild in lib/vscode (native modules against $npm_config_nodedir)"
  (cd "$VSCODE" && npm rebuild "${NPM_FLAGS[@]}")

  ln -sfn node_modules "$VSCODE/node_modules.asar"
  ln -sfn code-linux.sh "$VSCODE/bin/remote-cli/code-server"
  ln -sfn browser-linux.sh "$VSCODE/bin/helpers/browser.sh"

  log "npm install --omit=dev in lib/vscode/extensions"
  (cd "$VSCODE/extensions" && npm install --omit=dev "${NPM_FLAGS[@]}")

  # argon2 (code-server's password hashing): its install script would fetch a
  # prebuilt binary; build it from source instead.
  log "building argon2 from source"
  (cd "$TOOLS" && npm rebuild argon2 --build-from-source "${NPM_FLAGS[@]}")

  # --- smoke check: the native modules load ------------------------------------
  (cd "$TOOLS" && node -e 'require("argon2")') || die "argon2 does not load after the build"
  (cd "$VSCODE" && node -e 'require("node-pty"); require("@vscode/spdlog")') \
    || die "code-server's native modules (node-pty, @vscode/spdlog) do not load after npm rebuild"
  "$VSCODE/node_modules/@vscode/ripgrep/bin/rg" --version >/dev/null || die "ripgrep link is broken"

  echo "$STAMP_CONTENT" >"$STAMP"
}

if (( FORCE == 0 )) && [[ -f "$STAMP" && -f "$ENTRY" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]]; then
  log "code-server $CODE_SERVER_VERSION already installed ($STAMP)"
else
  start=$SECONDS
  install_code_server
  log "code-server $CODE_SERVER_VERSION installed in $((SECONDS - start)) s"
fi
echo "CODE_SERVER=$ENTRY"

if (( BUILD )); then
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) or pass --no-build"
  log "cargo build --release --bin handler"
  (cd "$ROOT" && cargo build --release --bin handler)
  log "control plane: $ROOT/target/release/handler"
fi
