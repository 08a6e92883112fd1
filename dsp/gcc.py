"""GCC-PHAT: phase-transform cross-spectra of all microphone pairs, correlations and TDOAs.

Conventions. A plane wave from unit direction u reaches mic m at time -u.m/c relative to the array
origin, so X_m(f) = S(f) exp(+j 2 pi f u.m / c). For the pair (i, j) the correlation

    r_ij(tau) = (1/B) sum_{band bins k} Re( C_ij(f_k) exp(+j 2 pi f_k tau) ),
    C_ij(f)   = mean over frames of w * X_i X_j^* / |X_i X_j^*|,

peaks at tau_ij(u) = u.(m_j - m_i) / c, the delay of mic i behind mic j; a perfectly coherent
plane wave gives r_ij = 1 at its peak. Correlations are evaluated directly on a fine lag grid
(``upsample`` points per sample, by default ~64 per period of the band's top
frequency) by one complex matrix product, which is exact and cheaper
than a zero-padded inverse FFT for the few lags a compact array spans.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from doascope import SPEED_OF_SOUND, ParameterError
from doascope.config import DEFAULT_BAND
from doascope.dsp._checks import as_bins, as_positions, as_stft, band_bins, positive

_EPS = np.float32(1e-20)


def mic_pairs(n_mics: int) -> np.ndarray:
    """All pairs (i, j) with i < j, shape (pairs, 2) int64, in lexicographic order."""
    i, j = np.triu_indices(int(n_mics), k=1)
    return np.ascontiguousarray(np.stack([i, j], axis=1), dtype=np.int64)


def pair_tdoas(positions, vectors, pairs=None, *, c: float = SPEED_OF_SOUND) -> np.ndarray:
    """Far-field TDOA tau_ij(u) = u.(m_j - m_i)/c in seconds, shape (pairs, directions) float64."""
    pos = as_positions(positions)
    pairs = mic_pairs(len(pos)) if pairs is None else np.asarray(pairs, dtype=np.int64)
    baselines = pos[pairs[:, 1]] - pos[pairs[:, 0]]  # (P, 3)
    return baselines @ np.asarray(vectors, dtype=np.float64).T / positive("c", c)


# Baselines closer than this (metres) are the same baseline: the TDOAs differ by under 1e-11 s, below
# the float32 rounding of a lag index.
BASELINE_TOLERANCE = 1e-9


class BaselineGroups:
    """Mic pairs grouped by baseline, the array's difference co-array: pairs whose baselines
    m_j - m_i are equal, or opposite, have the same TDOA (or its negative) towards every direction, so
    SRP can sum their cross-spectra first and read one correlation per baseline: the same sum over
    pairs with a fraction of the lag lookups and correlation products (a 4 x 4 grid such as the
    UMA-16: 120 pairs, 24 baselines). An opposite baseline's cross-spectrum enters conjugated
    (conj C_ij = C_ji, whose correlation is the lag-reversed one).

    Attributes: group (pairs,) int64 baseline of each pair; flip (pairs,) bool, pair opposite to its
    baseline; first (baselines,) int64 the pair whose direction each baseline takes; n_pairs;
    trivial, no two pairs share a baseline.
    """

    def __init__(self, positions, pairs, *, tol: float = BASELINE_TOLERANCE):
        pos = as_positions(positions)
        pairs = np.asarray(pairs, dtype=np.int64)
        b = pos[pairs[:, 1]] - pos[pairs[:, 0]]
        group = np.full(len(pairs), -1, np.int64)
        flip = np.zeros(len(pairs), bool)
        first = []
        for p in range(len(pairs)):
            if group[p] >= 0:
                continue
            same = (group < 0) & (np.abs(b - b[p]).max(axis=1) <= tol)
            opposite = (group < 0) & (np.abs(b + b[p]).max(axis=1) <= tol) & ~same
            group[same | opposite] = len(first)
            flip[opposite] = True
            first.append(p)
        self.group, self.flip = group, flip
        self.first = np.array(first, np.int64)
        self.n_pairs = len(pairs)
        self.trivial = len(first) == len(pairs)

    def __len__(self) -> int:
        return self.first.size

    def sum(self, C: np.ndarray) -> np.ndarray:
        """(S, baselines, B) complex64: each baseline's pairs' cross-spectra summed (opposite pairs
        conjugated), from (S, pairs, B) complex64 C (returned as it is when no pairs share a baseline)."""
        C = np.ascontiguousarray(C, dtype=np.complex64)
        if self.trivial:
            return C
        out = np.empty((C.shape[0], len(self), C.shape[2]), np.complex64)
        _sum_by_baseline(C, self.group, self.flip, out)
        return out


@njit("void(complex64[:,:,::1], int64[::1], boolean[::1], complex64[:,:,::1])", cache=True, nogil=True)
def _sum_by_baseline(C, group, flip, out):
    # out[s, group[p]] += C[s, p] (conjugated where flip[p]), over the pairs in order.
    S, P, B = C.shape
    for s in range(S):
        out[s] = 0
        for p in range(P):
            o = out[s, group[p]]
            c = C[s, p]
            if flip[p]:
                for k in range(B):
                    o[k] += np.conj(c[k])
            else:
                for k in range(B):
                    o[k] += c[k]


@njit("void(complex64[:,:,::1], int64[::1], int64[:,::1], float32[:,::1], complex64[:,::1])",
      cache=True, nogil=True)
def _phat_cross(X, bins, pairs, weights, out):
    # X (M, F, T); weights (B, T) or (0, 0) for none; out (P, B).
    M = X.shape[0]
    T = X.shape[2]
    B = bins.shape[0]
    weighted = weights.shape[0] > 0
    Y = np.empty((M, B, T), np.complex64)
    for m in range(M):
        for b in range(B):
            for t in range(T):
                v = X[m, bins[b], t]
                Y[m, b, t] = v / (np.abs(v) + _EPS)
    for b in range(B):
        wsum = np.float32(0.0)
        for t in range(T):
            wsum += weights[b, t] if weighted else np.float32(1.0)
        inv = np.float32(1.0) / max(wsum, _EPS)
        for p in range(pairs.shape[0]):
            i = pairs[p, 0]
            j = pairs[p, 1]
            acc = np.complex64(0.0)
            for t in range(T):
                v = Y[i, b, t] * np.conj(Y[j, b, t])
                acc += v * weights[b, t] if weighted else v
            out[p, b] = acc * inv


def phat_cross_spectra(X, bins, pairs, weights=None) -> np.ndarray:
    """PHAT-weighted cross-spectra averaged over the block's frames.

    Parameters
    ----------
    X : (mics, freqs, frames) complex64 STFT block
    bins : (B,) int frequency-bin indices to use
    pairs : (P, 2) int mic pairs
    weights : optional (B, frames) non-negative weight of each time-frequency bin

    Returns
    -------
    (P, B) complex64; |value| <= 1, 1 for a perfectly coherent plane wave.
    """
    X = as_stft(X)
    bins = as_bins(bins, X.shape[1])
    pairs = np.ascontiguousarray(pairs, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.min() < 0 or pairs.max() >= X.shape[0]:
        raise ParameterError(f"pairs must be (P, 2) mic indices in [0, {X.shape[0]})")
    if weights is None:
        w = np.zeros((0, 0), np.float32)
    else:
        w = np.ascontiguousarray(weights, dtype=np.float32)
        if w.shape != (bins.size, X.shape[2]) or np.any(w < 0):
            raise ParameterError(f"weights must be non-negative with shape {(bins.size, X.shape[2])}")
    out = np.empty((pairs.shape[0], bins.size), np.complex64)
    _phat_cross(X, bins, pairs, w, out)
    return out


def frame_phat_cross(X, bins, pairs) -> np.ndarray:
    """Each frame's own PHAT cross-spectra (the plain-numpy form; streams keep them per frame,
    doascope.dsp.stream): (frames, P, B) complex64 from a (mics, freqs, frames) STFT block, before
    the average over frames that :func:`phat_cross_spectra` takes."""
    Y = X[:, bins, :]
    Y = Y / (np.abs(Y) + np.float32(1e-20))
    C = Y[pairs[:, 0]] * np.conj(Y[pairs[:, 1]])                                  # (P, B, T)
    return np.ascontiguousarray(C.transpose(2, 0, 1), dtype=np.complex64)


class GccPhat:
    """GCC-PHAT of all pairs of one array on a fine lag grid.

    Built once per (geometry, fs, nfft, band); ``correlate`` turns an STFT block into
    correlations r (pairs, lags) float32 over ``lags`` (seconds).
    """

    def __init__(self, positions, *, fs: float, nfft: int, band=DEFAULT_BAND,
                 c: float = SPEED_OF_SOUND, upsample: int | None = None):
        self.positions = as_positions(positions)
        self.fs = positive("fs", fs)
        self.nfft = positive("nfft", nfft, integer=True)
        self.c = positive("c", c)
        self.bins = band_bins(band, self.fs, self.nfft)
        self.freqs = self.bins * (self.fs / self.nfft)
        # Linear interpolation between lags is accurate to ~0.1 degree with ~64 lags per period
        # of the band's highest frequency.
        if upsample is None:
            upsample = max(1, int(np.ceil(64 * self.freqs[-1] / self.fs)))
        self.upsample = positive("upsample", upsample, integer=True)
        self.pairs = mic_pairs(len(self.positions))
        dist = np.linalg.norm(self.positions[self.pairs[:, 1]] - self.positions[self.pairs[:, 0]], axis=1)
        self.step = 1.0 / (self.fs * self.upsample)                       # lag spacing, s
        self.half = int(np.ceil(dist.max() / self.c / self.step)) + 2      # lags each side of 0
        self.lags = (np.arange(2 * self.half + 1) - self.half) * self.step  # (L,) s
        # exp(+j 2 pi f tau) / B, so that Re(C @ E) is r_ij(tau) normalised to 1 for a coherent wave.
        self.lag_phasors = (np.exp(2j * np.pi * np.outer(self.freqs, self.lags)) / self.bins.size).astype(np.complex64)
        # The same phasors for one real matrix product: cross-spectra viewed as interleaved
        # (re, im) float32 times rows (Re E, -Im E) give Re(C E) at half a complex product's cost.
        real = np.empty((2 * self.bins.size, self.lags.size), np.float32)
        real[0::2], real[1::2] = self.lag_phasors.real, -self.lag_phasors.imag
        self._lag_real = real

    def cross_spectra(self, X, weights=None) -> np.ndarray:
        """(pairs, B) complex64 PHAT cross-spectra of a (mics, freqs, frames) block."""
        X = as_stft(X, mics=len(self.positions))
        if X.shape[1] != self.nfft // 2 + 1:
            raise ParameterError(f"the STFT has {X.shape[1]} bins but nfft={self.nfft} needs {self.nfft // 2 + 1}")
        return phat_cross_spectra(X, self.bins, self.pairs, weights)

    def correlate_cross(self, C) -> np.ndarray:
        """Correlations (pairs, lags) float32 from cross-spectra (pairs, B)."""
        return np.ascontiguousarray((C @ self.lag_phasors).real, dtype=np.float32)

    def correlate_rows(self, C: np.ndarray) -> np.ndarray:
        """Correlations (S, pairs, lags) float32 from S sets of cross-spectra (S, pairs, B) complex64,
        in one real matrix product (no checks: the callers make C themselves)."""
        C = np.ascontiguousarray(C, dtype=np.complex64)
        S, P, B = C.shape
        return (C.view(np.float32).reshape(S * P, 2 * B) @ self._lag_real).reshape(S, P, -1)

    def correlate(self, X, weights=None) -> np.ndarray:
        return self.correlate_cross(self.cross_spectra(X, weights))

    def lag_index(self, tdoas) -> np.ndarray:
        """Fractional index into ``lags`` of each TDOA (seconds), float32, clipped to the grid."""
        idx = (np.asarray(tdoas, dtype=np.float64) / self.step) + self.half
        return np.ascontiguousarray(np.clip(idx, 0, 2 * self.half - 1e-3), dtype=np.float32)

    def tdoas(self, r) -> np.ndarray:
        """Sub-sample TDOA (seconds) of each pair's correlation peak, by parabolic interpolation.

        Peaks are searched only within each pair's physical range |tau| <= d_ij / c.
        """
        r = np.asarray(r, dtype=np.float64)
        dist = np.linalg.norm(self.positions[self.pairs[:, 1]] - self.positions[self.pairs[:, 0]], axis=1)
        out = np.empty(r.shape[0])
        for p in range(r.shape[0]):
            lim = int(np.ceil(dist[p] / self.c / self.step))
            lo, hi = self.half - lim, self.half + lim + 1
            k = lo + int(np.argmax(r[p, lo:hi]))
            delta = 0.0
            if 0 < k < r.shape[1] - 1:
                a, b, c = r[p, k - 1], r[p, k], r[p, k + 1]
                den = a - 2 * b + c
                if den < 0:
                    delta = 0.5 * (a - c) / den
            out[p] = (k - self.half + delta) * self.step
        return out
