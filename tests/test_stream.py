"""The streaming pipeline (doascope.dsp.stream): each hop's frame transformed and analysed once, the
window's statistics as running sums; it must give what the block-wise reference computes from the
window's whole STFT, and the live engine and ``locate`` must give the same estimates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import reference as ref
from helpers import mixture
from doascope.dsp import Localizer, make_estimator, stft
from doascope.dsp.gcc import mic_pairs
from doascope.dsp.srp import SrpLookup, parallel_rows, srp_from_correlations
from doascope.dsp.stream import RESUM_EVERY, FrameStats
from doascope.hardware_profiles import load_profile

FS = 16000
NFFT = 512
HOP = 256


@pytest.fixture(scope="module")
def prof():
    return load_profile("respeaker_usb_v2")


def _windows(n_samples: int, width: int):
    """Window starts as the engine meets them: steps of two hops, one of one hop, a jump (an
    overrun), then non-overlapping blocks (``locate``), long enough to pass a periodic re-sum."""
    starts, s = [], 0
    while s + width <= n_samples:
        starts.append(s)
        k = len(starts)
        s += 2 * HOP if k < RESUM_EVERY else HOP if k == RESUM_EVERY else 13 * HOP if k == RESUM_EVERY + 1 else 8 * HOP
    return starts


@pytest.mark.parametrize("method, kind", [("srp-phat", "phat"), ("normmusic", "covariance")])
def test_frame_statistics_match_the_block_reference(prof, method, kind):
    x = mixture(prof.positions, FS, [40.0, 200.0], seconds=3.0, seed=21, snr_db=10)
    est = make_estimator(method, prof.positions, fs=FS, nfft=NFFT, n_sources=2)
    frames = FrameStats(est, hop=HOP, frames=8)
    assert frames.kind == kind
    width = 7 * HOP + NFFT
    starts = _windows(len(x), width)
    assert len(starts) > RESUM_EVERY + 4
    checked = set(starts[::7]) | set(starts[RESUM_EVERY - 2:RESUM_EVERY + 4])
    for start in starts:
        frames.update(x[start:start + width], start)
        if start not in checked:
            continue
        X = ref.stft(x[start:start + width], NFFT, HOP)
        e, c = frames.energy_coherence()
        e_ref, c_ref = ref.energy_coherence(X, est.bins)
        assert e == pytest.approx(e_ref, rel=1e-5) and c == pytest.approx(c_ref, rel=1e-5, abs=1e-7)
        if kind == "phat":
            np.testing.assert_allclose(frames.statistics(), ref.phat_cross_spectra(X, est.bins, ref.pairs(4)),
                                       atol=2e-5)
            # each frame's own maximum, as the estimator finds it in that frame alone
            points, values = frames.frame_peaks(est)
            want_p, want_v = est.frame_peaks(np.ascontiguousarray(X.astype(np.complex64)))
            np.testing.assert_array_equal(points, want_p)
            np.testing.assert_allclose(values, want_v, rtol=1e-4)
        else:
            R = ref.covariances(X, est.bins)
            np.testing.assert_allclose(frames.statistics(), R, atol=1e-5 * np.abs(R).max())


def test_a_window_already_seen_costs_no_transform(prof):
    x = mixture(prof.positions, FS, [40.0], seconds=0.5, seed=2)
    est = make_estimator("srp-phat", prof.positions, fs=FS, nfft=NFFT)
    frames = FrameStats(est, hop=HOP, frames=8)
    width = 7 * HOP + NFFT
    assert frames.update(x[:width], 0) == 8
    assert frames.update(x[2 * HOP:2 * HOP + width], 2 * HOP) == 2   # two new hops, two new frames
    assert frames.update(x[2 * HOP:2 * HOP + width], 2 * HOP) == 0
    frames.reset()
    assert frames.update(x[2 * HOP:2 * HOP + width], 2 * HOP) == 8


def test_srp_lookup_rows_is_linear_interpolation():
    rng = np.random.default_rng(12)
    r = rng.standard_normal((3, 6, 40)).astype(np.float32)
    idx = rng.uniform(0, 39, (6, 300_000 // 6 + 500)).astype(np.float32)   # large enough for the parallel kernel
    idx[:, :3] = [0.0, 39.0, 17.0]                 # both ends of the lag grid, and an exact lag
    for cols in (idx[:, :500], idx):
        lookup = SrpLookup(cols, 40)
        out = lookup.rows(r)
        parallel = np.empty_like(out)
        parallel_rows()(r, lookup.lag, lookup.frac, lookup.scale, parallel)   # whatever the machine's thread count
        np.testing.assert_array_equal(parallel, out)
        for s in range(3):
            want = np.mean([np.interp(cols[p].astype(np.float64), np.arange(40), r[s, p]) for p in range(6)], axis=0)
            np.testing.assert_allclose(out[s], want, atol=1e-5)
            np.testing.assert_allclose(out[s], srp_from_correlations(r[s], cols), atol=1e-5)   # the checked public form


def test_correlations_in_one_real_product_match_the_reference(prof):
    est = make_estimator("srp-phat", prof.positions, fs=FS, nfft=NFFT)
    rng = np.random.default_rng(3)
    C = (rng.standard_normal((2, 6, est.bins.size)) + 1j * rng.standard_normal((2, 6, est.bins.size)))
    r = est.gcc.correlate_rows(C.astype(np.complex64))
    for s in range(2):
        np.testing.assert_allclose(r[s], ref.gcc(C[s], est.gcc.freqs, est.gcc.lags), atol=1e-5)


def _baseline_sum_numpy(C, pairs, positions):
    """Plain numpy: each distinct baseline's pairs' cross-spectra summed, an opposite baseline's
    conjugated; baselines in the order of their first pair."""
    pos = np.asarray(positions, np.float64)
    b = pos[pairs[:, 1]] - pos[pairs[:, 0]]
    out, seen = [], []
    for p in range(len(pairs)):
        if any(np.allclose(b[p], v, atol=1e-9) or np.allclose(b[p], -v, atol=1e-9) for v in seen):
            continue
        seen.append(b[p])
        same = [q for q in range(len(pairs)) if np.allclose(b[q], b[p], atol=1e-9)]
        opposite = [q for q in range(len(pairs)) if np.allclose(b[q], -b[p], atol=1e-9) and q not in same]
        out.append(C[:, same].sum(axis=1) + np.conj(C[:, opposite]).sum(axis=1))
    return np.stack(out, axis=1)


@pytest.mark.parametrize("pid, baselines", [("minidsp_uma16", 24), ("respeaker_usb_v2", 4), ("azimut_cma", None)])
def test_srp_reads_one_correlation_per_baseline(pid, baselines):
    """Pairs with the same (or the opposite) baseline share every TDOA, so SRP sums their cross-spectra
    and reads one correlation per baseline (a 4 x 4 grid: 24 baselines for 120 pairs): the sums are
    the plain-numpy ones, and the SRP is the mean over pairs of each pair's own correlation read at
    its own lags."""
    from doascope.dsp.gcc import BaselineGroups

    p = load_profile(pid)
    est = make_estimator("srp-phat", p.positions, fs=FS, nfft=NFFT, n_sources=2)
    pairs = est.gcc.pairs
    if baselines is not None:
        assert len(est.baselines) == baselines
    rng = np.random.default_rng(5)
    C = (rng.standard_normal((3, len(pairs), est.bins.size))
         + 1j * rng.standard_normal((3, len(pairs), est.bins.size))).astype(np.complex64)
    np.testing.assert_allclose(est.baselines.sum(C), _baseline_sum_numpy(C, pairs, p.positions), rtol=1e-6, atol=1e-6)
    per_pair = est.gcc.correlate_rows(C)
    want = np.stack([_srp_numpy(per_pair[s], est.lag_index) for s in range(3)])
    np.testing.assert_allclose(est.srp_rows(C), want, atol=1e-6)
    # an array without shared baselines keeps its pairs as they are
    skew = np.random.default_rng(1).uniform(-0.05, 0.05, (5, 3))
    groups = BaselineGroups(skew, mic_pairs(5))
    assert groups.trivial and len(groups) == 10
    np.testing.assert_array_equal(groups.sum(C[:, :10]), C[:, :10])


def test_each_frames_phat_cross_spectra_average_to_the_blocks(prof):
    """frame_phat_cross (each frame's own, what the frame votes read) averaged over the frames is
    phat_cross_spectra of the block."""
    from doascope.dsp.gcc import frame_phat_cross, mic_pairs, phat_cross_spectra

    X = stft(mixture(prof.positions, FS, [40.0, 200.0], seed=3), nfft=NFFT, hop=NFFT // 2)[:, :, :8]
    bins, pairs = np.arange(10, 110), mic_pairs(prof.n_mics)
    per_frame = frame_phat_cross(X, bins, pairs)
    assert per_frame.shape == (8, len(pairs), bins.size) and per_frame.dtype == np.complex64
    np.testing.assert_allclose(per_frame.mean(axis=0), phat_cross_spectra(X, bins, pairs), atol=2e-6)


@pytest.mark.parametrize("method", ["srp-phat", "normmusic", "gcc-phat", "srp-dpd"])
def test_process_audio_gives_the_block_path_estimates(prof, method):
    """What the engine and locate run (each frame once) against Localizer.process on each window's
    whole STFT, overlapping windows as the engine takes them."""
    x = mixture(prof.positions, FS, [40.0, 200.0], seconds=2.0, seed=8, snr_db=20)
    locs = [Localizer(make_estimator(method, prof.positions, fs=FS, nfft=NFFT, n_sources=2), hop=HOP,
                      n_sources=2, smoothing=0.5, step=2 * HOP) for _ in range(2)]
    width = locs[0].block_samples
    for start in range(0, len(x) - width + 1, 2 * HOP):
        window = x[start:start + width]
        a = locs[0].process_audio(window, start, FS)
        b = locs[1].process(stft(window, nfft=NFFT, hop=HOP), start, FS)
        assert a.active == b.active and (a.start, a.stop, a.t) == (b.start, b.stop, b.t)
        # The same peaks; SRP-PHAT's per-bin votes may tip a near-tied bin to the neighbouring grid
        # point (the two paths' cross-spectra differ in the last float32 digits), moving a vote-map
        # peak by one grid step (1 degree) with a power as close.
        assert len(a.peaks) == len(b.peaks), start
        for pa, pb in zip(a.peaks, b.peaks):
            assert abs((pa.azimuth - pb.azimuth + 180.0) % 360.0 - 180.0) <= 1.0 and pa.elevation == pb.elevation, start
        np.testing.assert_allclose([p.power for p in a.peaks], [p.power for p in b.peaks], rtol=1e-2)
        np.testing.assert_allclose(a.spectrum, b.spectrum, rtol=1e-3, atol=1e-4)


def test_live_engine_and_locate_give_the_same_estimates_block_for_block(prof, tmp_path):
    """`run --file --fast` (a file source replayed as fast as the analysis goes) and `locate` share
    the pipeline: with the engine stepping a block at a time, as locate does, every block's
    sources are the same, to the last digit written."""
    from doascope.app.cli.main import main
    from doascope.app.runtime.engine import AnalysisConfig, Engine
    from doascope.app.runtime.sources import file_source

    x = mixture(prof.positions, FS, [40.0, 200.0], seconds=3.0, seed=4, snr_db=15)
    dev = np.zeros((len(x), prof.channels), np.float32)
    dev[:, list(prof.mic_channels)] = 0.5 * x / np.abs(x).max()
    path = str(tmp_path / "two.wav")
    sf.write(path, dev, FS, subtype="FLOAT")
    out = tmp_path / "located.jsonl"
    assert main(["locate", path, "--profile", prof.id, "--sources", "2", "--output", str(out)]) == 0
    located = [json.loads(line) for line in out.read_text().splitlines()]

    def run(step_hops):
        engine = Engine(file_source(path, prof, speed=0), prof, AnalysisConfig(n_sources=2), step_hops=step_hops)
        frames = []
        engine.subscribe(frames.append)
        engine.start()
        assert engine.wait(120) and engine.error is None, engine.error
        return engine, frames

    _, frames = run(8)
    assert len(frames) == len(located) > 10
    for f, rec in zip(frames, located):
        assert round(f.t, 4) == rec["t"]
        assert [p.as_dict() for p in f.peaks] == rec["sources"]


@pytest.mark.parametrize("mics", [4, 8, 16])
@pytest.mark.parametrize("K", [1, 2, 3])
def test_jacobi_signal_subspaces_span_lapacks(mics, K):
    """The K principal eigenvectors by Jacobi rotations span the same subspace as LAPACK's (the
    projector E_s E_s^H is basis-free), also for a zero matrix and a degenerate one."""
    from doascope.dsp.music import signal_subspaces

    rng = np.random.default_rng(mics * 10 + K)
    X = rng.standard_normal((20, mics, 12)) + 1j * rng.standard_normal((20, mics, 12))
    R = X @ X.conj().transpose(0, 2, 1) / 12
    E = signal_subspaces(R.astype(np.complex64), K)
    _, V = np.linalg.eigh(R)
    want = V[:, :, mics - K:] @ V[:, :, mics - K:].conj().transpose(0, 2, 1)
    got = E.conj().transpose(0, 2, 1).astype(np.complex128) @ E
    np.testing.assert_allclose(got, want, atol=2e-6)
    for R in (np.zeros((1, mics, mics)), np.eye(mics)[None]):
        E = signal_subspaces(R.astype(np.complex64), K)
        np.testing.assert_allclose(E @ E.conj().transpose(0, 2, 1), np.eye(K)[None], atol=1e-6)  # orthonormal


# -- Coarse-to-fine frame maxima (doascope.dsp.srp_coarse.CoarseFineScan) ----------------------------------------

def _srp_numpy(r, lag_index, n_pairs=None):
    """Plain numpy SRP: sum over rows (pairs, or baselines) of r interpolated linearly at each point's
    lag index, divided by the number of pairs (default: one a row)."""
    return np.sum([np.interp(lag_index[p].astype(np.float64), np.arange(r.shape[1]), r[p])
                   for p in range(r.shape[0])], axis=0) / (r.shape[0] if n_pairs is None else n_pairs)


@pytest.mark.parametrize("pid, hemisphere", [("minidsp_uma16", True), ("respeaker_usb_v2", False)])
def test_coarse_to_fine_scan_finds_the_full_scans_maximum(pid, hemisphere):
    """On frames of one talker, two talkers and noise alone, the coarse-to-fine scan returns the full
    scan's maximum: the same grid point, and the same value as the plain-numpy SRP there to float32
    rounding. Exact by construction (each coarse cell's bound is >= every one of its points'
    SRP; a cell is skipped only when its bound is below the best value found, by more than
    BOUND_TOLERANCE), so the only tolerance is float32's (1e-5 on values of order 1)."""
    from doascope.dsp.grids import sphere_grid
    from doascope.dsp.srp_coarse import CoarseFineScan, coarse_cells

    prof_ = load_profile(pid)
    fs, nfft = prof_.sample_rate, 1024
    grid = sphere_grid(4.0, hemisphere=hemisphere)
    est = make_estimator("srp-phat", prof_.positions, fs=fs, nfft=nfft, grid=grid)
    cells = coarse_cells(grid.vectors, 8)
    assert cells.shape == (len(grid),) and set(np.unique(cells)) == set(range(cells.max() + 1))
    scan = CoarseFineScan(est.lookup, grid.vectors, 8)
    for k, (azimuths, snr) in enumerate([([70.0], 20), ([40.0, 200.0], 10), ([], None)]):
        if azimuths:
            x = mixture(prof_.positions, fs, azimuths, seconds=0.3, seed=k, snr_db=snr)
        else:
            x = np.random.default_rng(k).standard_normal((int(0.3 * fs), prof_.n_mics)).astype(np.float32)
        X = stft(x, nfft=nfft, hop=nfft // 2)
        Y = X[:, est.bins, :]
        Y = Y / (np.abs(Y) + np.float32(1e-20))
        pairs = est.gcc.pairs
        C = np.ascontiguousarray((Y[pairs[:, 0]] * np.conj(Y[pairs[:, 1]])).transpose(2, 0, 1))
        r = est.correlations(C)                     # one row per baseline
        per_pair = est.gcc.correlate_rows(C)
        points, values = scan.maxima(r)
        for s in range(r.shape[0]):
            want = _srp_numpy(per_pair[s], est.lag_index)
            assert want[points[s]] >= want.max() - 1e-5, (k, s)
            assert values[s] == pytest.approx(want.max(), abs=1e-5)
        full = est.lookup.rows(r)                  # the kernel's full scan: the same point, bit for bit
        np.testing.assert_array_equal(points, np.argmax(full, axis=1))
        np.testing.assert_array_equal(values, full.max(axis=1))


def test_vote_kernels_give_frame_vote_map():
    from doascope.dsp.extraction import VoteKernels, frame_vote_map
    from doascope.dsp.grids import sphere_grid

    grid = sphere_grid(5.0)
    kernels = VoteKernels(grid, keep=4)
    rng = np.random.default_rng(2)
    for _ in range(5):   # points seen again and new ones, past the columns kept
        points = rng.integers(0, len(grid), 6)
        weights = rng.random(6)
        np.testing.assert_allclose(kernels.map(points, weights), frame_vote_map(grid, points, weights),
                                   rtol=1e-6, atol=1e-7)
