#!/usr/bin/env bash
# CoAP over DTLS 1.2 with Debian's libcoap3-bin, both ways: its OpenSSL and
# GnuTLS clients against `m2mkit serve` with PSK and with certificates
# (throwaway ECDSA P-256 ones made here), refusals of a wrong PSK and of an
# unknown CA; and `m2mkit coap` against libcoap's coap-server-openssl.
BUILD=$1
. "$2/tests/support/lib.sh"

LC_CLIENT=$(command -v coap-client-openssl)
LC_GNUTLS=$(command -v coap-client-gnutls)
LC_SERVER=$(command -v coap-server-openssl)
if [ -z "$LC_CLIENT" ] || [ -z "$LC_SERVER" ] || ! command -v openssl >/dev/null; then
  echo "libcoap3-bin (coap-client-openssl) or openssl is not installed"; exit 77
fi

# Throwaway certificates: a CA, the server (localhost, 127.0.0.1, ::1),
# a device, and a device from a CA nobody trusts.
C=$T/certs
mkdir -p "$C"
mk() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "$@" 2>/dev/null; }
mk -keyout "$C/ca.key" -out "$C/ca.pem" -subj /CN=test-ca
mk -keyout "$C/rogue-ca.key" -out "$C/rogue-ca.pem" -subj /CN=rogue-ca
mk -keyout "$C/server.key" -out "$C/server.pem" -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" -CA "$C/ca.pem" -CAkey "$C/ca.key"
mk -keyout "$C/dev.key" -out "$C/dev.pem" -subj /CN=sensor-42 -CA "$C/ca.pem" -CAkey "$C/ca.key"
mk -keyout "$C/rogue.key" -out "$C/rogue.pem" -subj /CN=sensor-42 -CA "$C/rogue-ca.pem" -CAkey "$C/rogue-ca.key"
printf '# identity:hexkey\nsensor-7:%s\n' "$(printf 'sensor-7-secret' | od -An -tx1 | tr -d ' \n')" >"$T/psk.txt"

echo "# libcoap's clients against m2mkit over DTLS"
start_m2mkit --mqtt.enabled=false --tls.psk_file="$T/psk.txt" --tls.cert="$C/server.pem" \
  --tls.key="$C/server.key" --tls.ca="$C/ca.pem" --tls.verify_clients=optional -v ||
  { echo "server did not start"; exit 1; }
[ -n "$COAPS_PORT" ] || { cat "$SERVER_LOG"; echo "no CoAPS listener"; exit 1; }
U="coaps://127.0.0.1:$COAPS_PORT"
lc() { timeout 30 "$LC_CLIENT" -B 5 "$@"; }
PSK=(-u sensor-7 -k sensor-7-secret)
PKI=(-c "$C/dev.pem" -j "$C/dev.key" -C "$C/ca.pem")

check "PSK PUT" lc "${PSK[@]}" -m put -t text/plain -e hello "$U/dtls"
check "PSK GET" test "$(lc "${PSK[@]}" -m get "$U/dtls")" = "hello"
check "PSK GET over IPv6" test "$(lc "${PSK[@]}" -m get "coaps://[::1]:$COAPS_PORT/dtls")" = "hello"
check "the PSK identity is logged" grep -q "identity 'sensor-7'" "$SERVER_LOG"
if [ -n "$LC_GNUTLS" ]; then
  check "PSK GET with the GnuTLS client" \
    test "$(timeout 30 "$LC_GNUTLS" -B 5 "${PSK[@]}" -m get "$U/dtls")" = "hello"
fi
check "certificate PUT" lc "${PKI[@]}" -m put -e "by cert" "$U/dtls"
check "certificate GET" test "$(lc "${PKI[@]}" -m get "$U/dtls")" = "by cert"
check "the certificate's CN is the identity" grep -q "identity 'sensor-42'" "$SERVER_LOG"
check "Block2 GET of the discovery over DTLS" \
  bash -c "timeout 30 '$LC_CLIENT' -B 5 -u sensor-7 -k sensor-7-secret -b 64 -m get '$U/.well-known/core' | grep -q '</dtls>'"
out=$(lc -u sensor-7 -k wrong-key -m get "$U/dtls" 2>&1)
check "a wrong PSK gets nothing" test "${out//$'\n'/}" != "by cert"
out=$(lc -u nobody -k sensor-7-secret -m get "$U/dtls" 2>&1)
check "an unknown identity gets nothing" test "${out//$'\n'/}" != "by cert"
out=$(lc -c "$C/rogue.pem" -j "$C/rogue.key" -C "$C/ca.pem" -m get "$U/dtls" 2>&1)
check "a client certificate from an unknown CA gets nothing" test "${out//$'\n'/}" != "by cert"
check "the refusals are logged" grep -q "handshake failed" "$SERVER_LOG"
check "plain CoAP still serves" test "$(timeout 10 "$M2MKIT" coap get "coap://127.0.0.1:$COAP_PORT/dtls")" = "by cert"

echo "# m2mkit's client against m2mkit"
MC=(timeout 30 "$M2MKIT" coap)
check "m2mkit coap PSK (text key)" \
  test "$("${MC[@]}" get "$U/dtls" --psk-identity sensor-7 --psk-key sensor-7-secret)" = "by cert"
check "m2mkit coap PSK (hex key)" test "$("${MC[@]}" get "$U/dtls" --psk-identity sensor-7 \
  --psk-key "$(printf 'sensor-7-secret' | od -An -tx1 | tr -d ' \n')")" = "by cert"
check "m2mkit coap certificate" \
  test "$("${MC[@]}" get "$U/dtls" --cafile "$C/ca.pem" --cert "$C/dev.pem" --key "$C/dev.key")" = "by cert"
check "m2mkit coap checks the server's name" \
  test "$("${MC[@]}" get "coaps://localhost:$COAPS_PORT/dtls" --cafile "$C/ca.pem")" = "by cert"
"${MC[@]}" get "$U/dtls" --psk-identity sensor-7 --psk-key wrong -w 30 2>"$T/wrong.err"
rc=$?
check "m2mkit coap: a wrong PSK exits 3" test "$rc" = 3
check "m2mkit coap: with the reason" grep -q "DTLS handshake failed" "$T/wrong.err"
"${MC[@]}" get "$U/dtls" --cafile "$C/rogue-ca.pem" 2>"$T/ca.err"
rc=$?
check "m2mkit coap: an untrusted server exits 3" test "$rc" = 3
check "m2mkit coap: saying why" grep -q "certificate" "$T/ca.err"
kill "$SERVER_PID"

echo "# m2mkit's client against libcoap's coap-server-openssl"
LP=$(free_udp_port)
bg timeout 120 "$LC_SERVER" -A 127.0.0.1 -p "$LP" -d 10 -k sensor-7-secret -h "" \
  -c "$C/server.pem" -j "$C/server.key" -C "$C/ca.pem" >"$T/lcserver.log" 2>&1
for _ in $(seq 1 50); do ss -Hulpn "sport = :$((LP + 1))" 2>/dev/null | grep -q . && break; sleep 0.1; done
SU="coaps://127.0.0.1:$((LP + 1))"
check "PSK PUT to coap-server" "${MC[@]}" put "$SU/m2m" -p from-m2mkit --psk-identity sensor-7 \
  --psk-key sensor-7-secret
check "PSK GET from coap-server" test "$("${MC[@]}" get "$SU/m2m" --psk-identity sensor-7 \
  --psk-key sensor-7-secret -r)" = "from-m2mkit"
check "certificate GET from coap-server" test "$("${MC[@]}" get "$SU/m2m" --cafile "$C/ca.pem" \
  --cert "$C/dev.pem" --key "$C/dev.key" -r)" = "from-m2mkit"
"${MC[@]}" get "$SU/m2m" --psk-identity sensor-7 --psk-key wrong -w 30 2>/dev/null
check "a wrong PSK against coap-server exits 3" test $? = 3

finish
