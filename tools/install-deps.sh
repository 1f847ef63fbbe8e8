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
  python3-torch  # tools/train_pytorch.py and its test (CPU build; a GPU node brings its own CUDA torch)
  fio  # valkyrie-bench's seq4 and rand4 scenarios (mountpoint-s3's seq_read_4t / rand_read_4t jobs)
  prometheus  # the metrics test scrapes a mount with a real Prometheus and checks with promtool
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  apt-get update -qq
  # Packages with services (prometheus) are installed, not started: the tests run their own
  # instances, and a system Prometheus would hold port 9090, valkyrie's default metrics port.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
# The third-party S3 server the integration tests also run against.
if [[ ! -x node_modules/.bin/s3rver ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
