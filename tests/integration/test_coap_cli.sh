#!/usr/bin/env bash
# End to end on loopback: `m2mkit serve` and `m2mkit coap`, IPv4 and IPv6.
BUILD=$1
. "$2/tests/support/lib.sh"

start_m2mkit -v || { echo "server did not start"; exit 1; }
U="coap://127.0.0.1:$COAP_PORT"

out=$("$M2MKIT" coap discover "$U")
check "discover lists the built-in resource" grep -q '</m2mkit/version>' <<<"$out"

check "PUT creates (exit 0)" "$M2MKIT" coap put "$U/sensors/temp?rt=temperature&if=sensor" -t text -p 21.5
check "GET reads back" test "$("$M2MKIT" coap get "$U/sensors/temp")" = "21.5"
check "GET over IPv6" test "$("$M2MKIT" coap get "coap://[::1]:$COAP_PORT/sensors/temp")" = "21.5"
check "GET with NON" test "$("$M2MKIT" coap get -N "$U/sensors/temp")" = "21.5"
out=$("$M2MKIT" coap discover "$U/.well-known/core?rt=temp*")
check "discovery filter by rt prefix" grep -q '^</sensors/temp>;rt="temperature";if="sensor";ct=0;obs$' <<<"$out"
check "discovery filter excludes others" bash -c "! grep -q version <<<'$out'"

"$M2MKIT" coap get "$U/missing" >/dev/null 2>"$T/err"; rc=$?
check "GET of a missing resource exits 1" test $rc -eq 1
check "and says 4.04" grep -q '4.04 Not Found' "$T/err"

out=$("$M2MKIT" coap post -v "$U/sensors/temp" -p 22 2>&1)
check "POST to a resource creates a child with Location-Path" grep -q '2.01 Created' <<<"$out"

check "percent-encoded path round trip" "$M2MKIT" coap put "$U/a%20b/c%2Fd" -p x
check "percent-encoded path read" test "$("$M2MKIT" coap get "$U/a%20b/c%2Fd")" = "x"

head -c 1048576 /dev/urandom >"$T/big.bin"
check "1 MiB PUT (Block1)" "$M2MKIT" coap put "$U/big" -t octets -p @"$T/big.bin"
check "1 MiB GET (Block2)" "$M2MKIT" coap get "$U/big" -o "$T/big.out"
check "1 MiB body intact" cmp -s "$T/big.bin" "$T/big.out"
check "GET with 64-byte blocks" "$M2MKIT" coap get -b 64 "$U/big" -o "$T/big64.out"
check "64-byte blocks intact" cmp -s "$T/big.bin" "$T/big64.out"

"$M2MKIT" coap observe "$U/sensors/temp" -c 4 >"$T/obs.out" 2>&1 &
OBS=$!
PIDS+=("$OBS")
wait_for "21.5" "$T/obs.out"
for v in 30 31 32; do "$M2MKIT" coap put "$U/sensors/temp" -p $v; done
wait "$OBS"; rc=$?
check "observe ends after 4 messages with exit 0" test $rc -eq 0
check "observe saw every state in order" test "$(tr '\n' ' ' <"$T/obs.out")" = "21.5 30 31 32 "
check "observe deregistered itself (GET with Observe=1)" wait_for "observer of /sensors/temp gone" "$SERVER_LOG"

printf '\xa2\x61\x6e\x64\x74\x65\x6d\x70\x61\x76\xf9\x4d\x60' >"$T/c.cbor"
"$M2MKIT" coap put "$U/c" -t cbor -p @"$T/c.cbor"
check "CBOR printed in diagnostic notation" test "$("$M2MKIT" coap get "$U/c")" = '{"n": "temp", "v": 21.5}'
check "CBOR raw with -r" cmp -s <("$M2MKIT" coap get -r "$U/c") "$T/c.cbor"
"$M2MKIT" coap put "$U/j" -t json -p '{"a":[1,2]}'
check "JSON indented" test "$("$M2MKIT" coap get "$U/j" | wc -l)" -eq 6

check "DELETE" "$M2MKIT" coap delete "$U/big"
"$M2MKIT" coap get "$U/big" >/dev/null 2>&1; rc=$?
check "gone after DELETE" test $rc -eq 1

"$M2MKIT" coap get "coap://bad uri" >/dev/null 2>&1; rc=$?
check "bad URI exits 2" test $rc -eq 2
"$M2MKIT" coap get -w 1 "coap://127.0.0.1:9/x" >/dev/null 2>&1; rc=$?
check "no server: exit 3 after the wait" test $rc -eq 3

# Garbage and truncated datagrams must not disturb the server.
printf '\x40\x01\x12' >/dev/udp/127.0.0.1/"$COAP_PORT"
printf '\x4f\x01\x12\x34garbage' >/dev/udp/127.0.0.1/"$COAP_PORT"
head -c 2000 /dev/urandom >/dev/udp/127.0.0.1/"$COAP_PORT"
check "still serving after garbage" test "$("$M2MKIT" coap get "$U/sensors/temp")" = "32"

out=$("$M2MKIT" bench coap -n 3 -W 2 -d 1 -P 20 -j --mix get:80,put:20 "$U/sensors/temp")
check "bench coap runs and counts answers" grep -q '"warm_peers":20,.*"errors":0' <<<"$out"
check "bench coap made requests" test "$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$out")" -gt 100

for c in serve coap bench; do
  check "$c --help" bash -c "'$M2MKIT' $c --help | grep -q usage"
done

cat >"$T/m2mkit.conf" <<CONF
# comment
[coap]
port = 5999
max_observers = 7
CONF
out=$("$M2MKIT" serve -c "$T/m2mkit.conf" --coap.max_observers=9 --print-config)
check "config file is read" grep -q '^port = 5999$' <<<"$out"
check "command line overrides the file" grep -q '^max_observers = 9$' <<<"$out"
"$M2MKIT" serve --coap.nonsense=1 --print-config >/dev/null 2>&1; rc=$?
check "unknown key refused" test $rc -eq 2

kill -TERM "$SERVER_PID"
wait "$SERVER_PID"; rc=$?
check "SIGTERM: clean exit 0" test $rc -eq 0
check "SIGTERM: logged the shutdown" grep -q "stopped" "$SERVER_LOG"

finish
