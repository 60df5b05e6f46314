#!/usr/bin/env bash
# Interop: Debian's mosquitto_pub / mosquitto_sub (MQTT 3.1.1 and 5.0)
# against the broker in `m2mkit serve`.
BUILD=$1
. "$2/tests/support/lib.sh"
command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null ||
  { echo "mosquitto-clients is not installed (scripts/install-deps.sh installs it)"; exit 77; }

# A queue deep enough for the burst test below: past mqtt.max_queued a slow
# subscriber loses messages, as with mosquitto's max_queued_messages.
start_m2mkit --mqtt.max_queued=20000 || { echo "server did not start"; exit 1; }
H=(-h 127.0.0.1 -p "$MQTT_PORT")
pub() { timeout 10 mosquitto_pub "${H[@]}" "$@"; }
sub() { timeout 10 mosquitto_sub "${H[@]}" -W 8 "$@"; }

for v in mqttv311 mqttv5; do
  for q in 0 1 2; do
    sub -V $v -q $q -t "it/$v/$q" -C 1 >"$T/out.$v.$q" 2>&1 &
    S=$!
    sleep 0.3
    pub -V $v -q $q -t "it/$v/$q" -m "hello $v qos$q"
    wait $S
    check "$v QoS $q publish reaches the subscriber" grep -qx "hello $v qos$q" "$T/out.$v.$q"
  done
done

# A fast publisher (every message in a few TCP segments) loses nothing and
# keeps the order: the session core parses as the broker drains its events.
seq 1 5000 >"$T/lines"
for q in 0 1; do
  sub -q $q -t burst/$q -C 5000 >"$T/burst.$q" &
  S=$!
  sleep 0.3
  pub -q $q -t burst/$q -l <"$T/lines"
  wait $S
  check "5000 back-to-back QoS $q messages arrive complete and in order" cmp -s "$T/lines" "$T/burst.$q"
done

sub -V mqttv5 -t 'wild/+/temp' -t 'deep/#' -C 2 >"$T/wild" &
S=$!
sleep 0.3
pub -t wild/hall/temp -m one
pub -t wild/hall/hum -m no
pub -t deep/a/b/c -m two
wait $S
check "wildcards + and #" test "$(tr '\n' ' ' <"$T/wild")" = "one two "

pub -r -q 1 -t keep/this -m retained-value
check "retained message delivered on subscribe" test "$(sub -t keep/this -C 1)" = "retained-value"
out=$(sub -V mqttv5 -t keep/this -C 1 -v)
check "retained message keeps its topic (v5)" test "$out" = "keep/this retained-value"
pub -r -t keep/this -n
sub -t keep/this -C 1 -W 1 >"$T/gone" 2>&1
check "an empty retained payload deletes it" test ! -s "$T/gone" -o "$(grep -c retained-value "$T/gone")" = 0

# A persistent session keeps QoS 1 messages published while it is away.
sub -V mqttv311 -c -i keeper -q 1 -t 'queue/t' -C 1 -W 1 >/dev/null 2>&1
pub -q 1 -t queue/t -m while-away
check "persistent session gets what was queued" test "$(sub -V mqttv311 -c -i keeper -q 1 -t queue/t -C 1)" = "while-away"

# The will is published when a client vanishes.
sub -t will/t -C 1 >"$T/will" &
S=$!
sleep 0.3
mosquitto_sub "${H[@]}" -t none --will-topic will/t --will-payload "gone" &
W=$!
sleep 0.5
kill -9 $W
wait $S
check "will published after the client vanished" grep -qx gone "$T/will"

# $SYS topics are not matched by a leading wildcard.
pub -t '$SYS/x' -m sys
pub -t 'normal' -m visible
check "# does not match \$SYS" bash -c "! timeout 3 mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t '#' -W 1 2>/dev/null | grep -q sys"

# Shutdown with clients still connected is clean (and leak-free under ASan).
timeout 20 mosquitto_sub "${H[@]}" -t 'held/#' -q 1 -c -i holder >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.3
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"; rc=$?
check "SIGTERM with clients connected: exit 0" test $rc -eq 0
check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$SERVER_LOG'"

finish
