"""One interface for every DOA method, and the registry that names them.

An estimator is built once from (positions, fs, nfft, grid, band) and turns an STFT block
(mics, freqs, frames) into a spatial spectrum over the grid. Adding a method means adding one
class with ``@register("name")``; the DNN registers itself lazily from doascope.models.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

import numpy as np

from doascope import SPEED_OF_SOUND, DoascopeError, ParameterError
from doascope.dsp._checks import as_positions, as_stft, band_bins, positive
from doascope.dsp.gcc import BaselineGroups, GccPhat, frame_phat_cross, pair_tdoas
from doascope.dsp.extraction import (BIN_VOTE_COHERENCE, BIN_VOTE_SHARE, DEFAULT_EXTRACTION, EXTRACTIONS,
                                     SECONDARY_RELATIVE, SECONDARY_SHARE, sequential_removal, vote_extraction)
from doascope.dsp.grids import Grid, default_grid
from doascope.dsp.peaks import Peak, find_peaks
from doascope.methods import METHODS
from doascope.dsp.srp import COARSE_FINE_MIN_POINTS, SrpLookup, bin_votes as srp_bin_votes

ESTIMATORS: dict[str, type["Estimator"]] = {}
# The largest per-bin steering (values) an SRP-PHAT estimator keeps for per-bin votes (16 MB float32).
BIN_STEERING_MAX = 4_000_000
# Per-bin votes only on arrays whose longest pair is at most this long (metres). Measured on the tracking
# scenes (tuning seeds): on the 6.4 cm ReSpeaker arrays, whose lobes are wide enough to merge talkers
# 30-70 degrees apart, they raised coverage from 0.80-0.82 to 0.85-0.90; on the 10.5 cm MATRIX Creator,
# whose frames' own maxima already tell talkers apart, they scattered a fan's votes (coverage 0.885 ->
# 0.856, a fan's track pulled towards a talker in 3 of 4 further scenes). Arrays in between (8-9 cm)
# were not measured; the limit is set halfway.
BIN_VOTE_MAX_APERTURE = 0.08
# Methods whose module is imported only when asked for (torch stays out of the classical path).
LAZY_ESTIMATORS: dict[str, str] = {name: module for name, module in METHODS.items() if module != __name__}

from doascope.config import DEFAULT_BAND  # noqa: E402  (re-exported; the settings own it)


def register(name: str):
    def deco(cls):
        cls.name = name
        ESTIMATORS[name] = cls
        return cls
    return deco


def available_methods() -> list[str]:
    return sorted(set(ESTIMATORS) | set(METHODS))


def estimator_class(method: str) -> type["Estimator"]:
    if method not in ESTIMATORS and method in LAZY_ESTIMATORS:
        try:
            importlib.import_module(LAZY_ESTIMATORS[method])
        except DoascopeError:  # e.g. doascope.extras.MissingExtra: already one plain sentence
            raise
        except ImportError as exc:
            raise ParameterError(f"method {method!r} is not available: {exc}") from None
    try:
        return ESTIMATORS[method]
    except KeyError:
        raise ParameterError(f"unknown method {method!r}; choose one of: {', '.join(available_methods())}") from None


def make_estimator(method: str, positions, *, fs: float, nfft: int = 512, grid: Grid | None = None,
                   band=DEFAULT_BAND, n_sources: int = 1, c: float = SPEED_OF_SOUND, **options) -> "Estimator":
    """Build the estimator registered as ``method`` (see :func:`available_methods`)."""
    return estimator_class(method)(positions, fs=fs, nfft=nfft, grid=grid, band=band,
                                   n_sources=n_sources, c=c, **options)


class Estimator:
    """Base class: validates and stores the set-up; subclasses implement ``_statistics`` (block
    -> statistics that may be averaged over blocks) and ``spectrum_from`` (statistics -> spectrum).

    Attributes: positions (mics, 3) m, fs Hz, nfft, grid, band (fmin, fmax) Hz, bins (band bin
    indices), n_sources (used by subspace methods), c m/s.
    """

    name: ClassVar[str] = ""
    #: the per-frame statistic whose mean over a window's frames is :meth:`statistics` ("phat":
    #: PHAT cross-spectra, "covariance": spatial covariances; None: the block is needed as a whole),
    #: so that a stream (doascope.dsp.stream) can keep it per frame and sum it
    frame_statistics: ClassVar[str | None] = None
    #: whether the spectrum's scale is absolute (1 = perfectly coherent wave) or relative to its max
    absolute_scale: ClassVar[bool] = True

    def __init__(self, positions, *, fs: float, nfft: int = 512, grid: Grid | None = None,
                 band=DEFAULT_BAND, n_sources: int = 1, c: float = SPEED_OF_SOUND):
        self.positions = as_positions(positions)
        self.fs = positive("fs", fs)
        self.nfft = positive("nfft", nfft, integer=True)
        self.c = positive("c", c)
        self.grid = default_grid(self.positions) if grid is None else grid
        self.band = (float(band[0]), min(float(band[1]), self.fs / 2))
        self.bins = band_bins(self.band, self.fs, self.nfft)
        self.n_sources = positive("n_sources", n_sources, integer=True)

    @property
    def n_mics(self) -> int:
        return self.positions.shape[0]

    def statistics(self, X) -> np.ndarray:
        """The block's sufficient statistics (cross-spectra, covariances...), as an array.

        They are what temporal integration averages across blocks: the engine keeps an exponential
        average of them and calls :meth:`spectrum_from`. Averaging covariances rather than spectra
        helps subspace methods, whose eigenvectors then rest on many more frames.
        """
        X = as_stft(X, mics=self.n_mics)
        if X.shape[1] != self.nfft // 2 + 1:
            raise ParameterError(f"the STFT has {X.shape[1]} bins but nfft={self.nfft} needs {self.nfft // 2 + 1}")
        return self._statistics(X)

    def spectrum_from(self, stats: np.ndarray) -> np.ndarray:
        """Spatial spectrum (points,) float32 from (possibly averaged) statistics."""
        raise NotImplementedError

    def spectrum(self, X) -> np.ndarray:
        """Spatial spectrum (points,) float32 of a (mics, freqs, frames) complex64 block."""
        return self.spectrum_from(self.statistics(X))

    def _statistics(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_sources(self, n_sources: int) -> None:
        self.n_sources = positive("n_sources", n_sources, integer=True)

    def candidates(self, stats: np.ndarray, spectrum: np.ndarray, n_sources: int, *,
                   min_separation: float = 20.0, votes: np.ndarray | None = None,
                   extraction: str = DEFAULT_EXTRACTION, memory: np.ndarray | None = None) -> list[Peak]:
        """Up to ``n_sources`` sources that pass the presence test, strongest first, from (integrated)
        statistics and the spectrum made from them (and, for methods with ``frame_peaks``, the
        integrated frame-vote map; for SRP-PHAT's per-bin votes, ``memory``, the same votes integrated
        over a longer time, which the other methods are not given). Here: the spectrum's peaks that hold at least
        SECONDARY_RELATIVE of the strongest one's power, whatever ``extraction`` asks for."""
        return find_peaks(spectrum, self.grid, n_sources, min_separation=min_separation,
                          min_relative=SECONDARY_RELATIVE)


@register("srp-phat")
class SrpPhat(Estimator):
    """SRP-PHAT: mean over pairs of GCC-PHAT at each point's TDOAs (ODAS's fast form)."""

    frame_statistics = "phat"

    def __init__(self, positions, **kw):
        super().__init__(positions, **kw)
        self.gcc = GccPhat(self.positions, fs=self.fs, nfft=self.nfft, band=self.band, c=self.c)
        self.tdoas = pair_tdoas(self.positions, self.grid.vectors, self.gcc.pairs, c=self.c)   # (pairs, points) s
        self.lag_index = self.gcc.lag_index(self.tdoas)                                       # (pairs, points)
        # Pairs that share a baseline share their TDOAs: one correlation and one lag row per baseline
        # (their cross-spectra summed), the same mean over pairs for a fraction of the work.
        self.baselines = BaselineGroups(self.positions, self.gcc.pairs)
        self.lookup = SrpLookup(self.lag_index[self.baselines.first], self.gcc.lags.size,
                                n_pairs=self.baselines.n_pairs)  # checked once, here
        # frame maxima on large grids, coarse-to-fine (the same maxima, far fewer lookups); its
        # kernels load here, when such a grid is built, not with this module
        self.scan = None
        if self.lookup.n_points >= COARSE_FINE_MIN_POINTS:
            from doascope.dsp.srp_coarse import CoarseFineScan

            self.scan = CoarseFineScan(self.lookup, self.grid.vectors)
        self._bin_steering = None   # (B, 2 pairs, points) float32, made on the first per-bin vote
        self._baseline_steering = None   # (B, 2 baselines, points) float32, the same for the fused votes
        self._bin_votes_ok = None

    def correlations(self, C: np.ndarray) -> np.ndarray:
        """(S, baselines, lags) float32: the correlations of each baseline's summed cross-spectra
        (see :class:`~doascope.dsp.gcc.BaselineGroups`), from S sets of PHAT cross-spectra
        (S, pairs, B) complex64; :attr:`lookup` reads them."""
        return self.gcc.correlate_rows(self.baselines.sum(C))

    def srp_rows(self, C: np.ndarray) -> np.ndarray:
        """(S, points) float32 SRP of S sets of PHAT cross-spectra (S, pairs, B) complex64."""
        return self.lookup.rows(self.correlations(C))

    def weights(self, X: np.ndarray) -> np.ndarray | None:
        """Per time-frequency-bin weights (B, frames), or None for plain PHAT."""
        return None

    def _statistics(self, X):
        return self.gcc.cross_spectra(X, self.weights(X))

    def spectrum_from(self, stats):
        return self.srp_rows(np.ascontiguousarray(stats, dtype=np.complex64)[None])[0]

    def candidates(self, stats, spectrum, n_sources, *, min_separation=20.0, votes=None,
                   extraction=DEFAULT_EXTRACTION, memory=None):
        """One source: the spectrum's peak. Several, by ``extraction`` (see doascope.dsp.extraction):
        ``"votes"`` (default), the frame-vote map's peaks that pass the presence test, most votes
        first, then, with frame votes (not per-bin votes), any spectrum peak of at least STEADY_RELATIVE
        of the strongest one's power that no vote peak explains (a steady source, such as a fan, holds
        every frame alike and wins few votes against a talker); ``"removal"``, the spectrum's peaks
        found one at a time, each one's delay removed from the cross-spectra before the next is looked
        for; ``"peaks"``, the spectrum's own peaks. ``memory``: the per-bin votes integrated over a
        longer time, which take over when the votes find simultaneous sources
        (doascope.dsp.extraction.memory_candidates)."""
        if extraction not in EXTRACTIONS:
            raise ParameterError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {extraction!r}")
        if n_sources <= 1 or extraction == "peaks" or (extraction == "votes" and votes is None):
            return super().candidates(stats, spectrum, n_sources, min_separation=min_separation)
        if extraction == "removal":
            return sequential_removal(stats, self.spectrum_from, self.delay_phasors, self.grid, n_sources,
                                      min_separation=min_separation)
        peaks = super().candidates(stats, spectrum, n_sources, min_separation=min_separation)
        by_bin = self.bin_votes_ok
        return vote_extraction(votes, spectrum, peaks, self.grid, n_sources, min_separation=min_separation,
                               share=BIN_VOTE_SHARE if by_bin else SECONDARY_SHARE, memory=memory, steady=not by_bin)

    def frame_peaks(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each STFT frame's own SRP-PHAT maximum: (frames,) grid indices and (frames,) values (see
        doascope.dsp.extraction: the frames of a block vote for the talkers in turn)."""
        X = as_stft(X, mics=self.n_mics)
        return self.frame_peaks_from_cross(frame_phat_cross(X, self.bins, self.gcc.pairs))

    def frame_peaks_from_cross(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`frame_peaks`, from each frame's own PHAT cross-spectra (frames, pairs, B)
        complex64 (a stream keeps them per frame: doascope.dsp.stream)."""
        if self.scan is not None:
            return self.scan.maxima(self.correlations(C))
        s = self.srp_rows(C)
        points = np.argmax(s, axis=1)
        return points, s[np.arange(s.shape[0]), points]

    @property
    def bin_votes_ok(self) -> bool:
        """Whether the frames vote bin by bin (:meth:`bin_votes_from_cross`) rather than frame by frame:
        on arrays no wider than BIN_VOTE_MAX_APERTURE, and grids small enough that the per-bin
        steering (bins x 2 pairs x points float32) stays within BIN_STEERING_MAX values (not the
        UMA-16's 5157-point sphere, whose frames keep their coarse-to-fine maxima)."""
        if self._bin_votes_ok is None:     # constant: decided once (it is asked twice a window)
            pos, pairs = self.positions, self.gcc.pairs
            aperture = float(np.max(np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)))
            self._bin_votes_ok = bool(aperture <= BIN_VOTE_MAX_APERTURE and self.bins.size * 2 * pairs.shape[0]
                                      * self.grid.vectors.shape[0] <= BIN_STEERING_MAX)
        return self._bin_votes_ok

    def bin_votes(self, X: np.ndarray) -> np.ndarray:
        """(frames, points) float32: each STFT frame's per-bin votes (see
        doascope.dsp.extraction.bin_vote_histograms)."""
        X = as_stft(X, mics=self.n_mics)
        return self.bin_votes_from_cross(frame_phat_cross(X, self.bins, self.gcc.pairs))

    def bin_votes_from_cross(self, C: np.ndarray) -> np.ndarray:
        """As :meth:`bin_votes`, from each frame's PHAT cross-spectra (frames, pairs, B) complex64: one
        fused pass over each baseline's summed cross-spectra (doascope.dsp.srp.bin_votes; the same
        votes as ``bin_vote_histograms(self.bin_srp(C))``, to float32 rounding)."""
        if self._baseline_steering is None:
            self._baseline_steering = self._steering(self.tdoas[self.baselines.first])
        return srp_bin_votes(self.baselines.sum(C), self._baseline_steering, BIN_VOTE_COHERENCE)

    def _steering(self, tdoas: np.ndarray) -> np.ndarray:
        """(B, 2 rows, points) float32 per-bin steering of rows with TDOAs (rows, points) s: the cosines
        then minus the sines of each row's phase 2 pi f tau at each point, over the number of pairs (so
        that a sum over the rows is the mean over pairs)."""
        angle = 2.0 * np.pi * self.gcc.freqs[:, None, None] * tdoas[None]               # (B, rows, points)
        return np.ascontiguousarray(np.concatenate([np.cos(angle), -np.sin(angle)], axis=1) / self.gcc.pairs.shape[0],
                                    dtype=np.float32)

    def bin_srp(self, C: np.ndarray) -> np.ndarray:
        """(B, frames, points) float32: each bin's own SRP-PHAT over the grid, from each frame's PHAT
        cross-spectra C (frames, pairs, B): ``mean_p Re(C_p(f) exp(j 2 pi f tau_p(point)))``, in
        [-1, 1], as one real matrix product per bin."""
        if self._bin_steering is None:
            self._bin_steering = self._steering(self.tdoas)
        C = np.asarray(C, np.complex64).transpose(2, 0, 1)                                # (B, frames, pairs)
        rows = np.concatenate([C.real, C.imag], axis=2)                                 # (B, frames, 2 pairs)
        return np.matmul(rows, self._bin_steering)

    def delay_phasors(self, point: int) -> np.ndarray:
        """(pairs, B) complex64 ``exp(-j 2 pi f tau_p)``: a plane wave from grid ``point`` in each
        pair's PHAT cross-spectrum."""
        return np.exp(-2j * np.pi * np.outer(self.tdoas[:, point], self.gcc.freqs)).astype(np.complex64)


@register("srp-dpd")
class SrpDpd(SrpPhat):
    """SRP-PHAT on direct-path-dominant time-frequency bins: each bin's PHAT term is weighted by
    the coherence of its neighbourhood (see doascope.dsp.dpd), so reverberant, diffuse bins count
    less. Same cost class as SRP-PHAT; more robust as reverberation grows.
    """

    frame_statistics = None  # the weights look at a bin's neighbours in time: the block as a whole

    power = 2.0

    def weights(self, X):
        from doascope.dsp.dpd import dpd_weights  # its kernel loads only when this method is used

        return dpd_weights(X, self.bins, power=self.power)


@register("gcc-phat")
class GccPhatTdoa(Estimator):
    """GCC-PHAT used on its own: one TDOA per pair (peak of its correlation, sub-sample), then each
    point scores how well its TDOAs agree: mean over pairs of exp(-(tau_ij(point) - tau_ij)^2 / 2 sigma^2).
    """

    frame_statistics = "phat"

    def __init__(self, positions, **kw):
        super().__init__(positions, **kw)
        self.gcc = GccPhat(self.positions, fs=self.fs, nfft=self.nfft, band=self.band, c=self.c)
        self.grid_tdoas = pair_tdoas(self.positions, self.grid.vectors, self.gcc.pairs, c=self.c)
        # A quarter period at the band's top: pairs whose TDOA is that far off add little.
        self.sigma = 0.25 / self.band[1]

    def _statistics(self, X):
        return self.gcc.cross_spectra(X)

    def spectrum_from(self, stats):
        tau = self.gcc.tdoas(self.gcc.correlate_cross(stats))
        d = (self.grid_tdoas - tau[:, None]) / self.sigma
        return np.exp(-0.5 * d * d).mean(axis=0).astype(np.float32)


@register("music")
class Music(Estimator):
    """Broadband MUSIC (Schmidt 1986): mean over band bins of 1/||E_n^H a||^2."""

    absolute_scale = False
    normalise = False
    frame_statistics = "covariance"

    def __init__(self, positions, **kw):
        super().__init__(positions, **kw)
        from doascope.dsp import music  # its kernels load only when a subspace method is used

        self._music = music
        self.steering = music.SteeringPlanes(
            music.steering(self.positions, self.grid.vectors, self.bins * (self.fs / self.nfft), c=self.c))

    def _statistics(self, X):
        return self._music.covariances(X, self.bins)

    def spectrum_from(self, stats):
        K = min(self.n_sources, self.n_mics - 1)
        s = self.steering.spectrum(np.ascontiguousarray(stats, dtype=np.complex64), K, normalise=self.normalise)
        return s / max(float(s.max()), 1e-30)


@register("normmusic")
class NormMusic(Music):
    """NormMUSIC: each bin's MUSIC pseudo-spectrum scaled to max 1 before averaging."""

    normalise = True
