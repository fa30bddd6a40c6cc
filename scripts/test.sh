#!/usr/bin/env bash
# The test command (README): installs what the tests need when missing and
# we are root on Debian, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: missing ${need[*]}; tests that need them will say so and skip" >&2
  fi
fi

export SIPEDGE_REFERENCE_DIR="${SIPEDGE_REFERENCE_DIR:-$(cd .. && pwd)/shared}"
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
