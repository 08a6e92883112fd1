"""Per-frame streaming statistics: each STFT frame is transformed and analysed once.

The live engine analyses a window of ``frames_per_block`` STFT frames every step (two hops by
default), so most of a window's frames were seen before. As ODAS does (``src/system/hop2frame.c``
turns each hop into one frame; ``mod_ssl.c`` keeps each frame's cross-spectra), a
:class:`FrameStats` keeps a ring of the window's frames and of each frame's statistics, and the
window's sums as running sums: a new frame costs one FFT per microphone and its own cross
products; the window's statistics are updated in the same pass, adding the frames that enter and
subtracting the ones that leave, in float64 (re-summed from the ring now and then and whenever most of the window
is new, so rounding never accumulates).

Per frame t and band bin b, with pairs p = (i, j), i < j:

    raw[t, p, b]  = X_i X_j^*                  (energy/coherence, covariances)
    power[t, b, m] = |X_m|^2
    phat[t, p, b] = Y_i Y_j^*,  Y = X / |X|    (SRP-PHAT and GCC-PHAT cross-spectra)

The window's statistics are the means over its frames: exactly what
:func:`doascope.dsp.activity.energy_coherence`, :func:`doascope.dsp.gcc.phat_cross_spectra` and
:func:`doascope.dsp.music.covariances` compute from the window's STFT block (the reference the tests
hold these to).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from doascope import ParameterError
from doascope.dsp.fft import rfft
from doascope.dsp.gcc import mic_pairs
from doascope.dsp.stft import _window

# A full re-sum from the ring after this many frames entered by running update.
RESUM_EVERY = 64

_EPS = np.float32(1e-20)


@njit("void(float32[:,::1], int64[::1], float32[::1], int64, float32[:,:,::1])", cache=True, nogil=True)
def _windowed_frames(audio, offsets, window, nfft, out):
    # audio (samples, mics); out (n, mics, nfft) = the frames starting at ``offsets``, windowed.
    M = audio.shape[1]
    for f in range(offsets.shape[0]):
        s = offsets[f]
        for m in range(M):
            for n in range(nfft):
                out[f, m, n] = audio[s + n, m] * window[n]


@njit("void(complex64[::1], complex64[::1], complex64[::1], complex128[::1], boolean)", cache=True, nogil=True)
def _pair_products(a, b, ring, acc, running):
    # ring[:] = a b^*; if running, acc += new - old.
    for k in range(ring.shape[0]):
        c = a[k] * np.conj(b[k])
        if running:
            acc[k] += np.complex128(c) - np.complex128(ring[k])
        ring[k] = c


@njit("void(complex64[:,:,::1], int64[::1], int64[::1], int64[:,::1], boolean, boolean, complex64[:,:,::1],"
      " float32[:,:,::1], complex64[:,:,::1], complex128[:,::1], float64[:,::1], complex128[:,::1])",
      cache=True, nogil=True)
def _frame_stats(spectra, slots, bins, pairs, with_phat, running, raw, power, phat, raw_sum, power_sum, phat_sum):
    # spectra (n, M, F): the new frames; frame q's statistics go to slot slots[q] of the rings
    # raw (T, P, B), power (T, B, M) and, if with_phat, phat (T, P, B). If running, the window's sums
    # raw_sum (P, B), power_sum (B, M), phat_sum (P, B) are updated in the same pass: each slot's old
    # frame subtracted as its new one enters (in float64). Pairs outermost, so that a pair's sums
    # stay in L1 while the new frames pass.
    n = slots.shape[0]
    M = spectra.shape[1]
    B = bins.shape[0]
    P = pairs.shape[0]
    X = np.empty((n, M, B), np.complex64)
    Y = np.empty((n, M, B), np.complex64)
    for q in range(n):
        s = slots[q]
        for b in range(B):
            k = bins[b]
            for m in range(M):
                v = spectra[q, m, k]
                X[q, m, b] = v
                e = v.real * v.real + v.imag * v.imag
                if running:
                    power_sum[b, m] += np.float64(e) - np.float64(power[s, b, m])
                power[s, b, m] = e
                inv = np.float32(1.0) / (np.sqrt(e) + _EPS)
                Y[q, m, b] = np.complex64(complex(v.real * inv, v.imag * inv))
    for p in range(P):
        i = pairs[p, 0]
        j = pairs[p, 1]
        for q in range(n):
            _pair_products(X[q, i], X[q, j], raw[slots[q], p], raw_sum[p], running)
            if with_phat:
                _pair_products(Y[q, i], Y[q, j], phat[slots[q], p], phat_sum[p], running)


@njit(["void(complex64[:,::1], complex128[::1], int64[::1])",
       "void(float32[:,::1], float64[::1], int64[::1])"], cache=True, nogil=True)
def _sum_rows(ring, acc, slots):
    # acc += the sum of ring rows ``slots`` (rows are one frame's flattened statistics), in order.
    for q in range(slots.shape[0]):
        s = slots[q]
        for n in range(acc.shape[0]):
            acc[n] += ring[s, n]


@njit("UniTuple(float64, 2)(complex128[:,::1], float64[:,::1], int64[:,::1], int64)", cache=True, nogil=True)
def _energy_coherence_from_sums(raw_sum, power_sum, pairs, frames):
    # The same two numbers as activity._energy_coherence, from the window's sums raw_sum (P, B) and
    # power_sum (B, M).
    B = power_sum.shape[0]
    M = power_sum.shape[1]
    energy = 0.0
    num = 0.0
    den = 0.0
    for b in range(B):
        for m in range(M):
            energy += power_sum[b, m]
    for p in range(pairs.shape[0]):
        i = pairs[p, 0]
        j = pairs[p, 1]
        for b in range(B):
            c = raw_sum[p, b]
            num += c.real * c.real + c.imag * c.imag
            den += power_sum[b, i] * power_sum[b, j]
    coherence = num / den if den > 0 else 0.0
    return energy / (M * B * frames), coherence


@njit("void(complex128[:,::1], float64[:,::1], int64[:,::1], float64, complex64[:,:,::1])", cache=True, nogil=True)
def _covariances_from_sums(raw_sum, power_sum, pairs, inv, out):
    # out (B, M, M) = mean over the window's frames of x x^H, as music._covariances.
    B = power_sum.shape[0]
    M = power_sum.shape[1]
    for b in range(B):
        for m in range(M):
            out[b, m, m] = np.complex64(power_sum[b, m] * inv)
        for p in range(pairs.shape[0]):
            v = raw_sum[p, b] * inv
            out[b, pairs[p, 0], pairs[p, 1]] = np.complex64(v)
            out[b, pairs[p, 1], pairs[p, 0]] = np.complex64(np.conj(v))


class FrameStats:
    """A ring of one window's STFT frames and their statistics, for one estimator.

    Parameters
    ----------
    estimator : a built :class:`~doascope.dsp.estimators.Estimator` (its ``frame_statistics``
        says which statistic it reads: "phat", "covariance" or None for the block's STFT)
    hop, frames : STFT hop (samples) and frames per window
    window : the STFT window's name (see :func:`doascope.dsp.stft.stft`)

    Everything is checked and allocated here, once; :meth:`update` takes a window of audio and
    transforms only the frames the ring does not hold yet.
    """

    def __init__(self, estimator, *, hop: int, frames: int, window: str = "hann"):
        self.kind = getattr(estimator, "frame_statistics", None)
        self.nfft = int(estimator.nfft)
        self.hop = int(hop)
        self.frames = int(frames)
        self.n_mics = int(estimator.n_mics)
        self.bins = np.ascontiguousarray(estimator.bins, dtype=np.int64)
        self.pairs = mic_pairs(self.n_mics)
        self.window = np.array(_window(window, self.nfft), dtype=np.float32)  # writable: the kernel signature
        T, M, F, B, P = self.frames, self.n_mics, self.nfft // 2 + 1, self.bins.size, self.pairs.shape[0]
        # The frame ring itself is kept only for estimators that need the block (kind None); the
        # others keep each frame's statistics.
        self.spectra = np.zeros((T, M, F) if self.kind is None else (0, M, F), np.complex64)
        self.raw = np.zeros((T, P, B), np.complex64)
        self.power = np.zeros((T, B, M), np.float32)
        self.phat = np.zeros((T, P, B) if self.kind == "phat" else (0, 0, 0), np.complex64)
        self.raw_sum = np.zeros((P, B), np.complex128)
        self.power_sum = np.zeros((B, M), np.float64)
        self.phat_sum = np.zeros((P, B) if self.kind == "phat" else (0, 0), np.complex128)
        self.peaks = np.full(T, -1, np.int64)                     # each frame's SRP maximum (grid index)
        self.peak_values = np.zeros(T, np.float32)
        self.votes: np.ndarray | None = None                       # (T, points) each frame's per-bin votes
        self.votes_done = np.zeros(T, bool)
        self._shape = ((T - 1) * self.hop + self.nfft, M)
        self._keys = [-1] * T                                      # first sample of the frame in each slot
        self._frames_buf = np.zeros((T, M, self.nfft), np.float32)
        self._since_resum = 0
        self._order = np.arange(T, dtype=np.int64)                # slots in time order, oldest first

    def reset(self) -> None:
        """Forget the frames (a jump in the stream, or a restored state)."""
        self._keys = [-1] * self.frames
        self.peaks[:] = -1
        self.votes_done[:] = False

    def update(self, audio: np.ndarray, start: int) -> int:
        """Bring the ring to the window ``audio`` (window samples, mics) float32 whose first sample is
        ``start``; returns how many frames were new."""
        T, hop = self.frames, self.hop
        if audio.shape != self._shape or audio.dtype != np.float32:
            raise ParameterError(f"a window must be float32 of shape {self._shape}, got {audio.dtype} {audio.shape}")
        keys = self._keys
        order = [((start + k * hop) // hop) % T for k in range(T)]
        new = [k for k in range(T) if keys[order[k]] != start + k * hop]
        self._order = np.array(order, np.int64)
        if not new:
            return 0
        new_slots = self._order[new]
        resum = 2 * len(new) >= T or self._since_resum + len(new) > RESUM_EVERY or -1 in keys
        buf = self._frames_buf[:len(new)]
        _windowed_frames(np.ascontiguousarray(audio), np.array(new, np.int64) * hop, self.window, self.nfft, buf)
        # the FFT of doascope.dsp.stft: the same values frame for frame
        spectra = rfft(buf, axis=2)
        if self.kind is None:
            self.spectra[new_slots] = spectra
        # the sums follow in the same pass (the slots' old frames out, the new ones in), or are re-summed
        _frame_stats(spectra, new_slots, self.bins, self.pairs, self.kind == "phat", not resum, self.raw, self.power,
                     self.phat, self.raw_sum, self.power_sum, self.phat_sum)
        for k in new:
            keys[order[k]] = start + k * hop
        self.peaks[new_slots] = -1
        self.votes_done[new_slots] = False
        if resum:
            T = self.frames
            for ring, acc in ((self.raw, self.raw_sum), (self.power, self.power_sum), (self.phat, self.phat_sum)):
                acc[...] = 0
                if acc.size:
                    _sum_rows(ring.reshape(T, -1), acc.reshape(-1), self._order)
            self._since_resum = 0
        else:
            self._since_resum += len(new)
        return len(new)

    # -- the window's statistics ------------------------------------------------------------------

    def block(self) -> np.ndarray:
        """The window's STFT block (mics, freqs, frames) complex64, frames in time order (kept for
        estimators without per-frame statistics only)."""
        if self.kind is not None:
            raise ParameterError("this stream keeps per-frame statistics, not the frames")
        return np.ascontiguousarray(self.spectra[self._order].transpose(1, 2, 0))

    def energy_coherence(self) -> tuple[float, float]:
        """As :func:`doascope.dsp.activity.energy_coherence` of :meth:`block`."""
        return _energy_coherence_from_sums(self.raw_sum, self.power_sum, self.pairs, self.frames)

    def phat_cross_spectra(self) -> np.ndarray:
        """(pairs, B) complex64: as :func:`doascope.dsp.gcc.phat_cross_spectra` of :meth:`block`."""
        return (self.phat_sum * (1.0 / self.frames)).astype(np.complex64)

    def covariances(self) -> np.ndarray:
        """(B, mics, mics) complex64: as :func:`doascope.dsp.music.covariances` of :meth:`block`."""
        out = np.empty((self.bins.size, self.n_mics, self.n_mics), np.complex64)
        _covariances_from_sums(self.raw_sum, self.power_sum, self.pairs, 1.0 / self.frames, out)
        return out

    def statistics(self) -> np.ndarray:
        """The estimator's block statistics (see its ``frame_statistics``)."""
        return self.phat_cross_spectra() if self.kind == "phat" else self.covariances()

    def frame_peaks(self, estimator) -> tuple[np.ndarray, np.ndarray]:
        """Each window frame's own SRP maximum, in time order: (frames,) grid indices and values;
        computed once per frame, from its stored PHAT cross-spectra."""
        missing = self._order[self.peaks[self._order] < 0]
        if missing.size:
            points, values = estimator.frame_peaks_from_cross(self.phat[missing])
            self.peaks[missing] = points
            self.peak_values[missing] = values
        return self.peaks[self._order].copy(), self.peak_values[self._order].copy()

    def frame_votes(self, estimator) -> np.ndarray:
        """(points,) float32: the window's per-bin votes, the sum of its frames' (each frame's
        computed once, from its stored PHAT cross-spectra: estimator.bin_votes_from_cross)."""
        missing = self._order[~self.votes_done[self._order]]
        if missing.size:
            fresh = estimator.bin_votes_from_cross(self.phat[missing])
            if self.votes is None or self.votes.shape[1] != fresh.shape[1]:
                self.votes = np.zeros((self.frames, fresh.shape[1]), np.float32)
            self.votes[missing] = fresh
            self.votes_done[missing] = True
        return self.votes[self._order].sum(axis=0)
