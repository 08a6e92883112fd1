"""Every shipped array x every classical method finds an anechoic, noise-free plane wave to within
a degree from one block of 8 STFT frames, at the profile's own sample rate and default nfft.

Planar arrays only observe the projection of the arrival direction onto their plane, which
changes by sin(el) * d_el for an elevation error d_el: at 20 degrees elevation a whole degree of
elevation moves it by a third of a degree. So on the sphere their azimuth and that projection are
held to 1 degree, and elevation only to a looser bound. The 3-D array is held to 1 degree of
great-circle error anywhere on the full sphere, below its plane included.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

import numpy as np
import pytest

from helpers import angle_between, azimuth_error, mixture, plane_wave, unit_vector
import reference as ref

from doascope.config import default_nfft
from doascope.dsp import ESTIMATORS, Localizer, default_grid, find_peaks, make_estimator, sphere_grid, stft
from doascope.dsp.metrics import azimuth_errors
from doascope.hardware_profiles import list_profiles, load_profile

PROFILES = {p.id: p for p in list_profiles()}
METHODS = sorted(m for m in ESTIMATORS if m != "dnn")
AZIMUTHS = (37.3, 161.7, 292.2)            # off every 1-degree grid point
LINEAR_OFFSETS = (-47.7, 11.7, 52.2)        # from broadside, well away from endfire
SPHERE_3D = ((37.3, 0.0), (161.7, 20.0), (292.2, -35.0), (75.4, 62.6), (210.9, -71.3))
PLANAR_ELEVATION = 20.0
SPHERE_RESOLUTION = 1.0  # the default 2-degree sphere has no sub-grid refinement: up to ~1.3 deg off
FRAMES = 8

# worst error seen per method (printed at the end of the module with -s / -rP)
WORST: dict[str, float] = defaultdict(float)


def _grid(pid: str, kind: str):
    p = PROFILES[pid]
    if kind == "circle":
        return default_grid(p.positions, kind="circle")
    return sphere_grid(SPHERE_RESOLUTION, hemisphere=(p.geometry != "3d"))


@lru_cache(maxsize=2)  # cases run grouped by (profile, method, grid): keep memory bounded
def _localizer(pid: str, method: str, kind: str) -> Localizer:
    p = PROFILES[pid]
    fs = p.sample_rate
    est = make_estimator(method, p.positions, fs=fs, nfft=default_nfft(fs), grid=_grid(pid, kind))
    return Localizer(est, frames_per_block=FRAMES)


def _cases():
    cases = []
    for pid, p in PROFILES.items():
        if p.geometry == "linear":
            arc = default_grid(p.positions).azimuth
            broadside = (arc[0] + 90.0) % 360.0
            circle = [((broadside + d) % 360.0, 0.0) for d in LINEAR_OFFSETS]
            sphere = []
        elif p.geometry == "3d":
            circle = [(az, 0.0) for az in AZIMUTHS]
            sphere = list(SPHERE_3D)
        else:
            circle = [(az, 0.0) for az in AZIMUTHS]
            sphere = [(az, PLANAR_ELEVATION) for az in AZIMUTHS]
        for method in METHODS:
            for kind, dirs in (("circle", circle), ("sphere", sphere)):
                for az, el in dirs:
                    cases.append(pytest.param(pid, method, kind, az, el,
                                              id=f"{pid}-{method}-{kind}-az{az:g}-el{el:g}"))
    return cases


@pytest.fixture(scope="module", autouse=True)
def _report_worst():
    yield
    print("\nworst plane-wave error per method (deg):",
          ", ".join(f"{m} {e:.3f}" for m, e in sorted(WORST.items())))


def _locate_one(loc: Localizer, x: np.ndarray, fs: float):
    loc.reset()
    results = list(loc.locate(x, fs))
    assert len(results) == 1, "the signal should hold exactly one block"
    return results[0]


@pytest.mark.parametrize("pid, method, kind, az, el", _cases())
def test_single_plane_wave(pid, method, kind, az, el):
    p = PROFILES[pid]
    fs = p.sample_rate
    loc = _localizer(pid, method, kind)
    x = plane_wave(p.positions, fs, az, el, seconds=loc.block_samples / fs, seed=7)
    res = _locate_one(loc, x, fs)
    assert res.active, "a coherent plane wave must pass the activity gate"
    assert len(res.peaks) == 1
    pk = res.peaks[0]
    if kind == "circle":
        err = azimuth_error(pk.azimuth, az)
        assert pk.elevation == 0.0
        WORST[method] = max(WORST[method], err)
        assert err < 1.0, f"estimated azimuth {pk.azimuth:.2f}, true {az:.2f}"
        return
    great_circle = angle_between(pk.azimuth, pk.elevation, az, el)
    if p.geometry == "3d":
        WORST[method] = max(WORST[method], great_circle)
        assert great_circle < 1.0, f"estimated ({pk.azimuth:.2f}, {pk.elevation:.2f}), true ({az}, {el})"
        return
    assert pk.elevation >= 0.0, "planar arrays search the upper hemisphere"
    # error of the in-plane projection (what a planar array measures), as an angle
    proj = np.hypot(*(unit_vector(pk.azimuth, pk.elevation) - unit_vector(az, el))[:2])
    proj_err = float(np.degrees(proj))
    az_err = azimuth_error(pk.azimuth, az)
    WORST[method] = max(WORST[method], az_err, proj_err)
    assert az_err < 1.0, f"estimated ({pk.azimuth:.2f}, {pk.elevation:.2f}), true ({az}, {el})"
    assert proj_err < 1.0, f"estimated ({pk.azimuth:.2f}, {pk.elevation:.2f}), true ({az}, {el})"
    # 4 degrees: measured worst 2.4 (fast SRP-PHAT on the 4-mic ReSpeaker, whose lag interpolation
    # error exceeds the spectrum's drop over a few degrees of elevation)
    assert abs(pk.elevation - el) < 4.0, f"estimated elevation {pk.elevation:.2f}, true {el}"


def test_every_profile_and_method_is_covered():
    ids = {c.values[0] for c in _cases()}
    methods = {c.values[1] for c in _cases()}
    assert ids == set(PROFILES) and len(ids) >= 10
    assert {"srp-phat", "gcc-phat", "music", "normmusic"} <= methods


# --- two sources ---------------------------------------------------------------------------------

TWO_SOURCE_METHODS = ["srp-phat", "music", "normmusic"]
PAIRS = [((40.3, 130.3), 1), ((200.7, 290.7), 2), ((337.1, 67.1), 3)]  # 90 degrees apart


@pytest.mark.parametrize("pid", ["respeaker_usb_v2", "matrix_creator"])
@pytest.mark.parametrize("method", TWO_SOURCE_METHODS)
@pytest.mark.parametrize("pair, seed", PAIRS, ids=[f"{a:g}+{b:g}" for (a, b), _ in PAIRS])
def test_two_plane_waves(pid, method, pair, seed):
    p = load_profile(pid)
    fs = p.sample_rate
    nfft = default_nfft(fs)
    est = make_estimator(method, p.positions, fs=fs, nfft=nfft, n_sources=2)
    loc = Localizer(est, n_sources=2, frames_per_block=FRAMES)
    x = mixture(p.positions, fs, list(pair), seconds=loc.block_samples / fs, seed=seed)
    res = _locate_one(loc, x, fs)
    assert len(res.peaks) == 2
    errors = azimuth_errors([q.azimuth for q in res.peaks], list(pair))
    if method == "srp-phat" and p.n_mics == 4:
        # On a 6.4 cm array the two SRP lobes of sources 90 degrees apart overlap across the
        # 300-3500 Hz band and pull each other's peaks by up to ~15 degrees. That is the method,
        # not the fast implementation: the spectrum's own peaks must match those of the exact SRP-PHAT.
        X = stft(x, nfft=nfft, hop=nfft // 2)
        exact = ref.srp_phat(X, p.positions, est.bins * fs / nfft, est.bins, est.grid.vectors)
        want = find_peaks(exact.astype(np.float32), est.grid, 2)
        plain = _locate_one(Localizer(est, n_sources=2, frames_per_block=FRAMES, extraction="peaks"), x, fs)
        got = sorted(q.azimuth for q in plain.peaks)
        assert np.max(azimuth_errors(got, [q.azimuth for q in want])) < 1.0  # broad peaks: lag interpolation moves them
        assert np.all(errors < 20.0), f"errors {errors}"
        return
    WORST[f"{method} (2 sources)"] = max(WORST[f"{method} (2 sources)"], float(errors.max()))
    assert np.all(errors < 3.0), f"estimated {[round(q.azimuth, 2) for q in res.peaks]}, true {pair}"
