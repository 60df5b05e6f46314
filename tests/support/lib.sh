# Shared helpers for script tests. Source it; it expects $BUILD (the build
# directory holding m2mkit) and creates $T, a private temporary directory that
# is removed, with every process started through `bg`, when the test exits.
set -u
M2MKIT="$BUILD/m2mkit"
T=$(mktemp -d /tmp/m2mkit-test.XXXXXX)
PIDS=()
PASS=0
FAIL=0

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT

# bg CMD...: start in the background, remember the pid in $BG_PID.
bg() { "$@" & BG_PID=$!; PIDS+=("$BG_PID"); }

ok()   { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
# check "name" CMD...: passes when CMD succeeds.
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

finish() {
  echo "$PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
}

# A UDP port nobody listens on (best effort; ranges avoid the ephemeral ones).
free_udp_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 12000))
    if ! ss -Huln "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return; fi
  done
  echo $((20000 + RANDOM % 12000))
}

# start_m2mkit [extra serve args]: runs `m2mkit serve` on a free port with its
# data in $T/var; sets SERVER_PID, COAP_PORT, COAPS_PORT (empty without credentials),
# MQTT_PORT, WS_PORT (MQTT over WebSocket), TLS_PORT and WSS_PORT (empty without credentials).
start_m2mkit() {
  local log="$T/serve.$RANDOM.log"
  bg "$M2MKIT" serve --server.data_dir="$T/var" --coap.port=0 --coap.dtls_port=0 --mqtt.port=0 --mqtt.ws_port=0 --mqtt.tls_port=0 --mqtt.wss_port=0 "$@" >"$log" 2>&1
  SERVER_PID=$BG_PID
  SERVER_LOG=$log
  for _ in $(seq 1 100); do
    if grep -q "ready" "$log" 2>/dev/null; then
      COAP_PORT=$(sed -n 's/.*coap .*listening on udp .* port \([0-9]*\).*/\1/p' "$log" | head -1)
      COAPS_PORT=$(sed -n 's/.*coap .*listening on udp+dtls .* port \([0-9]*\).*/\1/p' "$log" | head -1)
      MQTT_PORT=$(sed -n 's/.*mqtt .*listening on tcp .* port \([0-9]*\).*/\1/p' "$log" | head -1)
      WS_PORT=$(sed -n 's/.*mqtt .*listening on ws .* port \([0-9]*\).*/\1/p' "$log" | head -1)
      TLS_PORT=$(sed -n 's/.*mqtt .*listening on tls .* port \([0-9]*\).*/\1/p' "$log" | head -1)
      WSS_PORT=$(sed -n 's/.*mqtt .*listening on wss .* port \([0-9]*\).*/\1/p' "$log" | head -1)
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$log"; return 1; fi
    sleep 0.05
  done
  cat "$log"
  return 1
}

# wait_for PATTERN FILE [tries]: waits until FILE contains PATTERN.
wait_for() {
  local n=${3:-100}
  for _ in $(seq 1 "$n"); do grep -q -- "$1" "$2" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
