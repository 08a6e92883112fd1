"""The network service (`doascope serve`, app/net/server.py) over real sockets on 127.0.0.1.

Most tests run the service in this process (Service + Engine on a simulated two-talker room, the
asyncio loop on a background thread) so that they can look at its clients and engine; a few run
`python -m doascope.app.cli.main serve` as a subprocess (signals, its stderr, the `listen` client, ODAS).
Ports are ephemeral; every wait is bounded in time. Counting frames against the engine's own
count is a consistency check, not a timing test: the clients read at a fraction of a core.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from itertools import count, pairwise
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from doascope.app.net import protocol
from doascope.app.runtime.engine import AnalysisConfig, Engine
from doascope.app.net.server import Client, Service, is_loopback
from doascope.app.runtime.sources import ArraySource, sim_source
from doascope.hardware_profiles import load_profile
from helpers import free_port, serving_ports

PROFILE = "respeaker_usb_v2"
HOST = "127.0.0.1"
VALIDATOR = Draft202012Validator(protocol.schema())
SUBSCRIBE = json.dumps({"type": "subscribe", "spectrum": True})


# ---------------------------------------------------------------------------------------------
# helpers


def free_port_pair() -> int:
    """P such that P and P + 1 are both free (ODAS uses two consecutive ports)."""
    for _ in range(50):
        p = free_port()
        if p >= 65534:
            continue
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind((HOST, p))
                b.bind((HOST, p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no two consecutive free ports")


def validate(texts) -> list[dict]:
    """Parse and validate every message (each distinct text once); returns them parsed."""
    seen: dict[str, dict] = {}
    out = []
    for text in texts:
        if text not in seen:
            msg = json.loads(text)
            errors = sorted(VALIDATOR.iter_errors(msg), key=str)
            assert not errors, f"{text[:300]} does not validate: {errors[0].message}"
            seen[text] = msg
        out.append(seen[text])
    return out


def doa_seqs(msgs) -> list[int]:
    return [m["seq"] for m in msgs if m["type"] == "doa"]


def gaps(seqs) -> int:
    return sum(b - a - 1 for a, b in pairwise(seqs))


_AUDIO: dict = {}


def scene_source(speed: float) -> ArraySource:
    """The two-talker room (rendered once per session), paced at ``speed`` times real time, looping."""
    prof = load_profile(PROFILE)
    if "audio" not in _AUDIO:
        src = sim_source("two-talkers", prof, speed=speed, loop=True)
        _AUDIO["audio"] = src.audio
        return src
    return ArraySource(_AUDIO["audio"], prof.sample_rate, range(prof.n_mics), speed=speed, loop=True,
                       description="simulated scene 'two-talkers'")


class _Errors(logging.Handler):
    """Collects ERROR records logged on the service's thread (asyncio's, websockets')."""

    def __init__(self, thread_name: str, sink: list):
        super().__init__(logging.WARNING)
        self.thread_name, self.sink = thread_name, sink

    def emit(self, record):
        if record.threadName == self.thread_name:
            self.sink.append(f"{record.name}: {record.getMessage()} {record.exc_info or ''}")


_SERVICES = count(1)


class InProcess:
    """Service + Engine on a background thread's asyncio loop, listening on ephemeral ports."""

    def __init__(self, *, token=None, origins=(), speed=1.0, method="srp-phat"):
        self.profile = load_profile(PROFILE)
        # A ring of 30 s of wall-clock time whatever the speed: a busy test machine that holds the engine
        # thread up for a few seconds must not make it skip (the tests check that clients never do).
        self.engine = Engine(scene_source(speed), self.profile, AnalysisConfig(method=method),
                             ring_seconds=30.0 * max(1.0, speed))
        self.service = Service(self.engine, self.profile, token=token, origins=origins)
        self.errors: list[str] = []
        self._name = f"doascope-test-service-{next(_SERVICES)}"
        self._handler = _Errors(self._name, self.errors)
        for name in ("asyncio", "websockets"):
            logging.getLogger(name).addHandler(self._handler)
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self.thread.start()
        # Deadlines for a busy machine (the first engine of a session compiles its kernels), not measurements.
        assert self._started.wait(60), "the service loop did not start"
        deadline = time.monotonic() + 120
        while self.engine.frames < 2 and time.monotonic() < deadline:
            assert not self.errors, self.errors
            time.sleep(0.02)
        assert self.engine.frames >= 2, f"the engine produced no frames ({self.engine.error})"
        # Ports the system picked (port 0) as the service bound them: no other process can have
        # taken them between a test's choice and the bind.
        self.port, self.tcp_port = self.service.listening["ws"], self.service.listening["tcp"]
        self.url = f"ws://{HOST}:{self.port}/"

    def _main(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            self.loop.set_exception_handler(lambda loop, ctx: self.errors.append(
                f"{ctx.get('message')} {ctx.get('exception')!r}"))
            self.stop_event = asyncio.Event()
            self._started.set()
            await self.service.run(host=HOST, port=0, tcp_port=0, odas=None,
                                   stop=self.stop_event, quiet=True)
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self.errors.append(f"service.run raised {exc!r}")

    def clients(self, kind=None) -> list[Client]:
        return [c for c in list(self.service.clients) if kind is None or c.kind == kind]

    def close(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(60)
        for name in ("asyncio", "websockets"):
            logging.getLogger(name).removeHandler(self._handler)
        assert not self.thread.is_alive(), "the service did not stop within 60 s"


@pytest.fixture
def start_service():
    started: list[InProcess] = []

    def start(**kw) -> InProcess:
        svc = InProcess(**kw)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.close()
    for svc in started:
        assert not svc.errors, f"the service logged errors: {svc.errors}"
        assert svc.engine.error is None


def enough(n, *, spectrum=False, after=lambda texts: True):
    """For ``until=``: at least ``n`` doa frames (with a spectrum, if asked) and ``after`` holds. A client
    collects until then or until its deadline, so what it got does not depend on the machine's speed."""
    def done(texts) -> bool:
        msgs = [json.loads(t) for t in texts]
        return (sum(m["type"] == "doa" and (not spectrum or "spectrum" in m) for m in msgs) >= n
                and after(texts))
    return done


async def ws_collect(url, seconds, *, send=(), max_messages=100_000, until=None, **kw) -> list[str]:
    """Messages a WebSocket client receives in ``seconds`` (sending ``send`` first); with ``until``, the
    messages up to the first where ``until(messages)`` holds, ``seconds`` being only a deadline then."""
    from websockets.asyncio.client import connect

    out: list[str] = []
    async with connect(url, open_timeout=30, close_timeout=2, **kw) as ws:
        for text in send:
            await ws.send(text)
        end = asyncio.get_running_loop().time() + seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(end):
                while len(out) < max_messages:
                    out.append(await ws.recv())
                    if until is not None and until(out):
                        break
    return out


async def tcp_collect(port, seconds, *, send=(), max_messages=100_000, until=None) -> list[str]:
    """As :func:`ws_collect`, over the TCP port."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 30)
    out: list[str] = []
    try:
        for text in send:
            writer.write(text.encode() + b"\n")
        await writer.drain()
        end = asyncio.get_running_loop().time() + seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(end):
                while len(out) < max_messages:
                    line = await reader.readline()
                    if not line:
                        break
                    out.append(line.decode())
                    if until is not None and until(out):
                        break
    finally:
        writer.close()
    return out


def run(coro, timeout=30.0):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def raw_ws(port: int, *, rcvbuf: int | None = None, path: str = "/") -> socket.socket:
    """A WebSocket connection by hand (a client that can stall or vanish without a close frame)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((HOST, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n") and len(head) < 4096:  # byte by byte: leave the frames unread
        b = s.recv(1)
        if not b:
            break
        head += b
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def ws_frame(text: str) -> bytes:
    """One masked text frame, as a client must send it."""
    payload, mask = text.encode(), os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                            bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                            bytes([0x80 | 127]) + struct.pack(">Q", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_tcp(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((HOST, port))
    return s


def reset(s: socket.socket) -> None:
    """Close with a RST (SO_LINGER 0), as a crashed or unplugged client does."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def read_lines(s: socket.socket, n: int, seconds: float = 5.0) -> list[bytes]:
    buf = b""
    deadline = time.monotonic() + seconds
    while buf.count(b"\n") < n and time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n")[:n]


# ---------------------------------------------------------------------------------------------
# pieces


def test_client_queue_drops_oldest_and_counts():
    c = Client("tcp", "peer", maxlen=4)
    for i in range(10):
        c.push(str(i))
    assert list(c.queue) == ["6", "7", "8", "9"] and c.dropped == 6


def test_wire_details():
    from doascope.app.net.server import parse_hostport
    from doascope.dsp.peaks import Peak

    # A refined peak just below 360 degrees must not round to 360 on the wire.
    assert Peak(359.997, 0.0, 0.5, 359).as_dict()["azimuth"] == 0.0
    assert parse_hostport("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_hostport("[::1]:9000") == ("::1", 9000)
    for bad in ("9000", "host:", "host:x", "host:70000"):
        with pytest.raises(ValueError):
            parse_hostport(bad)
    spec = protocol.encode_spectrum(np.linspace(-1, 3, 360, dtype=np.float32))
    assert protocol.decode_spectrum(spec).shape == (360,)


# ---------------------------------------------------------------------------------------------
# in-process service


def test_many_clients_get_meta_then_every_frame_in_order(start_service):
    svc = start_service()

    # Each client reads until it has 20 frames (10 with a spectrum if it subscribed): a deadline for a busy
    # machine, not a rate.
    def want(i):
        return enough(20, after=enough(10, spectrum=True)) if i < 2 else enough(20)

    async def main():
        ws = [ws_collect(svc.url, 90.0, send=[SUBSCRIBE] if i < 2 else [], until=want(i)) for i in range(30)]
        tcp = [tcp_collect(svc.tcp_port, 90.0, send=[SUBSCRIBE] if i < 2 else [], until=want(i)) for i in range(10)]
        return await asyncio.gather(*ws, *tcp)

    results = run(main(), timeout=180)
    assert len(results) == 40
    points = None
    for i, texts in enumerate(results):
        msgs = validate(texts)
        assert msgs[0]["type"] == "meta", msgs[0]
        assert msgs[0]["method"] == "srp-phat" and len(msgs[0]["mics"]) == 4
        points = msgs[0]["grid"]["points"]
        seqs = doa_seqs(msgs)
        assert len(seqs) >= 20, f"client {i} got only {len(seqs)} frames in 90 s"
        assert all(b > a for a, b in pairwise(seqs)), f"client {i}: seq not increasing"
        assert {m["type"] for m in msgs} <= {"meta", "doa", "ack"}
        subscribed = i < 2 or 30 <= i < 32
        with_spec = [m for m in msgs if m["type"] == "doa" and "spectrum" in m]
        if subscribed:
            assert any(m["type"] == "ack" and m.get("spectrum") is True for m in msgs)
            assert len(with_spec) >= 10
            for m in with_spec[:5]:
                s = protocol.decode_spectrum(m["spectrum"])
                assert s.shape == (points,) == (m["spectrum"]["points"],)
                assert m["spectrum"]["min"] - 1e-6 <= s.min() <= s.max() <= m["spectrum"]["max"] + 1e-6
        else:
            assert not with_spec
    assert svc.engine.overruns == 0


def test_stalled_clients_do_not_slow_the_others(start_service):
    svc = start_service(speed=4.0)  # 125 frames a second, so the stalled ones fill their buffers quickly
    # The stalled clients ask for the spectrum (bigger messages) and then never read again.
    tcp_stalled = raw_tcp(svc.tcp_port, rcvbuf=4096)
    tcp_stalled.sendall(SUBSCRIBE.encode() + b"\n")
    ws_stalled = raw_ws(svc.port, rcvbuf=4096)
    ws_stalled.sendall(ws_frame(SUBSCRIBE))
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            stalled = [c for c in svc.clients() if c.spectrum]
            if len(stalled) == 2 and all(c.dropped > 0 for c in stalled):
                break
            time.sleep(0.05)
        stalled = [c for c in svc.clients() if c.spectrum]
        assert len(stalled) == 2 and all(c.dropped > 0 for c in stalled), \
            [(c.kind, c.sent, c.dropped) for c in stalled]
        dropped0 = [c.dropped for c in stalled]

        async def main():
            from websockets.asyncio.client import connect

            stop = asyncio.Event()
            inboxes: list[list[str]] = [[] for _ in range(6)]
            newest = [-1] * 6  # newest doa seq each keeper has received

            def note(i, text):
                inboxes[i].append(text)
                msg = json.loads(text)
                if msg.get("type") == "doa":
                    newest[i] = msg["seq"]

            async def ws_keeper(i):
                async with connect(svc.url, open_timeout=30, close_timeout=2) as ws:
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            note(i, await asyncio.wait_for(ws.recv(), 0.2))

            async def tcp_keeper(i):
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, svc.tcp_port), 30)
                try:
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            line = await asyncio.wait_for(reader.readline(), 0.2)
                            if not line:
                                break
                            note(i, line.decode())
                finally:
                    writer.close()

            async def until(condition):
                while not condition():
                    await asyncio.sleep(0.02)

            async def marks():  # a window of 100 engine frames that every keeper was connected for
                await until(lambda: min(newest) >= 0)
                f0 = svc.engine.frames
                await until(lambda: svc.engine.frames >= f0 + 100)
                f1 = svc.engine.frames
                await until(lambda: min(newest) >= f1)
                stop.set()
                return f0, f1

            res = await asyncio.gather(*[ws_keeper(i) for i in range(4)], *[tcp_keeper(i) for i in range(4, 6)],
                                       marks())
            return inboxes, res[-1]

        results, (f0, f1) = run(main(), timeout=180)
        for texts in results:
            msgs = validate(texts)
            assert msgs[0]["type"] == "meta"
            seqs = doa_seqs(msgs)
            assert gaps(seqs) == 0, "a client that keeps up lost frames"
            assert sum(f0 <= s < f1 for s in seqs) == f1 - f0
        # (Engine overruns are not checked: on a busy machine the CPU, not a client, can hold the engine
        # up; a stalled client would show here as frames a keeper lost.)
        assert all(c.dropped > d for c, d in zip(stalled, dropped0)), "the stalled clients stopped dropping"
    finally:
        reset(tcp_stalled)
        reset(ws_stalled)


def test_abrupt_disconnects_leave_the_service_healthy(start_service):
    svc = start_service()

    async def vanish():
        from websockets.asyncio.client import connect

        conns = [await connect(svc.url, open_timeout=30) for _ in range(5)]
        for ws in conns:
            await asyncio.wait_for(ws.recv(), 30)
            await asyncio.wait_for(ws.recv(), 30)
        for ws in conns:  # drop the TCP connection without a closing handshake
            ws.transport.abort()
        readers = [await asyncio.open_connection(HOST, svc.tcp_port) for _ in range(3)]
        for r, _ in readers:
            await asyncio.wait_for(r.readline(), 30)
        for _, w in readers:
            w.transport.abort()

    run(vanish(), timeout=120)
    socks = [raw_tcp(svc.tcp_port) for _ in range(3)] + [raw_ws(svc.port) for _ in range(3)]
    for s in socks:
        assert s.recv(100)  # mid-stream ...
    for s in socks:
        reset(s)  # ... then a RST
    half = raw_tcp(svc.tcp_port)
    half.sendall(b'{"type": "pi')  # half a line, then gone
    reset(half)
    deadline = time.monotonic() + 60
    while svc.clients() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not svc.clients(), [(c.kind, c.peer) for c in svc.clients()]
    msgs = validate(run(ws_collect(svc.url, 60.0, until=enough(10)), timeout=90))
    assert msgs[0]["type"] == "meta" and len(doa_seqs(msgs)) >= 10
    tcp = validate(run(tcp_collect(svc.tcp_port, 60.0, until=enough(1)), timeout=90))
    assert tcp[0]["type"] == "meta" and doa_seqs(tcp)
    assert svc.engine.running and svc.engine.overruns == 0


def test_control_messages(start_service):
    svc = start_service()

    async def main():
        from websockets.asyncio.client import connect

        async with connect(svc.url, open_timeout=30) as a, connect(svc.url, open_timeout=30) as b:
            got_a: list[str] = []
            got_b: list[str] = []

            async def until(ws, got, pred, seconds=60.0):  # a deadline for a busy machine
                async with asyncio.timeout(seconds):
                    while True:
                        text = await ws.recv()
                        got.append(text)
                        if pred(json.loads(text)):
                            return json.loads(text)

            await until(a, got_a, lambda m: m["type"] == "doa")
            await a.send(json.dumps({"type": "control", "set": {"method": "music", "sources": 2}}))
            ack = await until(a, got_a, lambda m: m["type"] in ("ack", "error"))
            assert ack["type"] == "ack" and ack["set"] == {"method": "music", "sources": 2}, ack
            # Everyone gets a fresh meta, then frames of the new method.
            meta_b = await until(b, got_b, lambda m: m["type"] == "meta" and m["method"] == "music")
            assert meta_b["sources"] == 2
            await until(a, got_a, lambda m: m["type"] == "doa" and m["method"] == "music")
            assert any(json.loads(t)["type"] == "meta" and json.loads(t)["method"] == "music" for t in got_a)
            await until(b, got_b, lambda m: m["type"] == "doa" and m["method"] == "music")
            frames = svc.engine.frames
            bad = [{"type": "control", "set": {"method": "nope"}},
                   {"type": "control", "set": {"band": [5000, 100]}},
                   {"type": "control", "set": {"sources": 0}},
                   {"type": "control", "set": {"sources": True}},
                   {"type": "control", "set": {"smoothing": 1.5}},
                   {"type": "control", "set": {"band": [100, "x"]}},
                   {"type": "control", "set": {"nfft": 1024}},
                   {"type": "control", "set": {"colour": "red"}},
                   {"type": "control", "set": {}},
                   {"type": "control"},
                   {"type": "launch"},
                   {"set": {"method": "music"}}]
            for msg in bad:
                await a.send(json.dumps(msg))
                err = await until(a, got_a, lambda m: m["type"] in ("ack", "error"))
                assert err["type"] == "error" and err["error"], (msg, err)
            for text in ('{"type": "control", "set": {"smoothing": NaN}}', "not json", "[1, 2]", '"control"'):
                await a.send(text)
                err = await until(a, got_a, lambda m: m["type"] in ("ack", "error"))
                assert err["type"] == "error", (text, err)
            await a.send(b"\x00\x01binary")
            assert (await until(a, got_a, lambda m: m["type"] in ("ack", "error")))["type"] == "error"
            await a.send('{"type": "ping"}')
            assert (await until(a, got_a, lambda m: m["type"] in ("pong", "error")))["type"] == "pong"
            # Still running, still music, for both.
            await until(a, got_a, lambda m: m["type"] == "doa" and m["seq"] > frames + 5)
            await until(b, got_b, lambda m: m["type"] == "doa" and m["seq"] > frames + 5)
            return got_a, got_b

    got_a, got_b = run(main(), timeout=240)
    for texts in (got_a, got_b):
        msgs = validate(texts)
        late = [m for m in msgs if m["type"] == "doa"][-3:]
        assert all(m["method"] == "music" for m in late)
    assert svc.engine.config.method == "music" and svc.engine.config.n_sources == 2
    # TCP clients may send the same messages, one a line.
    def replied_then_srp(texts) -> bool:  # the three replies, then a frame of the method set
        msgs = [json.loads(t) for t in texts]
        return (sum(m["type"] in ("ack", "error") for m in msgs) >= 3
                and msgs[-1]["type"] == "doa" and msgs[-1]["method"] == "srp-phat")

    lines = run(tcp_collect(svc.tcp_port, 60.0, send=['{"type": "control", "set": {"method": "srp-phat"}}',
                                                      '{"type": "control", "set": {"sources": 99}}', "garbage"],
                            until=replied_then_srp), timeout=90)
    msgs = validate(lines)
    assert [m["type"] for m in msgs if m["type"] in ("ack", "error")] == ["ack", "error", "error"]
    assert msgs[-1]["type"] == "doa" and msgs[-1]["method"] == "srp-phat"
    assert svc.engine.running and svc.engine.overruns == 0


def test_token_and_origin(start_service, capsys):
    from websockets.exceptions import InvalidStatus

    from doascope.app.cli.main import main

    svc = start_service(token="s3cret", origins=("https://app.example",))

    def status(**kw) -> int:
        with pytest.raises(InvalidStatus) as info:
            run(ws_collect(kw.pop("url", svc.url), 0.3, **kw))
        return info.value.response.status_code

    assert status() == 401
    assert status(url=svc.url + "?token=wrong") == 401
    assert status(additional_headers={"Authorization": "Bearer wrong"}) == 401
    assert status(url=svc.url + "?token=s3cret", origin="http://evil.example") == 403
    for kw in ({"url": svc.url + "?token=s3cret"},
               {"additional_headers": {"Authorization": "Bearer s3cret"}},
               {"url": svc.url + "?token=s3cret", "origin": "http://localhost:3000"},
               {"url": svc.url + "?token=s3cret", "origin": "https://app.example"}):
        msgs = validate(run(ws_collect(kw.pop("url", svc.url), 0.5, **kw)))
        assert msgs[0]["type"] == "meta" and doa_seqs(msgs), kw
    msgs = validate(run(tcp_collect(svc.tcp_port, 0.5, send=['{"token": "s3cret"}'])))
    assert msgs[0]["type"] == "meta" and doa_seqs(msgs)
    for first in ('{"token": "wrong"}', '{"token": 5}', '["s3cret"]', "s3cret", '{"type": "ping"}'):
        lines = run(tcp_collect(svc.tcp_port, 3.0, send=[first]))
        assert len(lines) == 1, (first, lines)  # one error line, then the server hangs up
        assert validate(lines)[0]["type"] == "error"
    assert not svc.clients()
    # The reference client presents the token both ways, and says when it is turned away.
    capsys.readouterr()
    assert main(["listen", svc.url, "--token", "s3cret", "--count", "2"]) == 0
    assert main(["listen", "--tcp", f"{HOST}:{svc.tcp_port}", "--token", "s3cret", "--count", "2"]) == 0
    assert capsys.readouterr().out.count("t=") == 4
    assert main(["listen", svc.url, "--count", "2"]) == 2
    assert "HTTP 401" in capsys.readouterr().err
    assert main(["listen", "--tcp", f"{HOST}:{svc.tcp_port}", "--token", "wrong", "--count", "2"]) == 2
    captured = capsys.readouterr()
    assert '"error"' in captured.out and "closed the stream after 0 of 2" in captured.err


def test_origin_check_without_token(start_service):
    from websockets.exceptions import InvalidStatus

    svc = start_service()
    with pytest.raises(InvalidStatus) as info:
        run(ws_collect(svc.url, 0.3, origin="http://evil.example"))
    assert info.value.response.status_code == 403
    msgs = validate(run(ws_collect(svc.url, 0.3, origin="http://localhost:3000")))
    assert msgs[0]["type"] == "meta"


def test_remote_host_needs_allow_remote_and_token(capsys):
    from doascope.app.cli.main import main

    base = ["serve", "--profile", PROFILE, "--sim", "two-talkers", "--port", "0", "--tcp-port", "0"]
    for extra, needle in ((["--host", "0.0.0.0"], "--allow-remote"),
                          (["--host", "192.168.1.10", "--token", "x"], "--allow-remote"),
                          (["--host", "0.0.0.0", "--allow-remote"], "--token"),
                          (["--allow-remote"], "--token")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("doascope: error:") and needle in err, err
    for host in ("127.0.0.1", "127.0.0.53", "::1", "localhost"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "", "::", "192.168.1.10", "example.com", "localhost.evil.example"):
        assert not is_loopback(host)
    out = subprocess.run([sys.executable, "-m", "doascope.app.cli.main", *base, "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--allow-remote" in out.stderr, out.stderr


# ---------------------------------------------------------------------------------------------
# `doascope serve` as a process


class Served:
    def __init__(self, tmp: Path):
        self.odas = free_port_pair()
        self.stderr_path = tmp / "serve.stderr"
        self._err = open(self.stderr_path, "w")  # noqa: SIM115 - open while the server runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "doascope.app.cli.main", "serve", "--profile", PROFILE, "--sim", "two-talkers", "--loop",
             "--port", "0", "--tcp-port", "0", "--odas", f"{HOST}:{self.odas}"],
            stdout=subprocess.DEVNULL, stderr=self._err)
        deadline = time.monotonic() + 180  # a process that imports numba and renders a scene, on a busy machine
        while "serving" not in self.stderr() and time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr()
            time.sleep(0.05)
        assert "serving" in self.stderr(), self.stderr()
        self.port, self.tcp_port = serving_ports(self.stderr())
        self.url = f"ws://{HOST}:{self.port}/"

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._err.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("serve"))
    yield s
    s.close()


def test_listen_command(served, capsys):
    from doascope.app.cli.main import main

    cmd = [sys.executable, "-m", "doascope.app.cli.main", "listen"]
    procs = [subprocess.Popen(cmd + [served.url, "--count", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True),
             subprocess.Popen(cmd + ["--tcp", f"{HOST}:{served.tcp_port}", "--count", "3"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=180))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("meta: ") and "respeaker_usb_v2" in lines[0], out
        assert len([ln for ln in lines if ln.startswith("t=")]) == 3, out
    capsys.readouterr()
    assert main(["listen", served.url, "--count", "3", "--json", "--spectrum"]) == 0
    msgs = validate(capsys.readouterr().out.splitlines())
    assert len(doa_seqs(msgs)) == 3
    acked = [i for i, m in enumerate(msgs) if m["type"] == "ack"]
    assert acked and all("spectrum" in m for m in msgs[acked[0]:] if m["type"] == "doa")


def test_hostile_input_does_not_hurt_the_service(served):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosedError

    hostile_done = asyncio.Event()  # the watchers read all through the hostile part, and 45 frames at least
    watched = enough(45, after=lambda texts: hostile_done.is_set())

    async def main():
        watcher = asyncio.ensure_future(ws_collect(served.url, 120.0, until=watched))
        tcp_watcher = asyncio.ensure_future(tcp_collect(served.tcp_port, 120.0, until=watched))
        await asyncio.sleep(0.3)
        async with connect(served.url, open_timeout=30) as ws:
            replies = []
            for text in ("garbage text", "{invalid json", '{"type": 5}', '{"type": "control", "set": [1]}',
                         '{"type": "subscribe", "spectrum": "yes"}', "[" * 10000 + "]" * 10000, "é"):
                await ws.send(text)
                async with asyncio.timeout(30):  # deadlines for a busy machine, here and below
                    while (msg := json.loads(await ws.recv()))["type"] not in ("error", "ack"):
                        pass
                replies.append(msg)
            assert all(m["type"] == "error" for m in replies), replies
            async with asyncio.timeout(30):  # still served
                while json.loads(await ws.recv())["type"] != "doa":
                    pass
        async with connect(served.url, open_timeout=30) as ws:
            await ws.send("x" * 100_000)
            with pytest.raises(ConnectionClosedError):
                async with asyncio.timeout(30):
                    while True:
                        await ws.recv()
            assert ws.close_code == 1009
        # TCP: garbage lines get errors; a 100 kB line gets an error and the door.
        reader, writer = await asyncio.open_connection(HOST, served.tcp_port)
        writer.write(b"garbage\n\xff\xfe\x00 not utf-8\n{\"type\": []}\n")
        errors = []
        async with asyncio.timeout(30):
            while len(errors) < 3:
                msg = json.loads(await reader.readline())
                if msg["type"] == "error":
                    errors.append(msg)
        writer.write(b"y" * 100_000 + b"\n")
        said, ending = [], None
        try:
            async with asyncio.timeout(30):
                await writer.drain()
                while line := await reader.readline():
                    said.append(json.loads(line)["type"])
            ending = "closed"
        except ConnectionError:  # it hung up with our bytes unread: a reset
            ending = "reset"
        writer.transport.abort()
        assert ending in ("closed", "reset") and set(said) <= {"doa", "error"}, (ending, said)
        hostile_done.set()
        return await watcher, await tcp_watcher

    for texts in run(main(), timeout=240):
        msgs = validate(texts)
        seqs = doa_seqs(msgs)
        assert msgs[0]["type"] == "meta" and len(seqs) >= 45 and gaps(seqs) == 0, (len(seqs), gaps(seqs))
    # RSTs, a stalled and a half-open client, against the process too.
    for s in [raw_tcp(served.tcp_port), raw_ws(served.port), raw_tcp(served.tcp_port)]:
        s.recv(10)
        reset(s)
    assert served.proc.poll() is None
    msgs = validate(run(ws_collect(served.url, 60.0, until=enough(1)), timeout=90))
    assert msgs[0]["type"] == "meta" and doa_seqs(msgs)
    assert "Traceback" not in served.stderr() and "exception" not in served.stderr().lower(), served.stderr()


def test_odas_consumers_come_later(served):
    """The service started with --odas pointing at nobody; ODAS consumers appear, and get SST/SSL."""
    assert served.proc.poll() is None  # it kept running without them
    listeners = []
    for port in (served.odas, served.odas + 1):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen()
        s.settimeout(60)  # the service retries every 2 s (a deadline for a busy machine)
        listeners.append(s)
    conns = []
    try:
        for s in listeners:
            conn, _ = s.accept()
            conns.append(conn)
        sst, ssl = (read_lines(c, 10, 60.0) for c in conns)
        for lines, keys in ((sst, {"id", "tag", "x", "y", "z", "activity"}), (ssl, {"x", "y", "z", "E"})):
            assert len(lines) == 10
            stamps = []
            for line in lines:
                msg = json.loads(line)
                assert isinstance(msg, dict) and isinstance(msg["timeStamp"], int)
                stamps.append(msg["timeStamp"])
                assert len(msg["src"]) == protocol.ODAS_SLOTS == 4
                for item in msg["src"]:
                    assert set(item) == keys, item
                    assert all(abs(item[k]) <= 1.001 for k in ("x", "y", "z"))
            assert all(b > a for a, b in pairwise(stamps))
        assert any(item["id"] > 0 and item["activity"] > 0 for line in sst for item in json.loads(line)["src"]), sst
    finally:
        for c in conns:
            reset(c)
        for s in listeners:
            s.close()
    time.sleep(0.3)
    assert served.proc.poll() is None
    msgs = validate(run(tcp_collect(served.tcp_port, 60.0, until=enough(1)), timeout=90))
    assert msgs[0]["type"] == "meta" and doa_seqs(msgs)


def test_sigterm_stops_promptly_and_closes_clients(served):
    """Last: it ends the module's server."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def main():
        ws = await connect(served.url, open_timeout=30)
        reader, writer = await asyncio.open_connection(HOST, served.tcp_port)
        # Ones that never read do not hold it up.
        stalled = [raw_tcp(served.tcp_port, rcvbuf=4096), raw_ws(served.port, rcvbuf=4096)]
        await ws.recv()
        await reader.readline()
        served.proc.send_signal(signal.SIGTERM)
        # Deadlines for a busy machine, not measurements: a service that waited for the stalled
        # clients would never close these.
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(60):
                while True:
                    await ws.recv()
        async with asyncio.timeout(60):
            while await reader.readline():
                pass
        writer.close()
        for s in stalled:
            s.close()

    run(main(), timeout=120)
    rc = served.proc.wait(60)
    assert rc == 0, served.stderr()
    err = served.stderr()
    assert "stopped after" in err and "Traceback" not in err, err
