"""Several sources from one block: which directions, and which of them are sources at all.

**Detection by frame votes.** A block's averaged spatial spectrum blends simultaneous talkers: on a
small array each talker's lobe is tens of degrees wide, two talkers 30-70 degrees apart merge into one
peak between them, and a second talker hides in the first one's lobe. But speech is sparse: within
one 32 ms STFT frame, one talker dominates most bins. So each frame of the block votes for its own
SRP-PHAT maximum, weighted by how coherent that frame is there (the squared SRP value: frames of
reverberation or sensor noise weigh little), and the votes, spread by a narrow kernel and integrated
over time like the statistics, form a map whose peaks are the talkers, each as strong as the share of
frames it dominates.

**Per-bin votes** go one step further where the array is small (SRP-PHAT on arrays up to 8 cm wide,
see ``SrpPhat.bin_votes_ok``): when two talkers speak in the same frame, the frame's maximum lies
between them, but each time-frequency bin is still held by one of them. So each bin whose pairs agree
on a direction votes for it (:func:`bin_vote_histograms`); the votes are spread by a wider kernel
(BIN_VOTE_WIDTH_DEG) and a further source needs BIN_VOTE_SHARE of the strongest one's votes.

**A longer memory for simultaneous talkers.** Over one or two blocks the per-bin votes of a talker on a
small array scatter over tens of degrees, and in a block where two talkers speak at once a bump 15-45
degrees beside a talker, a reflection or a split of the other talker's lobe wins now and then: in the
held-out blocks of two simultaneous talkers (``doascope bench --tracking``), five in six of the talkers
missed were missed that way, a source reported in the wrong place, not none. The same votes integrated over a
longer time (MEMORY_SMOOTHING) place them better, but a long memory must not decide alone which
sources are there: a talker who has stopped would stay, and a dialogue shows that talker's track long
after (ghosts). So the memory is asked only when the recent votes themselves find two or more sources,
and each of its sources must still be held by the recent votes at its place (:func:`memory_candidates`).

**Sequential removal**, as ODAS's SSL extracts sources: each source's contribution is
removed before the next is looked at. For SRP-PHAT the contribution of a source at point g is, in
each pair's PHAT cross-spectrum, a pure delay at that pair's TDOA: ``gamma_p exp(-j 2 pi f tau_p(g))``
with ``gamma_p`` the pair's complex correlation at that lag. Subtracting it (a CLEAN step) sets every
pair's correlation at tau_p(g) to zero and removes that source's whole point-spread function, not only
its peak. Each source is then looked for again near where it was found, in the spectrum with every
other source removed, so the others' lobes no longer push it aside. (Measured in ``doascope bench
--tracking``: the vote map detects more talkers with fewer ghosts, so it is the default; removal
stays available as ``extraction="removal"``.)

**Presence.** A further source is reported only when it holds at least ``SECONDARY_SHARE`` of the
strongest source's votes (``SECONDARY_RELATIVE`` of its power for methods without votes). Blocks
below the running noise floor report nothing at all (see :mod:`doascope.dsp.activity`), and the
tracker gives no weight to a peak that is only ever weaker than another one, as a reflection is
(see :mod:`doascope.dsp.tracker`).
"""

from __future__ import annotations

import numpy as np

from doascope.dsp.grids import Grid
from doascope.dsp.peaks import Peak, find_peaks

# `--sources K` means at most K; `auto` means up to AUTO_SOURCES (owned, with the check, by doascope.config).
from doascope.config import AUTO_SOURCES, MAX_SOURCES, source_count  # noqa: E402,F401  (re-exported)
# Presence test against the block's strongest source.
SECONDARY_SHARE = 0.2        # of the strongest source's frame votes
SECONDARY_RELATIVE = 0.45    # of the strongest peak's power (methods without frame votes)
STEADY_RELATIVE = 0.8        # of the strongest peak's power, for a spectrum peak the votes missed
# ... and once MANY_SOURCES are found by the votes (three talkers beside a fan hold most frames between
# them; chosen on the MATRIX Creator's three talkers + fan, seeds 1-16: coverage 0.756 with 0.8, 0.766
# with 0.7, 0.783 with 0.6, 0.782 with 0.5)
STEADY_RELATIVE_MANY = 0.6
# How several sources are told apart (see Estimator.candidates): "votes" detected best in the
# tracking bench (coverage, ghosts), "removal" is ODAS's way, "peaks" the plain spectrum's peaks.
EXTRACTIONS = ("votes", "removal", "peaks")
DEFAULT_EXTRACTION = "votes"
# Spread of one frame's vote over the grid: about the scatter of single-frame maxima of one talker.
VOTE_WIDTH_DEG = 4.0
# Per-bin votes (see bin_vote_histograms): a time-frequency bin votes when its pairs agree on a
# direction to at least this mean cosine (1 = every pair's phase exactly that direction's), with
# this spread (single bins scatter more than whole frames).
BIN_VOTE_COHERENCE = 0.75
BIN_VOTE_WIDTH_DEG = 8.0
# Presence test for per-bin votes: a reflection wins more bins than it wins whole frames (in a
# dialogue on the tuning scenes, 0.2 showed the silent talker's track where the talker's reflection
# lands 3-5 times as often).
BIN_VOTE_SHARE = 0.4
# Simultaneous talkers (see memory_candidates): when the votes find two or more sources, the sources
# are taken from the per-bin votes integrated with at least MEMORY_SMOOTHING, each kept only while
# the recent votes at its place hold MEMORY_SUPPORT of their maximum. Chosen on random rooms of
# simultaneous talkers (tuning seeds, not the bench's) and the tracking bench's dialogues on seeds
# 1-4, with the recent votes' maximum within 8 degrees as the support: 0.4 let a dialogue's stopped
# talker through (ghosts 0.006 -> 0.022), 0.5 and 0.6 did not; 0.5 found more of three talkers (68.1
# against 66.4 %). The value at the place itself (as now) found as many (79.3 / 69.6 % against 79.4 /
# 69.7 % with two / three talkers) at half the cost (a window's extraction 41 against 76 us).
MEMORY_SMOOTHING = 0.8
MEMORY_SUPPORT = 0.5
# Many simultaneous sources (three talkers and a fan): once MANY_SOURCES of the memory's sources hold
# MEMORY_SUPPORT and more are asked for, the memory's sources are taken again with MEMORY_SUPPORT_MANY.
# The weakest of four sources wins few of the recent bins (often under a third of the strongest one's
# votes) while the memory still holds it; a dialogue's stopped talker, which the full support keeps out,
# rarely comes with three sources held. Chosen on the tracking bench's three talkers + fan, seeds 1-16
# (0.2, 0.25 and 0.3 within 0.002 of each other; a lower support for every source when four are asked
# for, without the three held first, let a dialogue's stopped talker through with `--sources auto`).
MANY_SOURCES = 3
MEMORY_SUPPORT_MANY = 0.25


def frame_vote_map(grid: Grid, points: np.ndarray, weights: np.ndarray, width_deg: float = VOTE_WIDTH_DEG) -> np.ndarray:
    """(grid points,) float32: each frame's vote for grid point ``points[t]`` with weight ``weights[t]``,
    spread over the grid by a von Mises kernel of about ``width_deg`` degrees standard deviation."""
    kappa = 1.0 / np.radians(width_deg) ** 2
    cosines = grid.vectors @ grid.vectors[np.asarray(points, np.int64)].T          # (G, frames)
    return (np.exp(kappa * (cosines - 1.0)) @ np.asarray(weights, np.float64)).astype(np.float32)


class VoteKernels:
    """:func:`frame_vote_map` for a stream of frames: each grid point's kernel (the von Mises
    column) is computed once and kept for the next windows (a talker's frames vote for the same
    few points again and again), so a window costs its frames' weighted sum, not their exponentials.
    Keeps at most ``keep`` columns, dropping the oldest."""

    def __init__(self, grid: Grid, width_deg: float = VOTE_WIDTH_DEG, keep: int = 64):
        self.grid, self.width_deg, self.keep = grid, width_deg, int(keep)
        self._kappa = 1.0 / np.radians(width_deg) ** 2
        self._columns: dict[int, np.ndarray] = {}
        self._matrix: np.ndarray | None = None

    def _column(self, point: int) -> np.ndarray:
        col = self._columns.get(point)
        if col is None:
            if len(self._columns) >= self.keep:
                del self._columns[next(iter(self._columns))]
            col = np.exp(self._kappa * (self.grid.vectors @ self.grid.vectors[point] - 1.0))
            self._columns[point] = col
        return col

    def map(self, points: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """As ``frame_vote_map(grid, points, weights, width_deg)``."""
        rows = np.stack([self._column(int(p)) for p in points])                   # (frames, G): row copies
        return (np.asarray(weights, np.float64) @ rows).astype(np.float32)

    def spread(self, histogram: np.ndarray) -> np.ndarray:
        """(grid points,) float32: votes given as a histogram over the grid (grid points,), spread by
        the kernel: ``frame_vote_map(grid, arange(G), histogram, width_deg)``. Per-bin votes touch
        most points of a small grid, so its whole kernel matrix is kept (grids of a few thousand
        points at most: see SrpPhat.bin_votes_ok)."""
        if self._matrix is None:
            V = self.grid.vectors
            self._matrix = np.exp(self._kappa * (V @ V.T - 1.0)).astype(np.float32)
        return (self._matrix @ np.asarray(histogram, np.float32)).astype(np.float32)


def bin_vote_histograms(srp: np.ndarray) -> np.ndarray:
    """(frames, grid points) float32: each frame's per-bin votes from its per-bin SRP (bins, frames,
    grid points), each bin's PHAT SRP divided by the number of pairs (in [-1, 1]).

    Speech is sparse in time and frequency: even in a frame where two talkers speak, most bins hold
    one of them. So each bin whose pairs agree on a direction (its SRP maximum at least
    BIN_VOTE_COHERENCE) votes for that direction, weighted by that maximum squared; bins of diffuse
    sound or of two sources mixed agree on nothing and stay out. A frame's own maximum, by contrast,
    blends the talkers that share it into one direction between them."""
    B, S, G = srp.shape
    best = np.argmax(srp, axis=2)                                           # (B, S)
    value = np.take_along_axis(srp, best[..., None], axis=2)[..., 0]
    keep = value >= BIN_VOTE_COHERENCE
    frame = np.broadcast_to(np.arange(S)[None, :], (B, S))
    flat = frame[keep] * G + best[keep]
    return np.bincount(flat, weights=value[keep].astype(np.float64) ** 2, minlength=S * G).reshape(S, G).astype(np.float32)


def vote_candidates(votes: np.ndarray, grid: Grid, n_sources: int, *, min_separation: float,
                    share: float = SECONDARY_SHARE) -> list[Peak]:
    """The vote map's peaks that pass the presence test, most votes first (``power`` = votes)."""
    return find_peaks(votes, grid, n_sources, min_separation=min_separation, min_relative=share)


def _apart(grid: Grid, p: Peak, found, cos_sep: float) -> bool:
    """Whether peak p lies farther than the separation (cosine ``cos_sep``) from every peak of ``found``."""
    return all(grid.vectors[p.index] @ grid.vectors[q.index] < cos_sep for q in found)


def memory_candidates(votes: np.ndarray, memory: np.ndarray, grid: Grid, n_sources: int, *, min_separation: float,
                      share: float, support: float | None = None) -> list[Peak]:
    """The peaks of ``memory`` (votes integrated over a longer time) that pass the presence test and
    that the short-memory ``votes`` still support (their value there is at least ``support``, default
    MEMORY_SUPPORT, of their maximum): at most ``n_sources``, taken in the memory's order, then ordered
    by that support (the source heard most now first, as the tracker expects of a block's strongest
    source). When MANY_SOURCES or more pass (but fewer than ``n_sources``), they are taken again with
    the support MEMORY_SUPPORT_MANY (with ``support`` not given)."""
    top = float(votes.max())
    # twice as many looked at: a talker who has stopped must not crowd out one who still speaks
    looked = [(float(votes[p.index]), p) for p in find_peaks(memory, grid, 2 * n_sources,
                                                              min_separation=min_separation, min_relative=share)]

    def held(level: float) -> list[Peak]:
        kept = [(now, p) for now, p in looked if now >= level * top][:n_sources]
        return [p for _, p in sorted(kept, key=lambda hp: -hp[0])]

    found = held(MEMORY_SUPPORT if support is None else support)
    if support is None and MANY_SOURCES <= len(found) < n_sources:
        found = held(MEMORY_SUPPORT_MANY)
    return found


def vote_extraction(votes: np.ndarray, spectrum: np.ndarray, peaks: list[Peak], grid: Grid, n_sources: int, *,
                    min_separation: float, share: float = SECONDARY_SHARE,
                    memory: np.ndarray | None = None, steady: bool = True) -> list[Peak]:
    """Several sources by frame votes (see the module docstring): the vote map's peaks that pass the
    presence test, most votes first, each with its power in the (integrated) ``spectrum``; then, with
    ``steady``, any of the spectrum's own ``peaks`` (strongest first) with at least STEADY_RELATIVE of
    the strongest one's power (STEADY_RELATIVE_MANY once MANY_SOURCES are found) that no vote peak
    explains (a steady source, such as a fan, holds every frame alike and wins few votes against a
    talker). With fewer than two vote peaks, the spectrum's strongest peak (one talker: the averaged
    spectrum places it best). Given the votes' longer ``memory``, when the votes find two or more
    sources and the memory holds two or more that they still support, those are the sources
    (:func:`memory_candidates`)."""
    cos_sep = np.cos(np.radians(min_separation))
    detected = vote_candidates(votes, grid, n_sources, min_separation=min_separation, share=share)
    if len(detected) >= 2 and memory is not None:
        held = memory_candidates(votes, memory, grid, n_sources, min_separation=min_separation, share=share)
        if len(held) >= 2:   # then the recent votes' other sources, away from those
            detected = held + [p for p in detected if _apart(grid, p, held, cos_sep)][:n_sources - len(held)]
    if len(detected) < 2:
        detected = peaks[:1]
    found = [Peak(p.azimuth, p.elevation, float(spectrum[p.index]), p.index) for p in detected]
    if not steady or not peaks:
        return found
    relative = STEADY_RELATIVE_MANY if len(found) >= MANY_SOURCES else STEADY_RELATIVE
    for p in peaks:
        if len(found) < n_sources and p.power >= relative * peaks[0].power and _apart(grid, p, found, cos_sep):
            found.append(p)
    return found


def delay_component(C: np.ndarray, phasors: np.ndarray) -> np.ndarray:
    """The part of cross-spectra C (pairs, B) that is a pure delay with ``phasors`` (pairs, B)
    (``exp(-j 2 pi f tau_p)``): each pair's projection of C onto its delay phasor."""
    gamma = np.mean(C * np.conj(phasors), axis=1)              # (pairs,) complex correlation at tau_p
    return gamma[:, None] * phasors


def sequential_removal(C: np.ndarray, spectrum_of, phasors_at, grid: Grid, n_sources: int, *,
                       min_separation: float, relative: float = SECONDARY_RELATIVE) -> list[Peak]:
    """Up to ``n_sources`` directions from cross-spectra C (pairs, B), found one at a time as ODAS
    does: each source's delay is removed from every pair's cross-spectrum before the next is looked
    for; then each is looked for again near where it was found with all the others removed.

    Parameters
    ----------
    spectrum_of : callable, cross-spectra -> (grid points,) float32 spatial spectrum
    phasors_at : callable, grid index -> (pairs, B) ``exp(-j 2 pi f tau_p(point))``
    relative : presence test: a further source needs this fraction of the first one's power

    Returns
    -------
    Peaks, strongest first, with the power each has in the spectrum with the others removed.
    """
    cos_sep = np.cos(np.radians(min_separation))
    residual = np.array(C, dtype=np.complex128)
    found: list[Peak] = []
    comps: list[np.ndarray] = []
    for _ in range(int(n_sources)):
        s = spectrum_of(residual)
        # Sidelobes of removed sources can still be local maxima next to them: look a little further.
        peak = next((p for p in find_peaks(s, grid, 2 * len(found) + 1, min_separation=0.0)
                     if _apart(grid, p, found, cos_sep)), None)
        if peak is None or not peak.power > 0 or (found and peak.power < relative * found[0].power):
            break
        comps.append(delay_component(residual, phasors_at(peak.index)))
        residual -= comps[-1]
        found.append(peak)
    cos_search = np.cos(np.radians(0.5 * min_separation))
    for k in range(len(found) if len(found) > 1 else 0):
        alone = residual + comps[k]                    # C with every other source removed
        s = spectrum_of(alone)
        near = grid.vectors @ grid.vectors[found[k].index] >= cos_search
        found[k] = (find_peaks(np.where(near, s, s.min()), grid, 1, min_separation=0.0) or [found[k]])[0]
        comps[k] = delay_component(alone, phasors_at(found[k].index))
        residual = alone - comps[k]
    return sorted(found, key=lambda p: -p.power)
