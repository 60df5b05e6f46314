#!/usr/bin/env bash
# Side by side: `m2mkit serve` against Debian's mosquitto, same load, same run.
# Each broker in turn is pinned to core 0 and the load generator
# (`m2mkit bench mqtt`) to core 1. Scenarios: pairs (1 pair, then 8 pairs),
# fan-in 8 -> 1, fan-out 1 -> 8, each at QoS 0, 1 and 2, with 64-byte payloads
# and a window of 64 messages per publisher; then the memory of 10,000 idle
# connections. Prints Markdown tables (and writes them to --out FILE).
#
#   bench/mqtt/run.sh [--out FILE] [path/to/m2mkit]
#   env: DURATION=10 (seconds per cell) PAYLOAD=64 WINDOW=64 FANIN=8 FANOUT=8 PAIRS=8
#        IDLE=10000 QOS="0 1 2" MQTT_VERSION=311
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT="" M2MKIT=""
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) M2MKIT=$1; shift ;;
  esac
done
DURATION=${DURATION:-10}
PAYLOAD=${PAYLOAD:-64}
WINDOW=${WINDOW:-64}
FANIN=${FANIN:-8}
FANOUT=${FANOUT:-8}
PAIRS=${PAIRS:-8}
IDLE=${IDLE:-10000}
QOS=${QOS:-0 1 2}
MQTT_VERSION=${MQTT_VERSION:-311}

# The binary: given, or build/m2mkit, built (RelWithDebInfo) when missing.
if [ -z "$M2MKIT" ]; then
  M2MKIT=$ROOT/build/m2mkit
  if [ ! -x "$M2MKIT" ]; then
    echo "building $M2MKIT ..." >&2
    cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$ROOT/build" -j "$(nproc)" >/dev/null
  fi
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$MOSQUITTO" ] || { echo "mosquitto not found (apt-get install mosquitto)" >&2; exit 1; }

# Both brokers and the generator hold one descriptor per connection.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE + 64)) ]; then
  echo "open-file limit $(ulimit -n) is below $IDLE connections: set IDLE lower" >&2
  exit 1
fi

T=$(mktemp -d /tmp/m2mkit-bench-mqtt.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$T"' EXIT
PIN0=() PIN1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then PIN0=(taskset -c 0) PIN1=(taskset -c 1); fi

# A TCP port nobody listens on, away from the ephemeral range.
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))
    if ! ss -Htln "( sport = :$p )" | grep -q .; then echo "$p"; return; fi
  done
  return 1
}
PORT=$(free_port)

wait_listening() {
  for _ in $(seq 1 100); do
    ss -Htln "( sport = :$1 )" | grep -q . && return 0
    kill -0 "$PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Throughput runs: the broker may take the whole window of a 3.1.1 publisher
# (64 in flight), may send 64 in flight to a subscriber, and queues up to
# 100,000 messages per subscriber; the same for both.
# Only plain MQTT on one port: other listeners off where this build has them.
SERVE_ARGS=(--server.data_dir="$T/var" --coap.enabled=false --mqtt.port="$PORT" --mqtt.bind6=)
if "$M2MKIT" serve --config-reference | grep -q '`mqtt.ws_enabled`'; then SERVE_ARGS+=(--mqtt.ws_enabled=false); fi
start_m2mkit() { # [extra serve args]
  "${PIN0[@]}" "$M2MKIT" serve "${SERVE_ARGS[@]}" "$@" >"$T/m2mkit.log" 2>&1 &
  PID=$!
  wait_listening "$PORT" || { echo "m2mkit serve did not start:" >&2; cat "$T/m2mkit.log" >&2; exit 1; }
}
start_mosquitto() { # [extra config lines]
  {
    echo "listener $PORT 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence false"
    echo "log_dest stderr"
    echo "log_type error"
    echo "log_type warning"
    for line in "$@"; do echo "$line"; done
  } >"$T/mosquitto.conf"
  "${PIN0[@]}" "$MOSQUITTO" -c "$T/mosquitto.conf" >"$T/mosquitto.log" 2>&1 &
  PID=$!
  wait_listening "$PORT" || { echo "mosquitto did not start:" >&2; cat "$T/mosquitto.log" >&2; exit 1; }
}
# A broker that died is reported (exit status, end of its log) and the run goes
# on: its later cells show as failed in the table.
DIED=()
stop_broker() { # NAME LOG
  if kill -0 "$PID" 2>/dev/null; then
    kill "$PID"; wait "$PID" 2>/dev/null || true
  else
    local rc=0
    wait "$PID" 2>/dev/null || rc=$?
    echo "$1 died during the run (exit status $rc); the end of its log:" >&2
    tail -5 "$2" >&2
    DIED+=("$1 (exit status $rc)")
  fi
  PID=""
  for _ in $(seq 1 100); do ss -Htln "( sport = :$PORT )" | grep -q . || break; sleep 0.05; done
}
M2MKIT_TUNING=(--mqtt.receive_maximum=64 --mqtt.max_inflight=64 --mqtt.max_queued=100000)
MOSQUITTO_TUNING=("max_inflight_messages 64" "max_queued_messages 100000" "set_tcp_nodelay true")

SCENARIOS=("pairs 1 1")
if [ "$PAIRS" -gt 1 ]; then SCENARIOS+=("pairs $PAIRS $PAIRS"); fi
SCENARIOS+=("fanin $FANIN 1" "fanout 1 $FANOUT")

run_series() { # NAME
  local name=$1 s pattern pubs subs q line
  for s in "${SCENARIOS[@]}"; do
    read -r pattern pubs subs <<<"$s"
    for q in $QOS; do
      line=$("${PIN1[@]}" "$M2MKIT" bench mqtt -p "$PORT" -V "$MQTT_VERSION" --topics "$pattern" \
        --publishers "$pubs" --subscribers "$subs" -q "$q" -s "$PAYLOAD" -w "$WINDOW" -d "$DURATION" --json \
        2>>"$T/bench.err") || true
      [ -n "$line" ] || line='{}'
      echo "$name|$pattern $pubs $subs|$q|$line" >>"$T/results"
      echo "  $name, $pattern $pubs->$subs, QoS $q: $line" >&2
    done
  done
}

field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"; }

echo "m2mkit serve ..." >&2
start_m2mkit "${M2MKIT_TUNING[@]}"
run_series m2mkit
stop_broker "m2mkit serve" "$T/m2mkit.log"

echo "mosquitto ..." >&2
start_mosquitto "${MOSQUITTO_TUNING[@]}"
run_series mosquitto
stop_broker mosquitto "$T/mosquitto.log"

# Memory: the broker's resident set before and after IDLE connections that
# sent CONNECT (clean session, keep alive 0) and nothing else. Default
# settings for both, besides what a bench needs (loopback, no persistence).
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
idle_series() { # NAME
  local before after gen
  sleep 0.5
  before=$(rss_kb "$PID")
  "${PIN1[@]}" "$M2MKIT" bench mqtt -p "$PORT" --idle "$IDLE" --json >"$T/idle.out" 2>"$T/idle.err" &
  gen=$!
  for _ in $(seq 1 1200); do grep -q connected "$T/idle.out" && break; sleep 0.05; done
  sleep 1
  after=$(rss_kb "$PID")
  local established
  established=$(ss -Htn state established "( dport = :$PORT )" | wc -l)
  kill "$gen"; wait "$gen" 2>/dev/null || true
  echo "$1|$before|$after|$(cat "$T/idle.out")|$established" >>"$T/idle"
  echo "  $1: RSS $before kB -> $after kB, $(cat "$T/idle.out"), $established established" >&2
}
echo "idle connections ..." >&2
start_m2mkit
idle_series m2mkit
stop_broker "m2mkit serve" "$T/m2mkit.log"
start_mosquitto
idle_series mosquitto
stop_broker mosquitto "$T/mosquitto.log"

# ---- the report ----
report() {
  local ver
  ver=$([ "$MQTT_VERSION" = 5 ] && echo 5.0 || echo 3.1.1)
  echo "MQTT $ver, ${PAYLOAD}-byte payloads, ${DURATION} s per cell, window $WINDOW messages per publisher"
  echo "(QoS 1/2: not yet acknowledged; every QoS: not yet received by all subscribers)."
  echo "$("$M2MKIT" version) ($(basename "$(dirname "$M2MKIT")")) against $("$MOSQUITTO" -h 2>/dev/null | head -1)" \
    "on $(nproc) cores ($(uname -r)); broker on core 0, load generator on core 1."
  echo "m2mkit: ${M2MKIT_TUNING[*]}; mosquitto: $(IFS=,; echo "${MOSQUITTO_TUNING[*]}" | sed 's/,/, /g')."
  echo "msgs/s counts messages received by subscribers; ratio = m2mkit / mosquitto."
  echo
  echo "| scenario | QoS | m2mkit msgs/s | p50 / p99 us | mosquitto msgs/s | p50 / p99 us | ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  local s pattern pubs subs q m o mr or label note
  local -a notes
  for s in "${SCENARIOS[@]}"; do
    read -r pattern pubs subs <<<"$s"
    case $pattern in
      pairs) label="pairs $pubs x (1 -> 1)" ;;
      *) label="$pattern $pubs -> $subs" ;;
    esac
    for q in $QOS; do
      m=$(grep -F "m2mkit|$s|$q|" "$T/results" | cut -d'|' -f4 || true)
      o=$(grep -F "mosquitto|$s|$q|" "$T/results" | cut -d'|' -f4 || true)
      mr=$(field recv_rate "$m"); or=$(field recv_rate "$o")
      # Anything but a clean run is said in the row.
      notes=()
      for side in m2mkit mosquitto; do
        local line lost err
        if [ $side = m2mkit ]; then line=$m; else line=$o; fi
        lost=$(field lost "$line"); err=$(field errors "$line")
        if [ -z "$line" ] || [ "$line" = '{}' ]; then notes+=("$side run failed"); fi
        if [ -n "$lost" ] && [ "$lost" != 0 ]; then notes+=("$side lost $lost"); fi
        if [ -n "$err" ] && [ "$err" != 0 ]; then notes+=("$side errors $err"); fi
      done
      local note=""
      if [ ${#notes[@]} -gt 0 ]; then note=" ($(IFS=';'; echo "${notes[*]}" | sed 's/;/; /g'))"; fi
      local ratio
      ratio=$(awk -v a="${mr:-0}" -v b="${or:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
      printf "| %s%s | %s | %s | %s / %s | %s | %s / %s | %s |\n" "$label" "$note" "$q" \
        "${mr:--}" "$(field p50_us "$m")" "$(field p99_us "$m")" "${or:--}" "$(field p50_us "$o")" \
        "$(field p99_us "$o")" "$ratio"
    done
  done
  echo
  echo "Memory per idle connection ($IDLE connections, CONNECT only, default settings):"
  echo
  echo "| broker | RSS before kB | RSS after kB | connected | KB per connection |"
  echo "|---|---:|---:|---:|---:|"
  local name before after out est kb_m="" kb_o=""
  while IFS='|' read -r name before after out est; do
    local kb
    kb=$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.2f", (a - b) / n }')
    if [ "$name" = m2mkit ]; then kb_m=$kb; else kb_o=$kb; fi
    printf "| %s | %s | %s | %s (%s established) | %s |\n" "$name" "$before" "$after" \
      "$(field connected "$out")" "$est" "$kb"
  done <"$T/idle"
  echo
  awk -v a="$kb_m" -v b="$kb_o" 'BEGIN { if (b > 0) printf "m2mkit / mosquitto memory per connection: %.2f\n", a / b }'
  if [ ${#DIED[@]} -gt 0 ]; then echo; echo "Died during the run: ${DIED[*]}."; fi
}
report | tee ${OUT:+"$OUT"}
if [ -s "$T/bench.err" ]; then
  echo >&2
  echo "load generator messages:" >&2
  sort "$T/bench.err" | uniq -c | sort -rn | head -20 >&2
fi
[ ${#DIED[@]} -eq 0 ]
