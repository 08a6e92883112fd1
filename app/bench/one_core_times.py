"""Per-block time of each method on one core, run as a child process by ``bench --dnn``: BLAS and torch
pools limited to one thread (a spinning two-thread BLAS on a busy machine inflates small matrix
products 10-100x). ``python -m doascope.app.bench.one_core_times PROFILE REPS METHOD[:WEIGHTS]...``
prints {method: seconds per block} as JSON."""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from doascope.app.bench.common import BAND, FRAMES, median_time
    from doascope.config import default_nfft
    from doascope.dsp import circle_grid, find_peaks, make_estimator, stft
    from doascope.hardware_profiles import load_profile
    from doascope.sim.scenes import random_scene

    prof = load_profile(argv[0])
    fs, reps = prof.sample_rate, int(argv[1])
    nfft = default_nfft(fs)
    grid = circle_grid(1.0)
    audio = random_scene(prof.positions, fs, np.random.default_rng([7919, 0, 0]), n_sources=2, duration=2.0).audio
    X = np.ascontiguousarray(stft(audio, nfft=nfft, hop=nfft // 2)[:, :, :FRAMES])
    out = {}
    for m in argv[2:]:
        name, _, weights = m.partition(":")
        opts = {"weights": weights} if weights else {}
        est = make_estimator(name, prof.positions, fs=fs, nfft=nfft, grid=grid, band=BAND, n_sources=2, **opts)
        out[m] = median_time(lambda: find_peaks(est.spectrum(X), grid, 2), reps)
        if hasattr(est, "frame_peaks"):   # two sources: and each of the block's 8 frames' own maximum (its vote)
            out[m + "+votes"] = median_time(lambda: (find_peaks(est.spectrum(X), grid, 2), est.frame_peaks(X)), reps)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
