"""`doascope bench --soak MINUTES`: the whole service for MINUTES of wall-clock time, replaying a
simulated room at 10x real time with clients attached, reporting what a long run would show first:
memory growth, engine overruns, and frames lost by clients that keep up.

The service (engine included) runs in this process, as `doascope serve` would; the clients (WebSocket
and TCP ones that read everything, and one TCP client that asks for the spectrum and never reads) run in a separate
process so that their work does not count as the service's. The loop is bounded by MINUTES.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

SPEED = 10.0

_CLIENTS = r"""
import asyncio, json, socket, sys
from websockets.asyncio.client import connect

async def main(port, tcp_port, n_ws, n_tcp):
    stop = asyncio.Event()
    seqs = [[] for _ in range(n_ws + n_tcp)]

    def note(i, text):
        msg = json.loads(text)
        if msg.get("type") == "doa":
            seqs[i].append(msg["seq"])

    async def ws(i):
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=60, close_timeout=2) as c:
            while not stop.is_set():
                try:
                    note(i, await asyncio.wait_for(c.recv(), 0.5))
                except TimeoutError:
                    pass

    async def tcp(i):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", tcp_port), 60)
        while not stop.is_set():
            try:
                line = await asyncio.wait_for(reader.readline(), 0.5)
            except TimeoutError:
                continue
            if not line:
                break
            note(i, line.decode())
        writer.close()

    stalled = socket.socket()  # asks for the spectrum (big messages), then never reads
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", tcp_port))
    stalled.sendall(b'{"type": "subscribe", "spectrum": true}\n')
    tasks = [asyncio.ensure_future(ws(i)) for i in range(n_ws)]
    tasks += [asyncio.ensure_future(tcp(n_ws + i)) for i in range(n_tcp)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the soak's end
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    stalled.close()
    print(json.dumps({"received": [len(s) for s in seqs],
                      "lost": [sum(b - a - 1 for a, b in zip(s, s[1:])) for s in seqs],
                      "first": [s[0] if s else None for s in seqs], "last": [s[-1] if s else None for s in seqs]}),
          flush=True)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak_bench(minutes: float, out: dict, *, ws_clients: int = 8, tcp_clients: int = 2,
               profile: str = "respeaker_usb_v2", quiet: bool = False) -> dict:
    """Serve a simulated room replayed at 10x for ``minutes`` of wall-clock time with clients
    attached; returns (and stores in ``out["soak"]``) memory, overruns and frame loss."""
    import numpy as np

    from doascope import ParameterError
    from doascope.app.runtime.engine import AnalysisConfig, Engine
    from doascope.app.net.server import Service, ServiceThread
    from doascope.app.runtime.sources import sim_source
    from doascope.hardware_profiles import load_profile

    if not (minutes > 0 and np.isfinite(minutes)):
        raise ParameterError(f"--soak takes a positive number of minutes, got {minutes:g}")
    prof = load_profile(profile)
    engine = Engine(sim_source("two-talkers", prof, speed=SPEED, loop=True), prof, AnalysisConfig(method="srp-phat"),
                    ring_seconds=4.0 * SPEED)
    service = Service(engine, prof)
    serving = ServiceThread(service, port=0, tcp_port=0, name="doascope-soak-serve")
    serving.start(timeout=120)
    port, tcp_port = serving.port, serving.tcp_port
    clients = subprocess.Popen([sys.executable, "-c", _CLIENTS, str(port), str(tcp_port), str(ws_clients),
                                str(tcp_clients)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rss: list[float] = []
    try:
        if clients.stdout.readline().strip() != "ready":
            raise RuntimeError("the soak's clients did not connect")
        f0, o0 = engine.frames, engine.overruns
        t_end = time.monotonic() + minutes * 60.0
        while time.monotonic() < t_end and engine.running and serving.error is None:
            time.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
            rss.append(_rss_mb())
        frames, overruns = engine.frames - f0, engine.overruns - o0
        dropped = sum(c.dropped for c in list(service.clients))  # before the clients hang up
        clients.stdin.write("\n")
        clients.stdin.flush()
        got = json.loads(clients.stdout.readline() or "{}")
        clients.wait(60)
    finally:
        if clients.poll() is None:
            clients.kill()
        serving.stop()
    if serving.error is not None or engine.error:
        raise RuntimeError(f"the service failed during the soak: {serving.error or engine.error}")
    half = len(rss) // 2
    result = {"minutes": minutes, "speed": SPEED, "audio_minutes": frames * engine.step / engine.fs / 60.0,
              "frames": frames, "overruns": overruns, "ws_clients": ws_clients, "tcp_clients": tcp_clients,
              "frames_lost_by_keepers": int(sum(got.get("lost", []))),
              "frames_received_min": int(min(got.get("received", [0]))),
              "dropped_for_slow_clients": int(dropped),
              "rss_mb_start": rss[0] if rss else _rss_mb(), "rss_mb_end": rss[-1] if rss else _rss_mb(),
              "rss_growth_second_half_mb": (max(rss[half:]) - rss[half]) if len(rss) > 1 else 0.0}
    out["soak"] = result
    if not quiet:
        from rich.console import Console

        Console().print(
            f"[bold]Soak[/]: {minutes:g} min at {SPEED:g}x ({result['audio_minutes']:.1f} min of audio), "
            f"{ws_clients} WebSocket + {tcp_clients} TCP clients reading and 1 stalled: {frames} frames, overruns "
            f"{overruns}, frames lost by the readers {result['frames_lost_by_keepers']}, dropped for the stalled "
            f"one {dropped}; RSS {result['rss_mb_start']:.0f} -> {result['rss_mb_end']:.0f} MB (growth over the "
            f"second half {result['rss_growth_second_half_mb']:+.1f} MB)")
    return result
