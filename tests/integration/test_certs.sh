#!/usr/bin/env bash
# `m2mkit certs init|show`: the development PKI, checked with OpenSSL's own
# tools and used by real peers (openssl s_server/s_client, mosquitto with
# client certificates) before m2mkit's TLS listeners use it.
BUILD=$1
. "$2/tests/support/lib.sh"
command -v openssl >/dev/null || { echo "openssl not installed"; exit 77; }
M2MKIT="$(cd "$BUILD" && pwd)/m2mkit" # absolute: one check runs from another directory

D="$T/pki/certs"
FILES="ca.pem ca.key server.pem server.key client.pem client.key psk.txt"
mode() { stat -c %a "$1"; }
fp() { openssl x509 -noout -fingerprint -sha256 -in "$1" | cut -d= -f2; }
fingerprints() { for f in ca.pem server.pem client.pem; do fp "$D/$f"; done; sha256sum "$D"/*.key "$D/psk.txt" | cut -d' ' -f1; }
free_tcp_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_tcp() { for _ in $(seq 1 100); do ss -Htln "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }

# ---- usage errors (exit 2) ----
usage_exit() { "$M2MKIT" certs "$@" >/dev/null 2>&1; test $? -eq 2; }
check "no subcommand: exit 2" usage_exit
check "unknown subcommand: exit 2" usage_exit create
check "--days 0: exit 2" usage_exit init --out "$T/u" --days 0
check "--days abc: exit 2" usage_exit init --out "$T/u" --days abc
check "--client-cn with ':': exit 2" usage_exit init --out "$T/u" --client-cn a:b
check "--server-name 'a b': exit 2" usage_exit init --out "$T/u" --server-name 'a b'
check "--server-name with a comma: exit 2" usage_exit init --out "$T/u" --server-name 'x,IP:1.2.3.4'
check "usage errors wrote nothing" test ! -e "$T/u"
check "--help: exit 0" bash -c "'$M2MKIT' certs --help | grep -q 'certs init'"
check "m2mkit help lists certs" bash -c "'$M2MKIT' help | grep -q '^  certs '"

# ---- init: every file, modes, development marks ----
check "init: exit 0" bash -c "'$M2MKIT' certs init --out '$D' --server-name sensors.example --server-name 192.0.2.7 >'$T/first'"
check "init says created for all 7 files" test "$(grep -c '^created ' "$T/first")" -eq 7
all_there() { for f in $FILES; do [ -s "$D/$f" ] || return 1; done; }
check "init: every file exists" all_there
check "directory is mode 700" test "$(mode "$D")" = 700
keys_600() { for f in ca.key server.key client.key psk.txt; do [ "$(mode "$D/$f")" = 600 ] || return 1; done; }
check "keys and psk.txt are mode 600" keys_600
certs_644() { for f in ca.pem server.pem client.pem; do [ "$(mode "$D/$f")" = 644 ] || return 1; done; }
check "certificates are mode 644" certs_644
marked() { for f in $FILES; do head -1 "$D/$f" | grep -q '^#.*not for production' || return 1; done; }
check "every file says it is not for production" marked
check "CA subject O says not for production" \
  bash -c "openssl x509 -in '$D/ca.pem' -noout -subject | grep -q 'm2mkit development CA - not for production'"
check "psk.txt: one device-1:<32 hex> line" \
  bash -c "[ \$(grep -v '^#' '$D/psk.txt' | wc -l) -eq 1 ] && grep -Eqx 'device-1:[0-9a-f]{32}' '$D/psk.txt'"
check "keys are ECDSA P-256" \
  bash -c "for k in ca server client; do openssl pkey -in '$D/'\$k.key -noout -text | grep -q 'NIST CURVE: P-256' || exit 1; done"

# ---- OpenSSL's verdict ----
check "openssl verify -CAfile ca.pem server.pem client.pem" \
  bash -c "openssl verify -CAfile '$D/ca.pem' '$D/server.pem' '$D/client.pem' >'$T/verify' 2>&1"
check "verify: both OK" bash -c "[ \$(grep -c ': OK\$' '$T/verify') -eq 2 ]"
openssl x509 -in "$D/server.pem" -noout -text >"$T/server.txt"
openssl x509 -in "$D/client.pem" -noout -text >"$T/client.txt"
openssl x509 -in "$D/ca.pem" -noout -text >"$T/ca.txt"
check "server SAN: localhost, 127.0.0.1, ::1 and the extra names" \
  grep -q 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:sensors.example, IP Address:192.0.2.7' "$T/server.txt"
check "server: extendedKeyUsage serverAuth only" \
  bash -c "grep -A1 'Extended Key Usage' '$T/server.txt' | tail -1 | grep -qx ' *TLS Web Server Authentication'"
check "server: CN localhost" bash -c "openssl x509 -in '$D/server.pem' -noout -subject | grep -q 'CN *= *localhost'"
check "client: extendedKeyUsage clientAuth only" \
  bash -c "grep -A1 'Extended Key Usage' '$T/client.txt' | tail -1 | grep -qx ' *TLS Web Client Authentication'"
check "client: CN device-1" bash -c "openssl x509 -in '$D/client.pem' -noout -subject | grep -q 'CN *= *device-1'"
check "leaves are not CAs" bash -c "grep -A1 'Basic Constraints: critical' '$T/server.txt' | grep -q 'CA:FALSE'"
check "CA: CA:TRUE and keyCertSign" \
  bash -c "grep -A1 'Basic Constraints: critical' '$T/ca.txt' | grep -q 'CA:TRUE' && grep -A1 'Key Usage: critical' '$T/ca.txt' | grep -q 'Certificate Sign'"
days_left() { echo $(( ($(date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s)) / 86400 )); }
check "server valid 825 days" test "$(days_left "$D/server.pem")" -eq 824 -o "$(days_left "$D/server.pem")" -eq 825
check "CA valid 10 years" test "$(days_left "$D/ca.pem")" -ge 3649

# ---- idempotence and --force ----
fingerprints >"$T/fp1"
check "second init: exit 0" bash -c "'$M2MKIT' certs init --out '$D' >'$T/second'"
check "second init says kept for all 7 files" test "$(grep -c '^kept ' "$T/second")" -eq 7
fingerprints >"$T/fp2"
check "second init keeps every file (same fingerprints)" cmp -s "$T/fp1" "$T/fp2"
check "--quiet prints nothing when nothing changes" bash -c "[ -z \"\$('$M2MKIT' certs init --quiet --out '$D')\" ]"
check "--force: exit 0" bash -c "'$M2MKIT' certs init --out '$D' --force --client-cn sensor-7 --days 30 >'$T/forced'"
check "--force says replaced for all 7 files" test "$(grep -c '^replaced ' "$T/forced")" -eq 7
fingerprints >"$T/fp3"
all_differ() { paste -d' ' "$T/fp2" "$T/fp3" | while read -r a b; do [ "$a" != "$b" ] || exit 1; done; }
check "--force replaces every file" all_differ
check "--force keeps the modes" keys_600
check "--client-cn names the client and the PSK identity" \
  bash -c "openssl x509 -in '$D/client.pem' -noout -subject | grep -q 'CN *= *sensor-7' && grep -Eqx 'sensor-7:[0-9a-f]{32}' '$D/psk.txt'"
check "--days 30" test "$(days_left "$D/server.pem")" -ge 29 -a "$(days_left "$D/server.pem")" -le 30
check "after --force, the chain still verifies" bash -c "openssl verify -CAfile '$D/ca.pem' '$D/server.pem' '$D/client.pem' >/dev/null"

# ---- an inconsistent directory is reported, not silently used ----
cp -r "$D" "$T/broken"
rm "$T/broken/server.key"
"$M2MKIT" certs init --out "$T/broken" >/dev/null 2>"$T/broken.err"
check "a certificate without its key: exit 1" test $? -eq 1
check "... and the message names it" grep -q 'server.pem exists without server.key' "$T/broken.err"
check "... and nothing was written" test ! -e "$T/broken/server.key"
rm "$T/broken/ca.pem" "$T/broken/ca.key"
check "--force repairs it" bash -c "'$M2MKIT' certs init --out '$T/broken' --force --quiet | grep -q 'wrote 7 development'"
check "repaired chain verifies" bash -c "openssl verify -CAfile '$T/broken/ca.pem' '$T/broken/server.pem' >/dev/null"
mkdir -p "$T/other"
"$M2MKIT" certs init --out "$T/other" --quiet >/dev/null 2>&1
cp "$T/other/server.pem" "$T/other/server.key" "$T/broken/"
"$M2MKIT" certs init --out "$T/broken" >/dev/null 2>"$T/broken.err"
check "a server.pem from another CA: exit 1" test $? -eq 1

# ---- certs show ----
"$M2MKIT" certs show "$D" >"$T/show"
check "show: exit 0" test $? -eq 0
check "show: SANs" grep -q 'DNS:localhost, IP:127.0.0.1, IP:::1' "$T/show"
check "show: key type and match" bash -c "[ \$(grep -c 'EC P-256, .*matches (mode 0600)' '$T/show') -eq 3 ]"
check "show: chains" bash -c "[ \$(grep -c 'verifies against ca.pem' '$T/show') -eq 2 ]"
check "show: the PSK identity, never the key" \
  bash -c "grep -q 'psk: *sensor-7' '$T/show' && ! grep -q \"\$(grep -v '^#' '$D/psk.txt' | cut -d: -f2)\" '$T/show'"
"$M2MKIT" certs show "$T/broken" >/dev/null 2>&1
check "show: a certificate from another CA: exit 1" test $? -eq 1
mkdir -p "$T/empty"
"$M2MKIT" certs show "$T/empty" >/dev/null 2>&1
check "show: an empty directory: exit 1" test $? -eq 1
check "show: default directory is server.data_dir/certs" \
  bash -c "cd '$T/pki/..' && '$M2MKIT' certs init -q >/dev/null && [ -s var/certs/server.pem ] && '$M2MKIT' certs show | grep -q '^./var/certs/server.pem'"

# ---- a real TLS handshake: openssl s_server / s_client ----
P=$(free_tcp_port)
bg timeout 20 openssl s_server -accept "127.0.0.1:$P" -cert "$D/server.pem" -key "$D/server.key" \
  -Verify 1 -CAfile "$D/ca.pem" -naccept 1 -quiet >"$T/s_server.log" 2>&1
SPID=$BG_PID
if wait_tcp "$P"; then
  echo hello | timeout 10 openssl s_client -CAfile "$D/ca.pem" -verify_return_error -verify_hostname localhost \
    -cert "$D/client.pem" -key "$D/client.key" -connect "127.0.0.1:$P" -servername localhost >"$T/s_client.log" 2>&1
  crc=$?
  wait "$SPID"
  check "s_client verifies s_server (mTLS): exit 0" test $crc -eq 0
  check "s_client: Verify return code 0" grep -q 'Verify return code: 0 (ok)' "$T/s_client.log"
else
  bad "s_server did not start"; cat "$T/s_server.log"
fi
P=$(free_tcp_port)
bg timeout 20 openssl s_server -accept "127.0.0.1:$P" -cert "$D/server.pem" -key "$D/server.key" -naccept 1 -quiet \
  >/dev/null 2>&1
SPID=$BG_PID
if wait_tcp "$P"; then
  echo | timeout 10 openssl s_client -CAfile "$D/ca.pem" -verify_return_error -verify_hostname wrong.example \
    -connect "127.0.0.1:$P" -servername wrong.example >/dev/null 2>&1
  check "s_client refuses the certificate for another host name" test $? -ne 0
  wait "$SPID"
fi

# ---- mosquitto with required client certificates, identity as user name ----
if command -v mosquitto >/dev/null && command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null; then
  P=$(free_tcp_port)
  printf 'user device-1\ntopic readwrite dev/#\n' >"$T/acl"
  cat >"$T/mosquitto.conf" <<EOF
listener $P 127.0.0.1
cafile $D/ca.pem
certfile $D/server.pem
keyfile $D/server.key
require_certificate true
use_identity_as_username true
acl_file $T/acl
persistence false
user $(id -un)
EOF
  # The ACL names device-1: issue it again under that name for this part.
  "$M2MKIT" certs init --out "$D" --force --quiet >/dev/null
  bg timeout 60 mosquitto -c "$T/mosquitto.conf" >"$T/mosquitto.log" 2>&1
  if wait_tcp "$P"; then
    TLSOPTS=(-h 127.0.0.1 -p "$P" --cafile "$D/ca.pem")
    CERT=(--cert "$D/client.pem" --key "$D/client.key")
    timeout 15 mosquitto_sub "${TLSOPTS[@]}" "${CERT[@]}" -t 'dev/#' -C 1 -W 10 >"$T/sub.out" 2>&1 &
    SUB=$!
    sleep 0.5
    timeout 10 mosquitto_pub "${TLSOPTS[@]}" "${CERT[@]}" -t dev/t -m over-mtls
    check "mosquitto_pub with the client certificate: exit 0" test $? -eq 0
    wait $SUB
    check "the message went through (CN device-1 is the ACL user)" grep -qx over-mtls "$T/sub.out"
    timeout 10 mosquitto_pub "${TLSOPTS[@]}" -t dev/t -m no-cert >/dev/null 2>&1
    check "mosquitto_pub without a client certificate is refused" test $? -ne 0
    timeout 10 mosquitto_pub -h localhost -p "$P" --cafile "$D/ca.pem" "${CERT[@]}" -t dev/t -m by-name
    check "mosquitto_pub to localhost (SAN DNS:localhost): exit 0" test $? -eq 0
    "$M2MKIT" certs init --out "$T/stranger" --quiet >/dev/null
    timeout 10 mosquitto_pub "${TLSOPTS[@]}" --cert "$T/stranger/client.pem" --key "$T/stranger/client.key" \
      -t dev/t -m stranger >/dev/null 2>&1
    check "a client certificate from another CA is refused" test $? -ne 0
  else
    bad "mosquitto did not start"; cat "$T/mosquitto.log"
  fi
  # psk.txt, comment line included, is a valid mosquitto psk_file too.
  P=$(free_tcp_port)
  cat >"$T/mosquitto-psk.conf" <<EOF
listener $P 127.0.0.1
psk_hint m2mkit
psk_file $D/psk.txt
use_identity_as_username true
acl_file $T/acl
persistence false
user $(id -un)
EOF
  bg timeout 60 mosquitto -c "$T/mosquitto-psk.conf" >"$T/mosquitto-psk.log" 2>&1
  if wait_tcp "$P"; then
    KEY=$(grep -v '^#' "$D/psk.txt" | cut -d: -f2)
    PSKOPTS=(-h 127.0.0.1 -p "$P" --tls-version tlsv1.2 --psk-identity device-1)
    timeout 15 mosquitto_sub "${PSKOPTS[@]}" --psk "$KEY" -t 'dev/#' -C 1 -W 10 >"$T/psk.out" 2>&1 &
    SUB=$!
    sleep 0.5
    timeout 10 mosquitto_pub "${PSKOPTS[@]}" --psk "$KEY" -t dev/psk -m over-psk
    check "mosquitto_pub with the PSK of psk.txt: exit 0" test $? -eq 0
    wait $SUB
    check "the PSK message went through (identity device-1 is the ACL user)" grep -qx over-psk "$T/psk.out"
    timeout 10 mosquitto_pub "${PSKOPTS[@]}" --psk 00112233445566778899aabbccddeeff -t dev/psk -m x >/dev/null 2>&1
    check "a wrong PSK is refused" test $? -ne 0
  else
    bad "mosquitto (PSK) did not start"; cat "$T/mosquitto-psk.log"
  fi
else
  echo "skip - mosquitto, mosquitto_pub or mosquitto_sub not installed"
fi

finish
