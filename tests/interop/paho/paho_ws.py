"""MQTT over WebSocket against m2mkit with Eclipse Paho (python3-paho-mqtt
1.6.1, transport="websockets"): for MQTT 3.1.1 and 5, at QoS 0, 1 and 2, a
subscriber receives what a publisher sends, in order and at the right QoS,
including one message large enough to need a 64-bit WebSocket length.
Raw sockets check the edges: a handshake that does not offer "mqtt" gets
HTTP 400, and a text frame gets a close frame with status 1003. Prints one
line per check and "N passed, N failed"; exit status 1 on any
failure.

    /usr/bin/python3 paho_ws.py HOST PORT
"""
import base64
import os
import socket
import sys
import threading
import time

import paho.mqtt.client as mqtt

TIMEOUT = 10.0
PASSED = 0
FAILED = 0


def check(name, ok, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print("ok   - " + name)
    else:
        FAILED += 1
        print("FAIL - " + name + (": " + detail if detail else ""))


class Peer:
    """One Paho client over WebSocket that records what it receives."""

    def __init__(self, host, port, version, name):
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.rc = None
        self.granted = None
        self.messages = []
        self.lock = threading.Lock()
        kwargs = {"client_id": name, "protocol": version, "transport": "websockets"}
        if version != mqtt.MQTTv5:
            kwargs["clean_session"] = True
        self.c = mqtt.Client(**kwargs)
        self.c.ws_set_options(path="/mqtt")
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.c.connect(host, port, keepalive=30)
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.rc = rc
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        self.granted = granted
        self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.qos))

    def wait_messages(self, n):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.02)
        with self.lock:
            return list(self.messages)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def rc_ok(rc):
    return rc == 0 or getattr(rc, "value", None) == 0


def granted_qos(g):
    g = g[0]
    return g if isinstance(g, int) else g.value


def run(host, port, version, vname, qos):
    tag = "%s qos %d" % (vname, qos)
    topic = "m2m/ws/%s/%d" % (vname, qos)
    sub = Peer(host, port, version, "ws-sub-%s-%d" % (vname, qos))
    pub = Peer(host, port, version, "ws-pub-%s-%d" % (vname, qos))
    try:
        ok = sub.connected.wait(TIMEOUT) and pub.connected.wait(TIMEOUT)
        check(tag + ": both connect over WebSocket", ok and rc_ok(sub.rc) and rc_ok(pub.rc),
              "rc %r / %r" % (sub.rc, pub.rc))
        if not ok:
            return
        sub.c.subscribe(topic, qos)
        ok = sub.subscribed.wait(TIMEOUT)
        check(tag + ": SUBACK grants the QoS", ok and granted_qos(sub.granted) == qos,
              "granted %r" % (sub.granted,))
        if not ok:
            return
        payloads = [("msg %d" % i).encode() for i in range(5)]
        payloads.append(bytes(range(256)) * 300)  # 76800 bytes: a 64-bit frame length
        infos = [pub.c.publish(topic, p, qos) for p in payloads]
        if qos:
            for i in infos:
                i.wait_for_publish(TIMEOUT)
            check(tag + ": publisher's flows complete", all(i.is_published() for i in infos))
        got = sub.wait_messages(len(payloads))
        check(tag + ": subscriber gets every message in order",
              [m[1] for m in got] == payloads, "%d of %d" % (len(got), len(payloads)))
        check(tag + ": delivered at QoS %d" % qos, all(m[2] == qos and m[0] == topic for m in got))
    finally:
        sub.close()
        pub.close()


def raw_handshake(host, port, protocol):
    s = socket.create_connection((host, port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET /mqtt HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n"
           % (host, port, key, protocol))
    s.sendall(req.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


def read_all(s):
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def raw_checks(host, port):
    s, head = raw_handshake(host, port, "chat")
    check("a handshake without the mqtt subprotocol is refused with 400",
          head.startswith(b"HTTP/1.1 400 "), repr(head[:40]))
    s.close()

    s, head = raw_handshake(host, port, "mqtt")
    check("raw handshake selects mqtt", head.startswith(b"HTTP/1.1 101 ") and
          b"\r\nSec-WebSocket-Protocol: mqtt\r\n" in head, repr(head[:40]))
    mask = os.urandom(4)
    text = b"hello"
    s.sendall(bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))
    rest = head.split(b"\r\n\r\n", 1)[1] + read_all(s)
    check("a text frame is answered with close 1003", rest[:4] == b"\x88\x02\x03\xeb", repr(rest[:8]))
    s.close()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    raw_checks(host, port)
    for version, vname in ((mqtt.MQTTv311, "v311"), (mqtt.MQTTv5, "v5")):
        for qos in (0, 1, 2):
            run(host, port, version, vname, qos)
    print("%d passed, %d failed" % (PASSED, FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
