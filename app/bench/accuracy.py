"""Accuracy on simulated reverberant rooms, ours and pyroomacoustics' methods on the very same blocks."""

from __future__ import annotations

import time

import numpy as np

from doascope.app.bench.common import BAND, FRAMES, FS, HOP, NFFT, Pace, console, new_table
from doascope.app.bench.kernels import OURS, PRA, _pra_doa
from doascope.dsp import Localizer, circle_grid, make_estimator, stft
from doascope.dsp.metrics import azimuth_errors
from doascope.hardware_profiles import load_profile

SMOOTHING = (0.0, 0.5, 0.8)
RT60_BINS = ((0.2, 0.45), (0.45, 0.7), (0.7, 0.9))
_LIB = {"doascope": "doascope", "pyroomacoustics": "pra"}


def accuracy(quick: bool, n_scenes: int | None, out: dict, profile: str = "respeaker_usb_v2") -> None:
    from doascope.sim.scenes import random_scene

    con = console()
    n_scenes = n_scenes or (3 if quick else 30)
    pos = load_profile(profile).positions
    grid = circle_grid(1.0)
    block_s = FRAMES * HOP / FS
    scores: dict[tuple, list[float]] = {}
    t_start = time.perf_counter()
    pace = Pace(f"accuracy, simulated rooms ({n_scenes} per source count)", 3 * n_scenes)
    for n_src in (1, 2, 3):
        pra_doas = {name: _pra_doa(name, pos, n_src) for name in PRA.values()}
        for i in range(n_scenes):
            rng = np.random.default_rng(1000 * n_src + i)
            scene = random_scene(pos, FS, rng, n_sources=n_src)
            truth = np.array([s.azimuth for s in scene.sources])
            X = stft(scene.audio, nfft=NFFT, hop=HOP)
            blocks = X.shape[2] // FRAMES
            starts = [b * FRAMES * HOP for b in range(blocks)]
            stop = (FRAMES - 1) * HOP + NFFT
            live = [bool(np.all(scene.active(s, s + stop))) for s in starts]

            rt_bin = RT60_BINS[int(np.searchsorted([b[1] for b in RT60_BINS], scene.rt60))]

            def score(key, estimates):
                for b, est in enumerate(estimates):
                    if live[b]:
                        err = azimuth_errors(est, truth)
                        val = float(err[0] <= 10) if n_src == 1 else float(np.mean(err <= 15))
                        scores.setdefault((n_src,) + key, []).append(val)
                        scores.setdefault((n_src, rt_bin) + key, []).append(val)

            for m in OURS:
                est = make_estimator(m, pos, fs=FS, nfft=NFFT, grid=grid, band=BAND, n_sources=n_src)
                for a in SMOOTHING:
                    loc = Localizer(est, hop=HOP, n_sources=n_src, frames_per_block=FRAMES, smoothing=a)
                    score(("doascope", m, a), [[p.azimuth for p in r.peaks] for r in loc.locate(scene.audio, FS)])
            for name, doa in pra_doas.items():
                ests = []
                for b in range(blocks):
                    doa.locate_sources(X[:, :, b * FRAMES:(b + 1) * FRAMES], num_src=n_src, freq_range=list(BAND))
                    ests.append(np.degrees(doa.azimuth_recon))
                score(("pyroomacoustics", name, 0.0), ests)
            pace.step()
    elapsed = time.perf_counter() - t_start
    table = new_table(f"Accuracy on simulated reverberant rooms ({profile}, RT60 0.2-0.9 s, SNR 0-25 dB, speech and "
                   f"noise; {n_scenes} scenes per source count; blocks where every source is active)",
                   ["method", "smoothing", "latency (ms)", "1 src: <=10 deg", "2 src: recall@15", "3 src: recall@15"])
    keys = sorted({k[1:] for k in scores if len(k) == 4}, key=lambda k: (k[0] != "doascope", k[1], k[2]))
    for lib, m, a in keys:
        cells = []
        for n_src in (1, 2, 3):
            v = scores.get((n_src, lib, m, a), [])
            cells.append(f"{np.mean(v):.1%}" if v else "-")
            out.setdefault("accuracy", []).append({"library": lib, "method": m, "smoothing": a, "sources": n_src,
                                                   "score": float(np.mean(v)) if v else None, "blocks": len(v)})
        # An exponential average's group delay is a/(1-a) blocks.
        latency = a / (1 - a) * block_s * 1e3
        table.add_row(f"{_LIB[lib]} {m}", f"{a:g}", f"{latency:.0f}", *cells)
    con.print(table)
    table = new_table("Single source, <=10 deg, by RT60 (which method wins where)",
                   ["method", "smoothing"] + [f"RT60 {lo:g}-{hi:g} s" for lo, hi in RT60_BINS])
    for lib, m, a in keys:
        cells = []
        for rb in RT60_BINS:
            v = scores.get((1, rb, lib, m, a), [])
            cells.append(f"{np.mean(v):.1%}" if v else "-")
        table.add_row(f"{_LIB[lib]} {m}", f"{a:g}", *cells)
    con.print(table)
    con.print(f"({elapsed:.0f} s; latency = group delay of the temporal integration, on top of one "
              f"{block_s * 1e3:.0f} ms block)")
