#!/usr/bin/env bash
# Install the third-party peers the test suite talks to. Idempotent and quiet
# when everything is present. Debian packages need root (CI and dev machines
# here run as root); without root a missing package is reported, and the tests
# that need it say so when they skip.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(openssl oathtool chromium fonts-noto-cjk redis-server jq libbcprov-java golang-go golang-github-tjfoc-gmsm-dev wrk)
missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: missing Debian packages (need root to install): ${missing[*]}" >&2
  fi
fi

peers=tests/interop
if [ -f "$peers/package.json" ]; then
  if ! command -v npm >/dev/null; then
    echo "warning: npm is not installed; the node interop tests will skip" >&2
  elif [ ! -d "$peers/node_modules" ] || [ "$peers/package-lock.json" -nt "$peers/node_modules" ]; then
    (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$peers/node_modules"
  fi
fi
