#!/usr/bin/env bash
# Interop with Debian's libcoap3-bin, both ways: its coap-client against
# `m2mkit serve`, and `m2mkit coap` against its coap-server.
BUILD=$1
. "$2/tests/support/lib.sh"

LC_CLIENT=$(command -v coap-client-notls || command -v coap-client-openssl)
LC_SERVER=$(command -v coap-server-notls || command -v coap-server-openssl)
if [ -z "$LC_CLIENT" ] || [ -z "$LC_SERVER" ]; then
  echo "libcoap3-bin is not installed (scripts/install-deps.sh installs it)"; exit 77
fi
head -c 1048576 /dev/urandom >"$T/big.bin"

echo "# libcoap's client against m2mkit"
start_m2mkit || { echo "server did not start"; exit 1; }
U="coap://127.0.0.1:$COAP_PORT"
lc() { timeout 60 "$LC_CLIENT" "$@"; }

check "discovery" bash -c "'$LC_CLIENT' -m get '$U/.well-known/core' | grep -q '</m2mkit/version>'"
check "PUT" lc -m put -t text/plain -e hello "$U/lc"
check "GET" test "$(lc -m get "$U/lc")" = "hello"
check "GET over IPv6" test "$(lc -m get "coap://[::1]:$COAP_PORT/lc")" = "hello"
check "NON GET" test "$(lc -N -m get "$U/lc")" = "hello"
check "POST creates a child" lc -m post -e child "$U/lc"
check "the child is listed" bash -c "'$LC_CLIENT' -m get '$U/.well-known/core' | grep -q '</lc/1>'"
check "DELETE" lc -m delete "$U/lc"
check "GET after DELETE is 4.04" bash -c "'$LC_CLIENT' -m get '$U/lc' 2>&1 | grep -q '4.04'"
check "Block1 PUT of 1 MiB" lc -m put -b 1024 -f "$T/big.bin" "$U/big"
check "Block2 GET of 1 MiB" lc -m get -b 1024 -o "$T/lc.out" "$U/big"
check "1 MiB intact both ways" cmp -s "$T/big.bin" "$T/lc.out"
check "Block2 GET with 256-byte blocks" lc -m get -b 256 -o "$T/lc256.out" "$U/big"
check "256-byte blocks intact" cmp -s "$T/big.bin" "$T/lc256.out"
# our client reads what theirs wrote, and the other way round
check "m2mkit reads the libcoap upload" "$M2MKIT" coap get "$U/big" -o "$T/m.out"
check "identical" cmp -s "$T/big.bin" "$T/m.out"

"$M2MKIT" coap put "$U/obs" -p v0
timeout 10 "$LC_CLIENT" -s 4 -m get "$U/obs" >"$T/lcobs.out" 2>&1 &
OBS=$!
PIDS+=("$OBS")
wait_for "v0" "$T/lcobs.out"
for v in v1 v2 v3; do "$M2MKIT" coap put "$U/obs" -p $v; sleep 0.1; done
sleep 0.3
check "libcoap observer got every notification" grep -q "v0v1v2v3" <(tr -d '\n' <"$T/lcobs.out")
wait "$OBS" 2>/dev/null

echo "# m2mkit's client against libcoap's server"
LP=$(free_udp_port)
bg "$LC_SERVER" -A 127.0.0.1 -p "$LP" -d 10
sleep 0.5
L="coap://127.0.0.1:$LP"
check "discover libcoap's resources" bash -c "'$M2MKIT' coap discover '$L' | grep -q '</time>;if=\"clock\";rt=\"ticks\"'"
check "GET /time" "$M2MKIT" coap get "$L/time"
check "NON GET /time" "$M2MKIT" coap get -N "$L/time"
check "PUT creates a dynamic resource" "$M2MKIT" coap put "$L/dyn" -p hello
check "GET it back" test "$("$M2MKIT" coap get "$L/dyn")" = "hello"
check "POST" "$M2MKIT" coap post "$L/dyn" -p again
check "DELETE" "$M2MKIT" coap delete "$L/dyn"
"$M2MKIT" coap get -q "$L/dyn" >/dev/null 2>&1; rc=$?
check "GET after DELETE exits 1" test $rc -eq 1
check "Block1 PUT of 1 MiB to libcoap" "$M2MKIT" coap put "$L/big" -t octets -p @"$T/big.bin"
check "Block2 GET of 1 MiB from libcoap" "$M2MKIT" coap get "$L/big" -o "$T/from-lc.bin"
check "1 MiB intact" cmp -s "$T/big.bin" "$T/from-lc.bin"
check "Block2 GET with 128-byte blocks" "$M2MKIT" coap get -b 128 "$L/big" -o "$T/from-lc128.bin"
check "128-byte blocks intact" cmp -s "$T/big.bin" "$T/from-lc128.bin"
out=$(timeout 20 "$M2MKIT" coap observe "$L/time" -c 3)
check "observe /time: 3 messages" test "$(wc -l <<<"$out")" -eq 3

finish
