#!/usr/bin/env bash
# Interop: password files. (1) Files written by Debian's mosquitto_passwd
# verify with `m2mkit passwd --check`; (2) files written by `m2mkit passwd`
# are accepted by a real mosquitto broker (password_file, allow_anonymous
# false) on a free loopback port.
BUILD=$1
. "$2/tests/support/lib.sh"
command -v mosquitto_passwd >/dev/null && command -v mosquitto >/dev/null && command -v mosquitto_pub >/dev/null ||
  { echo "mosquitto and mosquitto-clients are not installed (scripts/install-deps.sh installs them)"; exit 77; }

pw() { "$M2MKIT" passwd "$@"; }
verifies() { pw --check "$@" 2>/dev/null; }
refuses() { ! pw --check "$@" 2>/dev/null; }

# ---- (1) mosquitto_passwd -> m2mkit --------------------------------------
F=$T/from-mosquitto
mosquitto_passwd -c -b "$F" alice secret
mosquitto_passwd -b "$F" bob 'p@ss w0rd:x'
mosquitto_passwd -H sha512 -b "$F" carol hunter2
printf 'dan:plain-text\n' >"$T/plain" && mosquitto_passwd -U "$T/plain" && cat "$T/plain" >>"$F"
check "mosquitto_passwd writes \$7\$ by default" grep -q '^alice:\$7\$101\$' "$F"
check "mosquitto_passwd -H sha512 writes \$6\$" grep -q '^carol:\$6\$' "$F"
check "\$7\$ line verifies" verifies "$F" alice secret
check "\$7\$ line with blanks and ':' in the password verifies" verifies "$F" bob 'p@ss w0rd:x'
check "\$6\$ line verifies" verifies "$F" carol hunter2
check "line hashed by mosquitto_passwd -U verifies" verifies "$F" dan plain-text
check "wrong password is refused" refuses "$F" alice Secret
check "unknown user is refused" refuses "$F" mallory secret

# mosquitto_passwd -D and an update keep the file readable for m2mkit.
mosquitto_passwd -D "$F" bob
mosquitto_passwd -b "$F" alice changed
check "after mosquitto_passwd -D the user is gone" refuses "$F" bob 'p@ss w0rd:x'
check "after an update the new password verifies" verifies "$F" alice changed
check "after an update the old password is refused" refuses "$F" alice secret

# ---- (2) m2mkit passwd -> mosquitto ---------------------------------------
G=$T/from-m2mkit
pw -c -b "$G" dave d4ve
pw -b "$G" erin 'e r:n $7$'
pw -H sha512 -b "$G" frank 'old style'
pw -I 2000 -b "$G" gus 'many rounds'
echo 'from stdin' | pw "$G" hal
printf 'ivy:plain\n' >"$T/up" && pw -U "$T/up" && cat "$T/up" >>"$G"
check "m2mkit passwd writes mode 0600" test "$(stat -c %a "$G")" = 600
check "m2mkit passwd -I 2000 writes \$7\$2000\$" grep -q '^gus:\$7\$2000\$' "$G"
check "m2mkit reads what it wrote" verifies "$G" hal 'from stdin'

# ---- m2mkit passwd's own rules (mosquitto_passwd's) -------------------------
H=$T/edit
pw -c -b "$H" one 1 && printf '# kept comment\n' >>"$H" && pw -b "$H" two 2
pw -b "$H" one 1b
check "an update keeps the other lines, comments and order" \
  test "$(cut -d: -f1 "$H" | tr '\n' ' ')" = "one # kept comment two "
check "an update replaces the password" verifies "$H" one 1b
pw -D "$H" one
check "-D removes the user" test "$(grep -c '^one:' "$H")" = 0
pw -D "$H" one 2>/dev/null; rc=$?
check "-D of an unknown user fails (exit 1)" test $rc -eq 1
pw -b "$T/missing" u p 2>/dev/null; rc=$?
check "a missing file without -c fails (exit 1)" test $rc -eq 1
pw -b "$H" 'a:b' p 2>/dev/null; rc=$?
check "a user name with ':' is a usage error (exit 2)" test $rc -eq 2
pw -c -D "$H" two 2>/dev/null; rc=$?
check "-c with -D is a usage error (exit 2)" test $rc -eq 2
printf '' | pw "$H" three 2>/dev/null; rc=$?
check "no password on stdin fails (exit 1)" test $rc -eq 1
cp "$G" "$T/twice" && pw -U "$T/twice"
check "-U leaves hashed lines alone (running it twice changes nothing)" cmp -s "$G" "$T/twice"
check "no temporary file is left behind" test "$(ls "$T" | grep -c '\.[A-Za-z0-9]\{6\}$')" = 0

free_tcp_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 12000))
    if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return; fi
  done
  echo $((20000 + RANDOM % 12000))
}

PORT=$(free_tcp_port)
# `user root`: as root mosquitto would drop to the mosquitto user, who cannot
# read files in our private temporary directory.
cat >"$T/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous false
password_file $G
user root
log_dest stderr
EOF
bg mosquitto -c "$T/mosquitto.conf" 2>"$T/mosquitto.log"
MOSQ_PID=$BG_PID
for _ in $(seq 1 100); do
  ss -Htln "sport = :$PORT" 2>/dev/null | grep -q . && break
  kill -0 "$MOSQ_PID" 2>/dev/null || break
  sleep 0.05
done
kill -0 "$MOSQ_PID" 2>/dev/null || { cat "$T/mosquitto.log"; echo "mosquitto did not start"; exit 1; }

mpub() { timeout 10 mosquitto_pub -h 127.0.0.1 -p "$PORT" -t interop/pw -m hello "$@" 2>/dev/null; }
check "mosquitto accepts a \$7\$ user from m2mkit passwd" mpub -u dave -P d4ve
check "mosquitto accepts a password with blanks, ':' and '\$'" mpub -u erin -P 'e r:n $7$'
check "mosquitto accepts a \$6\$ user from m2mkit passwd -H sha512" mpub -u frank -P 'old style'
check "mosquitto accepts a \$7\$ user with 2000 iterations" mpub -u gus -P 'many rounds'
check "mosquitto accepts a password read from stdin" mpub -u hal -P 'from stdin'
check "mosquitto accepts a line hashed by m2mkit passwd -U" mpub -u ivy -P plain
check "MQTT 5 client accepted too" mpub -V mqttv5 -u dave -P d4ve
check "mosquitto refuses a wrong password" bash -c "! timeout 10 mosquitto_pub -h 127.0.0.1 -p $PORT -t x -m y -u dave -P wrong 2>/dev/null"
check "mosquitto refuses an unknown user" bash -c "! timeout 10 mosquitto_pub -h 127.0.0.1 -p $PORT -t x -m y -u zed -P d4ve 2>/dev/null"
check "mosquitto refuses an anonymous client" bash -c "! timeout 10 mosquitto_pub -h 127.0.0.1 -p $PORT -t x -m y 2>/dev/null"

kill "$MOSQ_PID" 2>/dev/null
wait "$MOSQ_PID" 2>/dev/null
finish
