#!/usr/bin/env bash
# Runs every libFuzzer target for $1 seconds (default 30); see fuzz-smoke.sh.
#   scripts/fuzz.sh 600                      # ten minutes per target
#   scripts/fuzz.sh 60 fuzz_coap_core        # one target
set -euo pipefail
secs=${1:-30}
shift || true
if [ $# -gt 0 ]; then
    export FUZZ_TARGETS="$*"
fi
FUZZ_SECONDS=$secs exec "$(dirname "$0")/fuzz-smoke.sh"
