"""MQTT: ``serve --mqtt`` publishes the stream to a broker, ``listen --mqtt`` prints it.

Topics, one set per array (``<array>`` is the profile id unless ``--mqtt-name`` says otherwise, so
that several ``serve`` instances share one broker):

- ``doascope/<array>/tracks``: every frame's ``doa`` message (app/net/schemas/stream.schema.json), QoS 0;
- ``doascope/<array>/meta``: the ``meta`` message, retained, published again whenever the settings
  change, so that a subscriber learns the array's geometry and grid the moment it subscribes;
- ``doascope/<array>/status``: ``online`` (retained), and ``offline`` as the broker's last will.

The publisher never holds up the engine or the service: frames go into a bounded queue that drops
its oldest entries (counted) while the broker is slow or away, and a thread of its own hands them to
paho-mqtt one at a time; paho's network thread reconnects with exponential backoff.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import sys
import threading
from collections import deque

from doascope import DoascopeError, ParameterError

TOPIC_ROOT = "doascope"
QUEUE_FRAMES = 64             # ~2 s of frames: what a broker that comes back gets first
RECONNECT_DELAY = (1, 30)     # seconds: paho doubles the wait between attempts up to the maximum
KEEPALIVE = 30                # seconds
PUBLISH_WAIT = 2.0            # seconds the publisher waits for paho to write one message
PASSWORD_ENV = "DOASCOPE_MQTT_PASSWORD"


def _paho():
    from doascope.extras import optional_import

    return optional_import("paho.mqtt.client")


def add_options(p: argparse.ArgumentParser, *, serve: bool) -> None:
    """The --mqtt options of ``serve`` (publish) or ``listen`` (subscribe)."""
    p.add_argument("--mqtt", default=None, metavar="HOST[:PORT]",
                   help=("also publish every frame to this MQTT broker (port 1883, 8883 with TLS)" if serve else
                         "read the stream from this MQTT broker instead (port 1883, 8883 with TLS)"))
    p.add_argument("--mqtt-name", default=None, metavar="ARRAY",
                   help=("this array's name in the topics doascope/ARRAY/... (default: the profile id)" if serve
                         else "only this array (default: every array on the broker)"))
    p.add_argument("--mqtt-user", default=None, metavar="USER", help="broker user name")
    p.add_argument("--mqtt-password", default=None, metavar="PASSWORD",
                   help=f"broker password (or set {PASSWORD_ENV}, which other users cannot see in ps)")
    p.add_argument("--mqtt-tls", action="store_true", help="connect to the broker over TLS")
    p.add_argument("--mqtt-ca", default=None, metavar="FILE",
                   help="CA certificate(s) that signed the broker's (implies --mqtt-tls; default: the system's)")


def parse_broker(text: str, *, tls: bool) -> tuple[str, int]:
    """HOST, HOST:PORT, [V6]:PORT -> (host, port)."""
    default = 8883 if tls else 1883
    if text.startswith("["):  # [::1] or [::1]:1883
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or str(default)
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, str(default)
    try:
        p = int(port)
    except ValueError:
        p = 0
    if not host or not 0 < p < 65536:
        raise ParameterError(f"--mqtt wants HOST or HOST:PORT, got {text!r}")
    return host, p


def check_name(name: str) -> str:
    if not name or re.search(r"[/+#\s\x00]", name):
        raise ParameterError(f"--mqtt-name must be one topic level (no '/', '+', '#' or spaces), got {name!r}")
    return name


def _client(mqtt, args, client_id: str, *, will: str | None = None):
    """A paho client with the credentials and TLS the options ask for."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    password = args.mqtt_password if args.mqtt_password is not None else os.environ.get(PASSWORD_ENV)
    if args.mqtt_user is not None or password is not None:
        client.username_pw_set(args.mqtt_user or "", password)
    if args.mqtt_tls or args.mqtt_ca:
        try:
            client.tls_set(ca_certs=args.mqtt_ca)
        except (OSError, ValueError) as exc:  # a missing or unreadable CA file (ssl.SSLError is an OSError)
            raise ParameterError(f"cannot use --mqtt-ca {args.mqtt_ca}: {getattr(exc, 'strerror', None) or exc}") \
                from None
    if will is not None:
        client.will_set(will, "offline", qos=1, retain=True)
    client.reconnect_delay_set(*RECONNECT_DELAY)
    return client


# -- serve --mqtt --------------------------------------------------------------------------------

class MqttPublisher:
    """Publishes the service's messages to a broker; one of the service's clients.

    ``push`` is called on the service's event loop (as every client's is) and only queues; the
    publisher's thread does the rest.
    """

    kind = "mqtt"
    spectrum = False  # the spectrum is for drawing; brokers get tracks and peaks

    def __init__(self, host: str, port: int, name: str, args, *, maxlen: int = QUEUE_FRAMES):
        mqtt = _paho()
        self.host, self.port, self.name = host, port, check_name(name)
        self.peer = f"mqtt://{host}:{port}/{TOPIC_ROOT}/{name}"
        base = f"{TOPIC_ROOT}/{name}"
        self.topic_tracks, self.topic_meta, self.topic_status = f"{base}/tracks", f"{base}/meta", f"{base}/status"
        self.queue: deque[str] = deque(maxlen=maxlen)
        self.dropped = 0          # frames lost while the broker was slow or away
        self.sent = 0             # frames handed to the broker
        self.connects = 0         # successful connections (1 + reconnections)
        self._meta: str | None = None
        self._meta_due = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.client = _client(mqtt, args, f"doascope-{name}-{os.getpid()}", will=self.topic_status)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._thread = threading.Thread(target=self._run, name=f"doascope-mqtt-{name}", daemon=True)

    # paho's network thread
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            print(f"doascope: the MQTT broker {self.host}:{self.port} refused us: {reason_code}", file=sys.stderr,
                  flush=True)
            return
        self.connects += 1
        self._meta_due = True  # a broker that lost its retained messages (restarted without persistence)
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.connected.clear()

    # the service's event loop
    def push(self, text: str) -> None:
        if '"type":"meta"' in text[:40]:  # protocol.dumps writes compact JSON, "v" and "type" first
            self._meta, self._meta_due = text, True
        else:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1
            self.queue.append(text)
        self._wake.set()

    # the publisher's thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if not self.connected.is_set():
                continue  # the queue keeps the newest frames meanwhile
            if self._meta_due and self._meta is not None:
                self._meta_due = False
                self.client.publish(self.topic_status, "online", qos=1, retain=True)
                self.client.publish(self.topic_meta, self._meta, qos=1, retain=True)
            while self.queue and self.connected.is_set() and not self._stop.is_set():
                info = self.client.publish(self.topic_tracks, self.queue.popleft(), qos=0)
                try:
                    # One message in paho's hands at a time: a slow broker backs up in our bounded
                    # queue (which drops the oldest), not in paho's unbounded one.
                    info.wait_for_publish(PUBLISH_WAIT)
                except (RuntimeError, ValueError):  # not connected any more: lost, like the frames meanwhile
                    self.dropped += 1
                    break
                if info.is_published():
                    self.sent += 1
                else:
                    self.dropped += 1

    def start(self, meta_text: str) -> None:
        self._meta = meta_text
        self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE)
        self.client.loop_start()  # connects, and reconnects with backoff, on paho's own thread
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(PUBLISH_WAIT + 1)
        if self.connected.is_set():  # a clean goodbye does not fire the will: say it ourselves
            info = self.client.publish(self.topic_status, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()


def publisher(args, profile) -> MqttPublisher | None:
    """The publisher ``serve``'s options ask for (None without --mqtt); errors in the options raise here,
    before anything starts."""
    if not getattr(args, "mqtt", None):
        return None
    host, port = parse_broker(args.mqtt, tls=bool(args.mqtt_tls or args.mqtt_ca))
    return MqttPublisher(host, port, args.mqtt_name or profile.id, args)


# -- listen --mqtt -------------------------------------------------------------------------------

def cmd_listen(args) -> int:
    """Print the messages of one array (--mqtt-name) or of every array on the broker."""
    import json

    from doascope.app.net.protocol import describe as _line

    mqtt = _paho()
    host, port = parse_broker(args.mqtt, tls=bool(args.mqtt_tls or args.mqtt_ca))
    array = check_name(args.mqtt_name) if args.mqtt_name else "+"
    events: queue.SimpleQueue = queue.SimpleQueue()
    client = _client(mqtt, args, f"doascope-listen-{os.getpid()}")

    def on_connect(client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            events.put(("refused", str(reason_code)))
        else:
            client.subscribe(f"{TOPIC_ROOT}/{array}/#", qos=1)

    client.on_connect = on_connect
    client.on_disconnect = lambda client, userdata, flags, reason_code, properties=None: events.put(("gone", str(reason_code)))
    client.on_message = lambda client, userdata, message: events.put((message.topic, message.payload))
    try:
        client.connect(host, port, keepalive=KEEPALIVE)
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot connect to the MQTT broker at {host}:{port}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    client.loop_start()
    n = 0
    try:
        while True:
            topic, payload = events.get()
            if topic == "refused":
                raise ParameterError(f"the MQTT broker at {host}:{port} refused the connection: {payload}")
            if topic == "gone":
                raise DoascopeError(f"the MQTT broker at {host}:{port} closed the connection ({payload}) "
                                    f"after {n} doa messages")
            name, kind = topic.split("/")[1:3] if topic.count("/") == 2 else (topic, "")
            text = payload.decode("utf-8", errors="replace")
            if kind == "status":
                if not args.json:
                    print(f"{name}: {text}", flush=True)
                continue
            if args.json:
                print(text, flush=True)
            else:
                try:
                    msg = json.loads(text)
                except ValueError:
                    msg = None
                print(f"{name}: {_line(msg) if isinstance(msg, dict) else text}", flush=True)
            if kind == "tracks":
                n += 1
                if args.count and n >= args.count:
                    return 0
    finally:
        client.disconnect()
        client.loop_stop()
