"""The live web page (`serve` answering plain HTTP on its WebSocket port) in a real headless
Chromium, and MQTT (`serve --mqtt`, `listen --mqtt`) through a real Mosquitto broker.

Chromium is driven over its DevTools protocol (a WebSocket, with the `websockets` library the
service already uses); Mosquitto runs as a process of the test, with its own configuration, on a
free port of 127.0.0.1. Every wait has a deadline; nothing is timed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from doascope.app.net import protocol
from doascope.sim.presets import PRESETS
from helpers import free_port, serving_ports

PROFILE = "respeaker_usb_v2"
HOST = "127.0.0.1"
TALKERS = [p.azimuths[0] for p in PRESETS["two-talkers"].paths]  # 60 and 215 degrees
VALIDATOR = Draft202012Validator(protocol.schema())
CHROMIUM = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser"))), None)
MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)
need_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh installs it)")
need_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="needs Debian's mosquitto (scripts/setup.sh installs it)")


def wait_for(predicate, seconds: float, what: str, *, every: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(every)


def angle(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


class Serve:
    """`doascope serve` on the two-talker scene, looping, as a process."""

    def __init__(self, tmp: Path, *extra: str, name: str = "serve", profile: str = PROFILE):
        self.stderr_path = tmp / f"{name}.stderr"
        self._err = open(self.stderr_path, "w")  # noqa: SIM115 - open while the server runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "doascope.app.cli.main", "serve", "--profile", profile, "--sim", "two-talkers",
             "--loop", "--sources", "2", "--port", "0", "--tcp-port", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=self._err)
        wait_for(lambda: "serving" in self.stderr() or self.proc.poll() is not None, 90, "serve to start")
        assert self.proc.poll() is None, self.stderr()
        self.port, self.tcp_port = serving_ports(self.stderr())   # the free ports it was given (--port 0)
        self.page = f"http://{HOST}:{self.port}/"

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._err.close()


class Chromium:
    """Headless Chromium with a fresh profile, one page driven over the DevTools protocol."""

    def __init__(self, tmp: Path):
        from websockets.sync.client import connect

        profile = tmp / "chromium-profile"
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "--window-size=1100,800", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active = profile / "DevToolsActivePort"
        try:
            wait_for(lambda: active.exists() and active.read_text().count("\n") >= 1, 60, "Chromium's DevTools port")
            port = int(active.read_text().split()[0])
            targets = wait_for(lambda: [t for t in json.load(urllib.request.urlopen(
                f"http://127.0.0.1:{port}/json/list", timeout=10)) if t.get("type") == "page"], 30, "a page target")
            self._stack = contextlib.ExitStack()
            self.ws = self._stack.enter_context(connect(targets[0]["webSocketDebuggerUrl"], open_timeout=30,
                                                        max_size=2**24))
        except BaseException:
            self.close()
            raise
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        n = next(self._ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == n:
                assert "error" not in msg, msg
                return msg["result"]

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]
        return result.get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        self.proc.kill()
        self.proc.wait(20)


TRACK_ROWS = """Array.from(document.querySelectorAll('#tracks tbody tr[data-id]'))
                .map(r => Array.from(r.cells).map(c => c.innerText.trim()))"""


@pytest.fixture
def chromium(tmp_path):
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (scripts/setup.sh installs it)")
    browser = Chromium(tmp_path)
    yield browser
    browser.close()


@need_chromium
def test_live_page_in_headless_chromium(tmp_path, chromium):
    serve = Serve(tmp_path)
    try:
        # Plain HTTP on the WebSocket port: the page (self-contained), its grid, 404 elsewhere.
        with urllib.request.urlopen(serve.page, timeout=20) as r:
            html = r.read().decode()
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
        assert "<script src" not in html and "http://" not in html and "https://" not in html  # nothing fetched
        grid = json.load(urllib.request.urlopen(serve.page + "grid.json", timeout=20))
        assert grid["kind"] == "circle" and len(grid["azimuth"]) == 360
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(serve.page + "favicon.ico", timeout=20)
        assert info.value.code == 404

        chromium.open(serve.page)
        wait_for(lambda: chromium.js("document.getElementById('state').textContent") == "live", 60, "the page to go live")
        # "live" comes with the WebSocket's opening; the array's name with the service's first message
        wait_for(lambda: "ReSpeaker" in (chromium.js("document.querySelector('header').innerText") or ""), 30,
                 "the array's name in the header")
        # The tracks, as text in the page's table: each within 10 degrees of a talker, both talkers found.
        seen: set[int] = set()

        def both_talkers() -> bool:
            for row in chromium.js(TRACK_ROWS) or []:
                tid, az, el, activity = row[0], float(row[1]), float(row[2]), float(row[3])
                errors = [angle(az, t) for t in TALKERS]
                assert min(errors) <= 10.0, f"track {tid} at {az} deg is not within 10 deg of a talker {TALKERS}"
                assert el == 0.0 and 0.0 <= activity <= 1.0
                seen.add(int(min(range(len(TALKERS)), key=lambda i: errors[i])))
            return len(seen) == len(TALKERS)

        wait_for(both_talkers, 60, f"tracks near both talkers {TALKERS} in the page (saw talkers {seen})", every=0.3)
        levels = chromium.js("Array.from(document.querySelectorAll('#levels .db')).map(e => e.textContent)")
        assert len(levels) == 4 and all(-80 < float(v.split()[0]) < 0 for v in levels), levels
        drawn = chromium.js("""(() => { const c = document.getElementById('plot');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; })()""")
        assert drawn > 10_000, "the polar plot is blank"
        # The controls: change the method from the page; the service applies it and says so.
        assert chromium.js("document.getElementById('controls').hidden") is False
        chromium.js("""document.getElementById('method').value = 'music';
                       document.getElementById('sources').value = '2';
                       document.querySelector('#control-form button').click()""")
        wait_for(lambda: "applied" in (chromium.js("document.getElementById('reply').textContent") or ""), 30,
                 "the control message's ack")
        wait_for(lambda: (chromium.js("document.getElementById('stats').textContent") or "").startswith("music"),
                 30, "frames from the new method")
        # At a phone's width nothing overflows sideways.
        chromium.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=1, mobile=True)
        wait_for(lambda: chromium.js("document.documentElement.scrollWidth") <= 390, 10, "the page to fit 390 px")
        assert serve.proc.poll() is None
        assert "Traceback" not in serve.stderr(), serve.stderr()
    finally:
        serve.close()


@need_chromium
def test_live_page_draws_the_room_map_in_position_mode(tmp_path, chromium):
    serve = Serve(tmp_path, "--mode", "position", profile="room_walls_6mic")
    try:
        chromium.open(serve.page)
        wait_for(lambda: chromium.js("document.getElementById('state').textContent") == "live", 60, "the page to go live")
        wait_for(lambda: "Room map" in (chromium.js("document.getElementById('view-title').textContent") or ""), 30,
                 "the room map's title (set by the service's first message)")
        assert chromium.js("Array.from(document.querySelectorAll('#track-head th')).map(h => h.textContent)") == \
            ["id", "x (m)", "y (m)", "z (m)", "activity"]
        rows = wait_for(lambda: chromium.js(TRACK_ROWS), 60, "tracks in the page")
        from doascope.hardware_profiles import load_profile
        room = load_profile("room_walls_6mic").room
        for row in rows:
            assert all(lo <= float(v) <= hi for v, (lo, hi) in zip(row[1:4], room)), row
        assert len(chromium.js("Array.from(document.querySelectorAll('#levels .db'))")) == 6
        # The map is drawn over the whole room: many distinct colours, not a blank canvas.
        colours = chromium.js("""(() => { const c = document.getElementById('plot');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, seen = new Set();
            for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
            return seen.size; })()""")
        assert colours > 50, colours
    finally:
        serve.close()


def _handshake(port: int, *, host: str, origin: str, token: str | None) -> bytes:
    """The status line of a WebSocket handshake sent by hand (to present any Host and Origin)."""
    with socket.create_connection((HOST, port), timeout=20) as s:
        path = f"/?token={token}" if token else "/"
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  f"Origin: {origin}\r\n\r\n".encode())
        return s.recv(4096).split(b"\r\n")[0]


@need_chromium
def test_page_needs_the_token_when_remote_access_is_on(tmp_path, chromium):
    serve = Serve(tmp_path, "--allow-remote", "--token", "s3cret")
    try:
        for path in ("", "grid.json", "?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(serve.page + path, timeout=20)
            assert info.value.code == 401, path
        assert urllib.request.urlopen(serve.page + "?token=s3cret", timeout=20).status == 200
        # A browser without the token is refused, and gets no stream.
        chromium.open(serve.page)
        text = wait_for(lambda: chromium.js("document.body && document.body.innerText") or "", 30, "a page")
        assert "refused" in text and "token" in text, text
        assert chromium.js("document.getElementById('tracks')") is None
        # With the token in the URL, the page (and its WebSocket) are let in.
        chromium.open(serve.page + "?token=s3cret")
        wait_for(lambda: chromium.js("document.getElementById('state') && "
                                     "document.getElementById('state').textContent") == "live", 60, "the page to go live")
        wait_for(lambda: chromium.js(TRACK_ROWS), 60, "tracks in the page")
        # Opened at a network address, the page's WebSocket comes from its own origin: let in with the
        # token only; another site's origin never.
        remote = f"192.0.2.7:{serve.port}"
        assert _handshake(serve.port, host=remote, origin=f"http://{remote}", token="s3cret").endswith(b"101 Switching Protocols")
        assert b" 401 " in _handshake(serve.port, host=remote, origin=f"http://{remote}", token=None)
        assert b" 403 " in _handshake(serve.port, host=remote, origin="http://evil.example", token="s3cret")
    finally:
        serve.close()


def test_same_origin_needs_a_token(tmp_path):
    """Without a token (loopback only), a page from another name for this address (DNS rebinding)
    is not let in: only localhost origins are."""
    serve = Serve(tmp_path)
    try:
        evil = f"rebind.example:{serve.port}"
        assert b" 403 " in _handshake(serve.port, host=evil, origin=f"http://{evil}", token=None)
        local = f"127.0.0.1:{serve.port}"
        assert _handshake(serve.port, host=local, origin=f"http://{local}", token=None).endswith(b"101 Switching Protocols")
    finally:
        serve.close()


# ---------------------------------------------------------------------------------------------
# MQTT


class Mosquitto:
    """A Mosquitto broker of the test's own: 127.0.0.1, a free port, no persistence."""

    def __init__(self, tmp: Path, port: int | None = None, *, extra: str = "allow_anonymous true\n"):
        self.port = port or free_port()
        self.conf = tmp / f"mosquitto-{self.port}.conf"
        # As root, Mosquitto would switch to its own user, who cannot read the test's private files.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(f"listener {self.port} 127.0.0.1\npersistence false\n{user}{extra}")
        self.log = tmp / f"mosquitto-{self.port}.log"
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=open(self.log, "a"),  # noqa: SIM115
                                     stderr=subprocess.STDOUT)

        def up():
            assert self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=1):
                return True
        wait_for(up, 30, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("needs Debian's mosquitto (scripts/setup.sh installs it)")
    b = Mosquitto(tmp_path)
    yield b
    b.stop()


class Subscriber:
    """A paho client of the test's own, collecting (topic, retained, parsed payload); reconnects."""

    def __init__(self, port: int, topic: str = "doascope/#"):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bool, object]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{port}-{time.monotonic_ns()}")
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect_async(HOST, port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, m) -> None:
        text = m.payload.decode()
        payload = json.loads(text) if text.startswith("{") else text
        with self.lock:
            self.messages.append((m.topic, bool(m.retain), payload))

    def take(self) -> list:
        with self.lock:
            out, self.messages = self.messages, []
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@need_mosquitto
def test_mqtt_publishes_tracks_and_retained_meta_for_each_array(tmp_path, broker):
    serves = [Serve(tmp_path, "--mqtt", f"{HOST}:{broker.port}", "--mqtt-name", name, name=name)
              for name in ("hall", "lab")]
    sub = None
    try:
        assert "doascope/hall/tracks" in serves[0].stderr()
        sub = Subscriber(broker.port)
        got: list = []

        def enough() -> bool:
            got.extend(sub.take())
            return all(sum(t == f"doascope/{n}/tracks" for t, _, _ in got) >= 20 for n in ("hall", "lab"))
        wait_for(enough, 60, "tracks from both arrays")
        for name in ("hall", "lab"):
            metas = [(r, m) for t, r, m in got if t == f"doascope/{name}/meta"]
            assert metas and metas[0][0], f"{name}: meta is not retained"  # it was there before we subscribed
            assert metas[0][1]["profile"] == PROFILE
            tracks = [m for t, _, m in got if t == f"doascope/{name}/tracks"]
            for m in [metas[0][1], *tracks]:
                errors = list(VALIDATOR.iter_errors(m))
                assert not errors, f"{str(m)[:200]}: {errors[0].message}"
            seqs = [m["seq"] for m in tracks]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            azimuths = [tr["azimuth"] for m in tracks for tr in m["tracks"]]
            assert azimuths and all(min(angle(a, t) for t in TALKERS) <= 10 for a in azimuths[-20:]), azimuths[-20:]
            assert ("doascope/%s/status" % name, True, "online") in got
        # The reference client prints them: one array, or every array on the broker.
        cmd = [sys.executable, "-m", "doascope.app.cli.main", "listen", "--mqtt", f"{HOST}:{broker.port}"]
        out = subprocess.run(cmd + ["--mqtt-name", "lab", "--count", "3", "--json"], capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        msgs = [json.loads(line) for line in out.stdout.splitlines()]
        assert msgs[0]["type"] == "meta" and [m["type"] for m in msgs[1:]] == ["doa"] * 3
        out = subprocess.run(cmd + ["--count", "6"], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert "hall: meta: ReSpeaker" in out.stdout and "lab: meta: ReSpeaker" in out.stdout, out.stdout
        assert out.stdout.count(" tracks: ") == 6
        # Settings changed through the service reach the broker as a new retained meta.
        from doascope.app.cli.main import main
        assert main(["listen", f"ws://{HOST}:{serves[1].port}/", "--count", "1",
                     "--control", '{"type": "control", "set": {"method": "music"}}']) == 0
        wait_for(lambda: any(t == "doascope/lab/meta" and m["method"] == "music" for t, _, m in sub.take()), 30,
                 "the new meta on doascope/lab/meta")
    finally:
        if sub:
            sub.close()
        for s in serves:
            s.close()
    for s in serves:
        assert s.proc.returncode == 0 and "Traceback" not in s.stderr(), s.stderr()


@need_mosquitto
def test_broker_restart_does_not_stop_the_engine(tmp_path, broker):
    serve = Serve(tmp_path, "--mqtt", f"{HOST}:{broker.port}")
    sub = Subscriber(broker.port)
    stream: list[str] = []
    reader = None
    try:
        wait_for(lambda: sum(t.endswith("/tracks") for t, _, _ in sub.messages) >= 10, 60, "tracks on the broker")
        # A WebSocket client watches the engine while the broker goes away and comes back.
        reader = threading.Thread(target=_read_ws, args=(serve.port, stream), daemon=True)
        reader.start()
        wait_for(lambda: len(stream) >= 10, 30, "frames on the WebSocket")
        broker.stop()
        sub.take()
        before = len(stream)
        wait_for(lambda: len(stream) >= before + 60, 60, "frames while the broker is down (2 s of audio)")
        broker.start()  # same port, empty: no retained meta until the publisher sends it again
        got: list = []

        def resumed() -> bool:
            got.extend(sub.take())
            return sum(t.endswith("/tracks") for t, _, _ in got) >= 10 and any(t.endswith("/meta") for t, _, _ in got)
        wait_for(resumed, 90, "tracks and meta again after the broker's restart")
        seqs = [m["seq"] for t, _, m in got if t.endswith("/tracks")]
        assert seqs == sorted(seqs)
        # The engine never stopped: the WebSocket client saw every frame, in order, none lost.
        frames = [json.loads(s) for s in stream]
        seq = [m["seq"] for m in frames if m["type"] == "doa"]
        assert seq == list(range(seq[0], seq[0] + len(seq))), "the WebSocket stream has gaps"
        assert frames[-1]["overruns"] == 0 and serve.proc.poll() is None
        broker.stop()  # and serve stops cleanly while its broker is away
    finally:
        sub.close()
        serve.close()
    assert serve.proc.returncode == 0 and "Traceback" not in serve.stderr(), serve.stderr()


@need_mosquitto
@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
                    reason="needs openssl and mosquitto_passwd (Debian's openssl and mosquitto)")
def test_mqtt_over_tls_with_a_password(tmp_path, monkeypatch):
    """A broker that wants TLS and a user name: serve publishes with --mqtt-ca and a password from the
    environment; listen without the password is refused in one line."""
    key, cert, passwords = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "passwords"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "array", "pa55word"], check=True,
                   capture_output=True, timeout=60)
    broker = Mosquitto(tmp_path, extra=f"certfile {cert}\nkeyfile {key}\nallow_anonymous false\n"
                                       f"password_file {passwords}\n")
    monkeypatch.setenv("DOASCOPE_MQTT_PASSWORD", "pa55word")  # serve reads it; listen gets --mqtt-password
    serve = Serve(tmp_path, "--mqtt", f"{HOST}:{broker.port}", "--mqtt-ca", str(cert), "--mqtt-user", "array")
    monkeypatch.delenv("DOASCOPE_MQTT_PASSWORD")
    try:
        cmd = [sys.executable, "-m", "doascope.app.cli.main", "listen", "--mqtt", f"{HOST}:{broker.port}", "--mqtt-ca",
               str(cert), "--mqtt-user", "array", "--count", "3", "--json"]
        out = subprocess.run(cmd + ["--mqtt-password", "pa55word"], capture_output=True, text=True, timeout=60,
                             check=False)
        assert out.returncode == 0, out.stderr
        msgs = [json.loads(line) for line in out.stdout.splitlines()]
        assert [m["type"] for m in msgs] == ["meta", "doa", "doa", "doa"]
        out = subprocess.run(cmd + ["--mqtt-password", "wrong"], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "refused" in out.stderr, out.stderr
        assert serve.proc.poll() is None
    finally:
        serve.close()
        broker.stop()
    assert serve.proc.returncode == 0 and "Traceback" not in serve.stderr(), serve.stderr()


def _read_ws(port: int, out: list) -> None:
    from websockets.sync.client import connect

    with contextlib.suppress(Exception), connect(f"ws://{HOST}:{port}/", open_timeout=30) as ws:
        for text in ws:
            out.append(text)


def test_mqtt_options_and_missing_extra(capsys, monkeypatch):
    from doascope.app.cli.main import main
    from doascope.app.net.mqtt import check_name, parse_broker

    assert parse_broker("broker", tls=False) == ("broker", 1883)
    assert parse_broker("broker", tls=True) == ("broker", 8883)
    assert parse_broker("10.0.0.2:1884", tls=False) == ("10.0.0.2", 1884)
    assert parse_broker("[::1]:1884", tls=False) == ("::1", 1884)
    assert parse_broker("[::1]", tls=False) == ("::1", 1883)
    base = ["serve", "--profile", PROFILE, "--sim", "two-talkers", "--port", "0", "--tcp-port", "0"]
    for extra, needle in ((["--mqtt", "broker:x"], "HOST:PORT"), (["--mqtt", ":1883"], "HOST:PORT"),
                          (["--mqtt", "b", "--mqtt-name", "a/b"], "--mqtt-name"),
                          (["--mqtt", "b", "--mqtt-ca", "/nonexistent/ca.pem"], "--mqtt-ca")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("doascope: error:") and needle in err, err
    assert check_name("hall-2") == "hall-2"
    port = free_port()  # nobody listens there
    assert main(["listen", "--mqtt", f"{HOST}:{port}", "--count", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot connect to the MQTT broker" in err, err
    # Without paho-mqtt: one line naming the extra, exit 2, for serve and listen alike.
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    for argv in (base + ["--mqtt", "broker"], ["listen", "--mqtt", "broker"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "doascope[mqtt]" in err, err
