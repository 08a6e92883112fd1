"""Where in the room, block by block: :class:`PositionLocalizer`, the position-mode counterpart of
:class:`~doascope.dsp.localizer.Localizer` (same blocks, integration and activity gate), on top of the
near-field SRP-PHAT searches of :mod:`doascope.dsp.spatial_srp` and the triangulation of
:mod:`doascope.dsp.triangulation`.

Several sources: find the strongest, zero every pair's correlation around that position's TDOAs,
search again; a weaker peak that matches a stronger source's echo is not a source.

Conventions: room frame, metres; positions (N, 3) float64; speed of sound 343 m/s unless set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from doascope import SPEED_OF_SOUND, ParameterError
from doascope.config import DEFAULT_BAND, DEFAULT_FRAMES_PER_BLOCK, SEARCHES
from doascope.dsp._checks import positive
from doascope.dsp.activity import ActivityGate, energy_coherence
from doascope.dsp.localizer import BlockStream
from doascope.dsp.spatial_srp import SpatialSrp
from doascope.dsp.triangulation import GroupBearings, triangulate


# --------------------------------------------------------------------------------------------------
# Block by block
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourcePosition:
    x: float
    y: float
    z: float
    power: float

    def as_dict(self) -> dict:
        return {"x": round(self.x, 3), "y": round(self.y, 3), "z": round(self.z, 3), "power": round(self.power, 4)}


@dataclass(frozen=True, eq=False)
class PositionResult:
    """One block's positions. t is the time (s) of the block's centre from the stream start."""

    index: int
    start: int
    stop: int
    t: float
    sources: tuple[SourcePosition, ...]   # strongest first; empty when inactive
    active: bool
    energy: float
    coherence: float
    evaluations: int                      # points scored by the search (0 for triangulation)


# A weaker position peak whose pair TDOAs lie within this RMS distance (s) of a stronger source's, or
# of one of its first-order wall images, is taken for that source's echo (about 0.7 m of path:
# measured echoes 0.6-1.6 ms, separate talkers 4-6 ms in the shipped 6 x 5 m room profiles).
ECHO_TOLERANCE_S = 2.0e-3
ECHO_RETRIES = 2


class PositionLocalizer(BlockStream):
    """Source positions block by block, with the same blocks, temporal integration and activity gate
    as :class:`~doascope.dsp.localizer.Localizer`.

    Parameters
    ----------
    positions : (mics, 3) microphone positions in the room frame, m
    room : (3, 2) search volume, m
    fs, nfft, hop, band : the analysis
    search : "coarse-to-fine" (default), "src", "grid" (exhaustive, 5 cm) or "triangulation"
        (needs ``groups``)
    groups : the profile's MicGroup tuple, for triangulation
    n_sources, frames_per_block, smoothing, min_relative, gate, window, step : as for Localizer
    search_options : keyword arguments of the search (e.g. ``spacing``, ``beam``)
    weighting : exponent of the per-bin power weight applied on top of PHAT (0 = plain PHAT)
    """

    def __init__(self, positions, *, room, fs: float, nfft: int = 512, hop: int | None = None,
                 band=DEFAULT_BAND, search: str = "coarse-to-fine", groups=(), n_sources: int = 1,
                 frames_per_block: int = DEFAULT_FRAMES_PER_BLOCK, smoothing: float = 0.0, min_relative: float = 0.3,
                 gate: ActivityGate | None = None, window: str = "hann", step: int | None = None,
                 c: float = SPEED_OF_SOUND, search_options: dict | None = None, weighting: float = 0.5):
        if search not in SEARCHES:
            raise ParameterError(f"unknown position search {search!r}; choose one of: {', '.join(SEARCHES)}")
        if room is None:
            raise ParameterError("position mode needs a search volume: give the profile a "
                                 "room = [[xmin, xmax], [ymin, ymax], [zmin, zmax]]")
        self.fs = positive("fs", fs)
        self._setup_stream(nfft=positive("nfft", nfft, integer=True), hop=hop, frames_per_block=frames_per_block,
                           step=step, smoothing=smoothing, gate=gate, window=window)
        self.n_sources = positive("n_sources", n_sources, integer=True)
        self.search = search
        self.search_options = dict(search_options or {})
        self.min_relative = float(min_relative)
        if not 0.0 <= float(weighting) <= 1.0:
            raise ParameterError(f"weighting must be in [0, 1], got {weighting}")
        self.weighting = float(weighting)
        self.srp = SpatialSrp(positions, room=room, fs=self.fs, nfft=self.nfft, band=band, c=c)
        self.positions = self.srp.positions
        self.room = self.srp.room
        self.bins = self.srp.gcc.bins
        self.bearings = None
        if search == "triangulation":
            if len(groups) < 2:
                raise ParameterError("triangulation needs a profile with at least two arrays ([[groups]])")
            self.bearings = GroupBearings(groups, self.positions, fs=self.fs, nfft=self.nfft, band=band, c=c,
                                          smoothing=self._alpha)

    @property
    def n_mics(self) -> int:
        return self.positions.shape[0]

    def set_smoothing(self, smoothing: float) -> None:
        super().set_smoothing(smoothing)
        if getattr(self, "bearings", None):   # triangulation's per-array bearings integrate alike
            self.bearings.smoothing = self._alpha

    def reset(self) -> None:
        super().reset()
        if self.bearings:
            self.bearings._stats = [None] * len(self.bearings.items)

    def same_source(self, q, p) -> bool:
        """Whether a source at ``p`` explains a peak at ``q`` (directly or by one wall reflection)."""
        return self.srp.echo_distance(q, p) < ECHO_TOLERANCE_S

    def state(self) -> tuple:
        bearings = () if not self.bearings else tuple(None if s is None else s.copy() for s in self.bearings._stats)
        return super().state() + (bearings,)

    def restore(self, state) -> None:
        super().restore(state)
        if self.bearings:
            self.bearings._stats = [None if s is None else np.array(s, copy=True) for s in state[3]]

    def _integrate(self, X) -> np.ndarray:
        # Exponential average of the PHAT cross-spectra (all pairs of all mics) across active blocks.
        weights = None
        if self.weighting > 0:
            # Speech falls ~20 dB from 500 Hz to 4 kHz: at moderate SNR plain PHAT gives the noisy
            # upper bins as much say as the speech-dominated lower ones. Weighting each bin's PHAT
            # term by (mean power over mics) ** weighting trades some of PHAT's whitening back
            # for robustness (between PHAT, 0, and plain cross-correlation, 1).
            power = np.mean(np.abs(X[:, self.bins, :]) ** 2, axis=0)          # (B, frames)
            weights = (power / max(float(power.max()), 1e-30)) ** self.weighting
        return self._integrate_stats(self.srp.gcc.cross_spectra(X, weights))

    def _triangulate(self, X) -> list[SourcePosition]:
        origins, dirs, grp, power, flat = self.bearings.bearings(X, self.n_sources)
        found = triangulate(origins, dirs, grp, planar=flat, room=self.room, n_sources=self.n_sources)
        return [SourcePosition(*map(float, x), float(np.mean(power[lines]))) for x, lines in found]

    def process(self, X: np.ndarray, start: int, fs: float | None = None) -> PositionResult:
        """Positions of one block of STFT frames (mics, freqs, frames) whose first sample is ``start``."""
        fs = self.fs if fs is None else fs
        energy, coherence = energy_coherence(X, self.bins)
        active = self.gate.update(energy, coherence, X.shape[2])
        sources: list[SourcePosition] = []
        evaluations = 0
        if active:
            if self.search == "triangulation":
                sources = self._triangulate(X)
            else:
                r = self.srp.gcc.correlate_cross(self._integrate(X))
                self.srp.prepare(r)
                # A few extra searches make up for peaks rejected as echoes of a stronger source.
                for _ in range(self.n_sources + ECHO_RETRIES if self.n_sources > 1 else 1):
                    p, v, stats = self.srp.search(self.search, **self.search_options)
                    evaluations += stats.evaluations
                    if sources and v < self.min_relative * sources[0].power:
                        break
                    # Presence: a weaker peak that the delays of a stronger source, direct or
                    # reflected once by a wall, floor or ceiling, explain is not a source of its own.
                    if not any(self.same_source(p, (s.x, s.y, s.z)) for s in sources):
                        sources.append(SourcePosition(float(p[0]), float(p[1]), float(p[2]), v))
                    if len(sources) == self.n_sources:
                        break
                    self.srp.mask(p)
                sources.sort(key=lambda s: -s.power)   # the search finds peaks in no guaranteed order
        stop = self._block_stop(start, X)
        result = PositionResult(self._index, start, stop, 0.5 * (start + stop) / fs, tuple(sources), active,
                                float(energy), float(coherence), evaluations)
        self._index += 1
        return result

    def locate(self, audio: np.ndarray, fs: float | None = None, *, chunk_blocks: int = 256, offset: int = 0):
        """Yield a :class:`PositionResult` for every whole block of ``audio`` (samples, mics) float32."""
        return super().locate(audio, self.fs if fs is None else fs, chunk_blocks=chunk_blocks, offset=offset)
