"""Scoring DOA methods on held-out simulated rooms: the check that ends ``doascope train`` and the
cells of ``doascope bench --dnn``.

Rooms come from :func:`doascope.sim.scenes.random_scene` with seeds of three numbers
``[seed, sources, i]``, which training (two numbers, ``[seed, i]``) never draws. Blocks of 8 STFT
frames at the array's own rate and FFT size, integrated with smoothing 0.5, are scored where every
source is active: one source within 10 degrees of azimuth, several by recall at 15 degrees.
Linear arrays cannot tell the two sides of their axis apart: their true azimuths are folded onto
the half-plane their grid covers.
"""

from __future__ import annotations

import numpy as np

from doascope.dsp import Localizer, circle_grid, make_estimator
from doascope.dsp.grids import array_geometry, default_grid
from doascope.dsp.metrics import azimuth_errors

VALIDATION_SEED = 4049      # train's check
BENCH_SEED = 7919           # bench --dnn (as the accuracy bench)
FRAMES = 8
BAND = (300.0, 3500.0)
SMOOTHING = 0.5


def azimuth_grid(positions):
    """The grid scored on: the default circle (an arc for a linear array); 3-D arrays' azimuth circle."""
    return default_grid(positions) if array_geometry(positions) == "linear" else circle_grid(1.0)


def _fold(az: np.ndarray, grid) -> np.ndarray:
    """Azimuths mirrored about a linear array's axis where they fall outside the grid's arc."""
    if grid.closed:
        return az
    start = float(grid.azimuth[0])          # the arc runs from the axis (start) half way round
    inside = ((az - start) % 360.0) <= 180.0
    return np.where(inside, az, (2 * start - az) % 360.0)


def score_methods(positions, fs: int, methods: dict, *, n_scenes: int, seed: int, counts=(1, 2),
                  rt60=(0.2, 0.9), snr=(0.0, 25.0), duration: float = 3.0, progress=None) -> dict:
    """{(sources, label): (score, blocks)} of each method on the same held-out rooms.

    ``methods`` maps a label to (method name, options) for :func:`make_estimator`.
    """
    from doascope.config import default_nfft
    from doascope.sim.scenes import random_scene

    pos = np.asarray(positions, dtype=np.float64)
    nfft = default_nfft(fs)
    grid = azimuth_grid(pos)
    planar = array_geometry(pos) != "3d"
    out = {}
    for n_src in counts:
        ests = {label: make_estimator(m, pos, fs=fs, nfft=nfft, grid=grid, band=BAND, n_sources=n_src, **opts)
                for label, (m, opts) in methods.items()}
        hits = {label: [] for label in methods}
        for i in range(n_scenes):
            scene = random_scene(pos, fs, np.random.default_rng([seed, n_src, i]), n_sources=n_src, rt60_range=rt60,
                                 snr_range=snr, duration=duration, planar=planar,
                                 min_separation_deg=30.0 if n_src < 3 else 25.0)
            truth = _fold(np.array([s.azimuth for s in scene.sources]), grid)
            for label, est in ests.items():
                loc = Localizer(est, hop=nfft // 2, n_sources=n_src, frames_per_block=FRAMES, smoothing=SMOOTHING)
                for r in loc.locate(scene.audio, fs):
                    if not np.all(scene.active(r.start, r.stop)):
                        continue
                    err = azimuth_errors([p.azimuth for p in r.peaks], truth)
                    hits[label].append(float(err[0] <= 10) if n_src == 1 else float(np.mean(err <= 15)))
            if progress:
                progress()
        for label, h in hits.items():
            out[(n_src, label)] = (float(np.mean(h)) if h else float("nan"), len(h))
    return out


def validation_line(scores: dict, n_scenes: int, label: str = "network", rival: str = "srp-phat") -> tuple[str, bool]:
    """One line comparing the trained network with srp-phat on held-out rooms, and whether it lost."""
    a1, b1 = scores[(1, label)][0], scores[(1, rival)][0]
    a2, b2 = scores[(2, label)][0], scores[(2, rival)][0]
    lost = [what for what, a, b in (("1 source", a1, b1), ("2 sources", a2, b2)) if a < b]
    nums = (f"1 source within 10 deg {a1:.1%} vs {rival} {b1:.1%}, 2-source recall at 15 deg {a2:.1%} vs "
            f"{b2:.1%} ({n_scenes} held-out rooms per count)")
    if lost:
        return f"validation: the network LOSES to {rival} on {' and '.join(lost)}: {nums}", True
    return f"validation: the network is at least as good as {rival}: {nums}", False
