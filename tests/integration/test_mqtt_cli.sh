#!/usr/bin/env bash
# End to end on loopback: `m2mkit mqtt pub|sub` against the broker in
# `m2mkit serve`, MQTT 3.1.1 and 5.0, and the command's usage errors.
BUILD=$1
. "$2/tests/support/lib.sh"

# ---- usage errors (exit 2) before any server is needed ----
usage_exit() { "$M2MKIT" mqtt "$@" >/dev/null 2>&1; test $? -eq 2; }
check "no subcommand: exit 2" usage_exit
check "unknown subcommand: exit 2" usage_exit publish -t a -m x
check "pub without -t: exit 2" usage_exit pub -m x
check "pub without a message: exit 2" usage_exit pub -t a
check "pub with -m and -l: exit 2" usage_exit pub -t a -m x -l
check "pub to a wildcard topic: exit 2" usage_exit pub -t 'a/+' -m x
check "sub with an invalid filter: exit 2" usage_exit sub -t 'a/#/b'
check "QoS 3: exit 2" usage_exit pub -t a -m x -q 3
check "bad protocol version: exit 2" usage_exit pub -t a -m x -V 4.1
check "bad URL: exit 2" usage_exit pub --url http://x/a -m x
check "bad user property: exit 2" usage_exit pub -t a -m x -D novalue
check "bad retain handling: exit 2" usage_exit sub -t a --retain-handling 3
check "--help: exit 0" bash -c "'$M2MKIT' mqtt --help >/dev/null"
check "sub --help: exit 0" bash -c "'$M2MKIT' mqtt sub --help >/dev/null"
check "m2mkit help lists mqtt" bash -c "'$M2MKIT' help | grep -q '^  mqtt '"

start_m2mkit || { echo "server did not start"; exit 1; }
pub() { timeout 10 "$M2MKIT" mqtt pub -p "$MQTT_PORT" "$@"; }
sub() { timeout 15 "$M2MKIT" mqtt sub -p "$MQTT_PORT" -W 8 "$@"; }
settle() { sleep 0.4; }

for v in 311 5; do
  for q in 0 1 2; do
    sub -V $v -q $q -t "cli/$v/$q" -C 1 >"$T/out.$v.$q" 2>&1 &
    S=$!
    settle
    pub -V $v -q $q -t "cli/$v/$q" -m "hello $v qos$q"; prc=$?
    wait $S; src=$?
    check "v$v QoS $q: pub 0, sub 0 and the message" \
      bash -c "[ $prc -eq 0 ] && [ $src -eq 0 ] && grep -qx 'hello $v qos$q' '$T/out.$v.$q'"
  done
done

# Addresses: a host name, IPv6, a URL.
sub -h localhost -t addr/t -C 1 >"$T/addr" &
S=$!
settle
check "pub over IPv6 (::1)" pub -h ::1 -t addr/t -m six
wait $S
check "sub by host name (localhost)" grep -qx six "$T/addr"
sub --url "mqtt://127.0.0.1:$MQTT_PORT/url/t" -C 1 >"$T/url" &
S=$!
settle
"$M2MKIT" mqtt pub --url "mqtt://[::1]:$MQTT_PORT/url/t" -m via-url
wait $S
check "--url for pub and sub" grep -qx via-url "$T/url"

# Lines from stdin at QoS 1 and 2, in order, through the broker's window.
seq 1 500 >"$T/lines"
for q in 1 2; do
  sub -q $q -t "lines/$q" -C 500 >"$T/lines.$q" &
  S=$!
  settle
  pub -q $q -t "lines/$q" -l <"$T/lines"
  wait $S
  check "500 lines at QoS $q arrive in order" cmp -s "$T/lines" "$T/lines.$q"
done

# Retained, with the flag in JSON.
pub -r -q 1 -t cli/retained -m kept
out=$(sub -V 5 -t cli/retained -C 1 -F json)
check "retained message with retain:true in JSON" \
  bash -c "grep -q '\"payload\":\"kept\"' <<<'$out' && grep -q '\"retain\":true' <<<'$out'"
out=$(sub -V 5 -t cli/retained -C 1 -W 1 --retain-handling 2 2>/dev/null)
check "retain handling 2: no retained message on subscribe" test -z "$out"

# Topic aliases both ways: our publisher assigns them (--alias) and the
# broker assigns its own towards our subscriber (Topic Alias Maximum 16).
sub -V 5 -t alias/some/long/topic -C 4 -F json >"$T/alias" &
S=$!
settle
printf 'a1\na2\na3\na4\n' | pub -V 5 -q 1 -t alias/some/long/topic --alias -l
wait $S
check "aliased messages arrive with their topic" \
  test "$(grep -c '"topic":"alias/some/long/topic"' "$T/alias")" = 4

# User properties in JSON.
sub -V 5 -t props/t -C 1 -F json >"$T/json" &
S=$!
settle
pub -V 5 -t props/t -m x -D site=lab -D fw=1.2
wait $S
check "user properties in JSON output" \
  grep -q '"user_properties":\[{"name":"site","value":"lab"},{"name":"fw","value":"1.2"}\]' "$T/json"

# No Local (v5) is accepted and still lets other clients' messages through.
sub -V 5 -N -t nolocal/t -C 1 -W 2 -i nl >"$T/nl" 2>&1 &
S=$!
settle
pub -V 5 -t nolocal/t -m from-other
wait $S
check "sub -N (No Local) still receives other clients' messages" grep -qx from-other "$T/nl"

# The will, when the publisher is killed.
sub -t will/t -C 1 >"$T/will" &
S=$!
settle
mkfifo "$T/fifo"
sleep 30 >"$T/fifo" &
PIDS+=($!)
"$M2MKIT" mqtt pub -p "$MQTT_PORT" -t idle -l --will-topic will/t --will-payload vanished <"$T/fifo" &
W=$!
PIDS+=("$W")
sleep 0.5
kill -9 "$W"
wait "$W" 2>/dev/null
wait $S
check "will published after kill -9" grep -qx vanished "$T/will"

# Persistent sessions, 3.1.1 and v5.
sub -V 311 -c -i keep311 -q 1 -t queue/311 -W 1 >/dev/null 2>&1
pub -V 311 -q 1 -t queue/311 -m away311
check "v3.1.1 -c gets what was queued" test "$(sub -V 311 -c -i keep311 -q 1 -t queue/311 -C 1)" = away311
sub -V 5 -c -x 600 -i keep5 -q 2 -t queue/5 -W 1 >/dev/null 2>&1
pub -V 5 -q 2 -t queue/5 -m away5
check "v5 -c -x gets what was queued" test "$(sub -V 5 -c -x 600 -i keep5 -q 2 -t queue/5 -C 1)" = away5

# -R with a persistent session across a server restart (the session is on disk).
sub -V 5 -R -c -x 600 -i resumer -q 1 -t resume/t -C 2 -W 25 >"$T/resume" 2>&1 &
S=$!
settle
pub -q 1 -t resume/t -m before
sleep 0.3
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
OLD_PORT=$MQTT_PORT
start_m2mkit --mqtt.port="$OLD_PORT" || bad "server restarted on the same port"
sleep 1.5
pub -q 1 -t resume/t -m after
wait $S; rc=$?
check "-R resumes after a server restart: both messages, exit 0" \
  bash -c "[ $rc -eq 0 ] && [ \"\$(grep -v '^m2mkit' '$T/resume' | tr '\n' ' ')\" = 'before after ' ]"

# Refusal: a user the server does not know (exit 1, reason printed).
if command -v mosquitto_passwd >/dev/null; then
  mosquitto_passwd -b -c "$T/passwd" bob builder >/dev/null 2>&1
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null
  start_m2mkit --mqtt.password_file="$T/passwd" --mqtt.allow_anonymous=false || bad "server with a password file"
  "$M2MKIT" mqtt pub -p "$MQTT_PORT" -V 5 -u bob -P wrong -t a -m x 2>"$T/refused"; rc=$?
  check "v5 wrong password: exit 1" test $rc -eq 1
  check "v5 wrong password: reason printed" grep -Eq 'refused: (Bad User Name or Password|Not authorized)' "$T/refused"
  "$M2MKIT" mqtt pub -p "$MQTT_PORT" -V 311 -u bob -P wrong -t a -m x 2>"$T/refused3"; rc=$?
  check "v3.1.1 wrong password: exit 1" test $rc -eq 1
  check "right password: exit 0" "$M2MKIT" mqtt pub -p "$MQTT_PORT" -u bob -P builder -t a -m x
fi

# Network failure: the server is gone.
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
"$M2MKIT" mqtt pub -p "$MQTT_PORT" -t a -m x 2>"$T/neterr"; rc=$?
check "no server: exit 3" test $rc -eq 3
check "no server: says why" grep -q 'cannot connect' "$T/neterr"
check "no sanitizer report from the server" bash -c "! grep -q Sanitizer '$SERVER_LOG'"

finish
