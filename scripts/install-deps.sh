#!/usr/bin/env bash
# The one list of Debian 12 packages m2mkit needs to build, test, fuzz and
# benchmark. Installs only what is missing; runs `apt-get update` at most once
# and only when something is missing, so it is quick when all is there.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config
  # libraries (see CMakeLists.txt)
  libuv1-dev libjansson-dev libcbor-dev libsqlite3-dev libssl-dev libwslay-dev
  # tests, lint, fuzzing (clang's libFuzzer and sanitizer runtimes)
  libcmocka-dev clang libclang-rt-14-dev cppcheck clang-format
  # third-party peers for interop tests and benchmarks
  libcoap3-bin mosquitto mosquitto-clients python3-paho-mqtt
  # process tools the tests use (pgrep, ss); ip, tc and nft for `m2mkit compare link`
  procps iproute2 nftables
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
