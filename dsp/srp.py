"""SRP-PHAT the fast way (as ODAS does): pairwise GCC-PHAT once per block, then every grid point
sums its pairs' correlations at precomputed TDOAs, with linear interpolation between lags.
"""

from __future__ import annotations

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


@njit("void(float32[:,:,::1], int32[:,::1], float32[:,::1], float32[:,::1], int64, int64)",
      cache=True, nogil=True)
def _srp_rows_span(r, lag, frac, out, g0, g1):
    # Points g0..g1 of every row s: out[s, g] = mean over pairs of r[s, p] interpolated at lag
    # lag[p, g] + frac[p, g]. Pairs outermost, points innermost: a pair's correlation stays in L1
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
    inv = np.float32(1.0 / P)
    for s in range(S):
        out[s, g0:g1] *= inv


@njit("void(float32[:,:,::1], int32[:,::1], float32[:,::1], float32[:,::1])", cache=True, nogil=True)
def _srp_rows(r, lag, frac, out):
    # r (S, P, L) correlations of S frames or blocks; out (S, G).
    _srp_rows_span(r, lag, frac, out, 0, lag.shape[1])


_SPAN = 512  # points per parallel task: a task's slice of the output stays in L1


@njit("void(float32[:,:,::1], int32[:,::1], float32[:,::1], float32[:,::1])", cache=True, nogil=True,
      parallel=True)
def _srp_rows_parallel(r, lag, frac, out):
    # As _srp_rows, spans of grid points spread over numba's threads (large grids: a sphere on 16 mics).
    G = lag.shape[1]
    for b in prange((G + _SPAN - 1) // _SPAN):
        _srp_rows_span(r, lag, frac, out, b * _SPAN, min(G, (b + 1) * _SPAN))


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
    """

    def __init__(self, lag_index, n_lags: int):
        idx = np.ascontiguousarray(lag_index, dtype=np.float32)
        if idx.ndim != 2 or (idx.size and (idx.min() < 0 or idx.max() > n_lags - 1 - 1e-6)):
            raise ParameterError("lag indices fall outside the correlation's lag grid")
        self.n_pairs, self.n_points = idx.shape
        self.n_lags = int(n_lags)
        # Integer lag and fraction, split once; the top lag index moves one down (fraction 1) so
        # that k + 1 stays on the grid.
        lag = np.minimum(np.floor(idx), max(self.n_lags - 2, 0)).astype(np.int32)
        self.lag = np.ascontiguousarray(lag)
        self.frac = np.ascontiguousarray(idx - lag, dtype=np.float32)
        import numba

        parallel = idx.size > PARALLEL_LOOKUPS and numba.get_num_threads() >= PARALLEL_MIN_THREADS
        self._kernel = _srp_rows_parallel if parallel else _srp_rows

    def rows(self, r: np.ndarray) -> np.ndarray:
        out = np.empty((r.shape[0], self.n_points), np.float32)
        self._kernel(r, self.lag, self.frac, out)
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
