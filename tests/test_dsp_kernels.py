"""Every numeric kernel of doascope.dsp against a slow, obviously-correct reference (reference.py)
on seeded random inputs and exact plane waves, plus the validation of their inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

import reference as ref
from helpers import azimuth_error, plane_wave, unit_vector

import doascope.dsp as dsp
from doascope import DoascopeError, ParameterError
from doascope.dsp import (
    GccPhat,
    Localizer,
    array_geometry,
    circle_grid,
    covariances,
    default_grid,
    energy_coherence,
    find_peaks,
    make_estimator,
    mic_pairs,
    music_spectrum,
    pair_tdoas,
    phat_cross_spectra,
    sphere_grid,
    srp_from_correlations,
    steering,
    stft,
)
from doascope.hardware_profiles import load_profile

FS = 16000
NFFT = 512
SQUARE = load_profile("respeaker_usb_v2").positions          # 4 mics, 6.4 cm across
HEXAGON = load_profile("respeaker_6mic").positions


def rng(seed=0):
    return np.random.default_rng(seed)


def random_stft(mics=4, freqs=NFFT // 2 + 1, frames=8, seed=0):
    g = rng(seed)
    shape = (mics, freqs, frames)
    return (g.standard_normal(shape) + 1j * g.standard_normal(shape)).astype(np.complex64)


def assert_rel(actual, desired, tol, what=""):
    """max |actual - desired| <= tol * max |desired|: relative to the array's scale, not elementwise."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, f"{what} shape {actual.shape} != {desired.shape}"
    err = np.max(np.abs(actual - desired)) / max(np.max(np.abs(desired)), 1e-300)
    assert err <= tol, f"{what} relative error {err:.3g} > {tol:g}"


# --- STFT ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("nfft, hop, window, channels, samples", [
    (512, 256, "hann", 4, 16000),
    (512, 128, "hann", 2, 5000),
    (256, 256, "hamming", 3, 3000),
    (1024, 300, "blackman", 1, 4321),
    (64, 17, "hann", 2, 64),      # exactly one frame
])
def test_stft_matches_loop_reference(nfft, hop, window, channels, samples):
    x = rng(1).standard_normal((samples, channels)).astype(np.float32)
    X = stft(x, nfft=nfft, hop=hop, window=window)
    assert X.dtype == np.complex64 and X.flags.c_contiguous
    assert X.shape == (channels, nfft // 2 + 1, dsp.n_frames(samples, nfft, hop))
    assert_rel(X, ref.stft(x, nfft, hop, window), 1e-5, "stft")


def test_stft_matches_scipy_shorttimefft():
    x = rng(2).standard_normal((8000, 3)).astype(np.float32)
    nfft, hop = 512, 128
    X = stft(x, nfft=nfft, hop=hop)
    # ShortTimeFFT centres slice p on sample p*hop + k_offset; k_offset = nfft/2 starts it at p*hop.
    # phase_shift=None: a plain FFT of each windowed slice (its default references phase to the centre).
    sft = scipy.signal.ShortTimeFFT(scipy.signal.get_window("hann", nfft), hop=hop, fs=FS,
                                    fft_mode="onesided", scale_to=None, phase_shift=None)
    want = sft.stft(x.T.astype(np.float64), p0=0, p1=X.shape[2], k_offset=nfft // 2)
    assert_rel(X, want, 1e-5, "stft vs ShortTimeFFT")


def test_stft_matches_scipy_stft():
    x = rng(3).standard_normal((6000, 2)).astype(np.float32)
    nfft, hop = 256, 64
    X = stft(x, nfft=nfft, hop=hop)
    w = scipy.signal.get_window("hann", nfft)
    _, _, Z = scipy.signal.stft(x.T.astype(np.float64), window=w, nperseg=nfft, noverlap=nfft - hop,
                                boundary=None, padded=False, detrend=False)
    # scipy's default scaling="spectrum" divides by the window's sum; doascope's STFT is unscaled.
    assert_rel(X, Z * w.sum(), 1e-5, "stft vs scipy.signal.stft")


def test_stft_defaults_and_edge_cases():
    x = np.zeros((16000, 4), np.float32)
    assert stft(x, nfft=512, hop=256).shape == (4, 257, 61)
    assert stft(x, nfft=512).shape == (4, 257, 61)                 # hop defaults to nfft // 2
    assert stft(x[:, 0], nfft=512).shape == (1, 257, 61)           # mono as (samples,)
    assert stft(x[:100], nfft=512).shape == (4, 257, 0)            # shorter than a frame: no frames
    y = rng(4).standard_normal((2048, 2))                           # float64 in, complex64 out
    assert stft(y, nfft=256).dtype == np.complex64


def test_frequencies():
    f = dsp.frequencies(FS, NFFT)
    assert f.shape == (257,) and f[0] == 0 and f[-1] == FS / 2
    np.testing.assert_allclose(f, np.fft.rfftfreq(NFFT, 1 / FS))


# --- PHAT cross-spectra and GCC-PHAT -----------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
def test_phat_cross_spectra_matches_reference(weighted):
    X = random_stft(mics=5, frames=7, seed=5)
    bins = np.arange(10, 113)
    pairs = mic_pairs(5)
    w = rng(6).uniform(0, 2, (bins.size, 7)).astype(np.float32) if weighted else None
    C = phat_cross_spectra(X, bins, pairs, w)
    assert C.shape == (10, bins.size) and C.dtype == np.complex64
    np.testing.assert_allclose(C, ref.phat_cross_spectra(X, bins, pairs, w), atol=1e-5)
    assert np.all(np.abs(C) <= 1 + 1e-5)


def test_phat_cross_spectra_of_a_plane_wave_have_unit_modulus():
    x = plane_wave(SQUARE, FS, 63.0, seconds=0.3)
    X = stft(x, nfft=NFFT)
    bins = np.arange(10, 113)
    C = phat_cross_spectra(X, bins, mic_pairs(4))
    # Not exactly 1: a fractional delay of a windowed frame is not exactly a phase shift, so the
    # per-frame phases scatter a little before averaging.
    assert np.all(np.abs(C) <= 1 + 1e-6) and np.mean(np.abs(C)) > 0.999 and np.min(np.abs(C)) > 0.95


def test_phat_cross_spectra_zero_bins_count_as_silent_frames():
    X = random_stft(mics=3, frames=4, seed=7)
    X[:, :, 1] = 0
    bins = np.arange(5, 20)
    np.testing.assert_allclose(phat_cross_spectra(X, bins, mic_pairs(3)),
                               ref.phat_cross_spectra(X, bins, mic_pairs(3)), atol=1e-5)


def test_mic_pairs_and_pair_tdoas():
    np.testing.assert_array_equal(mic_pairs(4), ref.pairs(4))
    v = sphere_grid(20).vectors
    tau = pair_tdoas(HEXAGON, v)
    want = np.array([[ref.tdoa(HEXAGON, u, i, j) for u in v] for i, j in ref.pairs(6)])
    np.testing.assert_allclose(tau, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("positions, fs", [(SQUARE, 16000), (HEXAGON, 16000),
                                           (load_profile("matrix_creator").positions, 48000)])
def test_gcc_correlate_matches_direct_sums(positions, fs):
    nfft = 512 if fs == 16000 else 2048
    gcc = GccPhat(positions, fs=fs, nfft=nfft)
    X = random_stft(mics=len(positions), freqs=nfft // 2 + 1, frames=8, seed=8)
    C = gcc.cross_spectra(X)
    np.testing.assert_allclose(C, ref.phat_cross_spectra(X, gcc.bins, gcc.pairs), atol=1e-5)
    r = gcc.correlate(X)
    assert r.shape == (len(gcc.pairs), len(gcc.lags)) and r.dtype == np.float32
    np.testing.assert_allclose(r, ref.gcc(C, gcc.freqs, gcc.lags), atol=2e-6)
    # the lag grid spans every pair's physical range, symmetric about 0
    dmax = max(np.linalg.norm(positions[j] - positions[i]) for i, j in gcc.pairs)
    assert gcc.lags[-1] >= dmax / gcc.c and np.allclose(gcc.lags, -gcc.lags[::-1])
    np.testing.assert_allclose(np.diff(gcc.lags), gcc.step)


def test_gcc_correlate_at_arbitrary_lags():
    gcc = GccPhat(SQUARE, fs=FS, nfft=NFFT)
    C = gcc.cross_spectra(random_stft(seed=9))
    lags = rng(10).uniform(gcc.lags[0], gcc.lags[-1], 25)
    # correlate_cross is exact at the grid lags; between them interpolation is tested with SRP.
    r = gcc.correlate_cross(C)
    k = np.searchsorted(gcc.lags, lags)
    np.testing.assert_allclose(r[:, k], ref.gcc(C, gcc.freqs, gcc.lags[k]), atol=2e-6)


def test_gcc_of_a_plane_wave_peaks_at_one():
    x = plane_wave(SQUARE, FS, 211.0, seconds=0.3)
    gcc = GccPhat(SQUARE, fs=FS, nfft=NFFT)
    r = gcc.correlate(stft(x, nfft=NFFT))
    assert np.all(np.abs(r.max(axis=1) - 1.0) < 2e-3)


@pytest.mark.parametrize("pid", ["respeaker_usb_v2", "ps3_eye", "respeaker_6mic", "matrix_creator", "azimut_cma"])
@pytest.mark.parametrize("az, el", [(23.7, 0.0), (141.2, 10.0), (266.6, -25.0)])
def test_gcc_tdoas_are_sub_sample_accurate(pid, az, el):
    p = load_profile(pid)
    if p.geometry != "3d" and el < 0:
        el = -el  # planar arrays: the mirror image has the same TDOAs anyway
    fs = p.sample_rate
    nfft = 512 if fs == 16000 else 2048
    gcc = GccPhat(p.positions, fs=fs, nfft=nfft)
    x = plane_wave(p.positions, fs, az, el, seconds=0.3, seed=11)
    tau = gcc.tdoas(gcc.correlate(stft(x, nfft=nfft)))
    want = pair_tdoas(p.positions, unit_vector(az, el)[None])[:, 0]
    err = np.abs(tau - want)
    assert err.max() < 2e-6, f"worst TDOA error {err.max() * 1e6:.2f} us (sample period {1e6 / fs:.1f} us)"


# --- SRP-PHAT ------------------------------------------------------------------------------------

def test_srp_from_correlations_is_linear_interpolation():
    r = rng(12).standard_normal((6, 40)).astype(np.float32)
    idx = rng(13).uniform(0, 39, (6, 500)).astype(np.float32)
    idx[:, :3] = [0.0, 39.0, 17.0]                 # both ends of the lag grid, and an exact lag
    out = srp_from_correlations(r, idx)
    want = np.mean([np.interp(idx[p].astype(np.float64), np.arange(40), r[p]) for p in range(6)], axis=0)
    np.testing.assert_allclose(out, want, atol=1e-5)


@pytest.mark.parametrize("positions, grid", [
    (SQUARE, circle_grid(1.0)),
    (HEXAGON, circle_grid(1.0)),
    (load_profile("azimut_cma").positions, sphere_grid(6.0)),
])
def test_srp_matches_exact_srp(positions, grid):
    est = make_estimator("srp-phat", positions, fs=FS, nfft=NFFT, grid=grid)
    az, el = 123.4, (0.0 if grid.kind == "circle" else -17.0)
    wave = stft(plane_wave(positions, FS, az, el, seconds=0.3, seed=14), nfft=NFFT)
    # Linear interpolation of a sum of cosines between lags `step` apart is off by at most
    # step^2 / 8 * max|r''| <= step^2 / 8 * (2 pi f_max)^2.
    bound = est.gcc.step**2 / 8 * (2 * np.pi * est.gcc.freqs[-1]) ** 2
    assert bound < 1e-2
    for X in (wave, random_stft(mics=len(positions), seed=15)):
        fast = est.spectrum(X)
        exact = ref.srp_phat(X, positions, est.gcc.freqs, est.bins, grid.vectors)
        assert np.max(np.abs(fast - exact)) <= bound + 1e-5
    # on the plane wave both peak at the same place, next to the truth
    fast = est.spectrum(wave)
    exact = ref.srp_phat(wave, positions, est.gcc.freqs, est.bins, grid.vectors).astype(np.float32)
    pf, pe = find_peaks(fast, grid, 1)[0], find_peaks(exact, grid, 1)[0]
    if grid.kind == "circle":
        assert azimuth_error(pf.azimuth, pe.azimuth) < 0.5
        assert azimuth_error(pe.azimuth, az) < 0.5
    else:
        assert ref.angle(unit_vector(pf.azimuth, pf.elevation), unit_vector(pe.azimuth, pe.elevation)) < 0.5
        assert ref.angle(unit_vector(pe.azimuth, pe.elevation), unit_vector(az, el)) < grid.resolution
    # a coherent plane wave scores ~1 at its direction (windowing costs a little, see above)
    u = unit_vector(az, el)[None]
    assert ref.srp_phat(wave, positions, est.gcc.freqs, est.bins, u)[0] == pytest.approx(1.0, abs=1e-2)


# --- covariances and MUSIC -----------------------------------------------------------------------

def test_covariances_match_reference():
    X = random_stft(mics=6, frames=9, seed=16)
    bins = np.array([3, 10, 11, 200, 256])
    R = covariances(X, bins)
    assert R.shape == (5, 6, 6) and R.dtype == np.complex64
    assert_rel(R, ref.covariances(X, bins), 1e-6, "covariances")
    np.testing.assert_array_equal(R, np.conj(np.transpose(R, (0, 2, 1))))  # exactly Hermitian


def test_steering_matches_reference():
    v = sphere_grid(15).vectors
    f = np.array([300.0, 1234.5, 3500.0])
    np.testing.assert_allclose(steering(HEXAGON, v, f), ref.steering(HEXAGON, v, f), atol=1e-6)


@pytest.mark.parametrize("normalise", [False, True], ids=["music", "normmusic"])
@pytest.mark.parametrize("mics, K", [(4, 1), (6, 2), (7, 3)])
def test_music_spectrum_matches_reference_on_random_covariances(normalise, mics, K):
    pos = rng(17).uniform(-0.05, 0.05, (mics, 3))
    X = random_stft(mics=mics, frames=3 * mics, seed=18)      # well-conditioned, full-rank R
    bins = np.arange(20, 30)
    freqs = bins * FS / NFFT
    grid = circle_grid(5.0)
    R = covariances(X, bins)
    A = steering(pos, grid.vectors, freqs)
    got = music_spectrum(R, A, K, normalise=normalise)
    assert got.shape == (len(grid),) and got.dtype == np.float32
    want = ref.music(R, A, K, normalise)
    np.testing.assert_allclose(got, want, rtol=1e-3)


@pytest.mark.parametrize("method", ["music", "normmusic"])
def test_music_estimator_matches_reference_on_a_noisy_plane_wave(method):
    grid = circle_grid(2.0)
    est = make_estimator(method, HEXAGON, fs=FS, nfft=NFFT, grid=grid)
    X = stft(plane_wave(HEXAGON, FS, 77.7, seconds=0.3, seed=19, snr_db=10), nfft=NFFT)
    got = est.spectrum(X)
    want = ref.music(ref.covariances(X, est.bins), ref.steering(HEXAGON, grid.vectors, est.bins * FS / NFFT),
                     1, method == "normmusic")
    want /= want.max()
    assert got.max() == pytest.approx(1.0)
    np.testing.assert_allclose(got, want, atol=1e-2)
    assert azimuth_error(grid.azimuth[np.argmax(got)], 77.7) <= 1.0


# --- activity ------------------------------------------------------------------------------------

def test_energy_coherence_matches_reference():
    X = random_stft(mics=5, frames=6, seed=20)
    bins = np.arange(10, 60)
    e, c = energy_coherence(X, bins)
    e_ref, c_ref = ref.energy_coherence(X, bins)
    assert e == pytest.approx(e_ref, rel=1e-5) and c == pytest.approx(c_ref, rel=1e-5)


def test_energy_coherence_of_plane_wave_and_white_noise():
    bins = np.arange(10, 113)
    X = stft(plane_wave(SQUARE, FS, 10.0, seconds=0.3), nfft=NFFT)[:, :, :8]
    assert energy_coherence(X, bins)[1] == pytest.approx(1.0, abs=1e-3)  # windowing: see above
    T = 8
    noise = stft(rng(21).standard_normal((NFFT // 2 * (T + 1), 4)).astype(np.float32), nfft=NFFT)
    assert noise.shape[2] == T
    c = energy_coherence(noise, bins)[1]
    assert 0.5 / T < c < 2.0 / T   # E[MSC] of independent noise is 1/frames
    assert energy_coherence(np.zeros_like(X), bins) == (0.0, 0.0)


@pytest.mark.skipif(not hasattr(dsp, "dpd_weights"), reason="no direct-path-dominance weights in this build")
@pytest.mark.parametrize("power, frames, freqs", [(2.0, 3, 3), (1.0, 5, 1), (0.0, 3, 3)])
def test_dpd_weights_match_reference(power, frames, freqs):
    X = random_stft(mics=4, frames=6, seed=22)
    bins = np.arange(10, 40)
    got = dsp.dpd_weights(X, bins, power=power, frames=frames, freqs=freqs)
    assert got.shape == (bins.size, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref.dpd_weights(X, bins, power, frames, freqs), atol=1e-5)


@pytest.mark.skipif("srp-dpd" not in dsp.ESTIMATORS, reason="no srp-dpd in this build")
def test_srp_dpd_is_srp_on_dpd_weighted_cross_spectra():
    est = make_estimator("srp-dpd", SQUARE, fs=FS, nfft=NFFT, grid=circle_grid(2.0))
    X = random_stft(mics=4, frames=6, seed=24)
    w = ref.dpd_weights(X, est.bins, est.power)
    C = ref.phat_cross_spectra(X, est.bins, mic_pairs(4), w)
    exact = ref.srp_phat_from_cross(C, SQUARE, est.gcc.freqs, est.grid.vectors)
    bound = est.gcc.step**2 / 8 * (2 * np.pi * est.gcc.freqs[-1]) ** 2
    assert np.max(np.abs(est.spectrum(X) - exact)) <= bound + 1e-4


@pytest.mark.skipif(not hasattr(dsp.Estimator, "statistics"), reason="estimators without statistics()")
@pytest.mark.parametrize("method", sorted(m for m in dsp.ESTIMATORS if m != "dnn"))
def test_localizer_smoothing_averages_statistics(method):
    est = make_estimator(method, SQUARE, fs=FS, nfft=NFFT, grid=circle_grid(2.0))
    x = plane_wave(SQUARE, FS, 33.0, seconds=1.0, seed=25, snr_db=5)
    loc = Localizer(est, frames_per_block=8, smoothing=0.6)
    blocks = list(loc.locate(x, FS))
    assert all(b.active for b in blocks[:2])
    X = stft(x, nfft=NFFT)
    s1, s2 = est.statistics(X[:, :, :8]), est.statistics(X[:, :, 8:16])
    np.testing.assert_allclose(blocks[0].spectrum, est.spectrum(X[:, :, :8]), atol=1e-5)
    np.testing.assert_allclose(blocks[1].spectrum, est.spectrum_from(0.6 * s1 + 0.4 * s2), atol=1e-5)


# --- peak picking --------------------------------------------------------------------------------

def bumps(grid, centres, heights, width=8.0):
    """Sum of von Mises-like bumps on a grid: smooth spectra with known maxima."""
    s = np.zeros(len(grid))
    for (az, el), h in zip(centres, heights):
        s += h * np.exp((grid.vectors @ unit_vector(az, el) - 1) / np.radians(width) ** 2)
    return s.astype(np.float32)


def parabola(grid, az0, height=1.0, half_width=20.0):
    """1 - (d/half_width)^2 around az0 (wrapped distance), 0 beyond: parabolic interpolation is exact."""
    d = (grid.azimuth - az0 + 180.0) % 360.0 - 180.0
    return (height * np.maximum(1 - (d / half_width) ** 2, 0)).astype(np.float32)


@pytest.mark.parametrize("az0", [359.6, 0.3, 0.0, 180.25])
def test_find_peaks_wraps_around_zero(az0):
    grid = circle_grid(1.0)
    (pk,) = find_peaks(parabola(grid, az0), grid, 1)
    assert 0.0 <= pk.azimuth < 360.0
    assert azimuth_error(pk.azimuth, az0) < 1e-3
    assert pk.index == int(np.round(az0)) % 360
    assert pk.power == pytest.approx(1.0, abs=1e-5)


def test_find_peaks_open_arc_does_not_wrap():
    closed = circle_grid(1.0)
    arc = circle_grid(1.0, arc=(0.0, 359.0))
    np.testing.assert_allclose(arc.azimuth, closed.azimuth)
    assert not arc.closed
    s = parabola(closed, 359.5)
    # closed: one peak between 359 and 0; open: each end is a maximum of its own, not refined
    assert len(find_peaks(s, closed, 5, min_separation=0.5)) == 1
    peaks = find_peaks(s, arc, 5, min_separation=0.5)
    assert sorted(p.azimuth for p in peaks) == [0.0, 359.0]
    # ends are 1 degree apart on the sphere, so a 20-degree separation keeps only one
    assert len(find_peaks(s, arc, 5, min_separation=20.0)) == 1


def test_find_peaks_min_separation_and_order():
    grid = circle_grid(1.0)
    s = np.maximum.reduce([parabola(grid, 100.0, 1.0, 8), parabola(grid, 110.0, 0.8, 8),
                           parabola(grid, 200.0, 0.5, 8)])
    az = lambda peaks: [round(p.azimuth, 3) for p in peaks]  # noqa: E731
    assert az(find_peaks(s, grid, 2, min_separation=20)) == [100.0, 200.0]
    assert az(find_peaks(s, grid, 2, min_separation=5)) == [100.0, 110.0]
    assert az(find_peaks(s, grid, 3, min_separation=5)) == [100.0, 110.0, 200.0]
    assert az(find_peaks(s, grid, 3, min_separation=5, min_relative=0.6)) == [100.0, 110.0]
    assert az(find_peaks(s, grid, 1)) == [100.0]


def test_find_peaks_flat_top_gives_one_peak():
    grid = circle_grid(10.0)
    s = np.zeros(len(grid), np.float32)
    s[[5, 6]] = 1.0
    assert [p.index for p in find_peaks(s, grid, 5, min_separation=0)] == [5]
    sphere = sphere_grid(20.0)
    s = np.zeros(len(sphere), np.float32)
    s[[3, 9]] = 1.0
    s[sphere.neighbours[3][sphere.neighbours[3] >= 0]] = 1.0   # a plateau around point 3
    peaks = find_peaks(s, sphere, 50, min_separation=0)
    assert sum(1 for p in peaks if p.index == 3 or p.index in sphere.neighbours[3]) == 1


def test_find_peaks_non_finite_spectrum_gives_none():
    grid = circle_grid(5.0)
    s = np.ones(len(grid), np.float32)
    s[3] = np.nan
    assert find_peaks(s, grid, 1) == []


@pytest.mark.parametrize("kind", ["closed", "arc", "sphere", "hemisphere"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_find_peaks_matches_brute_force(kind, seed):
    grid = {"closed": circle_grid(3.0), "arc": circle_grid(2.0, arc=(-60.0, 120.0)),
            "sphere": sphere_grid(10.0), "hemisphere": sphere_grid(8.0, hemisphere=True)}[kind]
    s = rng(100 + seed).random(len(grid)).astype(np.float32)    # many maxima, no ties
    n, sep = 6, 25.0
    if grid.kind == "circle":
        cand = ref.local_maxima_circle(s, grid.closed)
    else:
        cand = ref.local_maxima_sphere(s, grid.vectors, 1.9 * grid.resolution)
    # every local maximum, with no separation
    allp = find_peaks(s, grid, len(grid), min_separation=0.0)
    assert sorted(p.index for p in allp) == sorted(cand)
    # the greedy selection
    want = ref.pick(s, grid.vectors, cand, n, sep, min_relative=0.3)
    got = find_peaks(s, grid, n, min_separation=sep, min_relative=0.3)
    assert [p.index for p in got] == want
    for p in got:
        g = p.index
        if grid.kind == "circle" and (grid.closed or 0 < g < len(grid) - 1):
            G = len(grid)
            d = ref.parabolic_offset(s[(g - 1) % G], s[g], s[(g + 1) % G])
            assert azimuth_error(p.azimuth, grid.azimuth[g] + d * grid.resolution) < 1e-6
            assert abs(d) <= 0.5
        else:
            assert p.azimuth == grid.azimuth[g] and p.elevation == grid.elevation[g]
            assert p.power == s[g]


def test_find_peaks_on_sphere_finds_smooth_bumps():
    grid = sphere_grid(2.0)
    centres = [(30.0, 40.0), (200.0, -20.0), (300.0, 75.0)]
    s = bumps(grid, centres, [1.0, 0.9, 0.8])
    peaks = find_peaks(s, grid, 3)
    assert len(peaks) == 3
    for p, (az, el) in zip(peaks, centres):
        assert ref.angle(unit_vector(p.azimuth, p.elevation), unit_vector(az, el)) < 2.0
    assert peaks[0].power >= peaks[1].power >= peaks[2].power


def test_peak_as_dict():
    d = dsp.Peak(123.456789, -4.0, 0.123456789, 5).as_dict()
    assert d == {"azimuth": 123.46, "elevation": -4.0, "power": 0.1235}


# --- grids ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("res, n", [(1.0, 360), (0.5, 720), (5.0, 72), (45.0, 8)])
def test_circle_grid(res, n):
    g = circle_grid(res)
    assert len(g) == n and g.kind == "circle" and g.closed
    np.testing.assert_allclose(np.diff(g.azimuth), 360.0 / n)
    assert g.azimuth[0] == 0 and np.all(g.azimuth < 360) and np.all(g.elevation == 0)
    np.testing.assert_allclose(g.vectors, unit_vector_rows(g.azimuth, g.elevation), atol=1e-12)


def unit_vector_rows(az, el):
    return np.array([unit_vector(a, e) for a, e in zip(az, el)])


def test_circle_grid_arc_and_elevation():
    g = circle_grid(1.0, arc=(-90.0, 90.0), elevation=15.0)
    assert len(g) == 181 and not g.closed
    assert g.azimuth[0] == 270.0 and g.azimuth[90] == 0.0 and g.azimuth[-1] == 90.0
    assert np.all(g.elevation == 15.0)
    np.testing.assert_allclose(g.vectors, unit_vector_rows(g.azimuth, g.elevation), atol=1e-12)


@pytest.mark.parametrize("res", [2.0, 5.0, 10.0])
def test_sphere_grid_spacing(res):
    from scipy.spatial import cKDTree

    g = sphere_grid(res)
    assert g.kind == "sphere"
    assert len(g) == pytest.approx(4 * np.pi / np.radians(res) ** 2, rel=0.01)
    np.testing.assert_allclose(np.linalg.norm(g.vectors, axis=1), 1.0)
    np.testing.assert_allclose(g.vectors, unit_vector_rows(g.azimuth, g.elevation), atol=1e-9)
    tree = cKDTree(g.vectors)
    d, _ = tree.query(g.vectors, k=2)
    nn = np.degrees(2 * np.arcsin(d[:, 1] / 2))
    assert 0.8 * res < np.median(nn) < 1.3 * res
    # every direction lies within one resolution of a grid point
    probe = rng(23).standard_normal((20000, 3))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    d, _ = tree.query(probe)
    assert np.degrees(2 * np.arcsin(d.max() / 2)) < res
    # neighbour lists: symmetric, within 1.9 resolutions, no self
    nb = g.neighbours
    for i in range(0, len(g), max(1, len(g) // 50)):
        js = nb[i][nb[i] >= 0]
        assert i not in js and len(js) >= 4
        assert all(i in nb[j] for j in js)
        assert all(ref.angle(g.vectors[i], g.vectors[j]) <= 1.9 * res + 1e-6 for j in js)


def test_sphere_grid_hemisphere():
    full, half = sphere_grid(3.0), sphere_grid(3.0, hemisphere=True)
    assert np.all(half.elevation >= 0) and full.elevation.min() < -85
    assert len(half) == pytest.approx(len(full) / 2, rel=0.02)
    assert half.elevation.max() > 85
    low = sphere_grid(3.0, min_elevation=-30.0)
    assert low.elevation.min() >= -30.0 and low.elevation.min() < -28


def test_default_grid_by_geometry():
    g = default_grid(SQUARE)
    assert g.kind == "circle" and g.closed and len(g) == 360
    g = default_grid(load_profile("azimut_cma").positions)
    assert g.kind == "sphere" and g.elevation.min() < -80 and g.resolution == 2.0
    g = default_grid(SQUARE, kind="sphere")
    assert g.kind == "sphere" and g.elevation.min() >= 0
    assert default_grid(SQUARE, resolution=2.0).resolution == 2.0
    assert array_geometry(SQUARE) == "planar"
    assert array_geometry(load_profile("ps3_eye").positions) == "linear"
    assert array_geometry(load_profile("azimut_cma").positions) == "3d"


def _check_half_plane(grid, positions):
    axis = positions[np.argmax(np.linalg.norm(positions - positions[0], axis=1))] - positions[0]
    axis /= np.linalg.norm(axis)
    assert grid.kind == "circle" and not grid.closed and len(grid) == 181
    side = np.cross(axis, grid.vectors)[:, 2]
    # ends on the axis (endfire), everything else on one side of it: no direction's mirror image
    assert abs(side[0]) < 1e-9 and abs(side[-1]) < 1e-9
    assert np.all(side[1:-1] > 0) or np.all(side[1:-1] < 0)


def test_default_grid_linear_ps3_eye_is_the_front_half_plane():
    pos = load_profile("ps3_eye").positions
    g = default_grid(pos)
    _check_half_plane(g, pos)
    assert 0.0 in g.azimuth[1:-1]                    # azimuth 0 (+x) inside, not at an end
    assert np.all(g.vectors[:, 0] > -1e-9)          # the +x half-plane
    with pytest.raises(ParameterError):
        default_grid(pos, kind="sphere")


@pytest.mark.parametrize("alpha", [30.0, 90.0, 135.0, -60.0, 0.0, 180.0])
def test_default_grid_linear_any_orientation(alpha):
    pos = np.array([unit_vector(alpha) * d for d in (-0.05, -0.01, 0.02, 0.06)])
    g = default_grid(pos)
    _check_half_plane(g, pos)
    if abs(np.sin(np.radians(alpha))) > 1e-9:
        assert np.any(np.abs(g.azimuth[1:-1]) < 1e-9)       # holds +x in its interior
    else:
        assert np.all(g.vectors[1:-1, 1] > 0)               # along x: the +y (left) side


def test_angular_distance_and_directions():
    az, el = dsp.directions(unit_vector_rows([10.0, 350.0, 180.0], [0.0, 45.0, -89.0]))
    np.testing.assert_allclose(az, [10.0, 350.0, 180.0], atol=1e-9)
    np.testing.assert_allclose(el, [0.0, 45.0, -89.0], atol=1e-9)
    assert dsp.angular_distance(359.0, 0.0, 1.0, 0.0) == pytest.approx(2.0)
    assert dsp.angular_distance(0.0, 90.0, 123.0, 90.0) == pytest.approx(0.0, abs=1e-6)


# --- channel levels ------------------------------------------------------------------------------

def test_channel_levels_match_numpy():
    """One pass over the samples gives the meters' numpy formulas: max |x| and sqrt(mean x^2) in float64."""
    x = (rng(31).standard_normal((2048, 16)) * [10.0 ** -k for k in range(16)]).astype(np.float32)
    x[100, 3] = -7.5                                           # a negative peak
    peak, rms = dsp.channel_levels(x)
    assert peak.dtype == rms.dtype == np.float32 and peak.shape == rms.shape == (16,)
    np.testing.assert_array_equal(peak, np.abs(x).max(axis=0))
    np.testing.assert_allclose(rms, np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=0)).astype(np.float32),
                               rtol=1e-6)
    x[5, 0] = np.nan                                           # NaN shows, as in numpy's max
    assert np.isnan(dsp.channel_levels(x)[0][0]) and not np.isnan(dsp.channel_levels(x)[0][1:]).any()
    np.testing.assert_array_equal(dsp.channel_levels(np.zeros((1, 2), np.float32)), np.zeros((2, 2)))


# --- input validation ----------------------------------------------------------------------------

X4 = random_stft(mics=4, seed=30)
BINS = np.arange(10, 113)
BAD_CALLS = {
    "stft int audio": lambda: stft(np.zeros((1000, 2), np.int16)),
    "levels 1-D audio": lambda: dsp.channel_levels(np.zeros(10, np.float32)),
    "levels no samples": lambda: dsp.channel_levels(np.zeros((0, 2), np.float32)),
    "stft 3-D audio": lambda: stft(np.zeros((10, 10, 10), np.float32)),
    "stft complex audio": lambda: stft(np.zeros((1000, 2), np.complex64)),
    "stft nfft 0": lambda: stft(np.zeros((1000, 2), np.float32), nfft=0),
    "stft nfft fractional": lambda: stft(np.zeros((1000, 2), np.float32), nfft=100.5),
    "stft hop > nfft": lambda: stft(np.zeros((1000, 2), np.float32), nfft=64, hop=65),
    "stft unknown window": lambda: stft(np.zeros((1000, 2), np.float32), window="nope"),
    "phat real X": lambda: phat_cross_spectra(X4.real, BINS, mic_pairs(4)),
    "phat 2-D X": lambda: phat_cross_spectra(X4[0], BINS, mic_pairs(4)),
    "phat no frames": lambda: phat_cross_spectra(X4[:, :, :0], BINS, mic_pairs(4)),
    "phat bins out of range": lambda: phat_cross_spectra(X4, [10, 257], mic_pairs(4)),
    "phat negative bin": lambda: phat_cross_spectra(X4, [-1, 10], mic_pairs(4)),
    "phat no bins": lambda: phat_cross_spectra(X4, [], mic_pairs(4)),
    "phat pair out of range": lambda: phat_cross_spectra(X4, BINS, [[0, 4]]),
    "phat pairs wrong shape": lambda: phat_cross_spectra(X4, BINS, [0, 1, 2]),
    "phat weights wrong shape": lambda: phat_cross_spectra(X4, BINS, mic_pairs(4), np.ones((3, 8))),
    "phat negative weights": lambda: phat_cross_spectra(X4, BINS, mic_pairs(4), -np.ones((BINS.size, 8))),
    "gcc positions wrong shape": lambda: GccPhat(np.zeros((4, 2)), fs=FS, nfft=NFFT),
    "gcc one mic": lambda: GccPhat(np.zeros((1, 3)), fs=FS, nfft=NFFT),
    "gcc NaN position": lambda: GccPhat(np.array([[0, 0, 0], [np.nan, 0, 0]]), fs=FS, nfft=NFFT),
    "gcc negative fs": lambda: GccPhat(SQUARE, fs=-1, nfft=NFFT),
    "gcc band reversed": lambda: GccPhat(SQUARE, fs=FS, nfft=NFFT, band=(3000, 300)),
    "gcc band above Nyquist": lambda: GccPhat(SQUARE, fs=FS, nfft=NFFT, band=(9000, 9500)),
    "gcc band without bins": lambda: GccPhat(SQUARE, fs=FS, nfft=NFFT, band=(100.0, 101.0)),
    "gcc band not a pair": lambda: GccPhat(SQUARE, fs=FS, nfft=NFFT, band=300),
    "gcc wrong mic count": lambda: GccPhat(SQUARE, fs=FS, nfft=NFFT).correlate(random_stft(mics=3)),
    "gcc wrong nfft": lambda: GccPhat(SQUARE, fs=FS, nfft=NFFT).correlate(random_stft(freqs=129)),
    "pair_tdoas bad positions": lambda: pair_tdoas(np.zeros(3), np.eye(3)),
    "srp pair axis mismatch": lambda: srp_from_correlations(np.zeros((6, 10)), np.zeros((5, 3))),
    "srp 1-D correlations": lambda: srp_from_correlations(np.zeros(10), np.zeros((1, 3))),
    "srp lag index too large": lambda: srp_from_correlations(np.zeros((2, 10)), np.full((2, 3), 9.5)),
    "srp negative lag index": lambda: srp_from_correlations(np.zeros((2, 10)), np.full((2, 3), -0.5)),
    "covariances real X": lambda: covariances(X4.real, BINS),
    "covariances bins out of range": lambda: covariances(X4, [300]),
    "steering bad positions": lambda: steering(np.zeros((3, 4)), np.eye(3), [1000.0]),
    "music mics mismatch": lambda: music_spectrum(np.eye(4, dtype=np.complex64)[None].repeat(5, 0),
                                                  np.zeros((5, 3, 10), np.complex64), 1),
    "music bins mismatch": lambda: music_spectrum(np.eye(4, dtype=np.complex64)[None].repeat(5, 0),
                                                  np.zeros((6, 4, 10), np.complex64), 1),
    "music non-square R": lambda: music_spectrum(np.zeros((5, 4, 3), np.complex64),
                                                 np.zeros((5, 4, 10), np.complex64), 1),
    "music K = 0": lambda: music_spectrum(np.eye(4, dtype=np.complex64)[None].repeat(5, 0),
                                          np.zeros((5, 4, 10), np.complex64), 0),
    "music K = M": lambda: music_spectrum(np.eye(4, dtype=np.complex64)[None].repeat(5, 0),
                                          np.zeros((5, 4, 10), np.complex64), 4),
    "peaks wrong length": lambda: find_peaks(np.zeros(10), circle_grid(1.0), 1),
    "peaks n_peaks 0": lambda: find_peaks(np.zeros(360), circle_grid(1.0), 0),
    "circle resolution 0": lambda: circle_grid(0.0),
    "circle resolution 90": lambda: circle_grid(90.0),
    "circle arc reversed": lambda: circle_grid(1.0, arc=(90.0, -90.0)),
    "circle arc too long": lambda: circle_grid(1.0, arc=(0.0, 400.0)),
    "sphere resolution 0.1": lambda: sphere_grid(0.1),
    "sphere resolution 60": lambda: sphere_grid(60.0),
    "default_grid unknown kind": lambda: default_grid(SQUARE, kind="cube"),
    "unknown method": lambda: make_estimator("no-such-method", SQUARE, fs=FS),
    "estimator n_sources 0": lambda: make_estimator("music", SQUARE, fs=FS, n_sources=0),
    "estimator nfft 0": lambda: make_estimator("srp-phat", SQUARE, fs=FS, nfft=0),
    "estimator bad positions": lambda: make_estimator("srp-phat", [[0, 0, 0]], fs=FS),
    "estimator wrong mics": lambda: make_estimator("srp-phat", SQUARE, fs=FS).spectrum(random_stft(mics=6)),
    "estimator wrong nfft": lambda: make_estimator("music", SQUARE, fs=FS).spectrum(random_stft(freqs=100)),
    "estimator real block": lambda: make_estimator("normmusic", SQUARE, fs=FS).spectrum(X4.real),
    "estimator empty block": lambda: make_estimator("gcc-phat", SQUARE, fs=FS).spectrum(X4[:, :, :0]),
    "energy 2-D block": lambda: energy_coherence(X4[0], BINS),
    "energy no bins": lambda: energy_coherence(X4, np.array([], np.int64)),
    "energy bins out of range": lambda: energy_coherence(X4, [10, 257]),
    "localizer hop 0": lambda: Localizer(make_estimator("srp-phat", SQUARE, fs=FS), hop=0),
    "localizer frames 0": lambda: Localizer(make_estimator("srp-phat", SQUARE, fs=FS), frames_per_block=0),
    "localizer smoothing 1": lambda: Localizer(make_estimator("srp-phat", SQUARE, fs=FS), smoothing=1.0),
    "localizer wrong channels": lambda: list(Localizer(make_estimator("srp-phat", SQUARE, fs=FS))
                                             .locate(np.zeros((8000, 3), np.float32), FS)),
}
if hasattr(dsp, "dpd_weights"):
    BAD_CALLS.update({
        "dpd even neighbourhood": lambda: dsp.dpd_weights(X4, BINS, frames=2),
        "dpd negative power": lambda: dsp.dpd_weights(X4, BINS, power=-1),
        "dpd real X": lambda: dsp.dpd_weights(X4.real, BINS),
    })


@pytest.mark.parametrize("call", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_bad_input_raises_parameter_error(call):
    with pytest.raises(ParameterError) as info:
        call()
    assert isinstance(info.value, DoascopeError) and isinstance(info.value, ValueError)
    msg = str(info.value)
    assert msg and "\n" not in msg


def test_activity_gate_learns_its_floor_from_sound_not_from_digital_silence():
    """A stream that starts with digital zeros (a device before it delivers sound), then sensor noise,
    then a talker: the noise is not taken for sound, the talker is. Counted into the floor, the zeros
    held it at zero and every noise block passed."""
    gate = dsp.ActivityGate()
    frames, noise = 8, 1e-4
    assert not any(gate.update(0.0, 0.0, frames) for _ in range(20))
    assert not any(gate.update(noise * (1 + 0.1 * (k % 3)), 1.0 / frames, frames) for k in range(20))
    assert gate.update(100 * noise, 1.0 / frames, frames)
    # A coherent block is active whatever its energy (a steady source the floor would absorb).
    assert gate.update(noise, 0.9, frames)
