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


@njit("void(float32[:,:,::1], int32[:,::1], float32[:,::1], float32, float32[:,::1])", cache=True, nogil=True,
      parallel=True)
def _srp_rows_parallel(r, lag, frac, scale, out):
    # As _srp_rows, spans of grid points spread over numba's threads (large grids: a sphere on 16 mics).
    G = lag.shape[1]
    for b in prange((G + _SPAN - 1) // _SPAN):
        _srp_rows_span(r, lag, frac, scale, out, b * _SPAN, min(G, (b + 1) * _SPAN))


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
        self._kernel = _srp_rows_parallel if parallel else _srp_rows

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
#
# A frame's maximum on a large grid (a sphere on 16 mics: 5157 points x 120 pairs) found the way
# ODAS's SSL does it (introlab/odas, src/module/mod_ssl.c with src/system/xcorr2xcorr.c and
# src/init/space.c: a coarse sphere is scanned on cross-correlations max-filtered over each coarse
# point's span of lags, then only the fine points linked to the best coarse points are scanned),
# made exact: every fine point belongs to one coarse cell, and a cell's bound is, pair by pair, the
# maximum of the correlation over every lag its fine points interpolate between. Linear
# interpolation never exceeds the larger of its two lags, so the bound is >= the SRP of every point
# in the cell. Cells are refined in decreasing bound order until the next bound is below the best
# value found: the result is the full scan's maximum, at the cost of the coarse bounds plus the few
# cells whose bound reaches the peak.

# A bound below the best value by less than this still gets its cell refined: float32 rounding of
# the interpolation and of the sum over pairs (each term within an ulp of its exact value, values
# |r| <= 1 per pair, a few hundred pairs, whether a row holds one pair or a baseline's sum of several)
# stays far below it, so no cell holding the maximum is skipped.
BOUND_TOLERANCE = 1e-4
# Grids with at least this many points find frame maxima coarse-to-fine (smaller ones scan in full).
COARSE_FINE_MIN_POINTS = 1500
# Fine points per coarse cell, on average.
COARSE_CELL_POINTS = 10


@njit("void(float32[::1], float32[::1], int64)", cache=True, nogil=True)
def _max_shift(a, b, span):
    # b[k] = max(a[k], a[k + span]) where k + span is on the grid, a[k] above (a branch-free loop).
    L = a.shape[0]
    n = L - span
    lo = a[:n]
    hi = a[span:]
    out = b[:n]
    for k in range(n):
        x = lo[k]
        y = hi[k]
        out[k] = x if x >= y else y
    for k in range(n, L):
        b[k] = a[k]


@njit("void(float32[:,::1], int32[::1], float32[:,::1], float32[::1], float32[::1])", cache=True, nogil=True)
def _running_max(r, width, out, a, b):
    # out[p, k] >= max(r[p, k .. k + width[p]]) (equal away from the top end): maxima over 2, 4, 8...
    # lags by doubling, then the window as two overlapping spans.
    P, L = r.shape
    for p in range(P):
        n = width[p] + 1            # lags in the window
        src = r[p]
        span = 1
        flip = False
        while 2 * span <= n:        # max over [k, k + 2 span) (clipped at the top), into a and b in turn
            dst = b if flip else a
            _max_shift(src, dst, span)
            src = dst
            flip = not flip
            span *= 2
        _max_shift(src, out[p], n - span)   # [k, k + span) and [k + n - span, k + n)


@njit("void(float32[:,:,::1], int32[:,::1], float32[:,::1], float32, int32[:,::1], int32[::1], int64[::1],"
      " int64[::1], float32, int64[::1], float32[::1])", cache=True, nogil=True)
def _coarse_fine_maxima(r, lag_t, frac_t, inv, lo, width, cell_start, cell_points, tol, points, values):
    # r (S, P, L); lag_t, frac_t (G, P): the fine lag table, point-major; inv the lookup's scale; lo (P, C): each cell's
    # lowest lag per pair; width (P,): the widest cell span per pair; cell_points[cell_start[c]:
    # cell_start[c + 1]] the fine points of cell c (ascending). Out: each row's maximum and its point.
    S, P, L = r.shape
    C = lo.shape[1]
    M = np.empty((P, L), np.float32)
    ga = np.empty(L, np.float32)
    gb = np.empty(L, np.float32)
    bound = np.empty(C, np.float32)
    for s in range(S):
        rs = r[s]
        _running_max(rs, width, M, ga, gb)
        bound[:] = 0.0
        for p in range(P):
            Mp = M[p]
            lp = lo[p]
            for c in range(C):
                bound[c] += Mp[lp[c]]
        bound *= inv
        best = np.float32(-np.inf)
        bi = -1
        # The cell of the highest bound first; then, highest bound first, only the cells whose bound
        # reaches the best value found so far (usually a few dozen of hundreds).
        top = np.argmax(bound)
        cells = np.empty(1, np.int64)
        cells[0] = top
        for stage in range(2):
            for c in cells:
                if bound[c] + tol < best:
                    break
                for q in range(cell_start[c], cell_start[c + 1]):
                    pt = cell_points[q]
                    kp = lag_t[pt]
                    ap = frac_t[pt]
                    v = np.float32(0.0)
                    for p in range(P):   # the full scan's order of operations: the same float32 value
                        k = kp[p]
                        a = ap[p]
                        v += (np.float32(1.0) - a) * rs[p, k] + a * rs[p, k + 1]
                    v *= inv
                    if v > best or (v == best and pt < bi):
                        best = v
                        bi = pt
            if stage == 0:
                rest = np.nonzero(bound + tol >= best)[0]
                rest = rest[rest != top]
                cells = rest[np.argsort(-bound[rest])]
        points[s] = bi
        values[s] = best


def coarse_cells(vectors: np.ndarray, points_per_cell: int = COARSE_CELL_POINTS) -> np.ndarray:
    """(points,) int64 coarse cell of each grid direction (unit vectors (points, 3)): the nearest of
    about points / points_per_cell quasi-uniform (Fibonacci) centres; cells that no point falls in
    are dropped and the rest numbered from 0."""
    v = np.asarray(vectors, np.float64)
    n = max(1, int(round(len(v) / points_per_cell)))
    # centres on the whole sphere: a hemisphere grid fills about half of them
    n = n * 2 if v[:, 2].min() > -0.5 else n
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5 ** 0.5) * i
    rho = np.sqrt(1.0 - z * z)
    centres = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
    nearest = np.argmax(v @ centres.T, axis=1)
    _, cells = np.unique(nearest, return_inverse=True)
    return cells.astype(np.int64)


class CoarseFineScan:
    """Each row's SRP maximum on a large grid, coarse-to-fine (see the notes above): the same point
    and value as ``argmax(lookup.rows(r))``, with far fewer lookups.

    Built once per (array, grid) from a :class:`SrpLookup` and the grid's unit vectors.
    """

    def __init__(self, lookup: SrpLookup, vectors, points_per_cell: int = COARSE_CELL_POINTS):
        cells = coarse_cells(vectors, points_per_cell)
        if cells.size != lookup.n_points:
            raise ParameterError(f"{cells.size} directions for a lag table of {lookup.n_points} points")
        C = int(cells.max()) + 1
        order = np.argsort(cells, kind="stable")
        self.cell_points = np.ascontiguousarray(order, dtype=np.int64)
        self.cell_start = np.searchsorted(cells[order], np.arange(C + 1)).astype(np.int64)
        self.lag_t = np.ascontiguousarray(lookup.lag.T)
        self.frac_t = np.ascontiguousarray(lookup.frac.T)
        lo = np.full((lookup.n_rows, C), np.iinfo(np.int32).max, np.int64)
        hi = np.full((lookup.n_rows, C), -1, np.int64)
        for p in range(lookup.n_rows):
            np.minimum.at(lo[p], cells, lookup.lag[p])
            np.maximum.at(hi[p], cells, lookup.lag[p] + 1)   # interpolation reads lags k and k + 1
        self.lo = np.ascontiguousarray(lo, dtype=np.int32)
        self.width = np.ascontiguousarray((hi - lo).max(axis=1), dtype=np.int32)
        self.n_cells = C
        self.scale = lookup.scale

    def maxima(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S,) int64 points and (S,) float32 values: each row's maximum of the SRP of correlations r
        (S, pairs, lags) float32 (made on the lookup's lag grid)."""
        S = r.shape[0]
        points = np.empty(S, np.int64)
        values = np.empty(S, np.float32)
        _coarse_fine_maxima(r, self.lag_t, self.frac_t, self.scale, self.lo, self.width, self.cell_start,
                            self.cell_points, np.float32(BOUND_TOLERANCE), points, values)
        return points, values



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
