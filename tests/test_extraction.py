"""Per-bin votes (dsp/extraction.py, SrpPhat.bin_srp): each time-frequency bin whose pairs agree on a
direction votes for it. Held to plain-numpy references, and to what they are for: two talkers at
once, each dominating its own bins, found apart where each frame's own maximum blends them."""

from __future__ import annotations

import numpy as np
import pytest

from doascope.dsp import Localizer, make_estimator, stft
from doascope.dsp.extraction import BIN_VOTE_COHERENCE, VoteKernels, bin_vote_histograms, frame_vote_map
from doascope.dsp.gcc import frame_phat_cross
from doascope.hardware_profiles import load_profile

from helpers import _delayed, _n_samples, azimuth_error, mixture, unit_vector

FS = 16000


def _estimator(profile="respeaker_usb_v2", n_sources=2):
    return make_estimator("srp-phat", load_profile(profile).positions, fs=FS, nfft=512, n_sources=n_sources)


def test_bin_srp_matches_the_definition():
    """Each bin's SRP is the mean over pairs of Re(C_p(f) exp(j 2 pi f tau_p(point)))."""
    est = _estimator()
    X = stft(mixture(est.positions, FS, [40.0, 200.0], seconds=0.2, seed=1), nfft=512, hop=256)[:, :, :3]
    C = frame_phat_cross(np.ascontiguousarray(X), est.bins, est.gcc.pairs)          # (frames, pairs, B)
    got = est.bin_srp(C)
    for b in range(0, est.bins.size, 13):
        f = est.gcc.freqs[b]
        for t in range(C.shape[0]):
            want = np.mean(np.real(C[t, :, b, None].astype(np.complex128)
                                   * np.exp(2j * np.pi * f * est.tdoas)), axis=0)
            np.testing.assert_allclose(got[b, t], want, atol=2e-5)


@pytest.mark.parametrize("profile", ["respeaker_usb_v2", "respeaker_6mic", "minidsp_uma8"])
def test_fused_bin_votes_match_the_numpy_path(profile):
    """SrpPhat.bin_votes_from_cross (one fused kernel over each baseline's summed cross-spectra,
    doascope.dsp.srp.bin_votes) gives the votes of the plain-numpy path, bin_vote_histograms of
    bin_srp (each pair on its own), to float32 rounding: the same points, the same weights."""
    est = _estimator(profile)
    pos = est.positions
    X = stft(mixture(pos, FS, [40.0, 200.0], seconds=0.3, seed=2), nfft=512, hop=256)[:, :, :5]
    C = frame_phat_cross(np.ascontiguousarray(X), est.bins, est.gcc.pairs)
    want = bin_vote_histograms(est.bin_srp(C))
    got = est.bin_votes_from_cross(C)
    assert got.shape == want.shape and got.dtype == np.float32
    assert want.sum() > 0 and np.count_nonzero(want) > 5          # the talkers' bins do vote
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert len(est.baselines) < len(est.gcc.pairs)               # a regular array: summed baselines


def test_fused_bin_votes_refuse_mismatched_steering():
    from doascope import ParameterError
    from doascope.dsp.srp import bin_votes

    with pytest.raises(ParameterError, match="do not match"):
        bin_votes(np.zeros((2, 4, 10), np.complex64), np.zeros((10, 6, 36), np.float32), 0.75)


def test_bin_vote_histograms_match_a_loop():
    rng = np.random.default_rng(4)
    srp = rng.uniform(-1, 1, (30, 4, 50)).astype(np.float32)
    srp[::3, :, 7] = 0.95   # some bins agree strongly on point 7
    got = bin_vote_histograms(srp)
    want = np.zeros((4, 50))
    for b in range(30):
        for t in range(4):
            g = int(np.argmax(srp[b, t]))
            if srp[b, t, g] >= BIN_VOTE_COHERENCE:
                want[t, g] += float(srp[b, t, g]) ** 2
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_spread_histogram_is_the_vote_map_of_its_points():
    est = _estimator()
    rng = np.random.default_rng(2)
    hist = np.zeros(len(est.grid), np.float32)
    hist[rng.integers(0, len(est.grid), 12)] = rng.random(12)
    got = VoteKernels(est.grid, 8.0).spread(hist)
    want = frame_vote_map(est.grid, np.arange(len(est.grid)), hist, width_deg=8.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _comb_talkers(positions, azimuths, seconds, seed):
    """Two simultaneous talkers, each holding alternate 250 Hz bands (as two voices hold different
    harmonics): every frame holds both, every bin one of them."""
    rng = np.random.default_rng(seed)
    n = _n_samples(FS, seconds)
    f = np.fft.rfftfreq(n, 1.0 / FS)
    out = np.zeros((n, len(positions)))
    for k, az in enumerate(azimuths):
        S = np.fft.rfft(rng.standard_normal(n))
        S[(np.floor(f / 250.0) % 2) != k] = 0.0
        S[0] = S[-1] = 0.0
        x = _delayed(S, positions, FS, n, unit_vector(az), 343.0)
        out += 0.1 * x / np.sqrt(np.mean(x ** 2))
    return out.astype(np.float32)


def test_two_talkers_at_once_40_degrees_apart_are_both_found(monkeypatch):
    """Every frame holds both talkers, so each frame's own maximum lies between them and the frame
    votes find one source; the bins, each held by one talker, vote for both."""
    est = _estimator()
    audio = _comb_talkers(est.positions, (100.0, 140.0), seconds=1.5, seed=3)
    assert est.bin_votes_ok
    found = [sorted(p.azimuth for p in r.peaks)
             for r in Localizer(est, hop=256, n_sources=2, smoothing=0.5).locate(audio, FS)][-1]
    assert len(found) == 2
    assert azimuth_error(found[0], 100.0) <= 6 and azimuth_error(found[1], 140.0) <= 6, found
    # The frames' own maxima (the path kept for grids too large for per-bin votes) blend them.
    frames = _estimator()
    monkeypatch.setattr(type(frames), "bin_votes_ok", property(lambda self: False))
    blended = [sorted(p.azimuth for p in r.peaks)
               for r in Localizer(frames, hop=256, n_sources=2, smoothing=0.5).locate(audio, FS)][-1]
    assert not (len(blended) == 2 and azimuth_error(blended[0], 100.0) <= 6
                and azimuth_error(blended[1], 140.0) <= 6), blended


def test_large_grids_keep_the_frame_maxima():
    """The UMA-16's 5157-point sphere: per-bin steering would take hundreds of MB."""
    est = make_estimator("srp-phat", load_profile("minidsp_uma16").positions, fs=48000, nfft=1536, n_sources=2)
    assert not est.bin_votes_ok


def test_overlapping_windows_vote_each_frame_once_with_the_same_result():
    """The block path's windows overlap; each frame's per-bin votes are computed once (kept by
    frame), with the same result as voting every frame of every window again."""
    x = mixture(load_profile("respeaker_usb_v2").positions, FS, [40.0, 200.0], seconds=1.0, seed=5)
    results = []
    for cached in (True, False):
        est = _estimator()
        calls = []
        bin_votes = est.bin_votes
        est.bin_votes = lambda X, bin_votes=bin_votes: (calls.append(X.shape[2]), bin_votes(X))[1]
        loc = Localizer(est, hop=256, n_sources=2, smoothing=0.5, step=512)
        peaks = []
        for pos in range(0, len(x) - loc.block_samples + 1, 512):
            if not cached:
                loc._vote_cache.clear()
            X = stft(x[pos:pos + loc.block_samples], nfft=512, hop=256)
            peaks.append([(p.index, round(p.power, 6)) for p in loc.process(X, pos, FS).peaks])
        results.append(peaks)
        if cached:
            assert calls[0] == 8 and set(calls[1:]) == {2}   # two new frames per 512-sample step
    assert results[0] == results[1]


@pytest.mark.parametrize("profile, by_bin", [("respeaker_usb_v2", True), ("respeaker_v1_7mic", True),
                                             ("matrix_creator", False)])
def test_small_arrays_vote_by_bin_and_wider_ones_by_frame(profile, by_bin):
    """Per-bin votes on arrays up to BIN_VOTE_MAX_APERTURE wide (6.4 cm ReSpeakers); the MATRIX
    Creator (10.5 cm), whose frames' own maxima already tell talkers apart, votes by frame."""
    assert _estimator(profile).bin_votes_ok is by_bin


# --- simultaneous talkers: the votes' longer memory ----------------------------------------------------

def _bumps(grid, weights: dict) -> np.ndarray:
    """A vote map with a bump of the per-bin votes' width at each azimuth (degrees) of ``weights``."""
    from doascope.dsp.extraction import BIN_VOTE_WIDTH_DEG

    points = [int(np.argmin(np.abs(grid.azimuth - az))) for az in weights]
    return frame_vote_map(grid, points, list(weights.values()), BIN_VOTE_WIDTH_DEG)


def test_the_longer_memory_places_simultaneous_talkers_it_still_hears():
    """When the votes find two sources, the sources are the longer memory's peaks that the recent votes
    still hold at their place (at least MEMORY_SUPPORT of their maximum), the one heard most now first;
    a peak of the memory alone (a talker who has stopped) is left out."""
    from doascope.dsp.extraction import MEMORY_SUPPORT, memory_candidates, vote_extraction
    from doascope.dsp.grids import circle_grid

    grid = circle_grid(1.0)
    votes = _bumps(grid, {100.0: 1.0, 217.0: 0.8})                   # recent: scattered, 5 deg off
    memory = _bumps(grid, {103.0: 0.8, 222.0: 1.0, 320.0: 0.9})      # 320: not heard any more
    held = memory_candidates(votes, memory, grid, 3, min_separation=20.0, share=0.4)
    assert [round(p.azimuth) for p in held] == [103, 222]             # 103 is heard most now
    spectrum = np.linspace(0.1, 0.2, len(grid), dtype=np.float32)
    found = vote_extraction(votes, spectrum, [], grid, 2, min_separation=20.0, share=0.4, memory=memory)
    assert [p.index for p in found] == [p.index for p in held]
    assert [p.power for p in found] == [spectrum[p.index] for p in held]
    # Support below MEMORY_SUPPORT of the recent maximum: the memory's peak is not taken, and with
    # one peak left the votes' own sources stand.
    weak = _bumps(grid, {100.0: 1.0, 215.0: 0.8 * MEMORY_SUPPORT, 222.0: 0.0})
    assert [round(p.azimuth) for p in memory_candidates(weak, memory, grid, 3, min_separation=20.0,
                                                        share=0.4)] == [103]
    own = vote_extraction(weak, spectrum, [], grid, 2, min_separation=20.0, share=0.3, memory=memory)
    assert [round(p.azimuth) for p in own] == [100, 215]
    # Three found by the recent votes, two held by the memory: the third recent one is kept after them
    # (and one within min_separation of a held source is not).
    three = _bumps(grid, {100.0: 1.0, 217.0: 0.8, 300.0: 0.45})
    found = vote_extraction(three, spectrum, [], grid, 3, min_separation=20.0, share=0.4, memory=memory)
    assert [round(p.azimuth) for p in found] == [103, 222, 300]
    near = _bumps(grid, {100.0: 1.0, 217.0: 0.8, 240.0: 0.45})
    found = vote_extraction(near, spectrum, [], grid, 3, min_separation=20.0, share=0.4, memory=memory)
    assert [round(p.azimuth) for p in found] == [103, 222]


def test_the_longer_memory_is_not_asked_about_a_single_source():
    """One source in the recent votes (one talker speaking after another has stopped): the memory,
    which still holds the other, is not consulted; the spectrum's peak places the one source."""
    from doascope.dsp.extraction import vote_extraction
    from doascope.dsp.grids import circle_grid
    from doascope.dsp.peaks import find_peaks

    grid = circle_grid(1.0)
    votes = _bumps(grid, {100.0: 1.0})
    memory = _bumps(grid, {100.0: 0.6, 220.0: 1.0})
    spectrum = _bumps(grid, {98.0: 1.0}) / 2
    peaks = find_peaks(spectrum, grid, 2, min_separation=20.0)
    found = vote_extraction(votes, spectrum, peaks, grid, 2, min_separation=20.0, share=0.4, memory=memory)
    assert [p.index for p in found] == [peaks[0].index]


@pytest.mark.parametrize("step", [None, 512])
def test_the_two_vote_maps_integrate_with_their_own_memories(step):
    """Row 0: the smoothing's exponential average; row 1: at least MEMORY_SMOOTHING's, both rescaled to
    the step (a plain loop as the reference)."""
    from doascope.dsp.extraction import MEMORY_SMOOTHING

    loc = Localizer(_estimator(), hop=256, n_sources=2, smoothing=0.5, step=step)
    per_block = loc.step / loc.block_advance
    rng = np.random.default_rng(4)
    maps = rng.uniform(0, 1, (5, len(loc.estimator.grid))).astype(np.float32)
    state, fast, slow = None, maps[0].astype(np.float64), maps[0].astype(np.float64)
    for k, m in enumerate(maps):
        state = loc._integrated_votes(state, m)
        if k:
            fast = 0.5 ** per_block * fast + (1 - 0.5 ** per_block) * m
            slow = MEMORY_SMOOTHING ** per_block * slow + (1 - MEMORY_SMOOTHING ** per_block) * m
        assert state.dtype == np.float32 and state.shape == (2, maps.shape[1])
        np.testing.assert_allclose(state[0], fast, rtol=1e-5)
        np.testing.assert_allclose(state[1], slow, rtol=1e-5)
    # A smoothing longer than MEMORY_SMOOTHING is the memory of both.
    loc.set_smoothing(0.9)
    both = loc._integrated_votes(np.stack([maps[0], maps[0]]), maps[1])
    np.testing.assert_allclose(both[0], both[1])


def test_with_three_sources_held_the_memory_takes_a_fourth_with_less_support():
    """Three talkers and a fan: once MANY_SOURCES of the memory's sources hold MEMORY_SUPPORT and more
    are asked for, a further one needs only MEMORY_SUPPORT_MANY of the recent votes' maximum (the
    weakest of four wins few recent bins). With fewer held (a dialogue's talker who has stopped, still
    in the memory) or no more asked for, the full support stands."""
    from doascope.dsp.extraction import (MANY_SOURCES, MEMORY_SUPPORT, MEMORY_SUPPORT_MANY, memory_candidates,
                                         vote_extraction)
    from doascope.dsp.grids import circle_grid

    assert MANY_SOURCES == 3 and MEMORY_SUPPORT_MANY < MEMORY_SUPPORT
    grid = circle_grid(1.0)
    weak = 0.5 * (MEMORY_SUPPORT + MEMORY_SUPPORT_MANY)              # between the two supports
    memory = _bumps(grid, {40.0: 1.0, 130.0: 0.9, 220.0: 0.8, 310.0: 0.7})
    votes = _bumps(grid, {42.0: 1.0, 128.0: 0.8, 221.0: 0.6, 308.0: weak})
    spectrum = np.linspace(0.1, 0.2, len(grid), dtype=np.float32)
    four = memory_candidates(votes, memory, grid, 4, min_separation=20.0, share=0.4)
    assert [round(p.azimuth) for p in four] == [40, 130, 220, 310]      # ordered by the recent votes
    found = vote_extraction(votes, spectrum, [], grid, 4, min_separation=20.0, share=0.4, memory=memory)
    assert [round(p.azimuth) for p in found] == [40, 130, 220, 310]
    # three asked for: three held already, nothing more to look for
    assert [round(p.azimuth) for p in memory_candidates(votes, memory, grid, 3, min_separation=20.0,
                                                        share=0.4)] == [40, 130, 220]
    # an explicit support is the support
    assert [round(p.azimuth) for p in memory_candidates(votes, memory, grid, 4, min_separation=20.0, share=0.4,
                                                        support=MEMORY_SUPPORT)] == [40, 130, 220]
    # two held (two talking now) and a talker who has stopped: not let back in, even with four asked for
    two = _bumps(grid, {42.0: 1.0, 128.0: 0.8, 308.0: weak})
    assert [round(p.azimuth) for p in memory_candidates(two, memory, grid, 4, min_separation=20.0,
                                                        share=0.4)] == [40, 130]
    found = vote_extraction(two, spectrum, [], grid, 4, min_separation=20.0, share=0.4, memory=memory)
    assert [round(p.azimuth) for p in found] == [40, 130]


def test_a_steady_source_is_added_from_the_spectrum_with_frame_votes_only():
    """The averaged spectrum's peak that no vote peak explains (a fan) is added with frame votes (the
    MATRIX Creator) when it holds STEADY_RELATIVE of the strongest peak's power, or STEADY_RELATIVE_MANY
    once MANY_SOURCES are found; never with per-bin votes (on arrays up to 8 cm the averaged spectrum's
    further peaks lie between talkers: 90 % of those added in the tracking bench's three talkers + fan
    were more than 15 degrees from every source)."""
    from doascope.dsp.extraction import (MANY_SOURCES, SECONDARY_SHARE, STEADY_RELATIVE, STEADY_RELATIVE_MANY,
                                         vote_extraction)
    from doascope.dsp.grids import circle_grid
    from doascope.dsp.peaks import Peak

    assert MANY_SOURCES == 3 and STEADY_RELATIVE_MANY < STEADY_RELATIVE
    grid = circle_grid(1.0)
    spectrum = np.linspace(0.1, 0.2, len(grid), dtype=np.float32)
    between = 0.5 * (STEADY_RELATIVE + STEADY_RELATIVE_MANY)
    peaks = [Peak(40.0, 0.0, 1.0, 40), Peak(310.0, 0.0, between, 310)]           # the spectrum's, strongest first
    three = _bumps(grid, {40.0: 1.0, 130.0: 0.8, 220.0: 0.6})
    two = _bumps(grid, {40.0: 1.0, 130.0: 0.8})

    def azimuths(votes, n, **kw):
        found = vote_extraction(votes, spectrum, peaks, grid, n, min_separation=20.0, share=SECONDARY_SHARE, **kw)
        return [round(p.azimuth) for p in found]

    assert azimuths(three, 4) == [40, 130, 220, 310]        # three found: STEADY_RELATIVE_MANY is enough
    assert azimuths(two, 4) == [40, 130]                    # two found: it needs STEADY_RELATIVE
    assert azimuths(three, 3) == [40, 130, 220]             # no room left
    assert azimuths(three, 4, steady=False) == [40, 130, 220]
    strong = [peaks[0], Peak(310.0, 0.0, STEADY_RELATIVE, 310)]
    found = vote_extraction(two, spectrum, strong, grid, 4, min_separation=20.0, share=SECONDARY_SHARE)
    assert [round(p.azimuth) for p in found] == [40, 130, 310]
    found = vote_extraction(two, spectrum, strong, grid, 4, min_separation=20.0, share=SECONDARY_SHARE, steady=False)
    assert [round(p.azimuth) for p in found] == [40, 130]
