#!/usr/bin/python3
"""Interop and conformance checks of an MQTT broker with python3-paho-mqtt 1.6.1.

Each check is one function named check_<name>, whose docstring names the
MQTT 3.1.1 / 5.0 rules it tests. A check raises Failed (or any exception) to
fail and returns to pass. Every wait is bounded, and the runner also gives up
on a check that is still running after CHECK_LIMIT seconds.

Where paho 1.6.1 hides what the broker sent (PUBACK reason codes, DISCONNECT
reason codes, per-filter SUBACK codes for filters paho refuses to send) or
cannot send what a check needs (garbage, a silent client), a raw socket
client is used instead.

Output, one line per check: "ok - NAME" or "FAIL - NAME: why", after a plan
line "1..N".
"""
import argparse
import queue
import socket
import struct
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCodes
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
PORT = 1883
RUN = uuid.uuid4().hex[:8]  # unique prefix: a broker may hold state from earlier runs
V3 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
WAIT = 3.0  # longest wait for something that should happen
QUIET = 0.7  # how long to watch for something that should not happen
CHECK_LIMIT = 15.0
AUTH_USER = "user"
AUTH_PASS = "pass"

# Raw packet first bytes.
CONNACK, PUBLISH, PUBACK, SUBACK, DISCONNECT = 0x20, 0x30, 0x40, 0x90, 0xE0


class Failed(Exception):
    pass


def expect(cond, why):
    if not cond:
        raise Failed(why)


def topic(name):
    return "pt%s/%s" % (RUN, name)


def cid(name):
    return "%s-%s" % (RUN, name)


# ---------------------------------------------------------------- paho client

LIVE = []  # clients of the running check, stopped by the runner afterwards


class Client:
    """A paho client run by loop_start, with every callback recorded."""

    def __init__(self, name, v5=True, clean=True, client_id=None, keepalive=30,
                 will=None, user=None, password=None, connect=True,
                 session_expiry=None, connect_props=None, expect_rc=0):
        self.v5 = v5
        self.client_id = cid(name) if client_id is None else client_id
        self.keepalive = keepalive
        self.c = mqtt.Client(client_id=self.client_id,
                             clean_session=None if v5 else clean,
                             protocol=V5 if v5 else V3,
                             reconnect_on_failure=False)
        self.clean = clean
        self.msgs = queue.Queue()
        self.connack = threading.Event()
        self.gone = threading.Event()
        self.rc = None
        self.session_present = None
        self.connack_props = None
        self.disconnect_rc = None
        self.subacks = {}
        self.cond = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        if will:
            wtopic, wpayload, wqos, wretain = will[:4]
            wprops = will[4] if len(will) > 4 else None
            self.c.will_set(wtopic, wpayload, wqos, wretain, properties=wprops)
        if user is not None:
            self.c.username_pw_set(user, password)
        LIVE.append(self)
        if connect:
            self.connect(session_expiry=session_expiry, props=connect_props,
                         expect_rc=expect_rc)

    def _on_connect(self, c, u, flags, rc, props=None):
        self.rc = rc.value if hasattr(rc, "value") else rc
        self.session_present = bool(flags.get("session present"))
        self.connack_props = props
        self.connack.set()

    def _on_disconnect(self, c, u, rc, props=None):
        self.disconnect_rc = rc.value if hasattr(rc, "value") else rc
        self.gone.set()

    def _on_subscribe(self, c, u, mid, codes, props=None):
        with self.cond:
            self.subacks[mid] = [x.value if hasattr(x, "value") else x for x in codes]
            self.cond.notify_all()

    def _on_unsubscribe(self, c, u, mid, *rest):
        with self.cond:
            self.subacks[mid] = "unsuback"
            self.cond.notify_all()

    def connect(self, session_expiry=None, props=None, expect_rc=0):
        self.connack.clear()
        self.gone.clear()
        if self.v5:
            p = props
            if session_expiry is not None:
                p = p or Properties(PacketTypes.CONNECT)
                p.SessionExpiryInterval = session_expiry
            self.c.connect(HOST, PORT, self.keepalive, clean_start=self.clean, properties=p)
        else:
            self.c.connect(HOST, PORT, self.keepalive)
        self.c.loop_start()
        expect(self.connack.wait(WAIT) or self.gone.is_set(),
               "%s: no CONNACK within %.0f s" % (self.client_id, WAIT))
        expect(self.connack.is_set(), "%s: connection closed without CONNACK" % self.client_id)
        if expect_rc is not None:
            expect(self.rc == expect_rc, "%s: CONNACK code %s, expected %s"
                   % (self.client_id, hexcode(self.rc), hexcode(expect_rc)))
        return self.rc

    def _wait_mid(self, mid, what):
        deadline = time.monotonic() + WAIT
        with self.cond:
            while mid not in self.subacks:
                left = deadline - time.monotonic()
                expect(left > 0 and not self.gone.is_set(),
                       "%s: no %s (connection %s)" % (self.client_id, what,
                                                      "closed" if self.gone.is_set() else "open"))
                self.cond.wait(min(left, 0.1))
            return self.subacks[mid]

    def sub(self, filt, qos=0, options=None, props=None):
        """Subscribes and returns the SUBACK codes."""
        if options is not None:
            rc, mid = self.c.subscribe(filt, options=options, properties=props)
        elif isinstance(filt, list):
            rc, mid = self.c.subscribe(filt, properties=props)
        else:
            rc, mid = self.c.subscribe(filt, qos, properties=props)
        expect(rc == 0, "%s: subscribe not sent (rc %s)" % (self.client_id, rc))
        return self._wait_mid(mid, "SUBACK")

    def sub_ok(self, filt, qos=0, options=None, props=None):
        codes = self.sub(filt, qos, options, props)
        want = options.QoS if options is not None else qos
        expect(codes and codes[0] == want,
               "SUBACK for %s: %s, expected granted QoS %d" % (filt, hexlist(codes), want))

    def unsub(self, filt):
        rc, mid = self.c.unsubscribe(filt)
        expect(rc == 0, "unsubscribe not sent")
        self._wait_mid(mid, "UNSUBACK")

    def pub(self, t, payload=b"", qos=0, retain=False, props=None, wait=True):
        info = self.c.publish(t, payload, qos, retain, properties=props)
        expect(info.rc == 0, "%s: publish not sent (rc %s)" % (self.client_id, info.rc))
        if qos and wait:
            deadline = time.monotonic() + WAIT
            while not info.is_published() and time.monotonic() < deadline and not self.gone.is_set():
                time.sleep(0.01)
            expect(info.is_published(), "%s: QoS %d publish on %s not acknowledged"
                   % (self.client_id, qos, t))
        return info

    def get(self, timeout=WAIT):
        try:
            return self.msgs.get(timeout=timeout)
        except queue.Empty:
            return None

    def expect_msg(self, what, timeout=WAIT):
        m = self.get(timeout)
        expect(m is not None, "%s: %s not delivered within %.1f s" % (self.client_id, what, timeout))
        return m

    def expect_none(self, what, timeout=QUIET):
        m = self.get(timeout)
        expect(m is None, "%s: %s, got %s %r" % (self.client_id, what,
                                                 m and m.topic, m and m.payload[:40]))

    def collect(self, n, timeout=WAIT):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            m = self.get(max(0.0, deadline - time.monotonic()))
            if m is None:
                break
            out.append(m)
        return out

    def drain(self, quiet=QUIET):
        out = []
        while True:
            m = self.get(quiet)
            if m is None:
                return out
            out.append(m)

    def close(self, reason=None, props=None):
        """Normal DISCONNECT."""
        if reason is not None:
            self.c.disconnect(reasoncode=ReasonCodes(PacketTypes.DISCONNECT, identifier=reason),
                              properties=props)
        else:
            self.c.disconnect(properties=props) if self.v5 else self.c.disconnect()
        self.gone.wait(WAIT)
        self.c.loop_stop()

    def kill(self):
        """Closes the connection without DISCONNECT, as a crashed client would."""
        s = self.c.socket()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.gone.wait(WAIT)
        self.c.loop_stop()

    def stop(self):
        try:
            if not self.gone.is_set() and self.connack.is_set():
                self.c.disconnect()
                self.gone.wait(1)
        except Exception:
            pass
        self.c.loop_stop()


def hexcode(x):
    return "0x%02X" % x if isinstance(x, int) else str(x)


def hexlist(codes):
    return "[%s]" % ", ".join(hexcode(x) for x in codes) if isinstance(codes, list) else str(codes)


def roundtrip(v5=True, name="rt"):
    """A fresh pair of clients can still publish and receive (the broker is alive)."""
    s = Client(name + "-s", v5)
    t = topic(name)
    s.sub_ok(t, 1)
    p = Client(name + "-p", v5)
    p.pub(t, b"alive", 1)
    m = s.expect_msg("a message after the bad client was dropped")
    expect(m.payload == b"alive", "wrong payload")
    s.close()
    p.close()


# ------------------------------------------------------------- raw client

def vbi(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_vbi(b, i):
    n, mult = 0, 1
    while True:
        n += (b[i] & 0x7F) * mult
        mult *= 128
        i += 1
        if not b[i - 1] & 0x80:
            return n, i


def mstr(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("!H", len(b)) + b


def props(*items):
    body = b"".join(items)
    return vbi(len(body)) + body


def p_u32(ident, v):
    return bytes([ident]) + struct.pack("!I", v)


def packet(first, body):
    return bytes([first]) + vbi(len(body)) + body


def connect_packet(client_id, v5=True, keepalive=30, clean=True, cprops=None,
                   user=None, password=None):
    flags = 0x02 if clean else 0
    if user is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    vh = mstr("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack("!H", keepalive)
    if v5:
        vh += cprops if cprops is not None else props()
    pl = mstr(client_id)
    if user is not None:
        pl += mstr(user)
    if password is not None:
        pl += mstr(password)
    return packet(0x10, vh + pl)


class Raw:
    """A bare TCP connection speaking bytes; read() returns (first byte, body),
    None at end of stream, or raises Failed on timeout."""

    def __init__(self):
        self.sock = socket.create_connection((HOST, PORT), timeout=WAIT)
        self.buf = b""
        LIVE.append(self)

    def send(self, b):
        self.sock.sendall(b)

    def read(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                try:
                    n, i = read_vbi(self.buf, 1)
                    if len(self.buf) >= i + n:
                        pkt = (self.buf[0], self.buf[i:i + n])
                        self.buf = self.buf[i + n:]
                        return pkt
                except IndexError:
                    pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed("no packet from the broker within %.1f s" % timeout)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not data:
                return None
            self.buf += data

    def connect(self, client_id, v5=True, keepalive=30, clean=True, cprops=None,
                user=None, password=None):
        """Sends CONNECT; returns (session present, code, properties bytes)."""
        self.send(connect_packet(client_id, v5, keepalive, clean, cprops, user, password))
        pkt = self.read()
        expect(pkt is not None, "connection closed instead of CONNACK")
        expect(pkt[0] == CONNACK, "first packet 0x%02X, expected CONNACK" % pkt[0])
        return pkt[1][0] & 1, pkt[1][1], pkt[1][2:]

    def collect(self, quiet):
        """Packets received until none arrives for `quiet` seconds (or the close)."""
        out = []
        try:
            while True:
                pkt = self.read(quiet)
                if pkt is None:
                    return out
                out.append(pkt)
        except Failed:
            return out

    def subscribe(self, filt, opts, pid=1):
        self.send(packet(0x82, struct.pack("!H", pid) + props() + mstr(filt) + bytes([opts])))
        pkt = self.read()
        expect(pkt is not None and pkt[0] == SUBACK, "no SUBACK")
        codes = suback_codes(pkt[1], True)
        expect(codes == [opts & 3], "SUBACK %s" % hexlist(codes))

    def until_closed(self, timeout=WAIT):
        """Reads until the broker closes; returns (packets seen, seconds, closed?)."""
        t0 = time.monotonic()
        seen = []
        try:
            while True:
                pkt = self.read(max(0.01, timeout - (time.monotonic() - t0)))
                if pkt is None:
                    return seen, time.monotonic() - t0, True
                seen.append(pkt)
        except Failed:
            return seen, time.monotonic() - t0, False

    def stop(self):
        try:
            self.sock.close()
        except OSError:
            pass


def publish_fields(pkt):
    """(topic, packet id or None, payload) of a v5 PUBLISH without a topic alias."""
    first, b = pkt
    n = struct.unpack("!H", b[:2])[0]
    t, i = b[2:2 + n].decode(), 2 + n
    pid = None
    if first & 0x06:
        pid, i = struct.unpack("!H", b[i:i + 2])[0], i + 2
    plen, i = read_vbi(b, i)
    return t, pid, b[i + plen:]


def disconnect_reason(pkt):
    body = pkt[1]
    return body[0] if body else 0


def v5_ack_reason(body):
    """Reason code of a v5 PUBACK/PUBREC body (0 when omitted)."""
    return body[2] if len(body) > 2 else 0


def suback_codes(body, v5):
    i = 2
    if v5:
        n, i = read_vbi(body, i)
        i += n
    return list(body[i:])


def expect_bad_packet_dropped(raw, v5, want_reasons, rule):
    """The broker closes the connection [MQTT-4.8.0-1 of 3.1.1 / MQTT-4.13.1-1 of
    5.0]; a v5 broker SHOULD first send DISCONNECT with one of want_reasons."""
    seen, took, closed = raw.until_closed(WAIT)
    expect(closed, "%s: connection still open %.1f s later" % (rule, took))
    if v5 and want_reasons:
        discs = [p for p in seen if p[0] == DISCONNECT]
        expect(discs, "%s: closed without a DISCONNECT (reason %s expected, a SHOULD in §4.13)"
               % (rule, "/".join(hexcode(r) for r in want_reasons)))
        r = disconnect_reason(discs[0])
        expect(r in want_reasons, "%s: DISCONNECT reason %s, expected %s"
               % (rule, hexcode(r), "/".join(hexcode(r) for r in want_reasons)))


# ------------------------------------------------------------- registry

CHECKS = []


def check(group="main"):
    def reg(fn):
        CHECKS.append((fn.__name__[len("check_"):], group, fn))
        return fn
    return reg


# ------------------------------------------------------------- connect

@check()
def check_connect_v311():
    """3.1.1 §3.1/§3.2: CONNACK return code 0, Session Present 0 for a clean session [MQTT-3.2.2-1]; DISCONNECT then a new connection with the same id works."""
    c = Client("conn3", v5=False)
    expect(c.session_present is False, "Session Present 1 with Clean Session 1")
    c.close()
    c2 = Client("conn3", v5=False)
    c2.close()


@check()
def check_connect_v5():
    """5.0 §3.1/§3.2: CONNACK reason 0 with Clean Start 1, Session Present 0 [MQTT-3.2.2-2]; DISCONNECT, reconnect."""
    c = Client("conn5")
    expect(c.session_present is False, "Session Present 1 with Clean Start 1")
    c.close()
    c2 = Client("conn5")
    c2.close()


@check()
def check_connect_v311_empty_client_id():
    """3.1.1 [MQTT-3.1.3-6]: empty client id with Clean Session 1 is accepted; [MQTT-3.1.3-8]: with Clean Session 0 it gets return code 2 and the connection is closed."""
    r = Raw()
    sp, code, _ = r.connect("", v5=False, clean=True)
    expect(code == 0, "empty id, clean session 1: CONNACK %d, expected 0" % code)
    r.stop()
    r = Raw()
    sp, code, _ = r.connect("", v5=False, clean=False)
    expect(code == 2, "empty id, clean session 0: CONNACK %d, expected 2 (identifier rejected)" % code)
    _, _, closed = r.until_closed(WAIT)
    expect(closed, "connection left open after CONNACK 2 [MQTT-3.2.2-5]")


@check()
def check_connack_v5_properties():
    """5.0 §3.2.2.3: CONNACK properties in range: Receive Maximum >= 1, Maximum Packet Size >= 1 (and >= 200 KB, used below), Topic Alias Maximum >= 1 (client aliases are a feature), Retain / Wildcard / Subscription Identifier / Shared Subscription Available not 0, Maximum QoS absent (2)."""
    c = Client("cprops")
    p = c.connack_props
    have = {k: getattr(p, k) for k in ("ReceiveMaximum", "MaximumPacketSize", "TopicAliasMaximum",
                                       "RetainAvailable", "WildcardSubscriptionAvailable",
                                       "SubscriptionIdentifierAvailable",
                                       "SharedSubscriptionAvailable", "MaximumQoS",
                                       "ServerKeepAlive") if hasattr(p, k)}
    print("# CONNACK properties: %s" % have)
    expect(have.get("ReceiveMaximum", 65535) >= 1, "Receive Maximum 0")
    expect(have.get("MaximumPacketSize", 1 << 28) >= 200 * 1024 + 100,
           "Maximum Packet Size %s < 200 KB" % have.get("MaximumPacketSize"))
    expect(have.get("TopicAliasMaximum", 0) >= 1, "Topic Alias Maximum absent or 0: client topic aliases refused")
    for k in ("RetainAvailable", "WildcardSubscriptionAvailable",
              "SubscriptionIdentifierAvailable", "SharedSubscriptionAvailable"):
        expect(have.get(k, 1) == 1, "%s = %s" % (k, have.get(k)))
    expect(have.get("MaximumQoS", 2) == 2, "Maximum QoS %s" % have.get("MaximumQoS"))
    c.close()


@check()
def check_connack_v5_assigned_client_id():
    """5.0 [MQTT-3.1.3-7], [MQTT-3.2.2-16]: an empty client id is accepted and CONNACK carries an Assigned Client Identifier."""
    c = Client("assign", client_id="")
    aci = getattr(c.connack_props, "AssignedClientIdentifier", None)
    expect(aci, "CONNACK without Assigned Client Identifier")
    print("# assigned client id: %r" % aci)
    c.close()


# ------------------------------------------------------------- publish / subscribe

def pubsub(v5, qos):
    name = "ps%d%d" % (5 if v5 else 3, qos)
    t = topic(name)
    s = Client(name + "-s", v5)
    s.sub_ok(t, qos)
    p = Client(name + "-p", v5)
    payloads = [b"", bytes(range(64)), bytes((i * 7) & 0xFF for i in range(200 * 1024))]
    for pl in payloads:
        p.pub(t, pl, qos)
    got = s.collect(3, 5.0)
    expect(len(got) == 3, "%d of 3 messages delivered (sizes %s)"
           % (len(got), [len(m.payload) for m in got]))
    for pl, m in zip(payloads, got):
        expect(m.topic == t, "topic %r" % m.topic)
        expect(m.payload == pl, "payload of %d bytes delivered as %d bytes" % (len(pl), len(m.payload)))
        expect(m.qos == qos, "delivered at QoS %d, expected %d" % (m.qos, qos))
        expect(not m.retain, "retain flag set on a live message")
    s.close()
    p.close()


for _v5 in (False, True):
    for _q in (0, 1, 2):
        def _mk(v5=_v5, q=_q):
            def fn():
                pubsub(v5, q)
            fn.__name__ = "check_pubsub_%s_qos%d" % ("v5" if v5 else "v311", q)
            fn.__doc__ = ("%s §3.3, §4.3: QoS %d publish client->broker and broker->client, "
                          "payloads of 0, 64 and 204800 bytes, delivered intact at QoS %d."
                          % ("5.0" if v5 else "3.1.1", q, q))
            return fn
        check()(_mk())


@check()
def check_qos_downgrade():
    """3.1.1 §3.8.4 / 5.0 §3.8.4: delivered QoS is the minimum of the publish QoS and the granted QoS [MQTT-3.8.4-6 (3.1.1)]."""
    t = topic("down")
    s = Client("down-s")
    s.sub_ok(t, 1)
    p = Client("down-p")
    p.pub(t, b"q2", 2)
    p.pub(t, b"q0", 0)
    got = s.collect(2)
    expect([(m.payload, m.qos) for m in got] == [(b"q2", 1), (b"q0", 0)],
           "got %s, expected [(q2, 1), (q0, 0)]" % [(m.payload, m.qos) for m in got])
    s.close()
    p.close()


def order(v5):
    name = "ord%d" % (5 if v5 else 3)
    t = topic(name)
    s = Client(name + "-s", v5)
    s.sub_ok(t, 2)
    p = Client(name + "-p", v5)
    # paho holds QoS 1/2 messages back past its in-flight window (and does not
    # read the broker's Receive Maximum itself), so QoS 0 may overtake them.
    p.c.max_inflight_messages_set(min(20, getattr(p.connack_props, "ReceiveMaximum", 20)) if v5 else 20)
    for i in range(150):
        p.pub(t, b"%d" % i, (0, 1, 2)[i % 3], wait=False)
    got = s.collect(150, 5.0)
    idx = [int(m.payload) for m in got]
    for q in (1, 2):
        mine = [i for i in idx if i % 3 == q]
        expect(len(mine) == 50, "%d of 50 QoS %d messages delivered" % (len(mine), q))
    for q in (0, 1, 2):
        # The order is kept per publisher, topic and QoS [MQTT-4.6.0-6];
        # QoS 0 messages may be lost but not reordered.
        mine = [i for i in idx if i % 3 == q]
        expect(mine == sorted(mine), "QoS %d order broken: %s" % (q, mine[:20]))
    expect(len(idx) == len(set(idx)), "duplicates")
    s.close()
    p.close()


@check()
def check_order_v311():
    """3.1.1 §4.6 [MQTT-4.6.0-5], [MQTT-4.6.0-6]: messages of one publisher on one topic are delivered in order (150 messages, QoS 0/1/2 interleaved, subscriber at QoS 2)."""
    order(False)


@check()
def check_order_v5():
    """5.0 §4.6 [MQTT-4.6.0-5], [MQTT-4.6.0-6]: ordered topic delivery per publisher (150 messages, QoS 0/1/2 interleaved)."""
    order(True)


@check()
def check_unsubscribe():
    """3.1.1/5.0 §3.10: after UNSUBACK the filter no longer delivers [MQTT-3.10.4-2]; other subscriptions stay."""
    a, b = topic("uns/a"), topic("uns/b")
    s = Client("uns-s", v5=False)
    s.sub_ok(a, 1)
    s.sub_ok(b, 1)
    s.unsub(a)
    p = Client("uns-p", v5=False)
    p.pub(a, b"x", 1)
    p.pub(b, b"y", 1)
    m = s.expect_msg("message on the remaining subscription")
    expect(m.topic == b and m.payload == b"y", "got %s %r" % (m.topic, m.payload))
    s.expect_none("message on the unsubscribed filter delivered")
    s.close()
    p.close()


# ------------------------------------------------------------- overlapping

def overlap(v5):
    name = "ov%d" % (5 if v5 else 3)
    base = topic(name)
    s = Client(name + "-s", v5)
    if v5:
        pr = Properties(PacketTypes.SUBSCRIBE)
        pr.SubscriptionIdentifier = 7
        s.sub_ok(base + "/+/x", 1, props=pr)
        pr = Properties(PacketTypes.SUBSCRIBE)
        pr.SubscriptionIdentifier = 9
        s.sub_ok(base + "/#", 2, props=pr)
        s.sub_ok(base + "/a/x", 0)  # no identifier
    else:
        s.sub_ok(base + "/+/x", 1)
        s.sub_ok(base + "/#", 2)
        s.sub_ok(base + "/a/x", 0)
    p = Client(name + "-p", v5)
    p.pub(base + "/a/x", b"once", 2)
    got = s.drain(1.0)
    expect(got, "not delivered")
    qos = [m.qos for m in got]
    expect(2 in qos, "no copy at the highest granted QoS 2 (copies at QoS %s) [MQTT-3.3.5-1 / MQTT-3.3.4-2]" % qos)
    if v5:
        if len(got) == 1:
            ids = sorted(getattr(got[0].properties, "SubscriptionIdentifier", []))
            expect(ids == [7, 9], "single copy lists Subscription Identifiers %s, expected [7, 9] [MQTT-3.3.4-4]" % ids)
        else:
            for m in got:
                ids = getattr(m.properties, "SubscriptionIdentifier", [])
                expect(len(ids) <= 1, "one of several copies lists %s [MQTT-3.3.4-5]" % ids)
    expect(len(got) == 1, "%d copies delivered (QoS %s): one copy expected (feature list; the spec allows more)"
           % (len(got), qos))
    s.close()
    p.close()


@check()
def check_overlap_v311():
    """3.1.1 [MQTT-3.3.5-1]: overlapping subscriptions: delivered at the highest QoS; one copy (m2mkit feature, extra copies are a MAY)."""
    overlap(False)


@check()
def check_overlap_v5():
    """5.0 [MQTT-3.3.4-2], [MQTT-3.3.4-3], [MQTT-3.3.4-4]: overlapping subscriptions: one copy at the highest QoS, listing every matching Subscription Identifier."""
    overlap(True)


@check()
def check_subscription_identifier_v5():
    """5.0 §3.8.2.1.2, [MQTT-3.3.4-3]: the Subscription Identifier of the subscription is in the PUBLISH; a subscription without one gets none; re-subscribing replaces it."""
    t = topic("subid")
    s = Client("subid-s")
    pr = Properties(PacketTypes.SUBSCRIBE)
    pr.SubscriptionIdentifier = 268435455
    s.sub_ok(t, 1, props=pr)
    p = Client("subid-p")
    p.pub(t, b"1", 1)
    m = s.expect_msg("message")
    ids = getattr(m.properties, "SubscriptionIdentifier", [])
    expect(ids == [268435455], "Subscription Identifier %s, expected [268435455]" % ids)
    s.sub_ok(t, 1)  # replaces the subscription, without an identifier [MQTT-3.8.4-3]
    p.pub(t, b"2", 1)
    m = s.expect_msg("message after re-subscribe")
    ids = getattr(m.properties, "SubscriptionIdentifier", [])
    expect(ids == [], "identifier %s kept after re-subscribing without one" % ids)
    s.close()
    p.close()


# ------------------------------------------------------------- wildcards / $SYS

def wildcards(v5):
    name = "wc%d" % (5 if v5 else 3)
    b = topic(name)
    s = Client(name + "-s", v5)
    s.sub_ok(b + "/+/t", 0)
    s.sub_ok(b + "/d/#", 0)
    p = Client(name + "-p", v5)
    for t in ("/a/t", "/a/u", "//t", "/a/b/t", "/d", "/d/x/y/z", "/dd/x", "/a/t/"):
        p.pub(b + t, t.encode(), 1)
    got = sorted(m.payload.decode() for m in s.drain())
    want = sorted(["/a/t", "//t", "/d", "/d/x/y/z"])
    expect(got == want, "delivered %s, expected %s ('+' one level incl. empty, '#' includes the parent [MQTT-4.7.1-2])"
           % (got, want))
    s.close()
    p.close()


@check()
def check_wildcards_v311():
    """3.1.1 §4.7.1: '+' matches exactly one level (also an empty one), '#' matches the parent and any depth."""
    wildcards(False)


@check()
def check_wildcards_v5():
    """5.0 §4.7.1: '+' matches exactly one level (also an empty one), '#' matches the parent and any depth."""
    wildcards(True)


@check()
def check_sys_not_matched_by_wildcards():
    """3.1.1/5.0 §4.7.2 [MQTT-4.7.2-1]: '#' and '+/...' do not match topics starting with '$' (watched for 2.5 s with the broker's $SYS updates running)."""
    s = Client("sysw")
    s.sub_ok("#", 0)
    s.sub_ok("+/broker/#", 0)
    s.sub_ok("+/broker/uptime", 0)
    got = [m.topic for m in s.drain(2.5) if m.topic.startswith("$")]
    expect(not got, "wildcard matched %s" % sorted(set(got))[:5])
    s.close()


@check()
def check_sys_statistics():
    """Feature list: $SYS/broker/clients/connected, messages/received, uptime and version are published (every mqtt.sys_interval s) to a '$SYS/#' subscriber."""
    s = Client("sys")
    s.sub_ok("$SYS/#", 0)
    want = {"$SYS/broker/clients/connected", "$SYS/broker/messages/received",
            "$SYS/broker/uptime", "$SYS/broker/version"}
    seen = {}
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not want <= set(seen):
        m = s.get(0.2)
        if m is not None:
            seen[m.topic] = m.payload
    missing = sorted(want - set(seen))
    expect(not missing, "missing %s (got %d $SYS topics: %s)" % (missing, len(seen), sorted(seen)[:8]))
    print("# %s" % {k: seen[k][:40] for k in sorted(want)})
    s.close()


# ------------------------------------------------------------- retained

def retained(v5):
    name = "ret%d" % (5 if v5 else 3)
    t = topic(name)
    p = Client(name + "-p", v5)
    p.pub(t, b"first", 1, retain=True)
    s1 = Client(name + "-s1", v5)
    s1.sub_ok(t, 1)
    m = s1.expect_msg("retained message on subscribe [MQTT-3.3.1-6]")
    expect(m.payload == b"first" and m.retain, "got %r retain=%s, expected 'first' with the retain flag [MQTT-3.3.1-8]"
           % (m.payload, m.retain))
    expect(m.qos == 1, "retained delivered at QoS %d, expected 1" % m.qos)
    p.pub(t, b"second", 1, retain=True)
    m = s1.expect_msg("live retained publish")
    expect(m.payload == b"second", "got %r" % m.payload)
    expect(not m.retain, "live delivery to an existing subscription has the retain flag [MQTT-3.3.1-9 (3.1.1) / retain-as-published 0 (5.0)]")
    s2 = Client(name + "-s2", v5)
    s2.sub_ok(t, 1)
    got = s2.drain()
    expect([x.payload for x in got] == [b"second"], "new subscriber got %s, expected only the replacement"
           % [x.payload for x in got])
    p.pub(t, b"", 1, retain=True)
    m = s1.expect_msg("the empty retained publish, forwarded to existing subscribers [MQTT-3.3.1-10 (3.1.1)]")
    expect(m.payload == b"", "got %r" % m.payload)
    s3 = Client(name + "-s3", v5)
    s3.sub_ok(t, 1)
    s3.expect_none("retained message delivered after an empty retained payload deleted it [MQTT-3.3.1-10/11]")
    for c in (p, s1, s2, s3):
        c.close()


@check()
def check_retained_v311():
    """3.1.1 §3.3.1.3 [MQTT-3.3.1-5..11]: retained set, delivered on subscribe with RETAIN 1, replaced, live copies RETAIN 0, deleted by an empty payload."""
    retained(False)


@check()
def check_retained_v5():
    """5.0 §3.3.1.3 [MQTT-3.3.1-5..11]: retained set, delivered on subscribe with RETAIN 1, replaced, live copies RETAIN 0, deleted by an empty payload."""
    retained(True)


@check()
def check_retained_wildcard():
    """5.0 §3.3.1.3 [MQTT-3.3.1-9]: a wildcard subscription gets every matching retained message."""
    b = topic("rw")
    p = Client("rw-p")
    for n in ("a", "b", "c/d"):
        p.pub(b + "/" + n, n.encode(), 1, retain=True)
    s = Client("rw-s")
    s.sub_ok(b + "/#", 1)
    got = sorted(m.payload for m in s.drain())
    expect(got == [b"a", b"b", b"c/d"], "got %s" % got)
    for n in ("a", "b", "c/d"):
        p.pub(b + "/" + n, b"", 1, retain=True)
    s.close()
    p.close()


@check()
def check_retain_handling_v5():
    """5.0 §3.8.3.1 [MQTT-3.3.1-9], [MQTT-3.3.1-10], [MQTT-3.3.1-11]: Retain Handling 0 sends retained on every subscribe, 1 only if the subscription is new, 2 never."""
    t = topic("rh")
    p = Client("rh-p")
    p.pub(t, b"kept", 1, retain=True)
    res = {}
    for rh in (0, 1, 2):
        s = Client("rh-s%d" % rh)
        counts = []
        for _ in range(2):
            s.sub_ok(t, options=SubscribeOptions(qos=1, retainHandling=rh))
            counts.append(len(s.drain(0.5)))
        res[rh] = counts
        s.close()
    p.pub(t, b"", 1, retain=True)
    expect(res == {0: [1, 1], 1: [1, 0], 2: [0, 0]},
           "retained copies on (first, repeated) subscribe per Retain Handling: %s, expected {0: [1, 1], 1: [1, 0], 2: [0, 0]}" % res)


@check()
def check_retain_as_published_v5():
    """5.0 §3.8.3.1 [MQTT-3.3.1-12], [MQTT-3.3.1-13]: Retain As Published 1 keeps the RETAIN flag on live delivery, 0 clears it."""
    t = topic("rap")
    s1 = Client("rap-s1")
    s1.sub_ok(t, options=SubscribeOptions(qos=1, retainAsPublished=True))
    s0 = Client("rap-s0")
    s0.sub_ok(t, options=SubscribeOptions(qos=1, retainAsPublished=False))
    p = Client("rap-p")
    p.pub(t, b"r", 1, retain=True)
    p.pub(t, b"n", 1, retain=False)
    a = [(m.payload, bool(m.retain)) for m in s1.collect(2)]
    b = [(m.payload, bool(m.retain)) for m in s0.collect(2)]
    p.pub(t, b"", 1, retain=True)
    expect(a == [(b"r", True), (b"n", False)], "retain-as-published 1 got %s" % a)
    expect(b == [(b"r", False), (b"n", False)], "retain-as-published 0 got %s" % b)


@check()
def check_no_local_v5():
    """5.0 §3.8.3.1 [MQTT-3.8.3-3]: No Local 1: the client's own publications are not sent back; others' are; No Local 0 gets its own."""
    t = topic("nl")
    a = Client("nl-a")
    a.sub_ok(t, options=SubscribeOptions(qos=1, noLocal=True))
    b = Client("nl-b")
    b.sub_ok(t, options=SubscribeOptions(qos=1, noLocal=False))
    a.pub(t, b"from-a", 1)
    b.pub(t, b"from-b", 1)
    ga = sorted(m.payload for m in a.drain())
    gb = sorted(m.payload for m in b.drain())
    expect(ga == [b"from-b"], "No Local subscriber got %s, expected only from-b" % ga)
    expect(gb == [b"from-a", b"from-b"], "No Local 0 subscriber got %s" % gb)
    a.close()
    b.close()


# ------------------------------------------------------------- wills

def will_abnormal(v5):
    name = "wa%d" % (5 if v5 else 3)
    t = topic(name)
    w = Client(name + "-w", v5)
    w.sub_ok(t, 1)
    c = Client(name + "-c", v5, will=(t, b"gone", 1, False))
    c.kill()
    m = w.expect_msg("will after the socket closed without DISCONNECT [MQTT-3.1.2-8]")
    expect(m.payload == b"gone" and m.qos == 1, "got %r at QoS %d" % (m.payload, m.qos))
    w.close()


@check()
def check_will_abnormal_v311():
    """3.1.1 §3.1.2.5 [MQTT-3.1.2-8]: the will is published when the network connection closes without DISCONNECT."""
    will_abnormal(False)


@check()
def check_will_abnormal_v5():
    """5.0 §3.1.2.5 [MQTT-3.1.2-8]: the will is published when the network connection closes without DISCONNECT."""
    will_abnormal(True)


def will_normal(v5):
    name = "wn%d" % (5 if v5 else 3)
    t = topic(name)
    w = Client(name + "-w", v5)
    w.sub_ok(t, 1)
    c = Client(name + "-c", v5, will=(t, b"gone", 1, False))
    c.close()
    w.expect_none("will published after a normal DISCONNECT [MQTT-3.1.2-10]", 1.0)
    w.close()


@check()
def check_will_not_on_disconnect_v311():
    """3.1.1 [MQTT-3.1.2-10], [MQTT-3.14.4-3]: no will after DISCONNECT."""
    will_normal(False)


@check()
def check_will_not_on_disconnect_v5():
    """5.0 [MQTT-3.1.2-10], [MQTT-3.14.4-3]: no will after DISCONNECT with reason 0."""
    will_normal(True)


@check()
def check_will_retained():
    """3.1.1/5.0 [MQTT-3.1.2-17]: a will with Will Retain 1 is published as a retained message."""
    t = topic("wret")
    c = Client("wret-c", will=(t, b"last", 1, True))
    c.kill()
    time.sleep(0.3)
    s = Client("wret-s")
    s.sub_ok(t, 1)
    m = s.expect_msg("retained will")
    expect(m.payload == b"last" and m.retain, "got %r retain=%s" % (m.payload, m.retain))
    s.pub(t, b"", 1, retain=True)
    s.close()


@check()
def check_will_delay_v5():
    """5.0 §3.1.3.2.2 [MQTT-3.1.3-9]: Will Delay Interval 1 s (Session Expiry 10 s): the will is not published at once, and is published after about 1 s."""
    t = topic("wd")
    w = Client("wd-w")
    w.sub_ok(t, 1)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = 1
    c = Client("wd-c", will=(t, b"late", 1, False, wp), session_expiry=10)
    t0 = time.monotonic()
    c.kill()
    w.expect_none("will published before the Will Delay Interval", 0.6)
    m = w.expect_msg("will after the Will Delay Interval", 3.0)
    took = time.monotonic() - t0
    expect(m.payload == b"late", "got %r" % m.payload)
    expect(took >= 0.8, "will published after %.2f s, delay was 1 s" % took)
    w.close()


@check()
def check_will_delay_reconnect_v5():
    """5.0 §3.1.3.2.2 [MQTT-3.1.3-9]: a reconnection to the session within the Will Delay Interval cancels the will."""
    t = topic("wdr")
    w = Client("wdr-w")
    w.sub_ok(t, 1)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = 1
    c = Client("wdr-c", will=(t, b"late", 1, False, wp), session_expiry=30)
    c.kill()
    time.sleep(0.2)
    c2 = Client("wdr-c", clean=False, session_expiry=30)
    expect(c2.session_present, "session not present on reconnect within its expiry")
    w.expect_none("will published although the client came back within the delay", 1.8)
    c2.close(props=session_end_props())
    w.close()


def session_end_props():
    p = Properties(PacketTypes.DISCONNECT)
    p.SessionExpiryInterval = 0
    return p


@check()
def check_will_disconnect_0x04_v5():
    """5.0 §3.14.2.1: DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will [MQTT-3.1.2-10 exception]."""
    t = topic("w04")
    w = Client("w04-w")
    w.sub_ok(t, 1)
    c = Client("w04-c", will=(t, b"asked", 1, False))
    c.close(reason=4)
    m = w.expect_msg("will after DISCONNECT 0x04")
    expect(m.payload == b"asked", "got %r" % m.payload)
    w.close()


# ------------------------------------------------------------- sessions

def persistent(v5):
    name = "per%d" % (5 if v5 else 3)
    t1, t2 = topic(name + "/1"), topic(name + "/2")
    kw = dict(v5=v5, clean=False, session_expiry=60 if v5 else None)
    # Start from no session: a clean connection first.
    Client(name + "-s", v5=v5, clean=True).close()
    s = Client(name + "-s", **kw)
    expect(s.session_present is False, "Session Present 1 for a new session [MQTT-3.2.2-3 (3.1.1) / MQTT-3.2.2-3 (5.0)]")
    s.sub_ok(t1, 1)
    s.sub_ok(t2, 2)
    s.close()
    p = Client(name + "-p", v5)
    p.pub(t1, b"q1-away", 1)
    p.pub(t2, b"q2-away", 2)
    s = Client(name + "-s", **kw)
    expect(s.session_present is True, "Session Present 0 on resuming a stored session [MQTT-3.2.2-2]")
    got = sorted((m.payload, m.qos) for m in s.collect(2))
    expect(got == [(b"q1-away", 1), (b"q2-away", 2)], "queued messages delivered at reconnect: %s" % got)
    p.pub(t1, b"live", 1)
    m = s.expect_msg("live message on the resumed subscription")
    expect(m.payload == b"live", "got %r" % m.payload)
    s.close()
    s = Client(name + "-s", v5=v5, clean=True)
    expect(s.session_present is False, "Session Present 1 with Clean Session/Start 1 [MQTT-3.2.2-1 / MQTT-3.2.2-2]")
    s.close()
    p.close()


@check()
def check_persistent_session_v311():
    """3.1.1 §3.1.2.4 [MQTT-3.1.2-4], [MQTT-3.1.2-5], §3.2.2.2: Clean Session 0: QoS 1/2 messages published while offline are delivered at reconnect, Session Present correct."""
    persistent(False)


@check()
def check_persistent_session_v5():
    """5.0 §3.1.2.4, §3.1.2.11.2 [MQTT-3.1.2-4..6], [MQTT-3.2.2-2/3]: Clean Start 0 + Session Expiry 60: QoS 1/2 messages queued while offline, Session Present correct."""
    persistent(True)


@check()
def check_session_expiry_v5():
    """5.0 §3.1.2.11.2 [MQTT-3.1.2-23]: after Session Expiry Interval 1 s the session is gone: Session Present 0 and nothing queued."""
    t = topic("sexp")
    s = Client("sexp-s", clean=False, session_expiry=1)
    s.sub_ok(t, 1)
    s.close()
    p = Client("sexp-p")
    p.pub(t, b"into-expiring-session", 1)
    time.sleep(2.2)
    s = Client("sexp-s", clean=False, session_expiry=1)
    expect(s.session_present is False, "Session Present 1 after the session expired")
    s.expect_none("message of an expired session delivered")
    s.close(props=session_end_props())
    p.close()


@check()
def check_session_expiry_absent_v5():
    """5.0 §3.1.2.11.2: no Session Expiry Interval means 0: the session ends with the connection, even with Clean Start 0."""
    s = Client("sabs", clean=False)
    s.sub_ok(topic("sabs"), 1)
    s.close()
    s = Client("sabs", clean=False)
    expect(s.session_present is False, "Session Present 1 although the session expiry was 0")
    s.close()


@check()
def check_session_expiry_zero_in_disconnect_v5():
    """5.0 §3.14.2.2.2: Session Expiry Interval 0 in DISCONNECT ends the session (Session Present 0 next time, nothing queued)."""
    t = topic("sdz")
    s = Client("sdz-s", clean=False, session_expiry=60)
    s.sub_ok(t, 1)
    s.close(props=session_end_props())
    p = Client("sdz-p")
    p.pub(t, b"x", 1)
    s = Client("sdz-s", clean=False, session_expiry=60)
    expect(s.session_present is False, "Session Present 1 after DISCONNECT set the expiry to 0")
    s.expect_none("message queued for a session ended by DISCONNECT")
    s.close(props=session_end_props())
    p.close()


@check()
def check_takeover_v311():
    """3.1.1 §3.1.4 [MQTT-3.1.4-2]: a second connection with the same client id disconnects the first; the second keeps working."""
    a = Client("tk3", v5=False)
    b = Client("tk3", v5=False)
    expect(a.gone.wait(WAIT), "first connection still open after the takeover")
    t = topic("tk3")
    b.sub_ok(t, 1)
    b.pub(t, b"after", 1)
    b.expect_msg("message on the new connection")
    b.close()


@check()
def check_takeover_v5():
    """5.0 §3.1.4 [MQTT-3.1.4-3], §3.14.2.1: the first connection gets DISCONNECT 0x8E (Session taken over) and is closed."""
    r = Raw()
    _, code, _ = r.connect(cid("tk5"))
    expect(code == 0, "CONNACK %s" % hexcode(code))
    b = Client("tk5")
    seen, took, closed = r.until_closed(WAIT)
    expect(closed, "first connection still open %.1f s after the takeover" % took)
    discs = [p for p in seen if p[0] == DISCONNECT]
    expect(discs, "first connection closed without DISCONNECT (0x8E expected)")
    expect(disconnect_reason(discs[0]) == 0x8E, "DISCONNECT reason %s, expected 0x8E"
           % hexcode(disconnect_reason(discs[0])))
    b.close()


@check()
def check_shared_subscription_v5():
    """5.0 §4.8.2: '$share/g/topic': 20 messages spread over two members, each delivered to exactly one; an ordinary subscriber gets all."""
    t = topic("sh")
    f = "$share/g%s/%s" % (RUN, t)
    m1 = Client("sh-1")
    m1.sub_ok(f, 1)
    m2 = Client("sh-2")
    m2.sub_ok(f, 1)
    o = Client("sh-o")
    o.sub_ok(t, 1)
    p = Client("sh-p")
    for i in range(20):
        p.pub(t, b"%d" % i, 1)
    g1 = [m.payload for m in m1.drain()]
    g2 = [m.payload for m in m2.drain()]
    go = [m.payload for m in o.drain(0.2)]
    allg = sorted(g1 + g2, key=int)
    expect(allg == [b"%d" % i for i in range(20)], "members together got %d (%d + %d), expected each of 20 once"
           % (len(allg), len(g1), len(g2)))
    expect(g1 and g2, "not spread: member 1 got %d, member 2 got %d" % (len(g1), len(g2)))
    expect(len(go) == 20, "ordinary subscriber got %d of 20" % len(go))
    print("# shared: %d + %d" % (len(g1), len(g2)))
    for c in (m1, m2, o, p):
        c.close()


@check()
def check_message_expiry_v5():
    """5.0 §3.3.2.3.3 [MQTT-3.3.2-5], [MQTT-3.3.2-6]: a queued message with Message Expiry 1 s is dropped after 2 s; one still valid is delivered with its interval decreased by the time waited."""
    t = topic("mexp")
    s = Client("mexp-s", clean=False, session_expiry=60)
    s.sub_ok(t, 1)
    s.close()
    p = Client("mexp-p")
    e1 = Properties(PacketTypes.PUBLISH)
    e1.MessageExpiryInterval = 1
    p.pub(t, b"short", 1, props=e1)
    e30 = Properties(PacketTypes.PUBLISH)
    e30.MessageExpiryInterval = 30
    p.pub(t, b"long", 1, props=e30)
    time.sleep(2.1)
    s = Client("mexp-s", clean=False, session_expiry=60)
    got = s.drain()
    pls = [m.payload for m in got]
    expect(b"short" not in pls, "expired message delivered [MQTT-3.3.2-5]")
    expect(pls == [b"long"], "got %s, expected [long]" % pls)
    left = getattr(got[0].properties, "MessageExpiryInterval", None)
    expect(left is not None and left <= 28, "Message Expiry Interval %s after 2 s queued, expected <= 28 [MQTT-3.3.2-6]" % left)
    s.close(props=session_end_props())
    p.close()


@check()
def check_properties_passthrough_v5():
    """5.0 §3.3.2.3: Response Topic, Correlation Data, Content Type, Payload Format Indicator forwarded unaltered [MQTT-3.3.2-4], [MQTT-3.3.2-15], [MQTT-3.3.2-16], [MQTT-3.3.2-20]; User Properties in order [MQTT-3.3.2-17], [MQTT-3.3.2-18]."""
    t = topic("props")
    s = Client("props-s")
    s.sub_ok(t, 1)
    p = Client("props-p")
    pr = Properties(PacketTypes.PUBLISH)
    pr.ResponseTopic = topic("props/reply")
    pr.CorrelationData = b"\x00\x01corr\xff"
    pr.ContentType = "application/json; charset=utf-8"
    pr.PayloadFormatIndicator = 1
    ups = [("b", "2"), ("a", "1"), ("b", "3"), ("k", "")]
    pr.UserProperty = ups
    p.pub(t, b'{"x": 1}', 1, props=pr)
    m = s.expect_msg("message with properties")
    q = m.properties
    got = {k: getattr(q, k, None) for k in ("ResponseTopic", "CorrelationData", "ContentType",
                                            "PayloadFormatIndicator", "UserProperty")}
    want = {"ResponseTopic": topic("props/reply"), "CorrelationData": b"\x00\x01corr\xff",
            "ContentType": "application/json; charset=utf-8", "PayloadFormatIndicator": 1,
            "UserProperty": ups}
    diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    expect(not diff, "properties changed (got, sent): %s" % diff)
    s.close()
    p.close()


@check()
def check_topic_alias_v5():
    """5.0 §3.3.2.3.4 [MQTT-3.3.2-12]: the client sets Topic Alias 1 with a topic, then publishes with an empty topic and alias 1: both delivered on the topic."""
    t = topic("ta")
    s = Client("ta-s")
    s.sub_ok(t, 1)
    p = Client("ta-p")
    mx = getattr(p.connack_props, "TopicAliasMaximum", 0)
    expect(mx >= 1, "Topic Alias Maximum %s in CONNACK: aliases not allowed" % mx)
    a = Properties(PacketTypes.PUBLISH)
    a.TopicAlias = 1
    p.pub(t, b"set", 1, props=a)
    a = Properties(PacketTypes.PUBLISH)
    a.TopicAlias = 1
    p.pub("", b"used", 1, props=a)
    got = [(m.topic, m.payload) for m in s.collect(2)]
    expect(got == [(t, b"set"), (t, b"used")], "got %s" % got)
    expect(not p.gone.is_set(), "publisher disconnected (reason %s)" % p.disconnect_rc)
    s.close()
    p.close()


@check()
def check_request_response_v5():
    """5.0 §4.10: a responder answers on the Response Topic with the request's Correlation Data; the requester matches it."""
    req, resp = topic("rr/req"), topic("rr/resp")
    r = Client("rr-responder")

    def answer(c, u, m):
        pr = Properties(PacketTypes.PUBLISH)
        pr.CorrelationData = m.properties.CorrelationData
        c.publish(m.properties.ResponseTopic, b"answer:" + m.payload, 1, properties=pr)

    r.c.on_message = answer
    r.sub_ok(req, 1)
    q = Client("rr-requester")
    q.sub_ok(resp, 1)
    pr = Properties(PacketTypes.PUBLISH)
    pr.ResponseTopic = resp
    pr.CorrelationData = b"id-42"
    q.pub(req, b"question", 1, props=pr)
    m = q.expect_msg("response")
    expect(m.topic == resp and m.payload == b"answer:question", "got %s %r" % (m.topic, m.payload))
    expect(getattr(m.properties, "CorrelationData", None) == b"id-42", "correlation data %r"
           % getattr(m.properties, "CorrelationData", None))
    r.close()
    q.close()


# ------------------------------------------------------------- keep-alive

def keepalive(v5):
    r = Raw()
    _, code, pr = r.connect(cid("ka%d" % (5 if v5 else 3)), v5=v5, keepalive=1)
    expect(code == 0, "CONNACK %s" % hexcode(code))
    seen, took, closed = r.until_closed(6.0)
    expect(closed, "silent client with keep alive 1 s still connected after %.1f s [MQTT-3.1.2-24]" % took)
    expect(1.0 <= took <= 4.0, "closed after %.2f s, expected about 1.5 s" % took)
    print("# closed after %.2f s" % took)


@check()
def check_keepalive_v311():
    """3.1.1 §3.1.2.10 [MQTT-3.1.2-24]: a client silent for 1.5x its keep alive (1 s) is disconnected."""
    keepalive(False)


@check()
def check_keepalive_v5():
    """5.0 §3.1.2.10 [MQTT-3.1.2-22]: a client silent for 1.5x its keep alive (1 s) is disconnected."""
    keepalive(True)


@check()
def check_keepalive_ping_keeps_alive():
    """3.1.1/5.0 §3.12: a client sending PINGREQ within its keep alive (1 s) stays connected for 3 s."""
    c = Client("kap", v5=False, keepalive=1)
    time.sleep(3.0)
    expect(not c.gone.is_set(), "disconnected although pinging (rc %s)" % c.disconnect_rc)
    c.close()


# ------------------------------------------------------------- malformed

def with_bystander(v5, fn):
    """Runs fn while a connected client exists; that client must keep working."""
    name = "by%d" % (5 if v5 else 3)
    t = topic(name)
    b = Client(name, v5)
    b.sub_ok(t, 1)
    fn()
    expect(not b.gone.is_set(), "an unrelated connected client was disconnected")
    b.pub(t, b"still-here", 1)
    m = b.expect_msg("bystander round trip after the bad client")
    expect(m.payload == b"still-here", "got %r" % m.payload)
    b.close()


@check()
def check_malformed_first_packet():
    """3.1.1 [MQTT-3.1.0-1] / 5.0 [MQTT-3.1.0-1]: a complete first packet other than CONNECT (PINGREQ) closes the connection; other clients unaffected."""
    def bad():
        r = Raw()
        r.send(b"\xc0\x00")
        seen, took, closed = r.until_closed(WAIT)
        expect(closed, "connection still open %.1f s after a PINGREQ as first packet" % took)
        expect(not any(p[0] in (CONNACK, 0xD0) for p in seen), "answered %s" % [hex(p[0]) for p in seen])
    with_bystander(False, bad)


@check()
def check_malformed_garbage():
    """3.1.1 [MQTT-3.1.0-1], §4.8: an HTTP request (first byte 'G': type 4 with flags 7, length 69; sent padded to 80 bytes, so the framing completes) instead of CONNECT closes the connection at once; other clients unaffected."""
    def bad():
        r = Raw()
        req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        r.send(req + b"\r\n" * ((80 - len(req)) // 2))
        seen, took, closed = r.until_closed(WAIT)
        expect(closed, "connection still open %.1f s after 80 bytes of HTTP" % took)
        expect(not any(p[0] == CONNACK for p in seen), "CONNACK sent to garbage")
    with_bystander(False, bad)


@check()
def check_malformed_remaining_length():
    """5.0 §1.5.5 / §2.1.4: a Remaining Length of more than 4 bytes is a Malformed Packet: DISCONNECT 0x81 (SHOULD) and close."""
    def bad():
        r = Raw()
        r.connect(cid("mrl"))
        r.send(b"\x30\xff\xff\xff\xff\x7f")
        expect_bad_packet_dropped(r, True, (0x81,), "5-byte Remaining Length")
    with_bystander(True, bad)


@check()
def check_malformed_publish_qos3_v311():
    """3.1.1 [MQTT-3.3.1-4]: PUBLISH with QoS 3 closes the connection."""
    def bad():
        r = Raw()
        r.connect(cid("mq3"), v5=False)
        r.send(packet(0x36, mstr(topic("mq3")) + b"\x00\x01" + b"x"))
        expect_bad_packet_dropped(r, False, None, "[MQTT-3.3.1-4]")
    with_bystander(False, bad)


@check()
def check_malformed_publish_qos3_v5():
    """5.0 [MQTT-3.3.1-4], §4.13: PUBLISH with QoS 3 is a Malformed Packet: DISCONNECT 0x81 (SHOULD) and close (MUST)."""
    def bad():
        r = Raw()
        r.connect(cid("mq5"))
        r.send(packet(0x36, mstr(topic("mq5")) + b"\x00\x01" + props() + b"x"))
        expect_bad_packet_dropped(r, True, (0x81,), "[MQTT-3.3.1-4]")
    with_bystander(True, bad)


@check()
def check_malformed_subscribe_flags_v5():
    """5.0 [MQTT-3.8.1-1]: SUBSCRIBE with fixed-header flags 0000 is malformed: DISCONNECT 0x81 (SHOULD) and close."""
    def bad():
        r = Raw()
        r.connect(cid("msf"))
        r.send(packet(0x80, b"\x00\x01" + props() + mstr(topic("msf")) + b"\x00"))
        expect_bad_packet_dropped(r, True, (0x81,), "[MQTT-3.8.1-1]")
    with_bystander(True, bad)


@check()
def check_protocol_error_second_connect_v5():
    """5.0 [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error: DISCONNECT 0x82 (SHOULD) and close."""
    def bad():
        r = Raw()
        r.connect(cid("p2c"))
        r.send(connect_packet(cid("p2c")))
        expect_bad_packet_dropped(r, True, (0x82,), "[MQTT-3.1.0-2]")
    with_bystander(True, bad)


@check()
def check_protocol_error_topic_alias_zero_v5():
    """5.0 [MQTT-3.3.2-8], §3.3.2.3.4: Topic Alias 0 is not permitted: DISCONNECT (0x82 Protocol Error, 0x94 Topic Alias invalid or 0x81 as mosquitto sends; SHOULD) and close (MUST)."""
    def bad():
        r = Raw()
        r.connect(cid("ta0"))
        r.send(packet(0x30, mstr(topic("ta0")) + props(b"\x23\x00\x00") + b"x"))
        expect_bad_packet_dropped(r, True, (0x81, 0x82, 0x94), "[MQTT-3.3.2-8]")
    with_bystander(True, bad)


@check()
def check_protocol_unsupported_version():
    """3.1.1 [MQTT-3.1.2-2]: protocol level 3 (or 6) gets CONNACK return code 1 (unacceptable protocol level) and the connection is closed."""
    r = Raw()
    body = mstr("MQTT") + bytes([6, 0x02]) + b"\x00\x1e" + mstr(cid("pv"))
    r.send(packet(0x10, body))
    pkt = r.read()
    expect(pkt is not None, "closed without CONNACK")
    expect(pkt[0] == CONNACK and pkt[1][1] in (0x01, 0x84),
           "answer 0x%02X %r, expected CONNACK 0x01 (or v5 0x84)" % (pkt[0], pkt[1][:4]))
    _, _, closed = r.until_closed()
    expect(closed, "connection left open")


@check()
def check_protocol_error_topic_alias_over_max_v5():
    """5.0 [MQTT-3.3.2-9], [MQTT-3.3.2-10]: a Topic Alias above the broker's Topic Alias Maximum: DISCONNECT 0x94 (Topic Alias invalid) and close."""
    c = Client("tamx")
    mx = getattr(c.connack_props, "TopicAliasMaximum", 0)
    c.close()

    def bad():
        r = Raw()
        r.connect(cid("tam"))
        r.send(packet(0x30, mstr(topic("tam")) + props(b"\x23" + struct.pack("!H", mx + 1)) + b"x"))
        expect_bad_packet_dropped(r, True, (0x94,), "alias %d > maximum %d" % (mx + 1, mx))
    with_bystander(True, bad)


@check()
def check_client_receive_maximum_v5():
    """5.0 §3.1.2.11.3, [MQTT-3.3.4-9]: with the client's Receive Maximum 2 the broker sends at most 2 unacknowledged QoS 1 PUBLISH packets; one PUBACK releases one more."""
    t = topic("crm")
    r = Raw()
    _, code, _ = r.connect(cid("crm"), cprops=props(b"\x21" + struct.pack("!H", 2)))
    expect(code == 0, "CONNACK %s" % hexcode(code))
    r.subscribe(t, 1)
    p = Client("crm-p")
    for i in range(5):
        p.pub(t, b"%d" % i, 1)
    first = [x for x in r.collect(0.7) if x[0] & 0xF0 == PUBLISH]
    expect(len(first) == 2, "%d PUBLISH packets outstanding, Receive Maximum was 2" % len(first))
    _, pid, _ = publish_fields(first[0])
    r.send(packet(0x40, struct.pack("!H", pid)))
    more = [x for x in r.collect(0.7) if x[0] & 0xF0 == PUBLISH]
    expect(len(more) == 1, "%d PUBLISH packets after one PUBACK, expected 1" % len(more))
    got = [publish_fields(x)[2] for x in first + more]
    expect(got == [b"0", b"1", b"2"], "payloads %s, expected 0, 1, 2 in order" % got)
    p.close()


@check()
def check_client_maximum_packet_size_v5():
    """5.0 §3.1.2.11.4 [MQTT-3.1.2-24], [MQTT-3.1.2-25]: the broker sends no packet larger than the client's Maximum Packet Size (128): a 400-byte message is discarded for that client, a small one after it arrives."""
    t = topic("cmps")
    r = Raw()
    _, code, _ = r.connect(cid("cmps"), cprops=props(b"\x27" + struct.pack("!I", 128)))
    expect(code == 0, "CONNACK %s" % hexcode(code))
    r.subscribe(t, 0)
    p = Client("cmps-p")
    p.pub(t, b"B" * 400, 1)
    p.pub(t, b"small", 1)
    seen = r.collect(0.8)
    big = [x for x in seen if len(x[1]) + 2 > 128]
    expect(not big, "sent a packet of %d bytes to a client whose maximum is 128" % (len(big[0][1]) + 2) if big else "")
    got = [publish_fields(x)[2] for x in seen if x[0] & 0xF0 == PUBLISH]
    expect(got == [b"small"], "delivered %s, expected only the small message" % got)
    p.close()


@check()
def check_invalid_filter_v5():
    """5.0 §4.7.1 [MQTT-4.7.1-1], §4.13: a filter with `#` before its end is not well formed, so the
    SUBSCRIBE is a Malformed Packet: DISCONNECT 0x81 or 0x8F, then close (SUBACK 0x8F is for
    well-formed filters the server will not allow; the broker's unit tests cover per-filter failures)."""
    r = Raw()
    r.connect(cid("spf"))
    body = b"\x00\x07" + props()
    for f, o in ((topic("spf/a"), 1), (topic("spf/#/x"), 0), (topic("spf/b"), 2)):
        body += mstr(f) + bytes([o])
    r.send(packet(0x82, body))
    pkt = r.read()
    expect(pkt is not None and pkt[0] == DISCONNECT, "expected DISCONNECT, got %s" % (pkt and "0x%02X" % pkt[0]))
    expect(disconnect_reason(pkt) in (0x81, 0x8F), "DISCONNECT reason %s" % hexcode(disconnect_reason(pkt)))


@check()
def check_subscribe_in_3_1_1_mixed_qos():
    """3.1.1 §3.9.3 [MQTT-3.8.4-5]: one SUBSCRIBE with three filters gets one return code per filter, in order."""
    s = Client("mq", v5=False)
    codes = s.sub([(topic("mq/0"), 0), (topic("mq/1"), 1), (topic("mq/2"), 2)])
    expect(codes == [0, 1, 2], "SUBACK %s, expected [0, 1, 2]" % codes)
    s.close()


# ------------------------------------------------------------- auth (second instance)

@check("auth")
def check_auth_ok_v311():
    """3.1.1 §3.1.3.4-5: a known user with the right password is accepted (return code 0)."""
    Client("aok3", v5=False, user=AUTH_USER, password=AUTH_PASS).close()


@check("auth")
def check_auth_ok_v5():
    """5.0 §3.1.3.5-6: a known user with the right password is accepted (reason 0)."""
    Client("aok5", user=AUTH_USER, password=AUTH_PASS).close()


@check("auth")
def check_auth_bad_password_v311():
    """3.1.1 §3.2.2.3 Table 3.1: a wrong password is refused with return code 5 (not authorized; code 4 is for user name or password data that is malformed; mosquitto sends 5) and the connection closed."""
    c = Client("abp3", v5=False, user=AUTH_USER, password="wrong", expect_rc=None)
    expect(c.rc == 5, "CONNACK return code %s, expected 5" % c.rc)
    expect(c.gone.wait(WAIT), "connection left open after a refusal [MQTT-3.2.2-5]")


@check("auth")
def check_auth_bad_password_v5():
    """5.0 §3.2.2.2: a wrong password is refused with 0x86 (Bad User Name or Password)."""
    c = Client("abp5", user=AUTH_USER, password="wrong", expect_rc=None)
    expect(c.rc == 0x86, "CONNACK reason %s, expected 0x86" % hexcode(c.rc))
    expect(c.gone.wait(WAIT), "connection left open after a refusal [MQTT-3.2.2-7]")


@check("auth")
def check_auth_no_user_v311():
    """3.1.1 §3.2.2.3: no user name with allow_anonymous false gets return code 5 (not authorized)."""
    c = Client("anu3", v5=False, expect_rc=None)
    expect(c.rc == 5, "CONNACK return code %s, expected 5" % c.rc)


@check("auth")
def check_auth_no_user_v5():
    """5.0 §3.2.2.2: no user name with allow_anonymous false gets 0x87 (Not authorized)."""
    c = Client("anu5", expect_rc=None)
    expect(c.rc == 0x87, "CONNACK reason %s, expected 0x87" % hexcode(c.rc))


@check("auth")
def check_acl_publish_denied_v5():
    """5.0 §3.4.2.1: a QoS 1 publish to a topic the ACL does not let the user write gets PUBACK 0x87 (Not authorized) and is not delivered."""
    s = Client("apd-s", user=AUTH_USER, password=AUTH_PASS)
    s.sub_ok("acl/ro/#", 1)
    r = Raw()
    _, code, _ = r.connect(cid("apd-p"), user=AUTH_USER, password=AUTH_PASS)
    expect(code == 0, "CONNACK %s" % hexcode(code))
    r.send(packet(0x32, mstr("acl/ro/x") + b"\x00\x05" + props() + b"denied"))
    pkt = r.read()
    expect(pkt is not None, "connection closed instead of PUBACK")
    expect(pkt[0] == PUBACK, "got 0x%02X, expected PUBACK" % pkt[0])
    rc = v5_ack_reason(pkt[1])
    expect(rc == 0x87, "PUBACK reason %s, expected 0x87" % hexcode(rc))
    s.expect_none("write-denied message delivered")
    s.close()


@check("auth")
def check_acl_publish_denied_v311():
    """3.1.1 §3.3.5: a publish the ACL denies is acknowledged (3.1.1 has no reason code) but not delivered."""
    s = Client("apd3-s", v5=False, user=AUTH_USER, password=AUTH_PASS)
    s.sub_ok("acl/ro/#", 1)
    p = Client("apd3-p", v5=False, user=AUTH_USER, password=AUTH_PASS)
    p.pub("acl/ro/y", b"denied", 1)
    s.expect_none("write-denied message delivered")
    p.pub("acl/rw/y", b"allowed", 1)
    s.sub_ok("acl/rw/#", 1)
    s.close()
    p.close()


@check("auth")
def check_acl_allowed_roundtrip():
    """The ACL allows what it grants: readwrite topic round trip for the user."""
    s = Client("aar", user=AUTH_USER, password=AUTH_PASS)
    s.sub_ok("acl/rw/#", 1)
    s.pub("acl/rw/z", b"ok", 1)
    m = s.expect_msg("allowed message")
    expect(m.payload == b"ok", "got %r" % m.payload)
    s.close()


@check("auth")
def check_acl_read_denied_not_delivered():
    """Feature list / mosquitto acl_file: a subscription 'acl/+/x' is granted, but a message on a topic the user may write and not read (acl/wo/x) is not delivered; acl/rw/x is."""
    s = Client("ard", user=AUTH_USER, password=AUTH_PASS)
    codes = s.sub("acl/+/x", 1)
    expect(codes == [1], "SUBACK %s for acl/+/x: refused, so read denial at delivery cannot be tested" % hexlist(codes))
    s.pub("acl/wo/x", b"secret", 1)
    s.pub("acl/rw/x", b"public", 1)
    got = [m.payload for m in s.drain()]
    expect(got == [b"public"], "delivered %s, expected only public" % got)
    s.close()


@check("auth")
def check_acl_subscribe_granted_v311():
    """mosquitto acl_file semantics: SUBSCRIBE is granted (0x01) even for a filter the user may not
    read; what is denied is each delivery (acl_read_denied_not_delivered)."""
    s = Client("asd3", v5=False, user=AUTH_USER, password=AUTH_PASS)
    codes = s.sub([("acl/wo/x", 1), ("acl/rw/x", 1)])
    expect(codes == [1, 1], "SUBACK %s, expected [0x01, 0x01]" % hexlist(codes))
    s.close()


@check("auth")
def check_acl_subscribe_granted_v5():
    """mosquitto acl_file semantics in v5 too: SUBSCRIBE granted, each delivery checked for read."""
    s = Client("asd5", user=AUTH_USER, password=AUTH_PASS)
    codes = s.sub([("acl/wo/x", 1), ("acl/rw/x", 1)])
    expect(codes == [1, 1], "SUBACK %s, expected [0x01, 0x01]" % hexlist(codes))
    s.close()


# ------------------------------------------------------------- runner

def run_one(fn):
    """Runs fn in a thread bounded by CHECK_LIMIT; returns None or the failure text."""
    out = {}

    def body():
        try:
            fn()
        except Failed as e:
            out["err"] = str(e)
        except Exception as e:  # a crash in a check is a failure of that check
            out["err"] = "%s: %s" % (type(e).__name__, e)

    th = threading.Thread(target=body, daemon=True)
    th.start()
    th.join(CHECK_LIMIT)
    if th.is_alive():
        out["err"] = "still running after %.0f s" % CHECK_LIMIT
    for c in list(LIVE):
        try:
            c.stop()
        except Exception:
            pass
    LIVE.clear()
    return out.get("err")


def main():
    global PORT, AUTH_USER, AUTH_PASS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--only", action="append", help="run only this check (repeatable)")
    ap.add_argument("--group", default="main", help="main, auth or all")
    ap.add_argument("--list", action="store_true", help="print the check names and docstrings")
    ap.add_argument("--user", default=AUTH_USER)
    ap.add_argument("--password", default=AUTH_PASS)
    a = ap.parse_args()
    PORT, AUTH_USER, AUTH_PASS = a.port, a.user, a.password
    sel = [(n, g, f) for n, g, f in CHECKS
           if (a.only and n in a.only) or (not a.only and a.group in ("all", g))]
    if a.only:
        unknown = set(a.only) - {n for n, _, _ in sel}
        if unknown:
            sys.exit("unknown check(s): %s" % ", ".join(sorted(unknown)))
    if a.list:
        for n, g, f in sel:
            print("%-40s %-5s %s" % (n, g, f.__doc__))
        return 0
    print("1..%d" % len(sel), flush=True)
    failed = 0
    for n, g, f in sel:
        t0 = time.monotonic()
        err = run_one(f)
        took = time.monotonic() - t0
        if err:
            failed += 1
            print("FAIL - %s: %s (%.1f s)" % (n, err, took), flush=True)
        else:
            print("ok - %s (%.1f s)" % (n, took), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
