"""Interop check with the Eclipse Paho Python client (paho-mqtt 2.x) against a running broker.

Usage: python3 paho_roundtrip.py HOST PORT
Covers, for MQTT 3.1.1 and 5.0: QoS 0/1/2 round trips, retained delivery on subscribe, a
persistent session resumed with a queued QoS 1 message (session present), and v5 properties
(user properties, content type, response topic, correlation data). Prints OK and exits 0 on
success; raises (exit 1) with the failed check otherwise.
"""

import queue
import sys
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST, PORT = sys.argv[1], int(sys.argv[2])
TIMEOUT = 5


def client(protocol, client_id=None, clean=True):
    events = queue.Queue()
    kwargs = {}
    if protocol != mqtt.MQTTv5:
        kwargs["clean_session"] = clean
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or "paho-" + uuid.uuid4().hex[:8],
        protocol=protocol,
        **kwargs,
    )
    c.on_connect = lambda _c, _u, flags, rc, props: events.put(("connack", flags, rc))
    c.on_subscribe = lambda _c, _u, mid, rcs, props: events.put(("suback", mid, rcs))
    c.on_message = lambda _c, _u, msg: events.put(("message", msg))
    c.on_publish = lambda _c, _u, mid, rc, props: events.put(("published", mid))
    return c, events


def expect(events, kind):
    while True:
        event = events.get(timeout=TIMEOUT)
        if event[0] == kind:
            return event


def connect(protocol, client_id=None, clean=True, expiry=None):
    c, events = client(protocol, client_id, clean)
    if protocol == mqtt.MQTTv5:
        props = None
        if expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        c.connect(HOST, PORT, keepalive=30, clean_start=clean, properties=props)
    else:
        c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    _, flags, rc = expect(events, "connack")
    assert not rc.is_failure, f"CONNACK {rc}"
    return c, events, flags


def subscribe(c, events, topic, qos):
    c.subscribe(topic, qos)
    _, _, rcs = expect(events, "suback")
    assert not rcs[0].is_failure, f"SUBACK {rcs}"


def publish(c, events, topic, payload, qos, retain=False, props=None):
    info = c.publish(topic, payload, qos=qos, retain=retain, properties=props)
    info.wait_for_publish(TIMEOUT)
    assert info.is_published(), f"publish {topic} not acknowledged"


def run(protocol, name):
    sub, sub_events, _ = connect(protocol)
    pub, pub_events, _ = connect(protocol)
    base = f"paho/{name}/{uuid.uuid4().hex[:6]}"
    subscribe(sub, sub_events, base + "/#", 2)
    for qos in (0, 1, 2):
        props = None
        if protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("k", f"v{qos}")]
            props.ContentType = "text/plain"
            props.ResponseTopic = base + "/reply"
            props.CorrelationData = b"corr"
        publish(pub, pub_events, f"{base}/q{qos}", f"m{qos}", qos, props=props)
        _, msg = expect(sub_events, "message")
        assert msg.topic == f"{base}/q{qos}" and msg.payload == f"m{qos}".encode(), msg.topic
        assert msg.qos == qos, (msg.qos, qos)
        if protocol == mqtt.MQTTv5:
            assert msg.properties.UserProperty == [("k", f"v{qos}")], msg.properties
            assert msg.properties.ContentType == "text/plain"
            assert msg.properties.ResponseTopic == base + "/reply"
            assert msg.properties.CorrelationData == b"corr"

    # Retained message delivered to a later subscription with the retain flag.
    publish(pub, pub_events, base + "-ret/x", "kept", 1, retain=True)
    late, late_events, _ = connect(protocol)
    subscribe(late, late_events, base + "-ret/#", 1)
    _, msg = expect(late_events, "message")
    assert msg.retain and msg.payload == b"kept", (msg.retain, msg.payload)

    # Persistent session: subscribe, go away, a QoS 1 message is queued, resume.
    pid = "paho-persist-" + uuid.uuid4().hex[:6]
    p, p_events, flags = connect(protocol, pid, clean=False if protocol != mqtt.MQTTv5 else True, expiry=300)
    subscribe(p, p_events, base + "-ps/t", 1)
    p.disconnect()
    p.loop_stop()
    publish(pub, pub_events, base + "-ps/t", "queued", 1)
    p, p_events, flags = connect(protocol, pid, clean=False, expiry=300)
    assert flags.session_present, "session present expected"
    _, msg = expect(p_events, "message")
    assert msg.payload == b"queued", msg.payload

    for c in (sub, pub, late, p):
        c.disconnect()
        c.loop_stop()


run(mqtt.MQTTv311, "v311")
run(mqtt.MQTTv5, "v5")
print("OK")
