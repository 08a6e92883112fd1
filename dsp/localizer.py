"""Block-by-block localization: STFT frames -> spectrum -> temporal integration -> gate -> peaks.

The same object and the same per-frame pipeline (``process_audio``, doascope.dsp.stream) serve
offline files (``locate``) and the live engine, so both give identical results on the same windows;
``process`` is the block-wise reference it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from doascope import ParameterError
from doascope.dsp.activity import ActivityGate, energy_coherence
from doascope.dsp.estimators import Estimator
from doascope.dsp.extraction import (BIN_VOTE_WIDTH_DEG, DEFAULT_EXTRACTION, EXTRACTIONS, MEMORY_SMOOTHING,
                                     VOTE_WIDTH_DEG, VoteKernels)
from doascope.dsp.peaks import Peak
from doascope.dsp.stft import stft_blocks


@dataclass(frozen=True, eq=False)
class BlockResult:
    """One block's outcome. t is the time (s) of the block's centre from the stream start."""

    index: int
    start: int               # first sample of the block
    stop: int                # one past its last sample
    t: float
    spectrum: np.ndarray     # (points,) float32, after temporal integration when active
    peaks: tuple[Peak, ...]  # strongest first; empty when inactive
    active: bool
    energy: float            # mean band power
    coherence: float         # mean inter-mic coherence in [0, 1]


class BlockStream:
    """What :class:`Localizer` and the position localizer share: blocks of STFT frames taken at a
    step, exponential integration of a block statistic across active blocks, an activity gate,
    and running over a whole recording. Subclasses call :meth:`_setup_stream` and define
    ``process(X, start, fs)`` and ``n_mics``."""

    def _setup_stream(self, *, nfft: int, hop: int | None, frames_per_block: int, step: int | None,
                      smoothing: float, gate: ActivityGate | None, window: str) -> None:
        self.nfft = int(nfft)
        self.hop = self.nfft // 2 if hop is None else int(hop)
        if not 0 < self.hop <= self.nfft:
            raise ParameterError(f"hop must be in [1, nfft={self.nfft}], got {hop}")
        if int(frames_per_block) < 1:
            raise ParameterError("frames_per_block must be at least 1")
        self.frames_per_block = int(frames_per_block)
        self.step = self.block_advance if step is None else int(step)
        if self.step < 1:
            raise ParameterError(f"step must be at least one sample, got {step}")
        self.set_smoothing(smoothing)
        self.gate = gate or ActivityGate(floor_blocks=max(1, round(40 * self.block_advance / self.step)))
        self.window = window
        self._smoothed: np.ndarray | None = None
        self._votes = None
        self._vote_kernels = None    # frame_vote_map's kernel columns, kept across windows
        self._frame_cache: dict[int, tuple] = {}   # frame start sample -> (grid index, value)
        self._vote_cache: dict[int, np.ndarray] = {}   # frame start sample -> its per-bin votes
        self._frames = None                        # the frame ring of process_audio (doascope.dsp.stream)
        self._index = 0

    @property
    def block_samples(self) -> int:
        """Samples spanned by one block's frames."""
        return (self.frames_per_block - 1) * self.hop + self.nfft

    @property
    def block_advance(self) -> int:
        """Samples between the starts of consecutive blocks."""
        return self.frames_per_block * self.hop

    def set_smoothing(self, smoothing: float) -> None:
        if not 0.0 <= float(smoothing) < 1.0:
            raise ParameterError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)
        self._alpha = self._per_call(self.smoothing)

    def _per_call(self, smoothing: float) -> float:
        """The factor per call with the memory in seconds of ``smoothing`` per block, whatever the
        step: smoothing ** (blocks per call)."""
        return smoothing ** (self.step / self.block_advance)

    def reset(self) -> None:
        self._smoothed = None
        self._votes = None
        self._frame_cache = {}
        self._vote_cache = {}
        if self._frames is not None:
            self._frames.reset()
        self._index = 0
        self.gate.reset()

    def state(self) -> tuple:
        """Everything one block hands the next (the integrated statistic, the gate's energy
        history and the frame-vote map), as copies. Two streams in the same state give identical
        results from there on."""
        return (None if self._smoothed is None else self._smoothed.copy(), self.gate.state(),
                None if self._votes is None else self._votes.copy())

    def restore(self, state) -> None:
        """Continue from a :meth:`state` taken earlier on an identically built stream, as if the
        blocks before had been processed here."""
        smoothed, gate, votes = state[0], state[1], state[2]
        self._smoothed = None if smoothed is None else np.array(smoothed, copy=True)
        self._votes = None if votes is None else np.array(votes, copy=True)
        self._frame_cache = {}
        self._vote_cache = {}
        if self._frames is not None:
            self._frames.reset()
        self.gate.restore(gate)

    def _integrate_stats(self, stats: np.ndarray) -> np.ndarray:
        """The block statistic averaged exponentially over the active blocks so far."""
        self._smoothed = self._integrated(self._smoothed, stats)
        return self._smoothed

    def _integrated(self, state: np.ndarray | None, new: np.ndarray) -> np.ndarray:
        a = self._alpha
        if state is None or state.shape != new.shape or a == 0.0:
            return new
        return a * state + (1.0 - a) * new

    def _integrated_votes(self, state: np.ndarray | None, new: np.ndarray) -> np.ndarray:
        """(2, points) float32: per-bin vote maps integrated over the active blocks, row 0 with the
        smoothing, row 1 with at least MEMORY_SMOOTHING (see doascope.dsp.extraction.memory_candidates)."""
        if state is None or state.shape != (2,) + new.shape:
            return np.stack([new, new]).astype(np.float32)
        a = np.array([[self._alpha], [self._per_call(max(self.smoothing, MEMORY_SMOOTHING))]], np.float32)
        return a * state + (1.0 - a) * new

    def _block_stop(self, start: int, X: np.ndarray) -> int:
        return start + (X.shape[2] - 1) * self.hop + self.nfft

    def locate(self, audio: np.ndarray, fs: float, *, chunk_blocks: int = 256, offset: int = 0):
        """Yield ``process``'s result for every whole block of ``audio`` (samples, mics) float32.

        The STFT is taken chunk by chunk so memory stays bounded on long recordings. ``offset`` is
        the stream's sample index of ``audio[0]`` (a later part of a recording): block bounds and
        times count from the stream start.
        """
        if audio.ndim != 2 or audio.shape[1] != self.n_mics:
            raise ParameterError(f"audio must have shape (samples, {self.n_mics}), got {audio.shape}")
        for start, block in stft_blocks(audio, nfft=self.nfft, hop=self.hop, frames_per_block=self.frames_per_block,
                                        window=self.window, chunk_blocks=chunk_blocks):
            yield self.process(block, start + offset, fs)


class Localizer(BlockStream):
    """Runs one estimator over consecutive blocks of STFT frames.

    Parameters
    ----------
    estimator : a built :class:`~doascope.dsp.estimators.Estimator`
    hop : STFT hop in samples
    n_sources : peaks reported per block (at most)
    frames_per_block : STFT frames per block; blocks do not overlap
    smoothing : exponential integration of the estimator's statistics (cross-spectra,
        covariances) across active blocks, in [0, 1); it delays the estimate by
        smoothing / (1 - smoothing) blocks on average
    min_separation : degrees between reported peaks
    extraction : how several sources are told apart: "votes", "removal" or "peaks" (see
        doascope.dsp.extraction; methods other than SRP-PHAT's always use their spectrum's peaks)
    gate : an :class:`ActivityGate` (a default one if None)
    step : samples between consecutive :meth:`process` calls when they overlap (the live engine
        advances one hop at a time); smoothing and the gate's memory are rescaled so that they
        keep the same time constants in seconds. Default: one block (non-overlapping).
    """

    def __init__(self, estimator: Estimator, *, hop: int | None = None, n_sources: int = 1,
                 frames_per_block: int = 8, smoothing: float = 0.0, min_separation: float = 20.0,
                 gate: ActivityGate | None = None, window: str = "hann",
                 step: int | None = None, extraction: str | None = None):
        extraction = extraction or DEFAULT_EXTRACTION
        if extraction not in EXTRACTIONS:
            raise ParameterError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {extraction!r}")
        self.extraction = extraction
        self.estimator = estimator
        self.n_sources = int(n_sources)
        self.min_separation = float(min_separation)
        self._setup_stream(nfft=estimator.nfft, hop=hop, frames_per_block=frames_per_block, step=step,
                           smoothing=smoothing, gate=gate, window=window)
        self._stream()  # built now, so that the first window does not wait for its kernels and buffers

    @property
    def n_mics(self) -> int:
        return self.estimator.n_mics

    def locate(self, audio: np.ndarray, fs: float, *, offset: int = 0):
        """Yield :meth:`process_audio`'s result for every whole, non-overlapping block of ``audio``
        (samples, mics) float32: the pipeline of the live engine, one block after another, so memory
        stays bounded on long recordings. ``offset`` is the stream's sample index of ``audio[0]``
        (a later part of a recording): block bounds and times count from the stream start."""
        if audio.ndim != 2 or audio.shape[1] != self.n_mics:
            raise ParameterError(f"audio must have shape (samples, {self.n_mics}), got {audio.shape}")
        x = np.ascontiguousarray(audio, dtype=np.float32)
        width, advance = self.block_samples, self.block_advance
        for start in range(0, x.shape[0] - width + 1, advance):
            yield self.process_audio(x[start:start + width], start + offset, fs)

    def _frame_peaks(self, X: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Each frame's maximum, computed once per frame: the live engine's windows overlap (a new
        window every step, most of its frames seen before), so only the new frames are analysed."""
        starts = [start + k * self.hop for k in range(X.shape[2])]
        new = [k for k, s in enumerate(starts) if s not in self._frame_cache]
        if new:
            points, values = self.estimator.frame_peaks(np.ascontiguousarray(X[:, :, new]))
            self._frame_cache.update((starts[k], (p, v)) for k, p, v in zip(new, points, values))
        self._frame_cache = {s: self._frame_cache[s] for s in starts}
        return (np.array([self._frame_cache[s][0] for s in starts]),
                np.array([self._frame_cache[s][1] for s in starts], np.float32))

    def _frame_votes(self, X: np.ndarray, start: int) -> np.ndarray:
        """The block's per-bin votes (points,), each frame's computed once (as _frame_peaks)."""
        starts = [start + k * self.hop for k in range(X.shape[2])]
        new = [k for k, s in enumerate(starts) if s not in self._vote_cache]
        if new:
            rows = self.estimator.bin_votes(np.ascontiguousarray(X[:, :, new]))
            self._vote_cache.update((starts[k], row) for k, row in zip(new, rows))
        self._vote_cache = {s: self._vote_cache[s] for s in starts}
        return np.sum([self._vote_cache[s] for s in starts], axis=0, dtype=np.float32)

    def process(self, X: np.ndarray, start: int, fs: float) -> BlockResult:
        """Localize one block of STFT frames (mics, freqs, frames) whose first sample is ``start``.

        The reference path: everything is computed from the block. :meth:`process_audio` gives the
        same results from audio, analysing each frame once."""
        energy, coherence = energy_coherence(X, self.estimator.bins)
        stats = self.estimator.statistics(X)
        return self._conclude(stats, energy, coherence, start, self._block_stop(start, X), X.shape[2], fs,
                              lambda: self._frame_peaks(X, start), lambda: self._frame_votes(X, start))

    def process_audio(self, audio: np.ndarray, start: int, fs: float) -> BlockResult:
        """Localize the window ``audio`` (block_samples, mics) float32 whose first sample is ``start``.

        What the live engine and ``locate`` run: the frames this localizer saw in earlier windows are
        not transformed or analysed again (see doascope.dsp.stream); an estimator without per-frame
        statistics gets the window's STFT block."""
        frames = self._stream()
        frames.update(audio, start)
        if frames.kind is None:
            return self.process(frames.block(), start, fs)
        energy, coherence = frames.energy_coherence()
        return self._conclude(frames.statistics(), energy, coherence, start, start + self.block_samples,
                              self.frames_per_block, fs, lambda: frames.frame_peaks(self.estimator),
                              lambda: frames.frame_votes(self.estimator))

    def _stream(self):
        if self._frames is None:
            from doascope.dsp.stream import FrameStats

            self._frames = FrameStats(self.estimator, hop=self.hop, frames=self.frames_per_block, window=self.window)
        return self._frames

    def _conclude(self, stats, energy, coherence, start, stop, n_frames, fs, frame_peaks, frame_votes) -> BlockResult:
        active = self.gate.update(energy, coherence, n_frames)
        if active:
            integrated = self._integrate_stats(stats)
            spectrum = self.estimator.spectrum_from(integrated)
            votes = memory = None
            if self.n_sources > 1 and hasattr(self.estimator, "frame_peaks") and self.extraction == "votes":
                by_bin = getattr(self.estimator, "bin_votes_ok", False)
                width = BIN_VOTE_WIDTH_DEG if by_bin else VOTE_WIDTH_DEG
                kernels = self._vote_kernels
                if kernels is None or kernels.grid is not self.estimator.grid or kernels.width_deg != width:
                    kernels = self._vote_kernels = VoteKernels(self.estimator.grid, width)
                if by_bin:
                    # two maps: the votes with the smoothing's memory, and with a longer one
                    self._votes = self._integrated_votes(self._votes, kernels.spread(frame_votes()))
                    votes, memory = self._votes
                else:
                    points, values = frame_peaks()
                    self._votes = votes = self._integrated(self._votes, kernels.map(points, values ** 2))
            peaks = tuple(self.estimator.candidates(integrated, spectrum, self.n_sources, votes=votes,
                                                    min_separation=self.min_separation, extraction=self.extraction,
                                                    memory=memory))
        else:
            spectrum = self.estimator.spectrum_from(stats)
            peaks = ()
        result = BlockResult(self._index, start, stop, 0.5 * (start + stop) / fs, spectrum, peaks,
                             active, float(energy), float(coherence))
        self._index += 1
        return result

    def retune(self, *, n_sources: int | None = None, smoothing: float | None = None,
               min_separation: float | None = None, extraction: str | None = None) -> None:
        """Change what can change without losing state (the integrated statistics, the noise floor,
        the frame ring): the number of sources, the smoothing, the peaks' separation, the extraction."""
        if extraction is not None and extraction not in EXTRACTIONS:
            raise ParameterError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {extraction!r}")
        if n_sources is not None:
            self.estimator.set_sources(n_sources)
            self.n_sources = int(n_sources)
        if smoothing is not None:
            self.set_smoothing(smoothing)
        if min_separation is not None:
            self.min_separation = float(min_separation)
        if extraction is not None:
            self.extraction = extraction
