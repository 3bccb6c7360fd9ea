#!/usr/bin/env bash
# Install the third-party peers the test suite talks to. Idempotent and quiet
# when everything is present. Debian packages need root (CI and dev machines
# here run as root); without root a missing package is reported, and the tests
# that need it say so when they skip.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(openssl oathtool chromium redis-server)
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

if command -v npm >/dev/null; then
  if [ ! -d tests/interop/node_modules ] || [ tests/interop/package-lock.json -nt tests/interop/node_modules ]; then
    (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
    touch tests/interop/node_modules
  fi
else
  echo "warning: npm is not installed; the node interop tests will skip" >&2
fi
