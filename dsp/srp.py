"""SRP-PHAT the fast way (as ODAS does): pairwise GCC-PHAT once per block, then every grid point
sums its pairs' correlations at precomputed TDOAs, with linear interpolation between lags.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from doascope import ParameterError


@njit("void(float32[:,::1], float32[:,::1], float32[::1])", cache=True, nogil=True)
def _srp_lookup(r, idx, out):
    # r (P, L) correlations; idx (P, G) fractional lag indices; out (G,) mean over pairs.
    P = r.shape[0]
    G = idx.shape[1]
    top = r.shape[1] - 2   # the last whole lag that has a next one: index L - 1 itself is k = L - 2, a = 1
    inv = np.float32(1.0 / P)
    for g in range(G):
        out[g] = 0.0
    for p in range(P):
        for g in range(G):
            x = idx[p, g]
            k = min(int(x), top)
            a = x - k
            out[g] += (1.0 - a) * r[p, k] + a * r[p, k + 1]
    for g in range(G):
        out[g] *= inv


@njit("void(float32[:,:,::1], int32[:,::1], float32[:,::1], float32, float32[:,::1], int64, int64)",
      cache=True, nogil=True)
def _srp_rows_span(r, lag, frac, scale, out, g0, g1):
    # Points g0..g1 of every row s: out[s, g] = scale * sum over pairs (or baselines) of r[s, p]
    # interpolated at lag lag[p, g] + frac[p, g]. Pairs outermost, points innermost: a pair's correlation stays in L1
    # and the lag table is read in order; integer lags are precomputed (float-to-int conversion
    # per lookup cost more than the lookup).
    # (Loops run over slices from 0, so that numba drops its negative-index checks and vectorizes.)
    S = r.shape[0]
    P = lag.shape[0]
    n = g1 - g0
    for s in range(S):
        out[s, g0:g1] = 0.0
    for p in range(P):
        kp = lag[p, g0:g1]
        ap = frac[p, g0:g1]
        for s in range(S):
            rp = r[s, p]
            o = out[s, g0:g1]
            for g in range(n):
                k = kp[g]
                a = ap[g]
                o[g] += (np.float32(1.0) - a) * rp[k] + a * rp[k + 1]
    for s in range(S):
        out[s, g0:g1] *= scale


@njit("void(float32[:,:,::1], int32[:,::1], float32[:,::1], float32, float32[:,::1])", cache=True, nogil=True)
def _srp_rows(r, lag, frac, scale, out):
    # r (S, P, L) correlations of S frames or blocks; out (S, G).
    _srp_rows_span(r, lag, frac, scale, out, 0, lag.shape[1])


_SPAN = 512  # points per parallel task: a task's slice of the output stays in L1


@functools.cache
def parallel_rows():
    """The parallel twin of _srp_rows: spans of grid points spread over numba's threads (large grids,
    a sphere on 16 mics, on machines with threads to spare). Compiled, or loaded from the cache, on
    the first call, by the SrpLookup that needs it (at build time), not with this module: a parallel
    kernel costs twice a plain one to load, and most grids never use it."""

    @njit("void(float32[:,:,::1], int32[:,::1], float32[:,::1], float32, float32[:,::1])", cache=True, nogil=True,
          parallel=True)
    def _srp_rows_parallel(r, lag, frac, scale, out):
        G = lag.shape[1]
        for b in prange((G + _SPAN - 1) // _SPAN):
            _srp_rows_span(r, lag, frac, scale, out, b * _SPAN, min(G, (b + 1) * _SPAN))

    return _srp_rows_parallel


# Grids with more lookups than this (points x pairs) per row use the parallel kernel, when numba
# has at least PARALLEL_MIN_THREADS threads: on a busy 2-core machine two threads took 2.6 times
# longer than one (each waits for the other at the end of the loop).
PARALLEL_LOOKUPS = 200_000
PARALLEL_MIN_THREADS = 4


class SrpLookup:
    """The lag table of one (array, grid), checked and laid out once at build time.

    ``rows(r)`` maps correlations (S, pairs, lags) float32 to steered response power (S, points)
    float32 without checking anything per call: the table was checked here, and callers pass
    correlations they made themselves on the matching lag grid.

    ``n_pairs``: the pairs the table's rows stand for (default one per row); the SRP is the sum over
    rows divided by it, the mean over pairs when a row holds the summed correlations of all the pairs
    of one baseline (doascope.dsp.gcc.BaselineGroups).
    """

    def __init__(self, lag_index, n_lags: int, *, n_pairs: int | None = None):
        idx = np.ascontiguousarray(lag_index, dtype=np.float32)
        if idx.ndim != 2 or (idx.size and (idx.min() < 0 or idx.max() > n_lags - 1 - 1e-6)):
            raise ParameterError("lag indices fall outside the correlation's lag grid")
        self.n_rows, self.n_points = idx.shape
        self.n_pairs = self.n_rows if n_pairs is None else int(n_pairs)
        if self.n_pairs < 1:
            raise ParameterError(f"a lag table stands for at least one pair, got {n_pairs}")
        self.scale = np.float32(1.0 / self.n_pairs)
        self.n_lags = int(n_lags)
        # Integer lag and fraction, split once; the top lag index moves one down (fraction 1) so
        # that k + 1 stays on the grid.
        lag = np.minimum(np.floor(idx), max(self.n_lags - 2, 0)).astype(np.int32)
        self.lag = np.ascontiguousarray(lag)
        self.frac = np.ascontiguousarray(idx - lag, dtype=np.float32)
        import numba

        parallel = idx.size > PARALLEL_LOOKUPS and numba.get_num_threads() >= PARALLEL_MIN_THREADS
        self._kernel = parallel_rows() if parallel else _srp_rows

    def rows(self, r: np.ndarray) -> np.ndarray:
        out = np.empty((r.shape[0], self.n_points), np.float32)
        self._kernel(r, self.lag, self.frac, self.scale, out)
        return out


def srp_from_correlations(r, lag_index) -> np.ndarray:
    """Steered response power at each grid point from pair correlations.

    Parameters
    ----------
    r : (pairs, lags) float32 GCC-PHAT correlations
    lag_index : (pairs, points) float32 fractional lag index of each point's TDOA per pair

    Returns
    -------
    (points,) float32: mean over pairs of r_ij(tau_ij(point)); 1 for a perfectly coherent wave.
    """
    r = np.ascontiguousarray(r, dtype=np.float32)
    idx = np.ascontiguousarray(lag_index, dtype=np.float32)
    if r.ndim != 2 or idx.ndim != 2 or idx.shape[0] != r.shape[0]:
        raise ParameterError(f"correlations {r.shape} and lag indices {idx.shape} must share the pair axis")
    if idx.size and (idx.min() < 0 or idx.max() > r.shape[1] - 1 - 1e-6):
        raise ParameterError("lag indices fall outside the correlation's lag grid")
    out = np.empty(idx.shape[1], np.float32)
    _srp_lookup(r, idx, out)
    return out


# -- Coarse-to-fine maxima ----------------------------------------------------------------------------
# A frame's maximum on a large grid is found coarse-to-fine, as ODAS's SSL does it but exact
# (doascope.dsp.srp_coarse: CoarseFineScan, imported when a localizer on such a grid is built, so
# that the common small grids never load its kernels).

# Grids with at least this many points find frame maxima coarse-to-fine (smaller ones scan in full).
COARSE_FINE_MIN_POINTS = 1500


@njit("float32(float32[::1])", cache=True, nogil=True, fastmath=True)
def _max8(a):
    # max(a) with eight running maxima (independent chains: about 3x faster than one on 360 points).
    G = a.shape[0]
    v0 = a[0]
    v1 = v0
    v2 = v0
    v3 = v0
    v4 = v0
    v5 = v0
    v6 = v0
    v7 = v0
    m = G - G % 8
    for g in range(0, m, 8):
        v0 = max(v0, a[g])
        v1 = max(v1, a[g + 1])
        v2 = max(v2, a[g + 2])
        v3 = max(v3, a[g + 3])
        v4 = max(v4, a[g + 4])
        v5 = max(v5, a[g + 5])
        v6 = max(v6, a[g + 6])
        v7 = max(v7, a[g + 7])
    v = max(max(max(v0, v1), max(v2, v3)), max(max(v4, v5), max(v6, v7)))
    for g in range(m, G):
        v = max(v, a[g])
    return v


@njit("void(complex64[:,:,::1], float32[:,:,::1], float32, float64[:,::1])", cache=True, nogil=True, fastmath=True)
def _bin_votes(C, steer, threshold, out):
    # For each frame s and bin b: srp[g] = sum_r Re C[s, r, b] steer[b, r, g] + Im C[s, r, b] steer[b, R + r, g];
    # its maximum, if at least threshold, votes for its point (the first where it is reached) with
    # weight max^2 (out[s, point]). The frames of a bin share each pass over its steering (1 MB and
    # more: read once per bin, not once per frame). Each row's steering is a phasor of one magnitude
    # (cos, -sin over the pair count), so srp[g] <= sum_r |C[s, r, b]| |steer[b, :, 0] of r|: a bin
    # whose bound is below threshold cannot vote and is skipped (a baseline's pairs that disagree, as in
    # diffuse sound, sum to less than their count).
    S, R, B = C.shape
    G = steer.shape[2]
    acc = np.empty((S, G), np.float32)
    live = np.empty(S, np.bool_)
    out[:] = 0.0
    for b in range(B):
        any_live = False
        for s in range(S):
            bound = 0.0
            for r in range(R):
                bound += abs(C[s, r, b]) * np.hypot(steer[b, r, 0], steer[b, R + r, 0])
            live[s] = bound * (1.0 + 1e-5) + 1e-6 >= threshold
            any_live = any_live or live[s]
        if not any_live:
            continue
        acc[:] = 0.0
        for r in range(R):
            cr = steer[b, r]
            ci = steer[b, R + r]
            for s in range(S):
                if not live[s]:
                    continue
                re = C[s, r, b].real
                im = C[s, r, b].imag
                a = acc[s]
                for g in range(G):
                    a[g] += re * cr[g] + im * ci[g]
        for s in range(S):
            if not live[s]:
                continue
            a = acc[s]
            value = _max8(a)               # the maximum ...
            if value >= threshold:
                best = 0
                while best < G - 1 and a[best] != value:    # ... then where it is first reached
                    best += 1
                out[s, best] += np.float64(value) * np.float64(value)


def bin_votes(C: np.ndarray, steering: np.ndarray, threshold: float) -> np.ndarray:
    """(frames, points) float32 per-bin votes, fused (one pass, no (bins, frames, points) array): for
    each frame and bin, the bin's SRP over the grid from the rows' cross-spectra C (frames, rows, B)
    complex64 and the steering (B, 2 rows, points) float32 (cosines then minus sines of each row's
    phase at each point, over the number of pairs); the maximum, when at least ``threshold``, votes for
    its point with its square. Each row's steering must be a phasor of one magnitude at every point
    (as cos and -sin over the pair count are): a bin whose rows' magnitudes bound its SRP below the
    threshold is skipped. The same as ``bin_vote_histograms`` of the per-bin SRP (a test holds it to
    that plain-numpy path), to float32 rounding of the sums."""
    C = np.ascontiguousarray(C, dtype=np.complex64)
    steering = np.ascontiguousarray(steering, dtype=np.float32)
    if C.ndim != 3 or steering.ndim != 3 or steering.shape[0] != C.shape[2] or steering.shape[1] != 2 * C.shape[1]:
        raise ParameterError(f"bin_votes: cross-spectra {C.shape} and steering {steering.shape} do not match")
    out = np.empty((C.shape[0], steering.shape[2]), np.float64)
    _bin_votes(C, steering, np.float32(threshold), out)
    return out.astype(np.float32)
