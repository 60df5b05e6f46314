#!/usr/bin/env bash
# Interop: Eclipse Paho for Python (Debian's python3-paho-mqtt, 1.6.1) speaks
# MQTT 3.1.1 and 5 over WebSocket (transport="websockets", subprotocol
# "mqtt") to `m2mkit serve`: publish/subscribe at QoS 0, 1 and 2, plus raw
# checks of the handshake and frame rules (paho_ws.py beside this file).
BUILD=$1
SRC=${2:-$(cd "$(dirname "$0")/../../.." && pwd)}
. "$SRC/tests/support/lib.sh"
PY=/usr/bin/python3
[ -x "$PY" ] && "$PY" -c 'import paho.mqtt.client' 2>/dev/null ||
  { echo "python3-paho-mqtt is not installed (scripts/install-deps.sh installs it)"; exit 77; }

start_m2mkit || { echo "server did not start"; exit 1; }
if [ -z "${WS_PORT:-}" ]; then
  echo "m2mkit serve reports no WebSocket port (mqtt.ws_port): skipped"
  exit 77
fi
# localhost: the WebSocket listener may be on 127.0.0.1 or ::1.
timeout 300 "$PY" "$SRC/tests/interop/paho/paho_ws.py" localhost "$WS_PORT"
