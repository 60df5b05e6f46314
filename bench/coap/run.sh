#!/usr/bin/env bash
# Side by side: `m2mkit serve` against libcoap's coap-server, same load, same
# run. CON GET of a small resource by N clients; then again after 1,000 and
# 10,000 other endpoints have talked to the server. The server is pinned to
# core 0 and the load generator to core 1. Prints a Markdown table.
#
#   bench/coap/run.sh [path/to/m2mkit]   (env: DURATION=10 CLIENTS=50 WINDOW=4)
set -euo pipefail
M2MKIT=${1:-build/m2mkit}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-50}
WINDOW=${WINDOW:-4}
LC_SERVER=$(command -v coap-server-notls || command -v coap-server-openssl)
T=$(mktemp -d /tmp/m2mkit-bench.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$T"' EXIT
PIN0=() PIN1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then PIN0=(taskset -c 0) PIN1=(taskset -c 1); fi
PAYLOAD="21.5 C, m2mkit bench"

# run_series NAME PORT: warm 0, then 1,000, then 9,000 more endpoints.
run_series() {
  local name=$1 port=$2 uri="coap://127.0.0.1:$2/bench"
  "$M2MKIT" coap put -q "$uri" -t text -p "$PAYLOAD" >/dev/null
  local total=0
  for warm in 0 1000 9000; do
    total=$((total + warm))
    local line
    line=$("${PIN1[@]}" "$M2MKIT" bench coap -n "$CLIENTS" -W "$WINDOW" -d "$DURATION" -P "$warm" -j "$uri" 2>/dev/null)
    echo "$name $total $line" >>"$T/results"
    echo "  $name, $total earlier peers: $line" >&2
  done
}

echo "m2mkit serve ..." >&2
"${PIN0[@]}" "$M2MKIT" serve --server.data_dir="$T/var" --coap.port=25700 --coap.bind6= --mqtt.enabled=false >"$T/m2mkit.log" 2>&1 &
PID=$!
sleep 0.5
run_series m2mkit 25700
kill -0 $PID || { echo "m2mkit serve died during the run:" >&2; cat "$T/m2mkit.log" >&2; exit 1; }
kill $PID; wait $PID 2>/dev/null || true

echo "libcoap coap-server ..." >&2
"${PIN0[@]}" "$LC_SERVER" -A 127.0.0.1 -p 25701 -d 10 >"$T/libcoap.log" 2>&1 &
PID=$!
sleep 0.5
run_series libcoap 25701
kill $PID 2>/dev/null || echo "libcoap's coap-server died during the run" >&2
wait $PID 2>/dev/null || true
PID=""

field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$2"; }
echo
echo "CON GET of a ${#PAYLOAD}-byte resource, $CLIENTS clients x $WINDOW outstanding, ${DURATION}s each, server on one core."
echo
echo "| earlier peers | m2mkit req/s | p50 / p99 us | libcoap req/s | p50 / p99 us | ratio |"
echo "|---:|---:|---:|---:|---:|---:|"
for total in 0 1000 10000; do
  m=$(grep "^m2mkit $total " "$T/results" | cut -d' ' -f3-)
  l=$(grep "^libcoap $total " "$T/results" | cut -d' ' -f3-)
  mr=$(field rps "$m"); lr=$(field rps "$l")
  ratio=$(awk -v a="$mr" -v b="$lr" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  printf "| %s | %s | %s / %s | %s | %s / %s | %s |\n" "$total" "$mr" "$(field p50_us "$m")" "$(field p99_us "$m")" \
    "$lr" "$(field p50_us "$l")" "$(field p99_us "$l")" "$ratio"
done
