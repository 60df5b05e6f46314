#!/usr/bin/env bash
# Interop and conformance: Debian's python3-paho-mqtt 1.6.1 clients (MQTT 3.1.1
# and 5.0) against the broker in `m2mkit serve`. The checks themselves are in
# paho_checks.py (one function per check, named after the spec rules); this
# script starts two brokers, one open and one with a password file and an ACL
# file, and turns each check's result into an ok/FAIL line.
#
# PAHO_BROKER=mosquitto runs the same checks against Debian's mosquitto as a
# reference; PAHO_ONLY="name1 name2" runs only those checks.
BUILD=$1
SRC=${2:-$(cd "$(dirname "$0")/../../.." && pwd)}
. "$SRC/tests/support/lib.sh"
PY=/usr/bin/python3
CHECKS="$SRC/tests/interop/paho/paho_checks.py"
BROKER=${PAHO_BROKER:-m2mkit}

[ -x "$PY" ] && "$PY" -c 'import paho.mqtt.client' 2>/dev/null ||
  { echo "$PY cannot import paho.mqtt (python3-paho-mqtt; scripts/install-deps.sh installs it)"; exit 77; }
command -v mosquitto_passwd >/dev/null ||
  { echo "mosquitto_passwd is not installed (it writes the password file)"; exit 77; }

# One user; the ACL lets it read and write acl/rw, only read acl/ro, only write acl/wo.
mosquitto_passwd -c -b "$T/passwd" user pass >/dev/null 2>&1
cat >"$T/acl" <<'EOF'
user user
topic readwrite acl/rw/#
topic read acl/ro/#
topic write acl/wo/#
EOF

free_tcp_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 12000))
    ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
  done
  echo $((20000 + RANDOM % 12000))
}

# start_mosquitto NAME [config lines...]: sets MQTT_PORT.
start_mosquitto() {
  local name=$1
  shift
  MQTT_PORT=$(free_tcp_port)
  {
    echo "listener $MQTT_PORT 127.0.0.1"
    echo "persistence false"
    echo "sys_interval 1"
    echo "user $(id -un)"
    printf '%s\n' "$@"
  } >"$T/$name.conf"
  bg mosquitto -c "$T/$name.conf" >"$T/$name.log" 2>&1
  for _ in $(seq 1 100); do
    ss -Htln "sport = :$MQTT_PORT" 2>/dev/null | grep -q . && return 0
    kill -0 "$BG_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$T/$name.log"
  return 1
}

# run_group GROUP PORT: runs the checks of GROUP; every check gives one line.
run_group() {
  local group=$1 port=$2 planned=0 seen=0 line only=() names
  names=$("$PY" "$CHECKS" --group "$group" --list | awk '{print $1}')
  for n in ${PAHO_ONLY:-}; do
    grep -qx -- "$n" <<<"$names" && only+=(--only "$n")
  done
  [ -n "${PAHO_ONLY:-}" ] && [ ${#only[@]} -eq 0 ] && return 0
  while IFS= read -r line; do
    case $line in
      1..*) planned=${line#1..} ;;
      "ok - "*) seen=$((seen + 1)); ok "[$BROKER] ${line#ok - }" ;;
      "FAIL - "*) seen=$((seen + 1)); bad "[$BROKER] ${line#FAIL - }" ;;
      *) echo "$line" ;;
    esac
  done < <(timeout 150 "$PY" "$CHECKS" --port "$port" --group "$group" "${only[@]}" 2>&1)
  [ "$seen" -eq "$planned" ] || bad "[$BROKER] $group: paho_checks.py stopped after $seen of $planned checks"
}

# fail_group GROUP WHY: the broker for GROUP did not start; every check fails.
fail_group() {
  local n
  for n in $("$PY" "$CHECKS" --group "$1" --list | awk '{print $1}'); do
    bad "[$BROKER] $n: $2"
  done
}

if [ "$BROKER" = mosquitto ]; then
  command -v mosquitto >/dev/null || { echo "mosquitto is not installed"; exit 77; }
  if start_mosquitto open "allow_anonymous true"; then run_group main "$MQTT_PORT"
  else fail_group main "mosquitto did not start"; fi
  if start_mosquitto auth "allow_anonymous false" "password_file $T/passwd" "acl_file $T/acl"; then
    run_group auth "$MQTT_PORT"
  else fail_group auth "mosquitto did not start"; fi
  finish
  exit
fi

# stop_m2mkit NAME: SIGTERM; the server exits 0 with no sanitizer report.
stop_m2mkit() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID"
  local rc=$?
  check "[m2mkit] $1: SIGTERM exits 0 (got $rc)" test $rc -eq 0
  check "[m2mkit] $1: no sanitizer report" bash -c "! grep -q 'Sanitizer' '$SERVER_LOG'"
}

# The open instance: anonymous clients, $SYS every second, no WebSocket port
# to collide with the second instance.
if start_m2mkit --mqtt.sys_interval=1 --mqtt.ws_port=0; then
  run_group main "$MQTT_PORT"
  stop_m2mkit "open instance"
else
  fail_group main "m2mkit serve did not start (see the log above)"
fi

# The authenticating instance, with its own data directory.
if start_m2mkit --server.data_dir="$T/var-auth" --mqtt.ws_port=0 --mqtt.sys_interval=0 \
  --mqtt.password_file="$T/passwd" --mqtt.allow_anonymous=false --mqtt.acl_file="$T/acl"; then
  run_group auth "$MQTT_PORT"
  stop_m2mkit "auth instance"
else
  fail_group auth "m2mkit serve refused --mqtt.password_file/--mqtt.allow_anonymous=false/--mqtt.acl_file"
fi
finish
