#!/usr/bin/env bash
# `m2mkit compare link`: the controlled link between two network namespaces.
# It comes up and goes away without a trace (also after Ctrl-C and after a
# crash), carries TCP and UDP, delays by what it is told, drops what it is
# told within statistical bounds, caps the rate, and its counters add up.
# Bounds are statistical or generous on purpose: no tight timing asserts.
BUILD=$1
. "$2/tests/support/lib.sh"
PY=/usr/bin/python3

if [ "$(id -u)" -ne 0 ]; then
  echo "skip: the link needs root (network namespaces, TUN devices); CI runs as root"; exit 77
fi
PREFIX="m2mt$$"
if ! ip netns add "${PREFIX}probe" 2>"$T/netns.err"; then
  echo "skip: 'ip netns add' fails here: $(cat "$T/netns.err")"; exit 77
fi
ip netns del "${PREFIX}probe"
if [ ! -c /dev/net/tun ]; then echo "skip: no /dev/net/tun"; exit 77; fi
for tool in nft tc; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null ||
    { echo "skip: the '$tool' command is missing (scripts/install-deps.sh installs it)"; exit 77; }
done
DEV="$PREFIX-dev"
SRV="$PREFIX-srv"

# Nothing with the prefix: no namespace, no interface in this namespace.
nothing_left() {
  ! ip netns list | grep -q "^$PREFIX" && ! ip -o link show | grep -q "$PREFIX"
}

# start_link ARGS...: holds a link in the background until stop_link.
start_link() {
  LOG="$T/link.$RANDOM.log"
  bg "$M2MKIT" compare link --prefix "$PREFIX" --hold 300 "$@" >"$LOG" 2>&1
  LINK_PID=$BG_PID
  wait_for "holding" "$LOG" 300 || { cat "$LOG"; return 1; }
}
# stop_link: Ctrl-C, which must print the counters and remove the link.
stop_link() {
  kill -INT "$LINK_PID"
  wait "$LINK_PID"
  local rc=$?
  grep -q "link down" "$LOG" && [ "$rc" -eq 0 ]
}

# A TCP sink in the server namespace: reads everything, answers with the
# byte count and SHA-256; the client sends N bytes and checks the answer.
cat >"$T/sink.py" <<'EOF'
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.2", int(sys.argv[1]))); s.listen(1); s.settimeout(60)
c, _ = s.accept(); c.settimeout(60); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
c.sendall(("%d %s\n" % (n, h.hexdigest())).encode()); c.close()
EOF
cat >"$T/send.py" <<'EOF'
import hashlib, os, socket, sys, time
n = int(sys.argv[2]); data = os.urandom(n)
for _ in range(100):
    try:
        c = socket.create_connection(("10.77.0.2", int(sys.argv[1])), timeout=60); break
    except OSError: time.sleep(0.05)
t0 = time.monotonic(); c.sendall(data); c.shutdown(socket.SHUT_WR)
answer = c.makefile().readline().split(); t = time.monotonic() - t0
ok = answer == [str(n), hashlib.sha256(data).hexdigest()]
print("%s %.3f" % ("ok" if ok else "BAD", t))
EOF
# A UDP echo and a pinger: 20 datagrams, all must come back.
cat >"$T/echo.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.77.0.2", int(sys.argv[1]))); s.settimeout(30)
for _ in range(20):
    b, a = s.recvfrom(2048); s.sendto(b, a)
EOF
cat >"$T/ping.py" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); got = 0
time.sleep(0.3)
for i in range(20):
    s.sendto(b"ping %d" % i, ("10.77.0.2", int(sys.argv[1])))
    try:
        got += s.recv(2048) == b"ping %d" % i
    except socket.timeout: pass
print(got)
EOF
tcp_transfer() { # bytes -> "ok SECONDS"
  ip netns exec "$SRV" $PY "$T/sink.py" 5000 &
  local sink=$!
  ip netns exec "$DEV" $PY "$T/send.py" 5000 "$1"
  wait $sink
}

# ---- a perfect link: up, TCP and UDP across, Ctrl-C, nothing left ----
check "the link comes up" start_link
check "namespaces exist while up" bash -c "ip netns list | grep -q '^$DEV' && ip netns list | grep -q '^$SRV'"
check "the device side has 10.77.0.1" bash -c "ip -n $DEV -o addr show | grep -q 10.77.0.1"
check "the server side has 10.77.0.2" bash -c "ip -n $SRV -o addr show | grep -q 10.77.0.2"
check "the root namespace has no link interface" bash -c "! ip -o link show | grep -q m2mlink"
out=$(tcp_transfer 1000000)
check "a 1 MB TCP transfer crosses intact ($out)" test "${out%% *}" = ok
ip netns exec "$SRV" $PY "$T/echo.py" 5001 &
echo_pid=$!
got=$(ip netns exec "$DEV" $PY "$T/ping.py" 5001)
wait $echo_pid
check "20 UDP pings, 20 answers ($got)" test "$got" = 20
check "Ctrl-C removes the link" stop_link
check "nothing is left behind" nothing_left
check "the counters were printed" grep -q "^counters up: sent" "$LOG"

# ---- leftovers of a crashed run with the same prefix ----
start_link
kill -9 "$LINK_PID"; wait "$LINK_PID" 2>/dev/null
check "a killed run leaves its namespaces" bash -c "ip netns list | grep -q '^$DEV'"
check "a new run over the leftovers comes up" start_link
check "and goes down" stop_link
check "nothing is left behind after the crash" nothing_left

# ---- delay: --rtt 200, median of 20 probes within [200, 240] ms ----
"$M2MKIT" compare link --prefix "$PREFIX" --selftest --rtt 200 --probes 20 >"$T/rtt.log" 2>&1
rc=$?
median=$(sed -n 's/^rtt ms: .*median \([0-9.]*\) .*/\1/p' "$T/rtt.log")
check "selftest --rtt 200 passes" test "$rc" -eq 0
check "median RTT $median ms within [200, 240]" awk -v m="${median:-0}" 'BEGIN { exit !(m >= 200 && m <= 240) }'
check "nothing is left behind after the selftest" nothing_left

# ---- loss: 20 % each way, 1000 probes, within 3 sigma ----
"$M2MKIT" compare link --prefix "$PREFIX" --selftest --loss 20 --probes 1000 >"$T/loss.log" 2>&1
rc=$?
read -r sent at_server echoed < <(sed -n 's/^probes: \([0-9]*\) sent, \([0-9]*\) reached the server, \([0-9]*\) echoed back/\1 \2 \3/p' "$T/loss.log")
check "selftest --loss 20 passes" test "$rc" -eq 0
# Each direction is a binomial draw: |measured - 0.2| <= 3 sqrt(0.16 / n).
within() { awk -v k="$1" -v n="$2" 'BEGIN { p = 1 - k / n; s = 3 * sqrt(0.16 / n); d = p - 0.2; if (d < 0) d = -d; exit !(n > 0 && d <= s) }'; }
check "loss up $at_server/$sent arrived: within 3 sigma of 20 %" within "${at_server:-0}" "${sent:-0}"
check "loss down $echoed/$at_server arrived: within 3 sigma of 20 %" within "${echoed:-0}" "${at_server:-0}"
# The link's own counters: every probe that reached the link is lost or delivered.
counters_add_up() { # log
  awk '/^counters (up|down): sent/ {
         for (i = 3; i < NF; i++) { x = $(i + 1); gsub(",", "", x); v[$i] = x }
         if (v["sent"] != v["received"] + v["in_flight"] + v["write_errors"] ||
             v["received"] != v["lost"] + v["delivered"]) bad = 1
         n++ }
       END { exit !(n == 2 && !bad) }' "$1"
}
check "loss counters: sent = received + in flight, received = lost + delivered" counters_add_up "$T/loss.log"
check "the lost counter matches the probes that vanished up" \
  bash -c "grep -q '^counters up: sent $sent pkts .* lost $((sent - at_server)) pkts' '$T/loss.log'"
check "nothing is left behind after the loss run" nothing_left

# ---- rate: 200 kbit/s, 200 KB over TCP takes 8.2 s, within a factor of 1.5 ----
check "a link with --rate 200kbit comes up" start_link --rate 200kbit
out=$(tcp_transfer 204800)
secs=${out##* }
check "200 KB arrive intact under the cap ($out)" test "${out%% *}" = ok
check "200 KB took $secs s, expected 8.19 s within a factor of 1.5" \
  awk -v t="${secs:-0}" 'BEGIN { e = 204800 * 8 / 200000; exit !(t >= e / 1.5 && t <= e * 1.5) }'
check "the rate-capped link goes down" stop_link
check "TCP counters: sent = received + in flight, received = lost + delivered" counters_add_up "$LOG"
up_bytes=$(sed -n 's/^counters up: sent [0-9]* pkts \([0-9]*\) bytes.*/\1/p' "$LOG")
check "the link carried the 200 KB up ($up_bytes bytes with headers)" test "${up_bytes:-0}" -gt 204800
check "nothing is left behind after the rate run" nothing_left

# ---- errors a user can act on ----
msg=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$M2MKIT" compare link --prefix "$PREFIX" 2>&1)
rc=$?
check "not root: exit 3, says root is needed" bash -c "[ $rc -eq 3 ] && grep -q 'needs.*root' <<<'$msg'"
check "not root: nothing created" nothing_left
check "bad prefix: usage error" bash -c "! '$M2MKIT' compare link --prefix 'a b' --hold 1 2>&1 | grep -q 'link up'"
"$M2MKIT" compare --quick >/dev/null 2>"$T/nyi.err"
check "compare without a subcommand: not yet, exit 2" bash -c "[ $? -eq 2 ] && grep -q 'not yet' '$T/nyi.err'"

finish
