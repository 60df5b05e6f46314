#!/usr/bin/python3
"""Crash test helper for test_mqtt_crash.sh (Debian's python3-paho-mqtt).

phase1 PORT PID DIR: two persistent QoS 1 subscribers (one stays online, one
    goes offline), a publisher sending numbered QoS 1 messages as fast as the
    broker acknowledges them; after AFTER acknowledgements the broker is
    killed with SIGKILL. Writes DIR/acked (every message whose PUBACK came)
    and DIR/<sub>.1 (what each subscriber got).
phase2 PORT DIR: both subscribers reconnect to the restarted broker with
    their sessions and collect until every acknowledged message arrived (or a
    timeout). Writes DIR/<sub>.2.
"""
import os
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt

TOPIC = "crash/load"
SUBS = ("crash-online", "crash-offline")
AFTER = 3000


def subscriber(cid, port, got, ready):
    c = mqtt.Client(client_id=cid, clean_session=False, protocol=mqtt.MQTTv311)

    def on_connect(cl, ud, flags, rc):
        cl.subscribe(TOPIC, qos=1)

    def on_subscribe(cl, ud, mid, granted):
        ready.set()

    def on_message(cl, ud, msg):
        got.append(msg.payload.decode())

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c


def phase1(port, pid, d):
    got = {s: [] for s in SUBS}
    clients = {}
    for s in SUBS:
        ready = threading.Event()
        clients[s] = subscriber(s, port, got[s], ready)
        if not ready.wait(5):
            sys.exit("subscriber %s did not get its SUBACK" % s)
    clients["crash-offline"].disconnect()
    clients["crash-offline"].loop_stop()

    acked = []
    sent = {}
    lock = threading.Lock()
    pub = mqtt.Client(client_id="crash-pub", clean_session=True, protocol=mqtt.MQTTv311)
    pub.max_inflight_messages_set(64)
    pub.max_queued_messages_set(128)

    def on_publish(cl, ud, mid):
        with lock:
            if mid in sent:
                acked.append(sent.pop(mid))

    pub.on_publish = on_publish
    pub.connect("127.0.0.1", port, keepalive=30)
    pub.loop_start()
    n = 0
    deadline = time.time() + 30
    while time.time() < deadline:
        with lock:
            if len(acked) >= AFTER:
                break
        info = pub.publish(TOPIC, "m%06d" % n, qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.001)
            continue
        with lock:
            sent[info.mid] = "m%06d" % n
        n += 1
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    with lock:
        snapshot = list(acked)
    pub.loop_stop()
    clients["crash-online"].loop_stop()
    with open(os.path.join(d, "acked"), "w") as f:
        f.write("\n".join(snapshot) + "\n")
    with open(os.path.join(d, "published"), "w") as f:
        f.write("%d\n" % n)
    for s in SUBS:
        with open(os.path.join(d, s + ".1"), "w") as f:
            f.write("\n".join(got[s]) + ("\n" if got[s] else ""))


def phase2(port, d):
    with open(os.path.join(d, "acked")) as f:
        acked = set(x for x in f.read().split() if x)
    results = {}
    for s in SUBS:
        with open(os.path.join(d, s + ".1")) as f:
            before = set(f.read().split())
        got = []
        ready = threading.Event()
        c = subscriber(s, port, got, ready)
        deadline = time.time() + 20
        while time.time() < deadline and not acked <= (before | set(got)):
            time.sleep(0.1)
        c.disconnect()
        c.loop_stop()
        with open(os.path.join(d, s + ".2"), "w") as f:
            f.write("\n".join(got) + ("\n" if got else ""))
        results[s] = len(acked - before - set(got))
    print(" ".join("%s-missing=%d" % kv for kv in results.items()))


if __name__ == "__main__":
    if sys.argv[1] == "phase1":
        phase1(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        phase2(int(sys.argv[2]), sys.argv[3])
