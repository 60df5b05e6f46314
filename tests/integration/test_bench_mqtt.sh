#!/usr/bin/env bash
# `m2mkit bench mqtt` against `m2mkit serve` on loopback: every pattern at
# every QoS delivers each message exactly once and the counts add up; --idle
# holds its connections. No timing asserts.
BUILD=$1
. "$2/tests/support/lib.sh"
PY=/usr/bin/python3

# MQTT 3.1.1 has no Receive Maximum, so the broker must accept the load
# generator's window (64) of QoS 1/2 messages in flight.
start_m2mkit --coap.enabled=false --mqtt.receive_maximum=64 || { echo "server did not start"; exit 1; }

# counts_ok JSON QOS PUBS SUBS_PER_PUB N: the run's numbers are exact.
counts_ok() {
  $PY - "$@" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
qos, pubs, per_pub, n = map(int, sys.argv[2:])
want = {
    "errors": 0, "foreign": 0, "lost": 0, "duplicates": 0,
    "sent": pubs * n,
    "expected": pubs * n * per_pub,
    "received": pubs * n * per_pub,
    "unique": pubs * n * per_pub,
    "acked": pubs * n if qos else 0,
}
bad = {k: (r.get(k), v) for k, v in want.items() if r.get(k) != v}
if bad:
    print("unexpected (got, want):", bad, file=sys.stderr)
    sys.exit(1)
EOF
}

N=300
for pattern in pairs fanin fanout; do
  case $pattern in
    pairs) args=(--publishers 3); pubs=3; per_pub=1 ;;
    fanin) args=(--publishers 4 --subscribers 2); pubs=4; per_pub=2 ;;
    fanout) args=(); pubs=1; per_pub=8 ;;
  esac
  for q in 0 1 2; do
    out=$(timeout 60 "$M2MKIT" bench mqtt -p "$MQTT_PORT" --topics $pattern "${args[@]}" -q $q -n $N --json); rc=$?
    check "$pattern QoS $q exits 0" test $rc -eq 0
    check "$pattern QoS $q: each message received once, counts add up" counts_ok "$out" $q $pubs $per_pub $N
  done
done

# MQTT 5: the publisher keeps to the Receive Maximum of the broker's CONNACK
# (64 here), so a window of 100 is not a protocol error. (8 x 100 messages
# stay below the subscriber's queue, mqtt.max_queued = 1000.)
out=$(timeout 60 "$M2MKIT" bench mqtt -p "$MQTT_PORT" -V 5 --topics fanin -q 2 -w 100 -n $N --json); rc=$?
check "MQTT 5 fanin QoS 2 with a window above Receive Maximum exits 0" test $rc -eq 0
check "MQTT 5 fanin QoS 2: counts add up" counts_ok "$out" 2 8 1 $N
out=$(timeout 60 "$M2MKIT" bench mqtt -p "$MQTT_PORT" -V 5 -q 1 -s 1000 -n $N)
check "text report names the rates" grep -q '^received  300 (.* msgs/s) of 300 expected: lost 0, duplicated 0' <<<"$out"

# A fixed rate: -r 500 for 1 s sends about 500 (no timing assert beyond "some").
out=$(timeout 60 "$M2MKIT" bench mqtt -p "$MQTT_PORT" -q 1 -r 500 -d 1 --json)
check "rate mode sends and nothing is lost" $PY -c '
import json, sys; r = json.loads(sys.argv[1])
sys.exit(0 if 0 < r["sent"] <= 600 and r["lost"] == 0 and r["acked"] == r["sent"] else 1)' "$out"

"$M2MKIT" bench mqtt -p "$MQTT_PORT" --topics pairs --publishers 2 --subscribers 3 -n 1 >/dev/null 2>&1; rc=$?
check "pairs with unequal counts is a usage error" test $rc -eq 2

# --idle: 200 connections, CONNECTed and held until SIGTERM.
bg "$M2MKIT" bench mqtt -p "$MQTT_PORT" --idle 200 --json >"$T/idle.out" 2>"$T/idle.err"
IDLE=$BG_PID
wait_for '"connected":200' "$T/idle.out" 400
check "idle: all 200 connected" grep -q '{"idle":200,"connected":200,"failed":0}' "$T/idle.out"
est=$(ss -Htn state established "( dport = :$MQTT_PORT )" | wc -l)
check "idle: 200 established connections to the broker (ss: $est)" test "$est" -eq 200
sleep 0.5
est=$(ss -Htn state established "( dport = :$MQTT_PORT )" | wc -l)
check "idle: still 200 a moment later (ss: $est)" test "$est" -eq 200
kill -TERM "$IDLE"
wait "$IDLE"; rc=$?
check "idle: SIGTERM ends it with exit 0" test $rc -eq 0
for _ in $(seq 1 40); do
  [ "$(ss -Htn state established "( dport = :$MQTT_PORT )" | wc -l)" -eq 0 ] && break
  sleep 0.05
done
check "idle: connections closed afterwards" test "$(ss -Htn state established "( dport = :$MQTT_PORT )" | wc -l)" -eq 0
check "server still running" kill -0 "$SERVER_PID"

finish
