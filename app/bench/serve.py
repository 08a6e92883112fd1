"""``bench --serve``: the service with 0, 10 and 100 WebSocket clients: frames delivered and lost, and
the server's CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from doascope.app.bench.common import console, new_table
from doascope.hardware_profiles import load_profile


def serve_bench(quick: bool, out: dict, *, speed: float = 1.0, counts=(0, 10, 100)) -> None:
    """`doascope serve` with 0, 10 and 100 WebSocket clients that keep up: frames delivered, frames
    lost, and the server's CPU. The service (engine included) runs in this process, so its CPU is
    this process's CPU time; the clients run in one separate asyncio process and are not counted."""
    from doascope.app.runtime.engine import AnalysisConfig, Engine
    from doascope.app.net.server import Service, ServiceThread
    from doascope.app.runtime.sources import sim_source

    con = console()
    seconds = 2.0 if quick else 5.0
    prof = load_profile("respeaker_usb_v2")
    engine = Engine(sim_source("two-talkers", prof, speed=speed, loop=True), prof, AnalysisConfig(method="srp-phat"),
                    ring_seconds=4.0 * max(1.0, speed))
    service = Service(engine, prof)
    serving = ServiceThread(service, name="doascope-bench-serve")
    serving.start(frames=30, timeout=30)  # warm: ~1 s of frames
    port = serving.port
    rows = []
    try:
        for n in counts:
            proc = None
            if n:
                proc = subprocess.Popen([sys.executable, "-m", "doascope.app.bench.serve_clients", f"ws://127.0.0.1:{port}/", str(n),
                                         str(seconds)], stdout=subprocess.PIPE, text=True)
                if proc.stdout.readline().strip() != "ready":
                    proc.kill()
                    raise RuntimeError(f"the {n} benchmark clients did not connect")
            c0, t0, f0, e0 = time.process_time(), time.perf_counter(), engine.frames, engine.cpu_seconds
            m0 = sum(c.sent for c in list(service.clients))
            time.sleep(seconds)
            c1, t1, f1, e1 = time.process_time(), time.perf_counter(), engine.frames, engine.cpu_seconds
            m1 = sum(c.sent for c in list(service.clients))
            got = {"counts": [], "lost": []}
            if proc is not None:
                got = json.loads(proc.stdout.readline())
                proc.wait(60)
            wall = t1 - t0
            fps = np.array(got["counts"], float) / seconds
            rows.append({"clients": n, "seconds": wall, "engine_fps": (f1 - f0) / wall,
                         "client_fps_min": float(fps.min()) if n else None,
                         "client_fps_median": float(np.median(fps)) if n else None,
                         "frames_lost": int(sum(got["lost"])), "messages_per_s": (m1 - m0) / wall,
                         "cpu_per_s": (c1 - c0) / wall,
                         "rtf": (e1 - e0) / max((f1 - f0) * engine.step / engine.fs, 1e-9),
                         "overruns": engine.overruns})
    finally:
        serving.stop(15)
    base = rows[0]["cpu_per_s"] if rows and rows[0]["clients"] == 0 else None
    table = new_table(f"Service: simulated two-talker room at {speed:g}x real time, WebSocket clients that keep up "
                   f"(one separate process), {seconds:g} s each; CPU = this process (engine + service) CPU "
                   "seconds per second, in % of one core",
                   ["clients", "engine frames/s", "per client min", "per client median", "frames lost",
                    "messages/s", "server CPU", "extra vs 0 (core)", "extra vs 0 (relative)", "engine RTF"])
    for r in rows:
        extra = r["cpu_per_s"] - base if base is not None else None
        r["extra_cpu_per_s"] = extra
        r["extra_ratio"] = extra / base if base else None
        table.add_row(str(r["clients"]), f"{r['engine_fps']:.1f}",
                      "-" if r["client_fps_min"] is None else f"{r['client_fps_min']:.1f}",
                      "-" if r["client_fps_median"] is None else f"{r['client_fps_median']:.1f}",
                      str(r["frames_lost"]), f"{r['messages_per_s']:.0f}", f"{r['cpu_per_s'] * 100:.1f}%",
                      "-" if not r["clients"] or extra is None else f"{extra * 100:+.1f}%",
                      "-" if not r["clients"] or not base else f"{r['extra_ratio'] * 100:+.0f}%",
                      f"{r['rtf']:.4f}")
    con.print(table)
    hundred = [r for r in rows if r["clients"] == 100]
    if hundred and hundred[0]["extra_cpu_per_s"] is not None and base:
        e, rel = hundred[0]["extra_cpu_per_s"], hundred[0]["extra_ratio"]
        con.print(f"100 clients cost {e * 100:.1f}% of a core more than 0 clients ({rel:+.0%} of the 0-client "
                  f"process's {base * 100:.1f}%, which is mostly the engine); target under 20%: "
                  f"{'met' if e < 0.2 else 'NOT met'} as a share of a core, {'met' if rel < 0.2 else 'not met'} "
                  f"relative to the 0-client CPU; {hundred[0]['frames_lost']} frames lost, overruns {engine.overruns}")
    out["serve"] = {"speed": speed, "seconds": seconds, "profile": prof.id, "method": "srp-phat",
                    "frame_rate": engine.fs / engine.step, "rows": rows, "target_extra_cpu_100": 0.2}
