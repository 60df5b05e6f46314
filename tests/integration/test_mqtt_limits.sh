#!/usr/bin/env bash
# Connection caps: mqtt.max_connections_per_address and mqtt.max_connections
# close new connections at once, the ones admitted keep their service, and a
# slot freed by a client that leaves is given to the next one.
BUILD=$1
. "$2/tests/support/lib.sh"
PY=/usr/bin/python3
start_m2mkit --mqtt.max_connections=3 --mqtt.max_connections_per_address=2 || exit 1
IPV6=$(sed -n 's/.*listening on tcp 127.0.0.1 and \(::1\) port.*/\1/p' "$SERVER_LOG")

out=$($PY - "$MQTT_PORT" "$IPV6" <<'PYEOF'
import socket, sys, time
port, v6 = int(sys.argv[1]), sys.argv[2]
n = [0]

def session(host):
    """Connects and sends CONNECT: 'ok' if CONNACK 0 comes, 'closed' if the broker hangs up."""
    n[0] += 1
    cid = b"lim%d" % n[0]
    s = socket.create_connection((host, port), timeout=3)
    s.sendall(bytes([0x10, 12 + len(cid), 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, len(cid)]) + cid)
    try:
        r = s.recv(4)
    except OSError:
        r = b""
    return s, ("ok" if r[:2] == b"\x20\x02" and r[3:4] == b"\x00" else "closed")

a, ra = session("127.0.0.1")
b, rb = session("127.0.0.1")
c, rc = session("127.0.0.1")   # third from the same address: over the per-address cap
print("per-address:", ra, rb, rc)
if v6:
    d, rd = session("::1")     # another address: admitted, the total is now 3
    e, re_ = session("::1")    # the fourth connection: over the total cap
    print("total:", rd, re_)
    d.close()
a.sendall(bytes([0xC0, 0]))    # the admitted ones keep their service: PINGREQ -> PINGRESP
print("ping:", "ok" if a.recv(2) == b"\xd0\x00" else "lost")
a.close()
time.sleep(0.3)
f, rf = session("127.0.0.1")   # a slot was freed
print("after close:", rf)
PYEOF
)
echo "$out"
check "two connections from one address are admitted, the third is closed" grep -q "per-address: ok ok closed" <<<"$out"
if [ -n "$IPV6" ]; then
  check "the total cap closes the fourth connection, from another address" grep -q "total: ok closed" <<<"$out"
fi
check "admitted clients keep their service" grep -q "ping: ok" <<<"$out"
check "a freed slot is given to the next client" grep -q "after close: ok" <<<"$out"
check "refusals are logged with the reason" grep -q "connection refused: too many connections from this address" "$SERVER_LOG"
finish
