"""``doascope bench --tracking``: can users trust the tracks?

Four parts, each printed as it finishes:

1. Tracks on the scene set of :mod:`doascope.app.bench.tracking_scenes` (talkers crossing, a dialogue,
   a walking talker, three talkers and a fan; 4-, 7- and 8-mic arrays; RT60 0.25-0.7 s), replayed
   through the live engine as ``run --file F --fast --sources K`` does: coverage, ghosts, identity
   switches per talker-minute and mean error, per scene kind, for each way of telling sources apart.
2. Held-out blocks of simultaneous talkers (random rooms, RT60 0.2-0.9 s, SNR 0-25 dB): one-source
   accuracy within 10 deg, two- and three-source recall within 15 deg, and what the missed talkers
   were (left out, or a source reported for them more than 15 deg off: :func:`miss_kinds`).
3. The bias two simultaneous talkers 140 degrees apart put on each other's direction (4-mic ring).
4. Real acoustics: talkers made from measured responses of a real 7-mic array in a real room
   (shared/data/r3vival), as a dialogue and as three talkers at once.

The scene seeds here (100 and up) are not the ones the settings were tuned on (1 and 2).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from doascope.dsp.track_metrics import pool

# (label, AnalysisConfig overrides): the default first.
TRACKING_CONFIGS = (("srp-phat, votes (default)", {}),
                    ("srp-phat, sequential removal", {"extraction": "removal"}),
                    ("srp-phat, spectrum peaks", {"extraction": "peaks"}),
                    ("normmusic", {"method": "normmusic"}))
BENCH_SEEDS = (101, 102, 103)
GOALS = "goals: coverage >= 0.90, ghosts <= 0.05, id switches <= 0.2 per talker-minute"


def _console():
    from doascope.app.bench.common import console

    return console()


def _table(title, columns):
    from doascope.app.bench.common import new_table as table

    return table(title, columns)


def _config(n_sources: int, overrides: dict):
    from doascope.app.runtime.engine import AnalysisConfig

    return AnalysisConfig(n_sources=n_sources, **overrides)


def _score_row(scores) -> list[str]:
    p = pool(scores)
    return [f"{p.coverage:.3f}", f"{p.ghost_rate:.3f}", f"{p.switches_per_minute:.2f}", f"{p.mean_error:.1f}"]


def tracking_scenes(quick: bool, out: dict, seeds=None) -> None:
    from doascope.app.bench import tracking_scenes as ts

    con = _console()
    seeds = seeds or (BENCH_SEEDS[:1] if quick else BENCH_SEEDS)
    scenes = ts.scene_set(seeds)
    t0 = time.perf_counter()
    results: dict[tuple[str, str], list] = {}
    for i, scene in enumerate(scenes, 1):
        rendered = ts.render(scene)
        for label, overrides in TRACKING_CONFIGS:
            cfg = _config(len(scene.talkers), overrides)
            results.setdefault((label, scene.kind), []).append(ts.run_scene(rendered, cfg))
        con.print(f"  scene {i}/{len(scenes)} {scene.name} ({time.perf_counter() - t0:.0f} s)", highlight=False)
    table = _table(f"Tracks on {len(scenes)} simulated scenes (seeds {', '.join(map(str, seeds))}), replayed through "
                   f"the live engine with --sources K = the scene's sources; {GOALS}",
                   ["method", "scenes", "coverage", "ghosts", "id switches /talker-min", "mean error (deg)"])
    for label, _ in TRACKING_CONFIGS:
        for kind in ts.KINDS:
            table.add_row(label if kind == ts.KINDS[0] else "", kind, *_score_row(results[(label, kind)]))
        every = [s for kind in ts.KINDS for s in results[(label, kind)]]
        table.add_row("", "[bold]all[/]", *_score_row(every))
        p = pool(every)
        out.setdefault("tracking", []).append({"method": label, "coverage": p.coverage, "ghosts": p.ghost_rate,
                                               "switches_per_talker_minute": p.switches_per_minute,
                                               "mean_error_deg": p.mean_error, "scenes": len(every)})
    con.print(table)


def miss_kinds(reported, truth, tolerance: float = 15.0) -> tuple[int, int]:
    """The talkers of one block (``truth``, azimuths in degrees) that no ``reported`` azimuth comes
    within ``tolerance`` of, in two kinds: (left out, placed elsewhere). A missed talker counts as
    left out when the block reported fewer sources than there are talkers, else as placed elsewhere
    (a source was reported for it, more than ``tolerance`` away: a bump of its own lobe, a reflection,
    or a split of another talker's lobe)."""
    from doascope.dsp.metrics import azimuth_errors

    truth = np.asarray(truth, np.float64)
    missed = int(np.sum(azimuth_errors(list(reported), truth) > tolerance))
    return (missed, 0) if len(reported) < truth.size else (0, missed)


def held_out_blocks(quick: bool, out: dict, n_scenes: int | None = None) -> None:
    from doascope.sim.scenes import random_scene
    from doascope.dsp import Localizer, make_estimator
    from doascope.dsp.grids import circle_grid
    from doascope.dsp.metrics import azimuth_errors
    from doascope.hardware_profiles import load_profile

    con = _console()
    n = n_scenes or (4 if quick else 20)
    pos = load_profile("respeaker_usb_v2").positions
    cases = [("srp-phat", "votes"), ("srp-phat", "removal"), ("srp-phat", "peaks"), ("normmusic", "peaks")]
    scores: dict[tuple, list[float]] = {}
    misses: dict[tuple, np.ndarray] = {}    # (sources, method, extraction, smoothing) -> [talkers, left out, elsewhere]
    for n_src in (1, 2, 3):
        for i in range(n):
            rng = np.random.default_rng([5000 + n_src, i])   # not the accuracy bench's or training's seeds
            scene = random_scene(pos, 16000, rng, n_sources=n_src, kinds=("speech",))
            truth = np.array([s.azimuth for s in scene.sources])
            for method, extraction in cases:
                for smoothing in (0.5, 0.8):
                    est = make_estimator(method, pos, fs=16000, nfft=512, grid=circle_grid(1.0), band=(300.0, 3500.0),
                                         n_sources=n_src)
                    loc = Localizer(est, hop=256, n_sources=n_src, smoothing=smoothing, extraction=extraction)
                    for res in loc.locate(scene.audio, 16000):
                        if not np.all(scene.active(res.start, res.stop)):
                            continue
                        err = azimuth_errors([p.azimuth for p in res.peaks], truth)
                        val = float(err[0] <= 10) if n_src == 1 else float(np.mean(err <= 15))
                        scores.setdefault((n_src, method, extraction, smoothing), []).append(val)
                        if n_src > 1:
                            m = misses.setdefault((n_src, method, extraction, smoothing), np.zeros(3, np.int64))
                            m += (n_src, *miss_kinds([p.azimuth for p in res.peaks], truth))
    table = _table(f"Held-out blocks of simultaneous talkers (ReSpeaker USB v2, {n} random rooms per count, "
                   "RT60 0.2-0.9 s, SNR 0-25 dB)", ["method", "smoothing", "1 src <=10 deg", "2 src recall@15",
                                                    "3 src recall@15", "2 / 3 src misses: left out",
                                                    "placed > 15 deg off"])
    for method, extraction in cases:
        for smoothing in (0.5, 0.8):
            cells, left, elsewhere = [], [], []
            for n_src in (2, 3):
                m = misses.get((n_src, method, extraction, smoothing))
                left.append(f"{m[1] / m[0]:.1%}" if m is not None else "-")
                elsewhere.append(f"{m[2] / m[0]:.1%}" if m is not None else "-")
            for n_src in (1, 2, 3):
                v = scores.get((n_src, method, extraction, smoothing), [])
                cells.append(f"{np.mean(v):.1%}" if v else "-")
                m = misses.get((n_src, method, extraction, smoothing))
                out.setdefault("held_out_blocks", []).append({"method": method, "extraction": extraction,
                                                              "smoothing": smoothing, "sources": n_src,
                                                              "score": float(np.mean(v)) if v else None,
                                                              "left_out": None if m is None else float(m[1] / m[0]),
                                                              "placed_elsewhere": None if m is None else
                                                              float(m[2] / m[0])})
            label = method if method != "srp-phat" else f"srp-phat, {extraction}"
            table.add_row(label, f"{smoothing:g}", *cells, " / ".join(left), " / ".join(elsewhere))
    con.print(table)


def separation_bias(quick: bool, out: dict) -> None:
    """Signed error of each of two talkers 140 degrees apart: positive = pushed away from the other."""
    from doascope.sim.scenes import SourceSpec, simulate_scene
    from doascope.dsp import Localizer, make_estimator
    from doascope.dsp.grids import circle_grid
    from doascope.hardware_profiles import load_profile

    con = _console()
    pos = load_profile("respeaker_usb_v2").positions
    pair = (60.0, 200.0)
    away = (-1.0, 1.0)  # 60 is pushed away from 200 by going down, 200 by going up
    cases = [("srp-phat", "votes"), ("srp-phat", "removal"), ("srp-phat", "peaks"), ("normmusic", "peaks")]
    errs: dict[tuple, list[float]] = {}
    found: dict[tuple, list[int]] = {}
    for seed in range(2 if quick else 8):
        scene = simulate_scene(pos, 16000, [SourceSpec(a, distance=1.5) for a in pair], duration=4.0, rt60=0.3,
                               snr_db=20.0, seed=seed)
        for method, extraction in cases:
            est = make_estimator(method, pos, fs=16000, nfft=512, grid=circle_grid(1.0), band=(300.0, 3500.0),
                                 n_sources=2)
            loc = Localizer(est, hop=256, n_sources=2, smoothing=0.5, extraction=extraction)
            for res in loc.locate(scene.audio, 16000):
                for k, a in enumerate(pair):
                    d = [((p.azimuth - a + 180.0) % 360.0) - 180.0 for p in res.peaks]
                    j = int(np.argmin(np.abs(d))) if d else -1
                    hit = j >= 0 and abs(d[j]) <= 20.0
                    found.setdefault((method, extraction, k), []).append(int(hit))
                    if hit:
                        errs.setdefault((method, extraction, k), []).append(away[k] * d[j])
    table = _table("Two talkers 140 degrees apart (60 and 200) on a 4-mic ring (r = 32 mm), RT60 0.3 s: how far each "
                   "estimate is pushed away from the other (mean signed error, deg) and how often it is found "
                   "within 20 deg", ["method", "60 deg: push", "found", "200 deg: push", "found"])
    for method, extraction in cases:
        cells = []
        for k in range(2):
            e = errs.get((method, extraction, k), [])
            cells += [f"{np.mean(e):+.1f}" if e else "-", f"{np.mean(found[(method, extraction, k)]):.0%}"]
        label = method if method != "srp-phat" else f"srp-phat, {extraction}"
        table.add_row(label, *cells)
        out.setdefault("separation_bias", []).append({"method": label, "push_deg": cells[0::2], "found": cells[1::2]})
    con.print(table)


def r3vival_folder() -> Path | None:
    """Where the measured responses are: $DOASCOPE_R3VIVAL, or shared/data/r3vival beside the checkout."""
    candidates = [os.environ.get("DOASCOPE_R3VIVAL"), "../shared/data/r3vival", "shared/data/r3vival",
                  Path(__file__).resolve().parents[3] / "shared" / "data" / "r3vival"]
    for c in candidates:
        if c and Path(c, "README.md").exists():
            return Path(c)
    return None


R3VIVAL_SCENES = {
    # name: (dataset azimuths, speaking intervals per talker, duration)
    "dialogue (0 and 150)": ((0, 150), (((0.2, 2.6), (5.6, 8.0)), ((2.9, 5.3), (8.3, 10.0))), 10.0),
    "two at once (60 and 240)": ((60, 240), (((0.0, 8.0),), ((0.5, 8.0),)), 8.0),
    "three at once (30, 150, 270)": ((30, 150, 270), (((0.0, 8.0),), ((0.3, 8.0),), ((0.6, 8.0),)), 8.0),
}


def real_acoustics(quick: bool, out: dict) -> None:
    from doascope.app.bench import tracking_scenes as ts
    from doascope.dsp.analysis import build_localizer

    con = _console()
    folder = r3vival_folder()
    if folder is None:
        con.print("[yellow]real acoustics skipped: the R3VIVAL responses were not found (set DOASCOPE_R3VIVAL to "
                  "the folder shared/data/r3vival)[/]")
        return
    profile = ts.r3vival_profile()
    table = _table("Real acoustics: talkers convolved with measured responses of a real 7-mic array in a real room "
                   f"(R3VIVAL, RT60 ~0.5-0.75 s, SNR 20 dB); {GOALS}",
                   ["scene", "method", "coverage", "ghosts", "id switches /talker-min", "mean error (deg)"])
    for name, (azimuths, talk, duration) in R3VIVAL_SCENES.items():
        audio, truth, active = ts.r3vival_scene(folder, azimuths, talk, duration=duration, seed=3)
        for label, overrides in TRACKING_CONFIGS[:1] + TRACKING_CONFIGS[3:]:
            cfg = _config(len(azimuths), overrides)
            frames = ts.run_engine(audio, 16000, profile, cfg)
            window = build_localizer(cfg, profile, 16000).block_samples
            s = ts.score_frames(frames, active, lambda t, truth=truth: truth, 16000, window)
            table.add_row(name if label == TRACKING_CONFIGS[0][0] else "", label, *_score_row([s]))
            out.setdefault("real_acoustics", []).append({"scene": name, "method": label, "coverage": s.coverage,
                                                         "ghosts": s.ghost_rate,
                                                         "switches_per_talker_minute": s.switches_per_minute,
                                                         "mean_error_deg": s.mean_error})
    con.print(table)


def tracking_bench(quick: bool, out: dict, n_scenes: int | None = None) -> None:
    t0 = time.perf_counter()
    tracking_scenes(quick, out)
    separation_bias(quick, out)
    real_acoustics(quick, out)
    held_out_blocks(quick, out, n_scenes)
    _console().print(f"(tracking bench: {time.perf_counter() - t0:.0f} s)")
