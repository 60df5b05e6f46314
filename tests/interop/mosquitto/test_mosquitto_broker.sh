#!/usr/bin/env bash
# Interop: `m2mkit mqtt pub` / `m2mkit mqtt sub` (MQTT 3.1.1 and 5.0) against
# Debian's mosquitto broker on a free loopback port with a temporary config.
BUILD=$1
. "$2/tests/support/lib.sh"
command -v mosquitto >/dev/null && command -v mosquitto_passwd >/dev/null ||
  { echo "mosquitto is not installed (scripts/install-deps.sh installs it)"; exit 77; }

free_tcp_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 12000))
    if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return; fi
  done
  echo $((20000 + RANDOM % 12000))
}

P=$(free_tcp_port)
PA=$(free_tcp_port)
while [ "$PA" = "$P" ]; do PA=$(free_tcp_port); done
mosquitto_passwd -b -c "$T/passwd" alice wonderland >/dev/null 2>&1
# One anonymous listener and one that wants a password.
{
  [ "$(id -u)" = 0 ] && echo "user root"
  echo "per_listener_settings true"
  echo "log_dest file $T/mosquitto.log"
  echo "log_type all"
  echo "listener $P 127.0.0.1"
  echo "allow_anonymous true"
  echo "listener $PA 127.0.0.1"
  echo "allow_anonymous false"
  echo "password_file $T/passwd"
} >"$T/mosquitto.conf"

start_broker() {
  bg mosquitto -c "$T/mosquitto.conf"
  BROKER_PID=$BG_PID
  for _ in $(seq 1 100); do
    ss -Htln "sport = :$P" 2>/dev/null | grep -q . && return 0
    sleep 0.05
  done
  return 1
}
start_broker || { echo "mosquitto did not start"; cat "$T/mosquitto.log"; exit 1; }

pub() { timeout 10 "$M2MKIT" mqtt pub -p "$P" "$@"; }
sub() { timeout 15 "$M2MKIT" mqtt sub -p "$P" -W 8 "$@"; }
# wait_sub FILE: a subscriber started in the background has its SUBACK.
settle() { sleep 0.4; }

for v in 311 5; do
  for q in 0 1 2; do
    sub -V $v -q $q -t "it/$v/$q" -C 1 >"$T/out.$v.$q" 2>&1 &
    S=$!
    settle
    pub -V $v -q $q -t "it/$v/$q" -m "hello $v qos$q"; prc=$?
    wait $S; src=$?
    check "v$v QoS $q: pub exits 0" test $prc -eq 0
    check "v$v QoS $q: sub gets the message and exits 0" bash -c "[ $src -eq 0 ] && grep -qx 'hello $v qos$q' '$T/out.$v.$q'"
  done
done

# Many QoS 1 and 2 messages through the broker's receive window, in order.
seq 1 300 >"$T/lines"
for q in 1 2; do
  sub -q $q -t "burst/$q" -C 300 >"$T/burst.$q" &
  S=$!
  settle
  pub -q $q -t "burst/$q" -l <"$T/lines"
  wait $S
  check "300 QoS $q messages arrive complete and in order" cmp -s "$T/lines" "$T/burst.$q"
done

# Retained messages, v3.1.1 and v5 (JSON shows the flag).
pub -V 311 -r -q 1 -t keep/this -m retained-value
check "retained message delivered on subscribe" test "$(sub -t keep/this -C 1)" = "retained-value"
out=$(sub -V 5 -t keep/this -C 1 -F json)
check "retained flag in JSON output" grep -q '"retain":true' <<<"$out"
pub -r -t keep/this -n
sub -t keep/this -C 1 -W 1 >"$T/gone" 2>/dev/null
check "an empty retained payload deletes it" test ! -s "$T/gone"

# The will goes out when the publisher is killed.
for v in 311 5; do
  sub -V $v -t "will/$v" -C 1 >"$T/will.$v" &
  S=$!
  settle
  mkfifo "$T/fifo.$v"
  sleep 30 >"$T/fifo.$v" &
  HOLD=$!
  PIDS+=("$HOLD")
  # Not through `bg`: a background job without its own redirection reads /dev/null.
  "$M2MKIT" mqtt pub -p "$P" -V $v -t idle -l --will-topic "will/$v" --will-payload "gone $v" --will-qos 1 \
    <"$T/fifo.$v" &
  W=$!
  PIDS+=("$W")
  sleep 0.5
  kill -9 "$W"
  wait "$W" 2>/dev/null
  wait $S
  kill "$HOLD" 2>/dev/null
  check "v$v will published after kill -9 of the publisher" grep -qx "gone $v" "$T/will.$v"
done

# Persistent sessions: what is published while the subscriber is away is
# delivered when it comes back with -c and the same id.
sub -V 311 -c -i keeper311 -q 1 -t queue/311 -W 1 >/dev/null 2>&1
pub -V 311 -q 1 -t queue/311 -m while-away-311
check "v3.1.1 persistent session gets what was queued" \
  test "$(sub -V 311 -c -i keeper311 -q 1 -t queue/311 -C 1)" = "while-away-311"
sub -V 5 -c -x 300 -i keeper5 -q 2 -t queue/5 -W 1 >/dev/null 2>&1
pub -V 5 -q 2 -t queue/5 -m while-away-5
check "v5 persistent session (session expiry 300) gets what was queued" \
  test "$(sub -V 5 -c -x 300 -i keeper5 -q 2 -t queue/5 -C 1)" = "while-away-5"

# Topic aliases: through a recording proxy, the publisher's PUBLISH packets
# carry the topic once and an empty topic after that; the subscriber sees
# every message under its real topic.
PX=$(free_tcp_port)
cat >"$T/proxy.py" <<'PY'
import socket, sys, threading
lport, rport, rec = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", lport)); ls.listen(1); ls.settimeout(20)
c, _ = ls.accept(); s = socket.create_connection(("127.0.0.1", rport))
def pipe(a, b, f):
    while True:
        d = a.recv(65536)
        if not d: break
        if f: f.write(d); f.flush()
        b.sendall(d)
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
with open(rec, "wb") as f:
    t = threading.Thread(target=pipe, args=(s, c, None)); t.start()
    pipe(c, s, f); t.join()
PY
cat >"$T/topics.py" <<'PY'
import sys
b = open(sys.argv[1], "rb").read(); i = 0
while i < len(b):
    t = b[i] >> 4; n = 0; m = 1; j = i + 1
    while True:
        n += (b[j] & 127) * m; m *= 128; j += 1
        if not b[j - 1] & 128: break
    if t == 3: print(b[j] << 8 | b[j + 1])
    i = j + n
PY
/usr/bin/python3 "$T/proxy.py" "$PX" "$P" "$T/alias.rec" &
PIDS+=($!)
sleep 0.3
sub -V 5 -t alias/long/topic/name -C 3 -v >"$T/alias" &
S=$!
settle
printf 'a1\na2\na3\n' | timeout 10 "$M2MKIT" mqtt pub -p "$PX" -V 5 -q 1 -t alias/long/topic/name --alias -l
wait $S
check "topic aliases: 3 messages with their topic" \
  test "$(cat "$T/alias")" = "$(printf 'alias/long/topic/name a1\nalias/long/topic/name a2\nalias/long/topic/name a3')"
check "topic aliases: on the wire the topic goes once, then empty" \
  test "$(/usr/bin/python3 "$T/topics.py" "$T/alias.rec" | tr '\n' ' ')" = "21 0 0 "

# User properties and the JSON output.
sub -V 5 -t props/t -C 1 -F json >"$T/json" &
S=$!
settle
pub -V 5 -t props/t -m '{"t":21.5}' -D site=lab -D fw=1.2
wait $S
check "user properties in JSON output" \
  grep -q '"user_properties":\[{"name":"site","value":"lab"},{"name":"fw","value":"1.2"}\]' "$T/json"
check "JSON payload as text" grep -q '"payload":"{\\"t\\":21.5}"' "$T/json"
sub -V 5 -t bin/t -C 1 -F json >"$T/bin" &
S=$!
settle
printf '\xff\xfe\x00\x01' >"$T/bin.dat"
pub -V 5 -t bin/t -f "$T/bin.dat"
wait $S
check "binary payload as base64" grep -q '"payload_base64":"//4AAQ=="' "$T/bin"

# Credentials: refused with exit 1 and the reason's name; accepted with the
# right ones.
"$M2MKIT" mqtt pub -p "$PA" -V 5 -u alice -P wrong -t a -m x >/dev/null 2>"$T/refused5"; rc=$?
check "v5 wrong password: exit 1" test $rc -eq 1
# mosquitto answers a wrong password with Not authorized.
check "v5 wrong password: reason printed" grep -Eq 'refused: (Not authorized|Bad User Name or Password) \(0x8[67]\)' "$T/refused5"
"$M2MKIT" mqtt pub -p "$PA" -V 311 -u alice -P wrong -t a -m x >/dev/null 2>"$T/refused3"; rc=$?
check "v3.1.1 wrong password: exit 1" test $rc -eq 1
check "v3.1.1 wrong password: return code printed" grep -Eq 'refused: Connection Refused, (not authorized|bad user name or password) \(0x0[45]\)' "$T/refused3"
"$M2MKIT" mqtt pub -p "$PA" -V 5 -t a -m x >/dev/null 2>&1; rc=$?
check "anonymous on the password listener: exit 1" test $rc -eq 1
check "right password: exit 0" "$M2MKIT" mqtt pub -p "$PA" -V 5 -u alice -P wonderland -t a -m x

# Keep alive: an idle client sends PINGREQ every second with -k 1 and
# stays connected (mosquitto answers PINGRESP).
sub -V 5 -k 1 -i pinger -t ping/t -W 3 >/dev/null 2>"$T/ping.err"; rc=$?
check "keep alive 1 s: idle sub lasts its -W and exits 0" test $rc -eq 0
check "keep alive 1 s: the broker saw PINGREQs" \
  test "$(grep -c 'Received PINGREQ from pinger' "$T/mosquitto.log")" -ge 2

# -R: the subscriber survives a broker restart and resubscribes.
sub -V 5 -R -q 1 -t restart/t -C 1 -W 20 >"$T/restart" 2>&1 &
S=$!
settle
kill "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null
sleep 0.3
start_broker || bad "mosquitto restarted"
sleep 1.5
pub -q 1 -t restart/t -m after-restart
wait $S; rc=$?
check "-R reconnects after a broker restart and gets the next message" \
  bash -c "[ $rc -eq 0 ] && grep -qx after-restart '$T/restart'"

# Network failure: nobody listens.
kill "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null
"$M2MKIT" mqtt pub -p "$P" -t a -m x 2>/dev/null; rc=$?
check "no broker: exit 3" test $rc -eq 3

finish
