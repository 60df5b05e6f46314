#!/usr/bin/env bash
# MQTT over TLS (8883) and secure WebSocket (8084) on `m2mkit serve`, with
# the development PKI of `m2mkit certs init`: Debian's mosquitto_pub/sub
# (server verification, client certificates, PSK), our own client, paho over
# wss, identities as user names for ACLs, and every refusal: an unknown CA, a
# missing client certificate, a wrong PSK, TLS 1.1, plaintext on the TLS
# port (the listener keeps serving), a handshake that stalls.
BUILD=$1
. "$2/tests/support/lib.sh"
command -v mosquitto_pub >/dev/null || { echo "mosquitto-clients is not installed"; exit 77; }
PY=/usr/bin/python3
C="$T/var/certs"
"$M2MKIT" certs init --out "$C" --quiet || { echo "certs init failed"; exit 1; }
"$M2MKIT" certs init --out "$T/other" --quiet # a CA the server does not trust
CA=(--cafile "$C/ca.pem")
MTLS=(--cert "$C/client.pem" --key "$C/client.key")

sub_pid=""

start_m2mkit || exit 1
check "TLS and secure WebSocket listeners are up with the development certificates" \
  test -n "$TLS_PORT" -a -n "$WSS_PORT"

# 1. Server verification with the CA, both versions, and our client.
for v in mqttv311 mqttv5; do
  mosquitto_sub -h localhost -p "$TLS_PORT" "${CA[@]}" -V $v -t "tls/$v" -C 1 -W 5 >"$T/s.$v" &
  sub_pid=$!
  sleep 0.4
  check "mosquitto_pub over TLS ($v) verifies the server and publishes" \
    mosquitto_pub -h localhost -p "$TLS_PORT" "${CA[@]}" -V $v -t "tls/$v" -m "hello-$v" -q 1
  wait "$sub_pid"
  check "mosquitto_sub over TLS ($v) receives it" grep -qx "hello-$v" "$T/s.$v"
done
"$M2MKIT" mqtt sub -h localhost -p "$TLS_PORT" "${CA[@]}" -t tls/own -C 1 -W 5 >"$T/own" &
sub_pid=$!
sleep 0.4
check "m2mkit mqtt pub over mqtts:// with --cafile" \
  "$M2MKIT" mqtt pub --url "mqtts://localhost:$TLS_PORT/tls/own" "${CA[@]}" -m own -q 1
wait "$sub_pid"
check "m2mkit mqtt sub over TLS receives it" grep -qx own "$T/own"
check "a client certificate is accepted when offered (verify_clients = optional)" \
  mosquitto_pub -h localhost -p "$TLS_PORT" "${CA[@]}" "${MTLS[@]}" -t tls/m -m x
check "a server certificate from an unknown CA is refused by our client (exit 3)" \
  bash -c "! '$M2MKIT' mqtt pub -h localhost -p $TLS_PORT --cafile '$T/other/ca.pem' -t t -m x 2>/dev/null"

# 2. TLS 1.1 and plaintext are refused; the listener keeps serving.
out=$(echo | timeout 5 openssl s_client -connect 127.0.0.1:"$TLS_PORT" -tls1_1 2>&1)
check "a TLS 1.1 client is refused (protocol_version alert)" grep -q "alert protocol version" <<<"$out"
out=$(echo | timeout 5 openssl s_client -connect 127.0.0.1:"$TLS_PORT" -tls1 -cipher 'DEFAULT:@SECLEVEL=0' 2>&1)
check "a TLS 1.0 client is refused (protocol_version alert)" grep -q "alert protocol version" <<<"$out"
out=$(echo | timeout 5 openssl s_client -connect 127.0.0.1:"$TLS_PORT" -tls1_3 -CAfile "$C/ca.pem" 2>&1)
check "TLS 1.3 is offered" grep -q "TLSv1.3" <<<"$out"
check "plaintext MQTT on the TLS port is refused" \
  bash -c "! timeout 5 mosquitto_pub -h 127.0.0.1 -p $TLS_PORT -t t -m plain 2>/dev/null"
check "the TLS listener still serves after plaintext" \
  mosquitto_pub -h localhost -p "$TLS_PORT" "${CA[@]}" -t tls/after -m ok -q 1

# 3. MQTT over secure WebSocket with paho.
if $PY -c 'import paho.mqtt.client' 2>/dev/null; then
  check "paho over wss:// publishes and receives at QoS 1" $PY - "$WSS_PORT" "$C/ca.pem" <<'PYEOF'
import sys, threading, paho.mqtt.client as mqtt
port, ca = int(sys.argv[1]), sys.argv[2]
got = threading.Event()
c = mqtt.Client(client_id="wss-1", transport="websockets")
c.tls_set(ca_certs=ca)
c.on_connect = lambda cl, u, f, rc: cl.subscribe("wss/t", 1)
c.on_subscribe = lambda cl, u, m, g: cl.publish("wss/t", b"over-wss", 1)
c.on_message = lambda cl, u, m: m.payload == b"over-wss" and got.set()
c.connect("localhost", port)
c.loop_start()
ok = got.wait(5)
c.loop_stop()
sys.exit(0 if ok else 1)
PYEOF
fi
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null

# 4. Client certificates required, identities as user names, an ACL.
printf 'user device-1\ntopic readwrite devices/device-1/#\n' >"$T/acl"
start_m2mkit --tls.verify_clients=require --mqtt.use_identity_as_username=true --mqtt.acl_file="$T/acl" \
  --tls.handshake_timeout=1s || exit 1
check "without a client certificate the handshake is refused" \
  bash -c "! timeout 5 mosquitto_pub -h localhost -p $TLS_PORT --cafile '$C/ca.pem' -t devices/device-1/a -m x 2>/dev/null"
check "a client certificate from another CA is refused" \
  bash -c "! timeout 5 mosquitto_pub -h localhost -p $TLS_PORT --cafile '$C/ca.pem' --cert '$T/other/client.pem' --key '$T/other/client.key' -t devices/device-1/a -m x 2>/dev/null"
mosquitto_sub -h localhost -p "$TLS_PORT" "${CA[@]}" "${MTLS[@]}" -t 'devices/#' -v -W 3 >"$T/acl.out" &
sub_pid=$!
sleep 0.4
mosquitto_pub -h localhost -p "$TLS_PORT" "${CA[@]}" "${MTLS[@]}" -t devices/device-1/temp -m 21 -q 1
mosquitto_pub -h localhost -p "$TLS_PORT" "${CA[@]}" "${MTLS[@]}" -t devices/device-2/temp -m 99 -q 1
wait "$sub_pid"
check "the certificate's name is the user the ACL grants: its own topic is delivered" \
  grep -qx "devices/device-1/temp 21" "$T/acl.out"
check "another device's topic is not (write denied)" bash -c "! grep -q device-2 '$T/acl.out'"
start=$(date +%s%N)
$PY - "$TLS_PORT" <<'PYEOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(10)
try:
    s.recv(1)  # send nothing: the broker must give up on the handshake
except Exception:
    pass
PYEOF
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "# a silent TLS client was cut off after $ms ms (tls.handshake_timeout = 1 s)"
check "a stalled handshake is cut off (within 5 s)" test "$ms" -lt 5000
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null

# 5. PSK (TLS 1.2), a wrong key refused.
key=$(sed -n 's/^device-1:\([0-9a-f]*\)$/\1/p' "$C/psk.txt")
start_m2mkit --tls.psk_file="$C/psk.txt" || exit 1
check "mosquitto_pub with the PSK from psk.txt (TLS 1.2 PSK)" \
  mosquitto_pub -h 127.0.0.1 -p "$TLS_PORT" --psk "$key" --psk-identity device-1 --tls-version tlsv1.2 -t psk/t -m x -q 1
check "m2mkit mqtt pub with --psk-identity/--psk-key" \
  "$M2MKIT" mqtt pub -h 127.0.0.1 -p "$TLS_PORT" --psk-identity device-1 --psk-key "$key" -t psk/t -m x -q 1
check "a wrong PSK is refused" \
  bash -c "! timeout 5 mosquitto_pub -h 127.0.0.1 -p $TLS_PORT --psk 00112233445566778899aabbccddeeff --psk-identity device-1 --tls-version tlsv1.2 -t psk/t -m x 2>/dev/null"
kill "$SERVER_PID"; wait "$SERVER_PID"
check "clean shutdown, no sanitizer report" bash -c "! grep -q 'Sanitizer' '$SERVER_LOG'"
finish
