"""``bench --dnn``: the universal network (and the per-array networks where they ship) against the
classical methods on rooms none of them saw, for every shipped profile and arrays no profile ships,
and on real measured responses (R3VIVAL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from doascope.app.bench.common import BAND, FRAMES, Pace, console, new_table
from doascope.dsp import Localizer, circle_grid, make_estimator
from doascope.dsp.metrics import azimuth_errors

DNN_RIVALS = ("srp-phat", "srp-dpd", "normmusic")
UNIVERSAL = "dnn:universal"          # a method argument of one_core_times: dnn with weights="universal"

def _one_core_block_times(pid: str, quick: bool, methods=(UNIVERSAL, *DNN_RIVALS)) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "doascope.app.bench.one_core_times", pid, str(20 if quick else 200), *methods],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def unseen_arrays() -> dict:
    """Arrays no profile ships and no training scene drew (random_array's training seeds are two
    numbers; these are fixed shapes or three-number seeds): name -> (positions (mics, 3) m, fs)."""
    from doascope.models.dnn_check import BENCH_SEED
    from doascope.models.universal_training import random_array

    ring8 = 0.045 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4), np.zeros(8)], 1)
    a = np.radians(30.0)
    square = np.array([[0.025, 0.025, 0], [-0.025, 0.025, 0], [-0.025, -0.025, 0], [0.025, -0.025, 0]])
    square = square @ np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]).T
    hexagon = 0.04 * np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3), np.zeros(6)], 1)
    irregular = np.array([[0.031, -0.004, 0], [0.006, 0.042, 0], [-0.037, 0.018, 0], [-0.022, -0.035, 0],
                          [0.012, -0.041, 0]])
    arrays = {"irregular 5-mic": (irregular, 16000), "8-mic ring, 9 cm": (ring8, 16000),
              "square turned 30 deg, 48 kHz": (square, 48000), "hexagon, 8 cm": (hexagon, 16000)}
    for k in range(2):
        pos = random_array(np.random.default_rng([BENCH_SEED, 99, k]))
        arrays[f"random {len(pos)}-mic #{k + 1}"] = (pos, 16000)
    return arrays


def dnn_bench(quick: bool, out: dict, n_scenes: int | None = None, profiles=None) -> None:
    """The universal network (and the per-array networks where they ship) against the classical
    methods on rooms none of them saw, for every shipped profile and the unseen arrays.

    Scoring is :func:`doascope.models.dnn_check.score_methods` (smoothing 0.5, blocks where every source is
    active: 1 source within 10 deg, 2 sources recall at 15 deg). Inference time is one block's
    spectrum + peaks on one core (a child process with one-thread BLAS and torch).
    """
    import torch

    from doascope.models.dnn_check import BENCH_SEED, score_methods
    from doascope.hardware_profiles import list_profiles
    from doascope.models.dnn import WEIGHTS_DIR, shipped_profile_for

    torch.set_num_threads(1)
    con = console()
    n_scenes = n_scenes or (2 if quick else 12)
    setups = {}
    for prof in list_profiles():
        if profiles is None or prof.id in profiles:
            setups[prof.id] = (prof.positions, int(prof.sample_rate), prof.id)
    if profiles is None:
        setups.update({name: (pos, fs, None) for name, (pos, fs) in unseen_arrays().items()})
    t_start = time.perf_counter()
    pace = Pace(f"dnn, unseen rooms ({n_scenes} per source count and array)", len(setups) * 2 * n_scenes)
    table = new_table(f"Universal DNN vs the best classical method per cell ({', '.join(DNN_RIVALS)}); {n_scenes} "
                   "unseen rooms per source count, RT60 0.2-0.9 s, SNR 0-25 dB, smoothing 0.5",
                   ["array", "mics", "Hz", "1 src <=10 deg: dnn", "best classical", "2 src recall@15: dnn",
                    "best classical", "per-array dnn (1 / 2 src)"])
    wins = {1: 0, 2: 0, "both": 0}
    for name, (pos, fs, pid) in setups.items():
        methods = {"universal": ("dnn", {"weights": "universal"})}
        if pid is not None and shipped_profile_for(pos) == pid and (WEIGHTS_DIR / f"{pid}.pt").is_file():
            methods["per-array"] = ("dnn", {"weights": str(WEIGHTS_DIR / f"{pid}.pt")})
        methods.update({m: (m, {}) for m in DNN_RIVALS})
        scores = score_methods(pos, fs, methods, n_scenes=n_scenes, seed=BENCH_SEED, progress=pace.step)
        cells, ahead = [], []
        for n_src in (1, 2):
            best = max((scores[(n_src, m)][0], m) for m in DNN_RIVALS)
            u = scores[(n_src, "universal")][0]
            ahead.append(u >= best[0])
            wins[n_src] += int(u >= best[0])
            cells += [f"{'[bold]' if u >= best[0] else ''}{u:.1%}", f"{best[0]:.1%} ({best[1]})"]
            for label in methods:
                out.setdefault("dnn", []).append({"array": name, "profile": pid, "mics": len(pos), "fs": fs,
                                                  "method": label, "sources": n_src, "score": scores[(n_src, label)][0],
                                                  "blocks": scores[(n_src, label)][1]})
        wins["both"] += int(all(ahead))
        per = (f"{scores[(1, 'per-array')][0]:.1%} / {scores[(2, 'per-array')][0]:.1%}"
               if "per-array" in methods else "-")
        table.add_row(name, str(len(pos)), str(fs), *cells, per)
    con.print(table)
    n = len(setups)
    con.print(f"universal dnn at or above the best classical method: 1 source on {wins[1]} of {n} arrays, "
              f"2 sources on {wins[2]} of {n}, both on {wins['both']} of {n}", highlight=False)
    out["dnn_summary"] = {"arrays": n, "ahead_1src": wins[1], "ahead_2src": wins[2], "ahead_both": wins["both"]}
    if profiles is None:
        _r3vival_dnn(con, out, quick)
    timed = "matrix_creator" if profiles is None or "matrix_creator" in profiles else next(iter(setups))
    if setups.get(timed, (None, None, None))[2] is not None:
        times = _one_core_block_times(timed, quick)
        con.print(f"one block (8 frames) on one core, {timed} ({len(setups[timed][0])} mics): "
                  + ", ".join(f"{m.replace(UNIVERSAL, 'universal dnn').replace('+votes', ' with frame votes')} "
                              f"{t * 1e3:.2f} ms" for m, t in times.items()), highlight=False)
        out["dnn_ms_per_block"] = {m: t * 1e3 for m, t in times.items()}
    con.print(f"({time.perf_counter() - t_start:.0f} s)")


def _r3vival_dnn(con, out: dict, quick: bool) -> None:
    """Real acoustics: talkers convolved with the measured responses of the R3VIVAL 7-mic array (a
    3-D array never trained on; shared/data/r3vival), one at a time at each of its 12 azimuths and
    two at once 90 or 150 deg apart; scored as score_methods does."""
    from doascope.app.bench import tracking_scenes as ts
    from doascope.app.bench.tracking import r3vival_folder
    from doascope.models.dnn_check import SMOOTHING

    folder = r3vival_folder()
    if folder is None:
        con.print("[yellow]shared/data/r3vival not found (set DOASCOPE_R3VIVAL): real-acoustics part skipped[/]")
        return
    pos = np.asarray(ts.R3VIVAL_POSITIONS)
    fs, nfft = 16000, 512
    grid = circle_grid(1.0)
    singles = [((a,), (((0.0, 3.0),),)) for a in range(0, 360, 30)]
    pairs = [((a, (a + d) % 360), (((0.0, 3.0),), ((0.3, 3.0),))) for a in range(0, 360, 60) for d in (90, 150)]
    if quick:
        singles, pairs = singles[:2], pairs[:1]
    methods = {"universal": ("dnn", {"weights": "universal"}), **{m: (m, {}) for m in DNN_RIVALS}}
    res = {}
    for n_src, setups in ((1, singles), (2, pairs)):
        ests = {k: make_estimator(m, pos, fs=fs, nfft=nfft, grid=grid, band=BAND, n_sources=n_src, **o)
                for k, (m, o) in methods.items()}
        for seed, (az, talk) in enumerate(setups):
            audio, truth, active = ts.r3vival_scene(folder, az, talk, duration=3.0, seed=seed)
            for k, est in ests.items():
                loc = Localizer(est, hop=nfft // 2, n_sources=n_src, frames_per_block=FRAMES, smoothing=SMOOTHING)
                for r in loc.locate(audio, fs):
                    if not np.all(active(r.start, r.stop)):
                        continue
                    err = azimuth_errors([p.azimuth for p in r.peaks], truth)
                    res.setdefault((n_src, k), []).append(float(err[0] <= 10) if n_src == 1 else float(np.mean(err <= 15)))
    table = new_table("Real acoustics: R3VIVAL 7-mic array (3-D, never trained on), measured responses, 16 kHz, "
                   f"smoothing {SMOOTHING:g}; {len(singles)} single talkers, {len(pairs)} pairs",
                   ["method", "1 src <=10 deg", "2 src recall@15"])
    for k in methods:
        table.add_row(k if k != "universal" else "universal dnn",
                      *(f"{np.mean(res.get((n, k), [np.nan])):.1%}" for n in (1, 2)))
        out.setdefault("dnn_r3vival", []).append({"method": k, **{f"{n}src": float(np.mean(res.get((n, k), [np.nan])))
                                                                 for n in (1, 2)}})
    con.print(table)


# --------------------------------------------------------------------------------------------------
# Position mode: distributed microphones
# --------------------------------------------------------------------------------------------------
