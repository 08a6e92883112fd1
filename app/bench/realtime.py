"""The live engine paced at real time: CPU per audio second (RTF) and capture-to-frame latency per
array and method, then a long replay at 10x for overruns and memory growth."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from doascope.app.bench.common import Pace, console, new_table
from doascope.app.bench.kernels import OURS
from doascope.hardware_profiles import load_profile


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def realtime(quick: bool, out: dict) -> None:
    """The live engine at real-time pace: CPU per audio second (RTF) and capture-to-frame latency."""
    from doascope.app.runtime.engine import AnalysisConfig, Engine
    from doascope.app.runtime.sources import sim_source

    con = console()
    seconds = 3.0 if quick else 8.0
    table = new_table(f"Live engine, simulated two-talker room paced at real time for {seconds:g} s "
                   "(RTF = analysis CPU time / audio time; latency = last sample of the window captured -> "
                   "frame published)",
                   ["array", "method", "grid", "frames/s", "RTF", "RTF warm", "latency p50 (ms)",
                    "latency p99 (ms)", "hop (ms)"])
    cases = [("respeaker_usb_v2", m, "auto") for m in OURS] + [("minidsp_uma16", "srp-phat", "sphere")]
    pace = Pace(f"live engine, {seconds:g} s of audio at real time per case, then a 10x soak", len(cases))
    for pid, method, grid in cases:
        prof = load_profile(pid)
        cfg = AnalysisConfig(method=method, grid=grid, n_sources=2)
        rows = {}
        for speed in (1.0, 0.0):  # real time, then as fast as possible (warm caches: the CPU floor)
            src = sim_source("two-talkers", prof, speed=speed, loop=speed > 0)
            eng = Engine(src, prof, cfg)
            eng.start()
            if speed > 0:
                time.sleep(seconds)
                eng.stop()
            else:
                eng.wait(120)
            audio = eng.frames * eng.step / eng.fs
            rows[speed] = (eng.cpu_seconds / max(audio, 1e-9), np.array(eng.latencies), eng.frames / max(audio, 1e-9),
                           eng)
        rtf, lat, fps, eng = rows[1.0]
        p50, p99 = np.percentile(lat, [50, 99]) * 1e3
        label = f"{pid} ({prof.n_mics} mics, {prof.sample_rate // 1000} kHz)"
        table.add_row(label, method, eng.localizer.estimator.grid.kind + f" ({len(eng.localizer.estimator.grid)})",
                      f"{fps:.0f}", f"{rtf:.4f}", f"{rows[0.0][0]:.4f}", f"{p50:.1f}", f"{p99:.1f}",
                      f"{eng.hop / eng.fs * 1e3:.0f}")
        out.setdefault("live", []).append({"profile": pid, "method": method, "grid": grid, "rtf": rtf,
                                            "rtf_warm": rows[0.0][0], "latency_p50_ms": p50,
                                            "latency_p99_ms": p99, "hop_ms": eng.hop / eng.fs * 1e3})
        pace.step()
    con.print(table)

    # A long replay at 10x: no overruns, flat memory.
    minutes = 1.0 if quick else 10.0
    print(f"bench: a {minutes * 60 / 10:.0f} s replay of {minutes:g} minutes of audio at 10x...", file=sys.stderr,
          flush=True)
    prof = load_profile("respeaker_usb_v2")
    src = sim_source("two-talkers", prof, speed=10.0, loop=True)
    eng = Engine(src, prof, AnalysisConfig(method="srp-phat"))
    eng.start()
    rss = []
    t_end = time.monotonic() + minutes * 60 / 10
    while time.monotonic() < t_end and eng.running:
        time.sleep(1.0)
        rss.append(_rss_mb())
    eng.stop()
    half = len(rss) // 2
    growth = max(rss[half:]) - rss[half] if rss else 0.0
    con.print(f"[bold]{minutes:g}-minute replay at 10x[/]: {eng.frames} frames, overruns {eng.overruns}, "
              f"RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB (growth over the second half {growth:+.1f} MB)")
    out["soak"] = {"minutes": minutes, "frames": eng.frames, "overruns": eng.overruns, "rss_mb": rss}
