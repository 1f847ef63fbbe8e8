#!/usr/bin/env bash
# Installs what Valkyrie-FS needs to build and test on Debian 12 (run as root): the compiler and
# libraries from Debian's packages, and s3rver (pinned in package.json) from npm.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
packages=(
  g++ meson ninja-build pkg-config git ca-certificates openssl curl
  libboost1.81-dev libboost-url1.81-dev libssl-dev liburing-dev libfuse3-dev fuse3
  libsimdjson-dev libpugixml-dev libspdlog-dev libcli11-dev libsystemd-dev libisal-dev doctest-dev
  python3 python3-botocore
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The third-party S3 server the integration tests also run against.
if [[ ! -x node_modules/.bin/s3rver ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
